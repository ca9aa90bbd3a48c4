"""BERT's uncased WordPiece tokenizer, from ``vocab.txt``, with character offsets.

Basic step: lowercase, drop accents (NFD, no combining marks), split on
whitespace and around every punctuation character. WordPiece step: greedy
longest match first, continuation pieces prefixed ``##``, ``[UNK]`` for a word
that cannot be split or is longer than 100 characters.
"""

from __future__ import annotations

import dataclasses
import unicodedata
from pathlib import Path

MAX_WORD_CHARS = 100


@dataclasses.dataclass(frozen=True, slots=True)
class Piece:
    """A token id with the character span ``[start, end)`` of the text it came from."""

    id: int
    start: int
    end: int


def is_punct(ch: str) -> bool:
    """BERT's punctuation: ASCII symbols and every Unicode P* character."""
    cp = ord(ch)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(ch).startswith("P")


class WordPiece:
    """Tokenize text into ids of a BERT vocabulary."""

    def __init__(self, vocab_file: Path) -> None:
        tokens = vocab_file.read_text(encoding="utf-8").splitlines()
        self.vocab = {t: i for i, t in enumerate(tokens)}
        self.unk = self.vocab["[UNK]"]
        self.cls = self.vocab["[CLS]"]
        self.sep = self.vocab["[SEP]"]
        self.pad = self.vocab["[PAD]"]

    def words(self, text: str) -> list[tuple[str, int, int]]:
        """Return the basic tokens as (normalised word, start, end) in ``text``."""
        out: list[tuple[str, int, int]] = []
        cur: list[str] = []
        start = 0

        def flush(end: int) -> None:
            if cur:
                out.append(("".join(cur), start, end))
                cur.clear()

        for i, ch in enumerate(text):
            if ch.isspace() or unicodedata.category(ch) == "Cc":
                flush(i)
                continue
            if is_punct(ch):
                flush(i)
                out.append((ch, i, i + 1))
                continue
            norm = "".join(c for c in unicodedata.normalize("NFD", ch.lower())
                           if unicodedata.category(c) != "Mn")
            if not cur:
                start = i
            cur.append(norm)
        flush(len(text))
        return out

    def pieces(self, text: str) -> list[Piece]:
        """Return WordPiece ids with the span of the word each came from."""
        out: list[Piece] = []
        for word, s, e in self.words(text):
            out.extend(Piece(i, s, e) for i in self.split_word(word))
        return out

    def split_word(self, word: str) -> list[int]:
        """Return the WordPiece ids of one basic word (``[UNK]`` if it cannot be split)."""
        if len(word) > MAX_WORD_CHARS:
            return [self.unk]
        ids: list[int] = []
        pos = 0
        while pos < len(word):
            end = len(word)
            found = None
            while end > pos:
                sub = word[pos:end] if pos == 0 else "##" + word[pos:end]
                if sub in self.vocab:
                    found = self.vocab[sub]
                    break
                end -= 1
            if found is None:
                return [self.unk]
            ids.append(found)
            pos = end
        return ids
