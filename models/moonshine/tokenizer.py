"""Moonshine's tokenizer, read from the packaged ``tokenizer.bin``; no dependencies.

The file is the vocabulary alone: for each id in order, one length byte and
that many bytes of the piece. It is a SentencePiece BPE vocabulary (32000
pieces, Llama's): ``<unk>``, ``<s>`` (start of decoding), ``</s>`` (end), then
the 256 byte-fallback pieces (id 3 + byte), then merged pieces in which
U+2581 ("▁") stands for a space. Decoding joins the pieces' bytes. Encoding
(for the biasing trie) is SentencePiece's BPE without its scores file: the
pieces are ranked by id, as the trainer wrote them in merge order, so the pair
whose merge has the lowest id is merged first; a character with no piece
falls back to its UTF-8 bytes.
"""

from __future__ import annotations

from pathlib import Path

SPACE = "\u2581"
#: The first byte-fallback piece (byte 0); byte b is id ``BYTE0 + b``.
BYTE0 = 3


class TokenizerError(ValueError):
    """``tokenizer.bin`` is not a vocabulary file (``code``: ``moonshine-bad-tokenizer``)."""

    code = "moonshine-bad-tokenizer"


class Tokenizer:
    """Encode text to ids and decode ids to text."""

    def __init__(self, path: Path) -> None:
        data = path.read_bytes()
        pieces: list[bytes] = []
        i = 0
        while i < len(data):
            n = data[i]
            if i + 1 + n > len(data):
                raise TokenizerError(f"{path}: piece {len(pieces)} runs past the end of the file")
            pieces.append(data[i + 1:i + 1 + n])
            i += 1 + n
        if len(pieces) < BYTE0 + 256 or pieces[:BYTE0] != [b"<unk>", b"<s>", b"</s>"]:
            raise TokenizerError(f"{path}: not a Moonshine vocabulary ({len(pieces)} pieces)")
        self.pieces = pieces
        self.sot = 1
        self.eot = 2
        self.prompt: tuple[int, ...] = (self.sot,)
        self._ids: dict[str, int] = {}
        for id_, piece in enumerate(pieces[BYTE0 + 256:], BYTE0 + 256):
            text = piece.decode("utf-8", errors="replace")
            self._ids.setdefault(text, id_)

    def __len__(self) -> int:
        return len(self.pieces)

    def token_text(self, token: int) -> str:
        """Return one piece's text, with a leading space for a word start."""
        if token < BYTE0 or token >= len(self.pieces):
            return ""
        return self.pieces[token].decode("utf-8", errors="replace").replace(SPACE, " ")

    def decode(self, tokens: list[int] | tuple[int, ...]) -> str:
        """Return the text of ``tokens`` (special and out-of-vocabulary ids dropped)."""
        raw = b"".join(self.pieces[t] if BYTE0 + 256 <= t < len(self.pieces)
                       else bytes([t - BYTE0]) if BYTE0 <= t < BYTE0 + 256 else b""
                       for t in tokens)
        return raw.decode("utf-8", errors="replace").replace(SPACE, " ")

    def encode(self, text: str) -> list[int]:
        """Return the ids of ``text``; a leading space becomes the word-start mark."""
        symbols = list(text.replace(" ", SPACE))
        while len(symbols) > 1:
            best, at = len(self.pieces), -1
            for i in range(len(symbols) - 1):
                id_ = self._ids.get(symbols[i] + symbols[i + 1])
                if id_ is not None and id_ < best:
                    best, at = id_, i
            if at < 0:
                break
            symbols[at:at + 2] = [symbols[at] + symbols[at + 1]]
        out: list[int] = []
        for s in symbols:
            id_ = self._ids.get(s)
            if id_ is not None:
                out.append(id_)
            else:
                out.extend(BYTE0 + b for b in s.encode("utf-8"))
        return out
