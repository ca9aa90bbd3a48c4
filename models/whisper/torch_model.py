"""Whisper as torch modules, loaded from CTranslate2 weights; export to ONNX.

Used at build time only (``voicestream models build``, needs the ``train``
extra). The sizes (:class:`Dims`) are read from the weights: tiny.en is
4 layers of width 384 with 6 heads, base 6 layers of 512 with 8. The exported
graphs, with L layers and width D:

* ``encoder.onnx``: log-mel ``[B, 80, F]`` (F even, up to 3000) to the decoder's
  cross-attention keys and values for every layer, ``[L, B, F/2, D]`` each, so
  the decoder never recomputes them.
* ``decoder.onnx``: new tokens ``[B, n]`` plus the self-attention cache
  ``[L, B, P, D]`` (P may be 0) and the cross keys/values, to the last
  position's logits ``[B, V]`` and the grown cache ``[L, B, P+n, D]``.
"""

from __future__ import annotations

from pathlib import Path
from typing import cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from models.whisper.ct2 import Ct2Model, Dims


class Attention(nn.Module):
    """Multi-head attention with Whisper's split scaling of q and k."""

    def __init__(self, d: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.query = nn.Linear(d, d)
        self.key = nn.Linear(d, d, bias=False)
        self.value = nn.Linear(d, d)
        self.out = nn.Linear(d, d)

    def weights(self, q: torch.Tensor, k: torch.Tensor,
                mask: torch.Tensor | None) -> torch.Tensor:
        """Return the attention weights ``[B, heads, n, keys]`` of queries ``q`` on ``k``."""
        b, n, d = q.shape
        h = self.heads
        scale = (d // h) ** -0.25
        q = q.view(b, n, h, -1).permute(0, 2, 1, 3) * scale
        k = k.view(b, k.shape[1], h, -1).permute(0, 2, 3, 1) * scale
        w = q @ k
        if mask is not None:
            w = w + mask
        return torch.softmax(w.float(), dim=-1).to(q.dtype)

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
               mask: torch.Tensor | None) -> torch.Tensor:
        b, n, d = q.shape
        w = self.weights(q, k, mask)
        v = v.view(b, v.shape[1], self.heads, -1).permute(0, 2, 1, 3)
        out: torch.Tensor = self.out((w @ v).permute(0, 2, 1, 3).reshape(b, n, d))
        return out


class Block(nn.Module):
    """Pre-norm residual block; decoder blocks add cross-attention."""

    def __init__(self, dims: Dims, cross: bool) -> None:
        super().__init__()
        d = dims.width
        self.attn: Attention = Attention(d, dims.heads)
        self.attn_ln = nn.LayerNorm(d)
        self.cross_attn: Attention | None = Attention(d, dims.heads) if cross else None
        self.cross_attn_ln: nn.LayerNorm | None = nn.LayerNorm(d) if cross else None
        self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))
        self.mlp_ln = nn.LayerNorm(d)


def _blocks(modules: nn.ModuleList) -> list[Block]:
    return [cast(Block, b) for b in modules]


class Whisper(nn.Module):
    """The model; ``encode`` and ``decode_step`` are what the ONNX graphs compute."""

    def __init__(self, dims: Dims) -> None:
        super().__init__()
        self.dims = dims
        d = dims.width
        self.conv1 = nn.Conv1d(dims.n_mels, d, 3, padding=1)
        self.conv2 = nn.Conv1d(d, d, 3, stride=2, padding=1)
        self.enc_pos = nn.Parameter(torch.zeros(1500, d), requires_grad=False)
        self.enc_blocks = nn.ModuleList(Block(dims, cross=False) for _ in range(dims.layers))
        self.ln_post = nn.LayerNorm(d)
        self.tok = nn.Embedding(dims.vocab, d)
        self.dec_pos = nn.Parameter(torch.zeros(448, d), requires_grad=False)
        self.dec_blocks = nn.ModuleList(Block(dims, cross=True) for _ in range(dims.layers))
        self.ln = nn.LayerNorm(d)
        self.proj = nn.Linear(d, dims.vocab, bias=False)

    def encode(self, mel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return the cross-attention keys and values of every decoder layer."""
        x = F.gelu(self.conv1(mel))
        x = F.gelu(self.conv2(x)).permute(0, 2, 1)
        x = x + self.enc_pos[: x.shape[1]]
        for blk in _blocks(self.enc_blocks):
            a = blk.attn_ln(x)
            x = x + blk.attn.attend(blk.attn.query(a), blk.attn.key(a), blk.attn.value(a), None)
            x = x + blk.mlp(blk.mlp_ln(x))
        x = self.ln_post(x)
        ks, vs = [], []
        for blk in _blocks(self.dec_blocks):
            assert blk.cross_attn is not None
            ks.append(blk.cross_attn.key(x))
            vs.append(blk.cross_attn.value(x))
        return torch.stack(ks), torch.stack(vs)

    def decode_step(self, tokens: torch.Tensor, self_k: torch.Tensor, self_v: torch.Tensor,
                    cross_k: torch.Tensor, cross_v: torch.Tensor
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Run ``tokens`` after a cache of P positions; return last logits and the new cache."""
        past = self_k.shape[2]
        n = tokens.shape[1]
        pos = self.dec_pos[past: past + n]
        x = self.tok(tokens) + pos
        total = past + n
        mask = torch.full((n, total), float("-inf")).triu(past + 1)
        new_k, new_v = [], []
        for i, blk in enumerate(_blocks(self.dec_blocks)):
            a = blk.attn_ln(x)
            k = torch.cat([self_k[i], blk.attn.key(a)], dim=1)
            v = torch.cat([self_v[i], blk.attn.value(a)], dim=1)
            new_k.append(k)
            new_v.append(v)
            x = x + blk.attn.attend(blk.attn.query(a), k, v, mask)
            assert blk.cross_attn is not None and blk.cross_attn_ln is not None
            c = blk.cross_attn_ln(x)
            x = x + blk.cross_attn.attend(blk.cross_attn.query(c), cross_k[i], cross_v[i], None)
            x = x + blk.mlp(blk.mlp_ln(x))
        x = self.ln(x[:, -1])
        return self.proj(x), torch.stack(new_k), torch.stack(new_v)


    def cross_weights(self, tokens: torch.Tensor, cross_k: torch.Tensor,
                      cross_v: torch.Tensor) -> torch.Tensor:
        """Run the whole of ``tokens`` ``[1, n]`` (no cache); return every decoder
        layer's cross-attention weights ``[L, heads, n, audio_len]`` (word timing)."""
        n = tokens.shape[1]
        x = self.tok(tokens) + self.dec_pos[:n]
        mask = torch.full((n, n), float("-inf")).triu(1)
        out = []
        for i, blk in enumerate(_blocks(self.dec_blocks)):
            a = blk.attn_ln(x)
            x = x + blk.attn.attend(blk.attn.query(a), blk.attn.key(a), blk.attn.value(a), mask)
            assert blk.cross_attn is not None and blk.cross_attn_ln is not None
            c = blk.cross_attn_ln(x)
            q = blk.cross_attn.query(c)
            out.append(blk.cross_attn.weights(q, cross_k[i], None)[0])
            x = x + blk.cross_attn.attend(q, cross_k[i], cross_v[i], None)
            x = x + blk.mlp(blk.mlp_ln(x))
        return torch.stack(out)


def load_ct2(model: Ct2Model) -> Whisper:
    """Build the torch model from CTranslate2 variables (float16 to float32)."""
    v = {k: torch.from_numpy(np.asarray(a, dtype=np.float32)) for k, a in model.variables.items()
         if a.dtype == np.float16}
    dims = Dims.of(model)
    m = Whisper(dims)
    sd: dict[str, torch.Tensor] = {
        "conv1.weight": v["encoder/conv1/weight"], "conv1.bias": v["encoder/conv1/bias"],
        "conv2.weight": v["encoder/conv2/weight"], "conv2.bias": v["encoder/conv2/bias"],
        "enc_pos": v["encoder/position_encodings/encodings"],
        "ln_post.weight": v["encoder/layer_norm/gamma"],
        "ln_post.bias": v["encoder/layer_norm/beta"],
        "tok.weight": v["decoder/embeddings/weight"],
        "dec_pos": v["decoder/position_encodings/encodings"],
        "ln.weight": v["decoder/layer_norm/gamma"], "ln.bias": v["decoder/layer_norm/beta"],
        "proj.weight": v["decoder/projection/weight"],
    }

    def ln(dst: str, src: str) -> None:
        sd[f"{dst}.weight"] = v[f"{src}/gamma"]
        sd[f"{dst}.bias"] = v[f"{src}/beta"]

    def lin(dst: str, src: str) -> None:
        sd[f"{dst}.weight"] = v[f"{src}/weight"]
        sd[f"{dst}.bias"] = v[f"{src}/bias"]

    def qkv(dst: str, src: str) -> None:
        w, b = v[f"{src}/weight"].chunk(3), v[f"{src}/bias"].chunk(3)
        sd[f"{dst}.query.weight"], sd[f"{dst}.query.bias"] = w[0], b[0]
        sd[f"{dst}.key.weight"] = w[1]
        sd[f"{dst}.value.weight"], sd[f"{dst}.value.bias"] = w[2], b[2]

    for side, blocks in (("encoder", "enc_blocks"), ("decoder", "dec_blocks")):
        for i in range(dims.layers):
            p, s = f"{blocks}.{i}", f"{side}/layer_{i}"
            ln(f"{p}.attn_ln", f"{s}/self_attention/layer_norm")
            qkv(f"{p}.attn", f"{s}/self_attention/linear_0")
            lin(f"{p}.attn.out", f"{s}/self_attention/linear_1")
            ln(f"{p}.mlp_ln", f"{s}/ffn/layer_norm")
            lin(f"{p}.mlp.0", f"{s}/ffn/linear_0")
            lin(f"{p}.mlp.2", f"{s}/ffn/linear_1")
            if side == "decoder":
                ln(f"{p}.cross_attn_ln", f"{s}/attention/layer_norm")
                lin(f"{p}.cross_attn.query", f"{s}/attention/linear_0")
                kw, vw = v[f"{s}/attention/linear_1/weight"].chunk(2)
                _, vb = v[f"{s}/attention/linear_1/bias"].chunk(2)
                sd[f"{p}.cross_attn.key.weight"] = kw
                sd[f"{p}.cross_attn.value.weight"] = vw
                sd[f"{p}.cross_attn.value.bias"] = vb
                lin(f"{p}.cross_attn.out", f"{s}/attention/linear_2")
    m.load_state_dict(sd, strict=True)
    return m.eval()


class _Encoder(nn.Module):
    def __init__(self, m: Whisper) -> None:
        super().__init__()
        self.m = m

    def forward(self, mel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.m.encode(mel)


class _Decoder(nn.Module):
    def __init__(self, m: Whisper) -> None:
        super().__init__()
        self.m = m

    def forward(self, tokens: torch.Tensor, self_k: torch.Tensor, self_v: torch.Tensor,
                cross_k: torch.Tensor, cross_v: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.m.decode_step(tokens, self_k, self_v, cross_k, cross_v)


class _Aligner(nn.Module):
    def __init__(self, m: Whisper) -> None:
        super().__init__()
        self.m = m

    def forward(self, tokens: torch.Tensor, cross_k: torch.Tensor,
                cross_v: torch.Tensor) -> torch.Tensor:
        return self.m.cross_weights(tokens, cross_k, cross_v)


def export(m: Whisper, out: Path) -> None:
    """Write ``encoder.onnx``, ``decoder.onnx`` and ``aligner.onnx`` (float32) into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    dims = m.dims
    mel = torch.randn(1, dims.n_mels, 200)
    with torch.no_grad():
        torch.onnx.export(
            _Encoder(m), (mel,), str(out / "encoder.onnx"), dynamo=False,
            input_names=["mel"], output_names=["cross_k", "cross_v"],
            dynamic_axes={"mel": {0: "batch", 2: "frames"},
                          "cross_k": {1: "batch", 2: "audio_len"},
                          "cross_v": {1: "batch", 2: "audio_len"}},
            opset_version=17,
        )
        ck, cv = m.encode(mel)
        b = 2
        tokens = torch.zeros(b, 3, dtype=torch.int64)
        past = torch.zeros(dims.layers, b, 4, dims.width)
        torch.onnx.export(
            _Decoder(m), (tokens, past, past, ck.expand(-1, b, -1, -1).contiguous(),
                          cv.expand(-1, b, -1, -1).contiguous()),
            str(out / "decoder.onnx"), dynamo=False,
            input_names=["tokens", "self_k", "self_v", "cross_k", "cross_v"],
            output_names=["logits", "new_self_k", "new_self_v"],
            dynamic_axes={"tokens": {0: "batch", 1: "n"},
                          "self_k": {1: "batch", 2: "past"}, "self_v": {1: "batch", 2: "past"},
                          "cross_k": {1: "batch", 2: "audio_len"},
                          "cross_v": {1: "batch", 2: "audio_len"},
                          "logits": {0: "batch"},
                          "new_self_k": {1: "batch", 2: "total"},
                          "new_self_v": {1: "batch", 2: "total"}},
            opset_version=17,
        )
        torch.onnx.export(
            _Aligner(m), (tokens[:1], ck, cv), str(out / "aligner.onnx"), dynamo=False,
            input_names=["tokens", "cross_k", "cross_v"], output_names=["weights"],
            dynamic_axes={"tokens": {1: "n"}, "cross_k": {2: "audio_len"},
                          "cross_v": {2: "audio_len"}, "weights": {2: "n", 3: "audio_len"}},
            opset_version=17,
        )

