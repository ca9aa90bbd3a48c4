"""Read onnxruntime's ``.ort`` flatbuffer models into numpy weights, dequantised once.

``moonshine-cpp==0.1.4`` ships Moonshine base English as ``.ort`` graphs whose
weights are int8 with a float scale and zero point, turned back into float32
inside the graph (``Cast``, ``Mul`` by the scale, ``Add`` of the zero point)
at every run: about 96 ms per decoder step on one thread. This module reads
the flatbuffer with the schema onnxruntime ships
(``onnxruntime.tools.ort_format_model``), does that dequantisation once in
numpy and names each weight after the node that uses it
(``/model/decoder/layers.0/self_attn/q_proj/MatMul`` →
``decoder.layers.0.self_attn.q_proj.weight``), so that
:mod:`models.moonshine.graph` can write graphs of its own from them.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

#: ``TensorDataType`` codes of the ``.ort`` schema that these models use.
_DTYPES: dict[int, type[np.generic]] = {1: np.float32, 2: np.uint8, 3: np.int8, 6: np.int32,
                                        7: np.int64, 9: np.bool_, 10: np.float16}
_QUANTISED, _SCALE, _ZERO = "_quantized", "_scale", "_zero_point"


class OrtFormatError(ValueError):
    """The file is not an ``.ort`` model this reader understands.

    ``code`` is ``moonshine-bad-ort``.
    """

    code = "moonshine-bad-ort"


@dataclasses.dataclass(frozen=True, slots=True)
class OrtNode:
    """One node: its name, operator, inputs and outputs, and its subgraphs (``If``)."""

    name: str
    op: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    subgraphs: tuple[OrtGraph, ...] = ()


@dataclasses.dataclass(frozen=True, slots=True)
class OrtGraph:
    """A graph's nodes, initialisers (as stored) and input/output names."""

    nodes: tuple[OrtNode, ...]
    initializers: dict[str, np.ndarray]
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]

    def walk(self) -> list[OrtNode]:
        """Return every node, those of subgraphs included."""
        out: list[OrtNode] = []
        for node in self.nodes:
            out.append(node)
            for sub in node.subgraphs:
                out.extend(sub.walk())
        return out

    def constants(self) -> dict[str, np.ndarray]:
        """Return every initialiser, those of subgraphs included."""
        out = dict(self.initializers)
        for node in self.nodes:
            for sub in node.subgraphs:
                out.update(sub.constants())
        return out


def _text(raw: bytes | None) -> str:
    return raw.decode() if raw else ""


def _tensor(t: object) -> np.ndarray:
    code = t.DataType()  # type: ignore[attr-defined]
    if code not in _DTYPES:
        raise OrtFormatError(f"initialiser {_text(t.Name())!r} has data type {code}, "  # type: ignore[attr-defined]
                             "which this reader does not handle")
    dims = [t.Dims(j) for j in range(t.DimsLength())]  # type: ignore[attr-defined]
    raw = t.RawDataAsNumpy()  # type: ignore[attr-defined]
    data = b"" if isinstance(raw, int) else raw.tobytes()
    return np.frombuffer(data, dtype=_DTYPES[code]).reshape(dims).copy()


def _graph(g: object) -> OrtGraph:
    from onnxruntime.tools.ort_format_model.ort_flatbuffers_py.fbs.AttributeType import (
        AttributeType,
    )

    inits = {}
    for i in range(g.InitializersLength()):  # type: ignore[attr-defined]
        t = g.Initializers(i)  # type: ignore[attr-defined]
        inits[_text(t.Name())] = _tensor(t)
    nodes = []
    for i in range(g.NodesLength()):  # type: ignore[attr-defined]
        n = g.Nodes(i)  # type: ignore[attr-defined]
        subs = tuple(_graph(n.Attributes(a).G()) for a in range(n.AttributesLength())
                     if n.Attributes(a).Type() == AttributeType.GRAPH)
        nodes.append(OrtNode(_text(n.Name()), _text(n.OpType()),
                             tuple(_text(n.Inputs(j)) for j in range(n.InputsLength())),
                             tuple(_text(n.Outputs(j)) for j in range(n.OutputsLength())), subs))
    return OrtGraph(tuple(nodes), inits,
                    tuple(_text(g.Inputs(i)) for i in range(g.InputsLength())),  # type: ignore[attr-defined]
                    tuple(_text(g.Outputs(i)) for i in range(g.OutputsLength())))  # type: ignore[attr-defined]


def read(path: Path) -> OrtGraph:
    """Read the ``.ort`` model at ``path``; ``OrtFormatError`` when it is not one."""
    from onnxruntime.tools.ort_format_model.ort_flatbuffers_py.fbs.InferenceSession import (
        InferenceSession,
    )

    buf = path.read_bytes()
    if len(buf) < 8 or buf[4:8] != b"ORTM":
        raise OrtFormatError(f"{path}: not an .ort model (no ORTM identifier)")
    model = InferenceSession.GetRootAs(buf, 0).Model()
    if model is None or model.Graph() is None:
        raise OrtFormatError(f"{path}: the .ort file holds no model graph")
    return _graph(model.Graph())


def dequantise(graph: OrtGraph) -> dict[str, np.ndarray]:
    """Return the graph's float weights: stored float32 initialisers as they are, and each
    int8 ``X_quantized`` turned into ``X_quantized * X_scale + X_zero_point`` (float32).

    The formula is checked against the graph: the quantised tensor must feed a
    ``Cast`` whose output is multiplied by the scale and then added to the zero point.
    """
    consts = graph.constants()
    users: dict[str, OrtNode] = {}
    for node in graph.walk():
        for name in node.inputs:
            users.setdefault(name, node)
    out: dict[str, np.ndarray] = {}
    for name, value in consts.items():
        if name.endswith(_QUANTISED):
            base = name[: -len(_QUANTISED)]
            cast = users.get(name)
            mul = users.get(cast.outputs[0]) if cast else None
            add = users.get(mul.outputs[0]) if mul else None
            if not (cast and mul and add and cast.op == "Cast" and mul.op == "Mul"
                    and add.op == "Add" and base + _SCALE in mul.inputs
                    and base + _ZERO in add.inputs):
                raise OrtFormatError(f"{name}: not dequantised as Cast, Mul(scale), "
                                     "Add(zero point)")
            scale = consts[base + _SCALE].astype(np.float32)
            zero = consts[base + _ZERO].astype(np.float32)
            out[add.outputs[0]] = value.astype(np.float32) * scale + zero
        elif value.dtype == np.float32 and not name.endswith((_SCALE, _ZERO)):
            out[name] = value
    return out


def _role(node: OrtNode) -> str:
    """``/model/decoder/layers.0/mlp/up_proj/MatMul`` → ``decoder.layers.0.mlp.up_proj``."""
    parts = [p for p in node.name.split("/") if p][:-1]
    if parts and parts[0] == "model":
        parts = parts[1:]
    return ".".join(parts)


def weights(path: Path) -> dict[str, np.ndarray]:
    """Return the model's learned weights (float32), named by what uses them.

    A weight with a name of its own keeps it (``model.`` and the merged
    decoder's ``_merged_0`` dropped); an anonymous one (``onnx::MatMul_1947``)
    takes its consumer's name: ``<module>.weight`` for a ``MatMul`` or ``Mul``,
    ``<module>.bias`` for an ``Add``. Constants of the graph's own arithmetic
    (shapes, epsilons) are left out.
    """
    graph = read(path)
    floats = dequantise(graph)
    out: dict[str, np.ndarray] = {}
    for node in graph.walk():
        for name in node.inputs:
            if name not in floats or floats[name].size == 0:
                continue  # empty: the merged decoder's placeholder outputs
            base = name.removesuffix("_add_tensor").removesuffix("_merged_0")
            if base.startswith("onnx::"):
                if node.op not in ("MatMul", "Mul", "Add", "Gather"):
                    continue
                key = _role(node) + (".bias" if node.op == "Add" else ".weight")
            elif "/" in base:
                continue  # a constant of the exported arithmetic
            else:
                key = base.removeprefix("model.")
            if key in out and not np.array_equal(out[key], floats[name]):
                raise OrtFormatError(f"{path}: two different tensors for {key}")
            out[key] = floats[name]
    return out


def constant(path: Path, name: str) -> np.ndarray:
    """Return the initialiser ``name`` of the model at ``path`` as stored (e.g. the
    rotary inverse frequencies ``/model/decoder/rotary_emb/Cast_1_output_0``)."""
    consts = read(path).constants()
    if name not in consts:
        raise OrtFormatError(f"{path}: no initialiser {name!r}")
    return consts[name]
