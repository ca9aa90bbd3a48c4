"""Whisper's byte-level BPE tokenizer, read from ``tokenizer.json``; no dependencies.

Decoding maps token ids to their byte strings. Encoding (used to put context
phrases into the biasing trie and to score variants) merges each pre-token's
pieces pair by pair, the pair whose joined piece has the lowest id first, as
Whisper's own tiktoken tokenizer does: in its vocabularies a piece's id is its
merge rank. The file's ``merges`` list is not used, because the one shipped
with Whisper base (the faster-whisper conversion) lacks the first merge,
"Ġ t" (" t", id 256): with it, " two" became " ", "two" and " train" became
" ", "t", "rain", tokens the model never writes. The special tokens' ids differ between English-only
vocabularies (tiny.en: end of text 50256) and multilingual ones (base: 50257,
one more text token), so they are read from the file by name.
"""

from __future__ import annotations

import functools
import itertools
import json
import re
from pathlib import Path

# GPT-2's pre-tokenizer with Python's ``re``: letters are [^\W\d_].
_PRETOKEN = re.compile(
    r"""'s|'t|'re|'ve|'m|'ll|'d| ?[^\W\d_]+| ?\d+| ?[^\s\w]+|\s+(?!\S)|\s+|_+""")


@functools.cache
def _byte_to_unicode() -> dict[int, str]:
    """GPT-2's reversible map from bytes to printable characters."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + \
        list(range(0xAE, 0x100))
    chars = list(keep)
    n = 0
    for b in range(256):
        if b not in keep:
            keep.append(b)
            chars.append(256 + n)
            n += 1
    return dict(zip(keep, map(chr, chars), strict=True))


class Tokenizer:
    """Encode text to ids and decode ids to text."""

    def __init__(self, path: Path) -> None:
        data = json.loads(path.read_text())
        model = data["model"]
        self.vocab: dict[str, int] = model["vocab"]
        for added in data.get("added_tokens", []):
            self.vocab[added["content"]] = added["id"]
        self.id_to_token = {i: t for t, i in self.vocab.items()}
        #: End of text; it is also the first special token, text tokens are below it.
        self.eot = self.vocab["<|endoftext|>"]
        self.sot = self.vocab["<|startoftranscript|>"]
        self.no_timestamps = self.vocab["<|notimestamps|>"]
        #: A multilingual model must be told the language and the task.
        self.multilingual = self.eot > 50256
        lang_task = ((self.vocab["<|en|>"], self.vocab["<|transcribe|>"])
                     if self.multilingual else ())
        #: What the decoder is fed before the text: English transcription, no timestamps.
        self.prompt: tuple[int, ...] = (self.sot, *lang_task, self.no_timestamps)
        #: The languages a multilingual vocabulary has a token for (``de`` for ``<|de|>``).
        self.languages = frozenset(
            t[2:-2] for t, i in self.vocab.items()
            if i > self.eot and re.fullmatch(r"<\|[a-z]{2,3}\|>", t) and
            t not in ("<|nocaptions|>", "<|nospeech|>")) if self.multilingual else \
            frozenset({"en"})
        #: A text piece's merge rank: its id (special tokens are never merged into).
        self.ranks = {t: i for t, i in self.vocab.items() if i < self.eot}
        self.b2u = _byte_to_unicode()
        self.u2b = {c: b for b, c in self.b2u.items()}

    def prompt_for(self, language: str = "en") -> tuple[int, ...]:
        """The decoder prompt that makes the model transcribe ``language`` (``de``:
        ``<|startoftranscript|><|de|><|transcribe|><|notimestamps|>``).

        An English-only vocabulary has no language token: it takes ``en`` only.
        Raise ``ValueError`` for a language the vocabulary has no token for.
        """
        if language not in self.languages:
            raise ValueError(f"the model does not know the language {language!r}")
        if not self.multilingual:
            return self.prompt
        return (self.sot, self.vocab[f"<|{language}|>"], self.vocab["<|transcribe|>"],
                self.no_timestamps)

    def decode_bytes(self, ids: list[int]) -> bytes:
        """Return the bytes of the text tokens in ``ids`` (special tokens are skipped)."""
        out = bytearray()
        for i in ids:
            if i < self.eot:
                out.extend(self.u2b[c] for c in self.id_to_token[i])
        return bytes(out)

    def decode(self, ids: list[int]) -> str:
        """Return the text of ``ids``."""
        return self.decode_bytes(ids).decode("utf-8", errors="replace")

    def token_text(self, i: int) -> str:
        """Return one token's text (may be part of a UTF-8 character)."""
        return self.decode_bytes([i]).decode("utf-8", errors="replace")

    @functools.lru_cache(maxsize=4096)  # noqa: B019 - one tokenizer per process
    def _bpe(self, piece: str) -> tuple[int, ...]:
        word = [self.b2u[b] for b in piece.encode()]
        while len(word) > 1:
            pairs = [(self.ranks.get(a + b, 1 << 30), i)
                     for i, (a, b) in enumerate(itertools.pairwise(word))]
            rank, i = min(pairs)
            if rank == 1 << 30:
                break
            word = [*word[:i], word[i] + word[i + 1], *word[i + 2:]]
        return tuple(self.vocab[w] for w in word)

    def encode(self, text: str) -> list[int]:
        """Return the token ids of ``text`` (no special tokens)."""
        ids: list[int] = []
        for piece in _PRETOKEN.findall(text):
            ids.extend(self._bpe(piece))
        return ids
