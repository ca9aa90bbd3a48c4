"""Moonshine base English's ONNX graphs, written from its weights with ``onnx.helper``.

The weights come out of the packaged ``.ort`` graphs (:mod:`models.moonshine.ort_reader`,
dequantised once to float32); the graphs are our own, with the layout
:mod:`models.moonshine.inference` loads (L layers, width D):

* ``encoder.onnx``: ``audio [B, S]`` (16 kHz samples in [-1, 1]) to every
  decoder layer's cross-attention keys ``cross_k [L, B, H, hd, T]`` and values
  ``cross_v [L, B, H, T, hd]`` of the encoded audio, already split into the H
  heads of hd dimensions (T is about S / 384: three strided convolutions).
* ``decoder.onnx``: ``tokens [B, n]``, ``self_k``, ``self_v`` ``[L, B, P, D]``
  (P may be 0; keys are stored after their rotary embedding), ``cross_k``,
  ``cross_v`` (batch B, or 1 for one audio shared by B hypotheses: attention
  broadcasts it, so a beam never copies the audio's keys) to ``logits [B, V]``
  (last position) and ``new_self_k``, ``new_self_v`` ``[L, B, P+n, D]``.
* ``scorer.onnx``: the decoder's inputs plus ``targets [B, n]`` to ``logp [B, n]``,
  the log-probability of ``targets[:, i]`` after ``tokens[:, :i + 1]``: teacher
  forcing in one pass instead of one decoder step per token.

The arithmetic follows the exported model it replaces: a convolutional stem
(kernel 127 stride 64 without bias, tanh, one-group normalisation, kernel 7
stride 3 and kernel 3 stride 2 each with exact GELU), pre-norm blocks with
bias-free layer norms, attention without biases, rotary position embeddings on
the first 32 of each head's 52 dimensions (pairs interleaved: dimensions 2k
and 2k+1 rotate together), a GELU MLP in the encoder and a gated SiLU MLP in
the decoder (``up_proj``'s first half times SiLU of its second half), and
logits from the token embeddings (tied).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from models.minilm import GraphBuilder
from models.moonshine.ort_reader import constant, weights
from models.whisper.graph import step_io

_OPSET = 17
#: Where the exported graph keeps the constants the writer needs.
_INV_FREQ = "/model/decoder/rotary_emb/Cast_1_output_0"
_EPS = "/model/decoder/layers.0/input_layernorm/Constant_1_output_0"
_HEADS = "/model/decoder/layers.0/self_attn/Constant_3_output_0"
_GROUP_EPS = 1e-5  # InstanceNormalization's epsilon in the encoder's stem


@dataclasses.dataclass(frozen=True)
class MoonshineWeights:
    """Everything the graphs are written from: float32 weights and a few constants."""

    encoder: dict[str, np.ndarray]
    decoder: dict[str, np.ndarray]
    #: Rotary inverse frequencies, one per rotated pair (16 for base).
    inv_freq: np.ndarray
    eps: float
    heads: int

    @property
    def width(self) -> int:
        """Model width D."""
        return int(self.encoder["layer_norm.weight"].shape[0])

    @property
    def encoder_layers(self) -> int:
        """Encoder blocks."""
        return sum(1 for k in self.encoder if k.endswith(".input_layernorm.weight"))

    @property
    def decoder_layers(self) -> int:
        """Decoder blocks (L)."""
        return sum(1 for k in self.decoder if k.endswith(".input_layernorm.weight"))

    @property
    def vocab(self) -> int:
        """Logits per position (the embedding rows, 32768 for base)."""
        return int(self.decoder["decoder.embed_tokens.weight"].shape[0])

    @classmethod
    def read(cls, directory: Path) -> MoonshineWeights:
        """Read ``encoder_model.ort`` and ``decoder_model_merged.ort`` in ``directory``."""
        dec = directory / "decoder_model_merged.ort"
        return cls(weights(directory / "encoder_model.ort"), weights(dec),
                   constant(dec, _INV_FREQ).astype(np.float32).reshape(-1),
                   float(constant(dec, _EPS)), int(constant(dec, _HEADS).reshape(-1)[0]))


class _Writer:
    """One graph's builder plus Moonshine's pieces (norm, rotary, attention, MLPs)."""

    def __init__(self, w: MoonshineWeights, source: dict[str, np.ndarray]) -> None:
        self.g = GraphBuilder()
        self.w = w
        self.v = source
        self._cache: dict[str, str] = {}
        d, h = w.width, w.heads
        self.head_dim = d // h
        self.rot = 2 * w.inv_freq.size
        self.split = self.c("split_heads", np.array([0, 0, h, d // h], np.int64))
        self.merge = self.c("merge_heads", np.array([0, 0, d], np.int64))
        self.pairs = self.c("rot_pairs", np.array([0, 0, 0, self.rot // 2, 2], np.int64))
        self.unpairs = self.c("rot_unpairs", np.array([0, 0, 0, self.rot], np.int64))
        self.scale = self.c("q_scale", np.array(self.head_dim ** -0.5, np.float32))
        # Each rotated pair's frequency twice, as the interleaved rotation uses it.
        self.freq = self.c("inv_freq", np.repeat(w.inv_freq, 2).astype(np.float32))

    def c(self, name: str, value: np.ndarray) -> str:
        """A constant, added once per name."""
        if name not in self._cache:
            self._cache[name] = self.g.const(name, value)
        return self._cache[name]

    def norm(self, x: str, key: str) -> str:
        """Bias-free layer norm with the weight ``key``."""
        return self.g.op("LayerNormalization", [x, self.c(key, self.v[key])], axis=-1,
                         epsilon=self.w.eps)

    def matmul(self, x: str, key: str) -> str:
        """``x @ W`` (the stored weights are ``[in, out]``), a MatMul the quantiser finds."""
        return self.g.op("MatMul", [x, self.c(key, self.v[key])])

    def gelu(self, x: str) -> str:
        g = self.g
        half, one = self.c("half", np.array(0.5, np.float32)), self.c("one", np.array(1.0,
                                                                                      np.float32))
        sqrt2 = self.c("sqrt2", np.array(np.sqrt(2.0), np.float32))
        return g.op("Mul", [g.op("Mul", [x, half]),
                            g.op("Add", [g.op("Erf", [g.op("Div", [x, sqrt2])]), one])])

    def angles(self, start: str, n: str) -> tuple[str, str]:
        """Cosines and sines ``[1, n, 1, rot]`` of positions ``start`` .. ``start + n``."""
        g = self.g
        one = self.c("one_i", np.array(1, np.int64))
        s0, n0 = g.op("Squeeze", [start]), g.op("Squeeze", [n])
        pos = g.op("Cast", [g.op("Range", [s0, g.op("Add", [s0, n0]), one])], to=1)
        ang = g.op("Mul", [g.op("Unsqueeze", [pos, self.c("axis1", np.array([1], np.int64))]),
                           self.freq])
        shape = self.c("angle_shape", np.array([1, -1, 1, self.rot], np.int64))
        return (g.op("Reshape", [g.op("Cos", [ang]), shape]),
                g.op("Reshape", [g.op("Sin", [ang]), shape]))

    def rotary(self, x: str, cos: str, sin: str) -> str:
        """Rotate ``x`` ``[B, n, H, hd]``'s first ``rot`` dimensions in interleaved pairs."""
        g = self.g
        zero = self.c("zero_1", np.array([0], np.int64))
        rot = self.c("rot_end", np.array([self.rot], np.int64))
        end = self.c("hd_end", np.array([self.head_dim], np.int64))
        last = self.c("axis_last", np.array([3], np.int64))
        part = g.op("Slice", [x, zero, rot, last])
        rest = g.op("Slice", [x, rot, end, last])
        pairs = g.op("Reshape", [part, self.pairs])
        even = g.op("Slice", [pairs, zero, self.c("one_1", np.array([1], np.int64)),
                              self.c("axis4", np.array([4], np.int64))])
        odd = g.op("Slice", [pairs, self.c("one_1", np.array([1], np.int64)),
                             self.c("two_1", np.array([2], np.int64)),
                             self.c("axis4", np.array([4], np.int64))])
        turned = g.op("Reshape", [g.op("Concat", [g.op("Neg", [odd]), even], axis=4),
                                  self.unpairs])
        mixed = g.op("Add", [g.op("Mul", [part, cos]), g.op("Mul", [turned, sin])])
        return g.op("Concat", [mixed, rest], axis=3)

    def heads(self, x: str) -> str:
        """``[B, n, D]`` to ``[B, n, H, hd]``."""
        return self.g.op("Reshape", [x, self.split])

    def merged(self, x: str) -> str:
        """``[B, n, H, hd]`` back to ``[B, n, D]``."""
        return self.g.op("Reshape", [x, self.merge])

    def attend(self, q: str, k: str, v: str, mask: str | None, out: str) -> str:
        """Attention of ``q`` ``[B, n, H, hd]`` (unscaled) on ``k``, ``v`` ``[B, m, D]``,
        then the output projection ``out``."""
        g = self.g
        kh = g.op("Transpose", [self.heads(k)], perm=[0, 2, 3, 1])
        vh = g.op("Transpose", [self.heads(v)], perm=[0, 2, 1, 3])
        return self.attend_heads(q, kh, vh, mask, out)

    def attend_heads(self, q: str, kh: str, vh: str, mask: str | None, out: str) -> str:
        """Attention of ``q`` ``[B, n, H, hd]`` on keys ``[B', H, hd, m]`` and values
        ``[B', H, m, hd]`` already split into heads (B' is B or 1: the audio's keys are
        shared by every hypothesis of a beam), then the output projection ``out``."""
        g = self.g
        qh = g.op("Mul", [g.op("Transpose", [q], perm=[0, 2, 1, 3]), self.scale])
        w = g.op("MatMul", [qh, kh])
        if mask is not None:
            w = g.op("Add", [w, mask])
        ctx = g.op("Transpose", [g.op("MatMul", [g.op("Softmax", [w], axis=-1), vh])],
                   perm=[0, 2, 1, 3])
        return self.matmul(self.merged(ctx), out)

    def logits(self, x: str, out: str | None = None) -> str:
        """The vocabulary logits of the decoder's last block output ``x``: the final norm,
        then the token embeddings (tied)."""
        return self.g.op("MatMul", [self.norm(x, "decoder.norm.weight"), self.c(
            "embed_t", np.ascontiguousarray(self.v["decoder.embed_tokens.weight"].T))], out=out)

    def stack(self, parts: list[str], out: str) -> str:
        """Stack ``[B, T, D]`` tensors on a new first axis."""
        axis0 = self.c("axis0", np.array([0], np.int64))
        return self.g.op("Concat", [self.g.op("Unsqueeze", [p, axis0]) for p in parts],
                         out=out, axis=0)

    def layer_of(self, stacked: str, layer: int) -> str:
        """``stacked[layer]`` of an ``[L, ...]`` tensor."""
        return self.g.op("Gather", [stacked, self.c(f"layer{layer}", np.array(layer, np.int64))],
                         axis=0)


def _info(name: str, dtype: int, shape: list[Any]) -> Any:
    from onnx import helper

    return helper.make_tensor_value_info(name, dtype, shape)


def encoder(w: MoonshineWeights) -> Any:
    """Return ``encoder.onnx`` (float32): raw audio to every decoder layer's cross K/V."""
    from onnx import TensorProto

    wr = _Writer(w, {**w.encoder, **w.decoder})
    g, v = wr.g, wr.v
    x = g.op("Unsqueeze", ["audio", wr.c("axis1", np.array([1], np.int64))])
    x = g.op("Tanh", [g.op("Conv", [x, wr.c("conv1.weight", v["conv1.weight"])],
                           kernel_shape=[127], strides=[64])])
    # GroupNorm with one group: normalise over channels and time together.
    flat = g.op("Reshape", [x, wr.c("one_group", np.array([0, 1, -1], np.int64))])
    normed = g.op("InstanceNormalization", [flat, wr.c("gn_scale", np.ones(1, np.float32)),
                                            wr.c("gn_bias", np.zeros(1, np.float32))],
                  epsilon=_GROUP_EPS)
    x = g.op("Reshape", [normed, g.op("Shape", [x])])
    x = g.op("Add", [g.op("Mul", [x, wr.c("groupnorm.weight", v["groupnorm.weight"])]),
                     wr.c("groupnorm.bias", v["groupnorm.bias"])])
    x = wr.gelu(g.op("Conv", [x, wr.c("conv2.weight", v["conv2.weight"]),
                              wr.c("conv2.bias", v["conv2.bias"])], kernel_shape=[7],
                     strides=[3]))
    x = wr.gelu(g.op("Conv", [x, wr.c("conv3.weight", v["conv3.weight"]),
                              wr.c("conv3.bias", v["conv3.bias"])], kernel_shape=[3],
                     strides=[2]))
    x = g.op("Transpose", [x], perm=[0, 2, 1])
    frames = g.op("Shape", [x], start=1, end=2)
    cos, sin = wr.angles(wr.c("zero_1", np.array([0], np.int64)), frames)
    for i in range(w.encoder_layers):
        s = f"layers.{i}"
        a = wr.norm(x, f"{s}.input_layernorm.weight")
        q = wr.rotary(wr.heads(wr.matmul(a, f"{s}.self_attn.q_proj.weight")), cos, sin)
        k = wr.merged(wr.rotary(wr.heads(wr.matmul(a, f"{s}.self_attn.k_proj.weight")),
                                cos, sin))
        val = wr.matmul(a, f"{s}.self_attn.v_proj.weight")
        x = g.op("Add", [x, wr.attend(q, k, val, None, f"{s}.self_attn.dense.weight")])
        h = wr.norm(x, f"{s}.post_attention_layernorm.weight")
        h = g.op("Add", [wr.matmul(h, f"{s}.mlp.fc1.weight"),
                         wr.c(f"{s}.mlp.fc1.bias", v[f"{s}.mlp.fc1.bias"])])
        h = g.op("Add", [wr.matmul(wr.gelu(h), f"{s}.mlp.fc2.weight"),
                         wr.c(f"{s}.mlp.fc2.bias", v[f"{s}.mlp.fc2.bias"])])
        x = g.op("Add", [x, h])
    x = wr.norm(x, "layer_norm.weight")
    ks, vs = [], []
    for i in range(w.decoder_layers):
        s = f"decoder.layers.{i}.encoder_attn"
        ks.append(g.op("Transpose", [wr.heads(wr.matmul(x, f"{s}.k_proj.weight"))],
                       perm=[0, 2, 3, 1]))
        vs.append(g.op("Transpose", [wr.heads(wr.matmul(x, f"{s}.v_proj.weight"))],
                       perm=[0, 2, 1, 3]))
    wr.stack(ks, "cross_k")
    wr.stack(vs, "cross_v")
    return g.model("moonshine-encoder", [_info("audio", TensorProto.FLOAT, ["batch", "samples"])],
                   [_info("cross_k", TensorProto.FLOAT, _cross_k(w, "batch")),
                    _info("cross_v", TensorProto.FLOAT, _cross_v(w, "batch"))], _OPSET)


def _cross_k(w: MoonshineWeights, batch: str) -> list[Any]:
    """``cross_k``'s shape: per decoder layer, keys split into heads and transposed."""
    return [w.decoder_layers, batch, w.heads, w.width // w.heads, "audio_len"]


def _cross_v(w: MoonshineWeights, batch: str) -> list[Any]:
    """``cross_v``'s shape: per decoder layer, values split into heads."""
    return [w.decoder_layers, batch, w.heads, "audio_len", w.width // w.heads]


def _causal_mask(wr: _Writer, past: str, n: str) -> str:
    """``[n, past + n]``: 0 where key ``j <= past + i``, else ``-inf``."""
    g = wr.g
    zero = wr.c("zero_i", np.array(0, np.int64))
    one = wr.c("one_i", np.array(1, np.int64))
    p0, n0 = g.op("Squeeze", [past]), g.op("Squeeze", [n])
    total = g.op("Add", [p0, n0])
    rows = g.op("Unsqueeze", [g.op("Range", [p0, total, one]),
                              wr.c("axis1", np.array([1], np.int64))])
    cols = g.op("Unsqueeze", [g.op("Range", [zero, total, one]),
                              wr.c("axis0", np.array([0], np.int64))])
    return g.op("Where", [g.op("Greater", [cols, rows]),
                          wr.c("neg_inf", np.array(-np.inf, np.float32)),
                          wr.c("zero_f", np.array(0.0, np.float32))])


def decoder(w: MoonshineWeights) -> Any:
    """Return ``decoder.onnx`` (float32): one step over new tokens with the KV cache."""

    wr = _Writer(w, w.decoder)
    g = wr.g
    x, new_k, new_v = _blocks(wr)
    wr.stack(new_k, "new_self_k")
    wr.stack(new_v, "new_self_v")
    wr.logits(g.op("Gather", [x, wr.c("last", np.array(-1, np.int64))], axis=1), out="logits")
    return g.model("moonshine-decoder", *step_io(
        w.decoder_layers, w.width, w.vocab, _cross_k(w, "audio_batch"),
        _cross_v(w, "audio_batch")), _OPSET)


def scorer(w: MoonshineWeights) -> Any:
    """Return ``scorer.onnx`` (float32): each position's log-probability of its target
    token, the decoder's blocks run once over all ``tokens`` after the cache."""
    wr = _Writer(w, w.decoder)
    x, _, _ = _blocks(wr)
    wr.g.target_logp(wr.logits(x), "targets", "logp")
    return wr.g.model("moonshine-scorer", *step_io(
        w.decoder_layers, w.width, w.vocab, _cross_k(w, "audio_batch"),
        _cross_v(w, "audio_batch"), scorer=True), _OPSET)


def _blocks(wr: _Writer) -> tuple[str, list[str], list[str]]:
    """The decoder blocks over ``tokens`` after the cache ``self_k``/``self_v``: the
    last block's output ``[B, n, D]`` (before the final norm) and each layer's grown
    keys and values."""
    g, v, w = wr.g, wr.v, wr.w
    past = g.op("Shape", ["self_k"], start=2, end=3)
    n = g.op("Shape", ["tokens"], start=1, end=2)
    table = wr.c("embed", v["decoder.embed_tokens.weight"])
    x = g.op("Gather", [table, "tokens"])
    cos, sin = wr.angles(past, n)
    mask = _causal_mask(wr, past, n)
    half = v["decoder.layers.0.mlp.up_proj.bias"].shape[0] // 2
    axis2 = wr.c("axis2", np.array([2], np.int64))
    new_k, new_v = [], []
    for i in range(w.decoder_layers):
        s = f"decoder.layers.{i}"
        a = wr.norm(x, f"{s}.input_layernorm.weight")
        q = wr.rotary(wr.heads(wr.matmul(a, f"{s}.self_attn.q_proj.weight")), cos, sin)
        k = wr.merged(wr.rotary(wr.heads(wr.matmul(a, f"{s}.self_attn.k_proj.weight")),
                                cos, sin))
        val = wr.matmul(a, f"{s}.self_attn.v_proj.weight")
        new_k.append(g.op("Concat", [wr.layer_of("self_k", i), k], axis=1))
        new_v.append(g.op("Concat", [wr.layer_of("self_v", i), val], axis=1))
        x = g.op("Add", [x, wr.attend(q, new_k[-1], new_v[-1], mask,
                                      f"{s}.self_attn.dense.weight")])
        c = wr.norm(x, f"{s}.post_attention_layernorm.weight")
        q = wr.heads(wr.matmul(c, f"{s}.encoder_attn.q_proj.weight"))
        x = g.op("Add", [x, wr.attend_heads(q, wr.layer_of("cross_k", i),
                                            wr.layer_of("cross_v", i), None,
                                            f"{s}.encoder_attn.dense.weight")])
        h = wr.norm(x, f"{s}.final_layernorm.weight")
        h = g.op("Add", [wr.matmul(h, f"{s}.mlp.up_proj.weight"),
                         wr.c(f"{s}.mlp.up_proj.bias", v[f"{s}.mlp.up_proj.bias"])])
        hidden = g.op("Slice", [h, wr.c("zero_1", np.array([0], np.int64)),
                                wr.c("half_1", np.array([half], np.int64)), axis2])
        gate = g.op("Slice", [h, wr.c("half_1", np.array([half], np.int64)),
                              wr.c("full_1", np.array([2 * half], np.int64)), axis2])
        silu = g.op("Mul", [gate, g.op("Sigmoid", [gate])])
        h = g.op("Add", [wr.matmul(g.op("Mul", [silu, hidden]), f"{s}.mlp.down_proj.weight"),
                         wr.c(f"{s}.mlp.down_proj.bias", v[f"{s}.mlp.down_proj.bias"])])
        x = g.op("Add", [x, h])
    return x, new_k, new_v


def export(w: MoonshineWeights, out: Path) -> None:
    """Write ``encoder.onnx``, ``decoder.onnx`` and ``scorer.onnx`` (float32) into ``out``."""
    import onnx

    out.mkdir(parents=True, exist_ok=True)
    for name, write in (("encoder", encoder), ("decoder", decoder), ("scorer", scorer)):
        onnx.save(write(w), str(out / f"{name}.onnx"))
