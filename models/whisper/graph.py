"""Whisper's ONNX graphs written straight from CTranslate2 weights, without torch.

``voicestream models build`` uses this writer: it reads the packaged
``model.bin`` (:mod:`models.whisper.ct2`) and writes, with ``onnx.helper``,
the three graphs that :mod:`models.whisper.inference` loads, with the same
inputs, outputs, shapes and KV-cache layout as the torch export in
:mod:`models.whisper.torch_model` (which stays, under the ``train`` extra, as
the yardstick the tests hold these graphs to). With L layers and width D:

* ``encoder.onnx``: ``mel [B, 80, F]`` to ``cross_k``, ``cross_v``
  ``[L, B, F/2, D]``: every decoder layer's cross-attention keys and values.
* ``decoder.onnx``: ``tokens [B, n]``, ``self_k``, ``self_v`` ``[L, B, P, D]``
  (P may be 0), ``cross_k``, ``cross_v`` to ``logits [B, V]`` (last position)
  and ``new_self_k``, ``new_self_v`` ``[L, B, P+n, D]``.
* ``aligner.onnx``: ``tokens [1, n]``, ``cross_k``, ``cross_v`` to
  ``weights [L, heads, n, T]``, every layer's cross-attention weights.
* ``scorer.onnx``: the decoder's inputs plus ``targets [B, n]`` to ``logp [B, n]``,
  the log-probability of ``targets[:, i]`` after ``tokens[:, :i + 1]``: teacher
  forcing in one pass instead of one decoder step per token. ``cross_k`` and
  ``cross_v`` may hold one audio row for all B token rows (they broadcast).

The arithmetic follows the torch module: pre-norm blocks (LayerNorm eps
1e-5), exact (erf) GELU, queries and keys each scaled by ``(D/heads)^-0.25``,
a causal mask of ``-inf`` above the diagonal shifted by the cache length.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from models.minilm import GraphBuilder
from models.whisper.ct2 import Ct2Model, Dims

_EPS = 1e-5
_OPSET = 17


class _Writer:
    """One graph's builder plus the Whisper pieces (layer norm, linear, attention)."""

    def __init__(self, model: Ct2Model) -> None:
        self.g = GraphBuilder()
        self.dims = Dims.of(model)
        self.v = {k: np.asarray(a, dtype=np.float32) for k, a in model.variables.items()
                  if a.dtype in (np.float16, np.float32) and a.ndim > 0}
        self._cache: dict[str, str] = {}
        d, h = self.dims.width, self.dims.heads
        self.split = self.g.const("split_heads", np.array([0, 0, h, d // h], np.int64))
        self.merge = self.g.const("merge_heads", np.array([0, 0, d], np.int64))
        self.scale = self.g.const("qk_scale", np.array((d // h) ** -0.25, np.float32))
        self.half = self.g.const("half", np.array(0.5, np.float32))
        self.one = self.g.const("one", np.array(1.0, np.float32))
        self.sqrt2 = self.g.const("sqrt2", np.array(np.sqrt(2.0), np.float32))

    def axis0(self) -> str:
        """The ``[0]`` axes/starts constant."""
        return self.weight("axis0", np.array([0], np.int64))

    def weight(self, name: str, value: np.ndarray) -> str:
        if name not in self._cache:
            self._cache[name] = self.g.const(name, value)
        return self._cache[name]

    def layer_norm(self, x: str, src: str) -> str:
        return self.g.op("LayerNormalization",
                         [x, self.weight(f"{src}/gamma", self.v[f"{src}/gamma"]),
                          self.weight(f"{src}/beta", self.v[f"{src}/beta"])],
                         axis=-1, epsilon=_EPS)

    def linear(self, x: str, name: str, w: np.ndarray, b: np.ndarray | None) -> str:
        """``x @ w.T + b`` with ``w`` stored transposed, as a MatMul the quantiser finds."""
        y = self.g.op("MatMul", [x, self.weight(name + "/weight_t", np.ascontiguousarray(w.T))])
        return y if b is None else self.g.op("Add", [y, self.weight(name + "/bias", b)])

    def gelu(self, x: str) -> str:
        g = self.g
        return g.op("Mul", [g.op("Mul", [x, self.half]),
                            g.op("Add", [g.op("Erf", [g.op("Div", [x, self.sqrt2])]), self.one])])

    def qkv(self, x: str, src: str) -> tuple[str, str, str]:
        """Self-attention's query, key and value of ``x`` (the fused ``linear_0``)."""
        w = np.split(self.v[f"{src}/linear_0/weight"], 3)
        b = np.split(self.v[f"{src}/linear_0/bias"], 3)
        return (self.linear(x, f"{src}/q", w[0], b[0]), self.linear(x, f"{src}/k", w[1], None),
                self.linear(x, f"{src}/v", w[2], b[2]))

    def cross_kv(self, x: str, layer: int) -> tuple[str, str]:
        """Decoder layer ``layer``'s cross-attention key and value of the audio ``x``."""
        src = f"decoder/layer_{layer}/attention/linear_1"
        kw, vw = np.split(self.v[f"{src}/weight"], 2)
        _, vb = np.split(self.v[f"{src}/bias"], 2)
        return self.linear(x, f"{src}/k", kw, None), self.linear(x, f"{src}/v", vw, vb)

    def weights(self, q: str, k: str, mask: str | None) -> str:
        """Attention weights ``[B, heads, n, keys]`` of ``q`` ``[B, n, D]`` on ``k``."""
        g = self.g
        qh = g.op("Mul", [g.op("Transpose", [g.op("Reshape", [q, self.split])],
                               perm=[0, 2, 1, 3]), self.scale])
        kh = g.op("Mul", [g.op("Transpose", [g.op("Reshape", [k, self.split])],
                               perm=[0, 2, 3, 1]), self.scale])
        w = g.op("MatMul", [qh, kh])
        if mask is not None:
            w = g.op("Add", [w, mask])
        return g.op("Softmax", [w], axis=-1)

    def attend(self, w: str, v: str, out: str) -> str:
        """Mix ``v`` by the weights ``w`` and apply the output projection ``out``."""
        g = self.g
        vh = g.op("Transpose", [g.op("Reshape", [v, self.split])], perm=[0, 2, 1, 3])
        ctx = g.op("Reshape", [g.op("Transpose", [g.op("MatMul", [w, vh])], perm=[0, 2, 1, 3]),
                               self.merge])
        return self.linear(ctx, out, self.v[f"{out}/weight"], self.v[f"{out}/bias"])

    def mlp(self, x: str, src: str) -> str:
        h = self.linear(self.layer_norm(x, f"{src}/layer_norm"), f"{src}/linear_0",
                        self.v[f"{src}/linear_0/weight"], self.v[f"{src}/linear_0/bias"])
        y = self.linear(self.gelu(h), f"{src}/linear_1", self.v[f"{src}/linear_1/weight"],
                        self.v[f"{src}/linear_1/bias"])
        return self.g.op("Add", [x, y])

    def logits(self, x: str, out: str | None = None) -> str:
        """The vocabulary logits of the last block's output ``x``: final layer norm, then
        the projection."""
        return self.g.op("MatMul", [self.layer_norm(x, "decoder/layer_norm"), self.weight(
            "proj_t", np.ascontiguousarray(self.v["decoder/projection/weight"].T))], out=out)

    def stack(self, parts: list[str], out: str) -> str:
        """Stack ``[B, T, D]`` tensors on a new first axis."""
        axis0 = self.weight("axis0", np.array([0], np.int64))
        return self.g.op("Concat", [self.g.op("Unsqueeze", [p, axis0]) for p in parts],
                         out=out, axis=0)

    def layer_of(self, stacked: str, layer: int) -> str:
        """``stacked[layer]`` of an ``[L, ...]`` tensor."""
        return self.g.op("Gather", [stacked, self.weight(f"layer{layer}",
                                                         np.array(layer, np.int64))], axis=0)

    def tokens_in(self, tokens: str, past: str) -> str:
        """Token embeddings plus the positions ``past`` .. ``past + n``."""
        g = self.g
        n = g.op("Shape", [tokens], start=1, end=2)
        table = self.weight("dec_pos", self.v["decoder/position_encodings/encodings"])
        pos = g.op("Slice", [table, past, g.op("Add", [past, n]), self.axis0()])
        emb = g.op("Gather", [self.weight("tok", self.v["decoder/embeddings/weight"]), tokens])
        return g.op("Add", [emb, pos])

    def causal_mask(self, past: str, n: str) -> str:
        """``[n, past + n]``: 0 where key ``j <= past + i``, else ``-inf``."""
        g = self.g
        zero = self.weight("zero_i", np.array(0, np.int64))
        one = self.weight("one_i", np.array(1, np.int64))
        p0 = g.op("Squeeze", [past])
        n0 = g.op("Squeeze", [n])
        total = g.op("Add", [p0, n0])
        rows = g.op("Unsqueeze", [g.op("Range", [p0, total, one]),
                                  self.weight("axis1", np.array([1], np.int64))])
        cols = g.op("Unsqueeze", [g.op("Range", [zero, total, one]), self.axis0()])
        return g.op("Where", [g.op("Greater", [cols, rows]),
                              self.weight("neg_inf", np.array(-np.inf, np.float32)),
                              self.weight("zero_f", np.array(0.0, np.float32))])


def _info(name: str, dtype: int, shape: list[Any]) -> Any:
    from onnx import helper

    return helper.make_tensor_value_info(name, dtype, shape)


def encoder(model: Ct2Model) -> Any:
    """Return ``encoder.onnx`` (float32) for the CTranslate2 ``model``."""
    from onnx import TensorProto

    w = _Writer(model)
    g, d, v = w.g, w.dims, w.v
    x = w.gelu(g.op("Conv", ["mel", w.weight("conv1/w", v["encoder/conv1/weight"]),
                             w.weight("conv1/b", v["encoder/conv1/bias"])], pads=[1, 1],
                             kernel_shape=[3]))
    x = w.gelu(g.op("Conv", [x, w.weight("conv2/w", v["encoder/conv2/weight"]),
                             w.weight("conv2/b", v["encoder/conv2/bias"])], strides=[2],
                             pads=[1, 1], kernel_shape=[3]))
    x = g.op("Transpose", [x], perm=[0, 2, 1])
    frames = g.op("Shape", [x], start=1, end=2)
    zero = w.weight("zero_1", np.array([0], np.int64))
    pos = g.op("Slice", [w.weight("enc_pos", v["encoder/position_encodings/encodings"]),
                         zero, frames, w.weight("axis0", np.array([0], np.int64))])
    x = g.op("Add", [x, pos])
    for i in range(d.layers):
        s = f"encoder/layer_{i}"
        q, k, val = w.qkv(w.layer_norm(x, f"{s}/self_attention/layer_norm"), f"{s}/self_attention")
        x = g.op("Add", [x, w.attend(w.weights(q, k, None), val, f"{s}/self_attention/linear_1")])
        x = w.mlp(x, f"{s}/ffn")
    x = w.layer_norm(x, "encoder/layer_norm")
    kv = [w.cross_kv(x, i) for i in range(d.layers)]
    w.stack([k for k, _ in kv], "cross_k")
    w.stack([val for _, val in kv], "cross_v")
    audio = [d.layers, "batch", "audio_len", d.width]
    return g.model("whisper-encoder",
                   [_info("mel", TensorProto.FLOAT, ["batch", d.n_mels, "frames"])],
                   [_info("cross_k", TensorProto.FLOAT, audio),
                    _info("cross_v", TensorProto.FLOAT, audio)], _OPSET)


def decoder(model: Ct2Model) -> Any:
    """Return ``decoder.onnx`` (float32): one step over new tokens with the KV cache."""

    w = _Writer(model)
    g, d = w.g, w.dims
    x, new_k, new_v = _blocks(w)
    w.stack(new_k, "new_self_k")
    w.stack(new_v, "new_self_v")
    w.logits(g.op("Gather", [x, w.weight("last", np.array(-1, np.int64))], axis=1),
             out="logits")
    audio = [d.layers, "batch", "audio_len", d.width]
    return g.model("whisper-decoder", *step_io(d.layers, d.width, d.vocab, audio, audio),
                   _OPSET)


def scorer(model: Ct2Model) -> Any:
    """Return ``scorer.onnx`` (float32): each position's log-probability of its target
    token, the decoder's blocks run once over all ``tokens`` after the cache."""
    w = _Writer(model)
    g, d = w.g, w.dims
    x, _, _ = _blocks(w)
    g.target_logp(w.logits(x), "targets", "logp")
    audio = [d.layers, "audio_rows", "audio_len", d.width]
    return g.model("whisper-scorer",
                   *step_io(d.layers, d.width, d.vocab, audio, audio, scorer=True), _OPSET)


def step_io(layers: int, width: int, vocab: int, cross_k: list[Any], cross_v: list[Any], *,
            scorer: bool = False) -> tuple[list[Any], list[Any]]:
    """The graph inputs and outputs of a decoder step (``decoder.onnx``: ``tokens``,
    ``self_k``, ``self_v``, ``cross_k``, ``cross_v`` to ``logits``, ``new_self_k``,
    ``new_self_v``) or, with ``scorer``, of the one-pass scorer (``targets`` after
    ``tokens``; ``logp`` out), for ``layers`` layers of ``width`` over ``vocab``
    tokens and the audio's keys and values of shapes ``cross_k`` and ``cross_v``.
    Whisper's and Moonshine's graphs share it."""
    from onnx import TensorProto

    tokens = _info("tokens", TensorProto.INT64, ["batch", "n"])
    cache = [layers, "batch", "past", width]
    rest = [_info("self_k", TensorProto.FLOAT, cache), _info("self_v", TensorProto.FLOAT, cache),
            _info("cross_k", TensorProto.FLOAT, cross_k),
            _info("cross_v", TensorProto.FLOAT, cross_v)]
    if scorer:
        return ([tokens, _info("targets", TensorProto.INT64, ["batch", "n"]), *rest],
                [_info("logp", TensorProto.FLOAT, ["batch", "n"])])
    grown = [layers, "batch", "total", width]
    return [tokens, *rest], [_info("logits", TensorProto.FLOAT, ["batch", vocab]),
                             _info("new_self_k", TensorProto.FLOAT, grown),
                             _info("new_self_v", TensorProto.FLOAT, grown)]


def _blocks(w: _Writer) -> tuple[str, list[str], list[str]]:
    """The decoder blocks over ``tokens`` after the cache ``self_k``/``self_v``: the
    last block's output ``[B, n, D]`` (before the final layer norm) and each layer's
    grown keys and values."""
    g = w.g
    past = g.op("Shape", ["self_k"], start=2, end=3)
    n = g.op("Shape", ["tokens"], start=1, end=2)
    x = w.tokens_in("tokens", past)
    mask = w.causal_mask(past, n)
    new_k, new_v = [], []
    for i in range(w.dims.layers):
        s = f"decoder/layer_{i}"
        a = w.layer_norm(x, f"{s}/self_attention/layer_norm")
        q, k_new, v_new = w.qkv(a, f"{s}/self_attention")
        new_k.append(g.op("Concat", [w.layer_of("self_k", i), k_new], axis=1))
        new_v.append(g.op("Concat", [w.layer_of("self_v", i), v_new], axis=1))
        x = _decoder_rest(w, x, q, i, new_k[-1], new_v[-1], mask)
    return x, new_k, new_v


def _decoder_rest(w: _Writer, x: str, q: str, i: int, k: str, v: str, mask: str) -> str:
    """A decoder block after its query, keys and values: self-attention, cross-attention,
    MLP."""
    g = w.g
    s = f"decoder/layer_{i}"
    x = g.op("Add", [x, w.attend(w.weights(q, k, mask), v, f"{s}/self_attention/linear_1")])
    x, _ = _cross(w, x, i)
    return w.mlp(x, f"{s}/ffn")


def _cross(w: _Writer, x: str, i: int) -> tuple[str, str]:
    """Cross-attention of decoder layer ``i`` on the audio; return ``x`` and the weights."""
    g = w.g
    s = f"decoder/layer_{i}/attention"
    c = w.layer_norm(x, f"{s}/layer_norm")
    q = w.linear(c, f"{s}/linear_0", w.v[f"{s}/linear_0/weight"], w.v[f"{s}/linear_0/bias"])
    weights = w.weights(q, w.layer_of("cross_k", i), None)
    return g.op("Add", [x, w.attend(weights, w.layer_of("cross_v", i), f"{s}/linear_2")]), weights


def aligner(model: Ct2Model) -> Any:
    """Return ``aligner.onnx`` (float32): every layer's cross-attention weights for a
    whole token sequence ``[1, n]`` (word times)."""
    from onnx import TensorProto

    w = _Writer(model)
    g, d = w.g, w.dims
    zero = w.weight("zero_1", np.array([0], np.int64))
    n = g.op("Shape", ["tokens"], start=1, end=2)
    x = w.tokens_in("tokens", zero)
    mask = w.causal_mask(zero, n)
    out = []
    for i in range(d.layers):
        s = f"decoder/layer_{i}"
        a = w.layer_norm(x, f"{s}/self_attention/layer_norm")
        q, k, v = w.qkv(a, f"{s}/self_attention")
        x = g.op("Add", [x, w.attend(w.weights(q, k, mask), v, f"{s}/self_attention/linear_1")])
        x, weights = _cross(w, x, i)
        out.append(g.op("Squeeze", [weights, w.weight("axis0", np.array([0], np.int64))]))
        if i < d.layers - 1:  # the last block's MLP feeds no output
            x = w.mlp(x, f"{s}/ffn")
    w.stack(out, "weights")
    audio = [d.layers, 1, "audio_len", d.width]
    return g.model("whisper-aligner",
                   [_info("tokens", TensorProto.INT64, [1, "n"]),
                    _info("cross_k", TensorProto.FLOAT, audio),
                    _info("cross_v", TensorProto.FLOAT, audio)],
                   [_info("weights", TensorProto.FLOAT, [d.layers, d.heads, "n", "audio_len"])],
                   _OPSET)


def export(model: Ct2Model, out: Path) -> None:
    """Write ``encoder.onnx``, ``decoder.onnx``, ``scorer.onnx`` and ``aligner.onnx``
    (float32) into ``out``."""
    import onnx

    out.mkdir(parents=True, exist_ok=True)
    for name, write in (("encoder", encoder), ("decoder", decoder), ("scorer", scorer),
                        ("aligner", aligner)):
        onnx.save(write(model), str(out / f"{name}.onnx"))
