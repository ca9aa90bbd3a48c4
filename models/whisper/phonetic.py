"""Sound-alike search: which context phrases a recognised text may have misheard.

Whisper writes an unfamiliar name as familiar words that sound like it
("Tango thermostat" for "Tado thermostat", "meal dishwasher" for "Miele
dishwasher"). Spelling is a poor guide to sound, so both sides are first
reduced to a coarse *sound key*: English spelling rules (``ph`` -> f, soft
``c`` -> s, ``sz``/``sch`` -> sh, ...), every vowel group one vowel symbol,
doubled letters once. Keys are compared by an edit distance in which swapping
two sounds of one class (p/b, t/d, k/g, f/v/th, the sibilants, m/n, l/r) and
inserting or dropping a vowel cost half.

:class:`SoundIndex` holds the keys of a device's phrases and finds, for a
recognised text, the phrases whose key lies close to some run of its words,
with that run. It proposes; the acoustic check in
:meth:`models.whisper.inference.WhisperOnnx.rescore` decides.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Sequence

import numpy as np
import numpy.typing as npt

VOWEL = "a"
#: Spelling rules applied in order, longest first at each position.
_RULES: tuple[tuple[str, str], ...] = (
    ("tch", "C"), ("sch", "S"), ("tio", "Sa"), ("sio", "Sa"),
    ("ph", "f"), ("sh", "S"), ("sz", "S"), ("cz", "C"), ("ch", "C"), ("th", "T"),
    ("ck", "k"), ("qu", "kw"), ("wr", "r"), ("kn", "n"), ("dg", "j"), ("gh", "g"),
    ("ng", "N"), ("wh", "w"), ("x", "ks"), ("q", "k"), ("z", "s"),
)
_CLASSES = ("pb", "td", "kgc", "fvT", "sSCj", "mnN", "lr")
_CLASS_OF = {ch: i for i, group in enumerate(_CLASSES) for ch in group}
_WORD = re.compile(r"[A-Za-z][A-Za-z']*|\d+")


def sound_key(text: str) -> str:
    """Return the sound key of ``text`` (letters only; spaces are ignored)."""
    s = "".join(ch for ch in text.lower() if "a" <= ch <= "z")
    if len(s) > 3 and s.endswith("e") and s[-2] not in "aeiouy":
        s = s[:-1]  # a silent final e
    out: list[str] = []
    i = 0
    while i < len(s):
        for src, dst in _RULES:
            if s.startswith(src, i):
                out.append(dst)
                i += len(src)
                break
        else:
            ch = s[i]
            nxt = s[i + 1] if i + 1 < len(s) else ""
            if ch == "c":
                out.append("s" if nxt in ("e", "i", "y") else "k")
            elif ch in "aeiou" or (ch == "y" and out):
                out.append(VOWEL)
            elif ch == "h":
                if not out:
                    out.append("h")
            else:
                out.append(ch)
            i += 1
    key: list[str] = []
    for ch in "".join(out):
        if not key or key[-1] != ch:
            key.append(ch)
    return "".join(key)


def _sub_cost(a: str, b: str) -> float:
    if a == b:
        return 0.0
    ca, cb = _CLASS_OF.get(a), _CLASS_OF.get(b)
    return 0.5 if ca is not None and ca == cb else 1.0


def _indel_cost(ch: str) -> float:
    return 0.5 if ch in (VOWEL, "h", "w", "y") else 1.0


def key_distance(a: str, b: str) -> float:
    """Return the weighted edit distance between two sound keys."""
    return _prefix_distances(a, b)[-1]


def _prefix_distances(a: str, b: str) -> list[float]:
    """Return the distance from ``a`` to each prefix of ``b`` (``b[:0]`` to all of ``b``)."""
    col = [0.0]
    for ch in a:
        col.append(col[-1] + _indel_cost(ch))
    out = [col[-1]]
    for cb in b:
        row = [col[0] + _indel_cost(cb)]
        for i, ca in enumerate(a, 1):
            row.append(min(col[i] + _indel_cost(cb), row[i - 1] + _indel_cost(ca),
                           col[i - 1] + _sub_cost(ca, cb)))
        col = row
        out.append(col[-1])
    return out


@dataclasses.dataclass(frozen=True, slots=True)
class Match:
    """A context phrase that may have been heard as ``text[start:end]``."""

    phrase: str
    start: int
    end: int
    #: Edit distance of the sound keys over the phrase's key length (0 = same sound).
    distance: float


@dataclasses.dataclass(frozen=True, slots=True)
class _Word:
    start: int
    end: int
    key: str
    segment: int


class SoundIndex:
    """The sound keys of a device's phrases, searched together with numpy."""

    def __init__(self, phrases: Iterable[str]) -> None:
        self.phrases = sorted({" ".join(p.split()) for p in phrases if p.strip()})
        self._lowered = [p.lower() for p in self.phrases]
        self._low_words = [" ".join(_WORD.findall(p)) for p in self._lowered]
        self.keys = [sound_key(p) for p in self.phrases]
        self.words = [len(p.split()) for p in self.phrases]
        alphabet = sorted({ch for k in self.keys for ch in k} | set(VOWEL))
        self._alphabet = {ch: i for i, ch in enumerate(alphabet)}
        width = max((len(k) for k in self.keys), default=0)
        n = len(self.keys)
        # codes[p, j]: phrase p's j-th sound (-1 past its end), with its classes and costs.
        self._codes = np.full((n, width), -1, np.int64)
        self._cls = np.full((n, width), -2, np.int64)
        self._indel = np.zeros((n, width))
        for p, key in enumerate(self.keys):
            for j, ch in enumerate(key):
                self._codes[p, j] = self._alphabet[ch]
                self._cls[p, j] = _CLASS_OF.get(ch, -1 - self._alphabet[ch] - 2)
                self._indel[p, j] = _indel_cost(ch)
        self._lengths = np.array([len(k) for k in self.keys])

    def contained(self, text: str) -> set[str]:
        """The phrases ``text`` holds in full, as whole words (case and punctuation aside)."""
        words = " " + " ".join(_WORD.findall(text.lower())) + " "
        return {p for p, low in zip(self.phrases, self._low_words, strict=True)
                if f" {low} " in words}

    def __len__(self) -> int:
        return len(self.phrases)

    def _best_substring(self, key: str) -> npt.NDArray[np.float64]:
        """Return, per phrase, the least distance from its key to any substring of ``key``.

        Sellers' algorithm, vectorised over phrases: the alignment may start and
        end anywhere in ``key`` at no cost.
        """
        n, width = self._codes.shape
        best = np.full(n, np.inf)
        # col[p, j]: cost of phrase p's first j sounds ending at the current position.
        col = np.concatenate([np.zeros((n, 1)), np.cumsum(self._indel, axis=1)], axis=1)
        best = np.minimum(best, col[np.arange(n), self._lengths])
        for ch in key:
            code = self._alphabet.get(ch, -3)
            cls = _CLASS_OF.get(ch, -100)
            sub = np.where(self._codes == code, 0.0,
                           np.where(self._cls == cls, 0.5, 1.0))
            ins = _indel_cost(ch)
            new = np.empty_like(col)
            new[:, 0] = 0.0
            diag = col[:, :-1] + sub
            up = col[:, 1:] + ins
            cand = np.minimum(diag, up)
            for j in range(width):
                left = new[:, j] + self._indel[:, j]
                new[:, j + 1] = np.minimum(cand[:, j], left)
            col = new
            best = np.minimum(best, col[np.arange(n), self._lengths])
        return np.asarray(best, np.float64)

    def search(self, text: str, *, limit: int = 8, max_distance: float = 0.5) -> list[Match]:
        """Return up to ``limit`` phrases that may have been heard in ``text``, closest first.

        Each match names the run of whole words of ``text`` whose sound key is
        closest to the phrase's; ``max_distance`` bounds the distance over the
        phrase's key length. A phrase already written in ``text`` is not proposed,
        and its words are not rewritten.
        """
        if not self.phrases:
            return []
        lowered = text.lower()
        # Words that already spell a context phrase are not rewritten into another.
        present: set[str] = set()
        taken: list[tuple[int, int]] = []
        for phrase, low in zip(self.phrases, self._lowered, strict=True):
            if (i := lowered.find(low)) >= 0:
                present.add(phrase)
                taken.append((i, i + len(low)))
        words: list[_Word] = []
        segment = 0
        for m in _WORD.finditer(text):
            if any(a < m.end() and m.start() < b for a, b in taken):
                segment += 1  # a match may not reach across the phrase
            else:
                words.append(_Word(m.start(), m.end(), sound_key(m.group()), segment))
        if not words:
            return []
        coarse = self._best_substring("".join(w.key for w in words))
        lengths = np.maximum(self._lengths, 1)
        order = np.argsort(coarse / lengths, kind="stable")
        out: list[Match] = []
        for p in order:
            if coarse[p] / lengths[p] > max_distance or len(out) >= limit:
                break
            phrase = self.phrases[int(p)]
            if phrase in present:
                continue
            match = self._best_span(phrase, self.keys[int(p)], self.words[int(p)], words)
            if match is not None and match.distance <= max_distance:
                out.append(match)
        return out

    @staticmethod
    def _best_span(phrase: str, key: str, n_words: int, words: Sequence[_Word]) -> Match | None:
        best: Match | None = None
        for i, first in enumerate(words):
            run = [w for w in words[i: i + n_words + 2] if w.segment == first.segment]
            dists = _prefix_distances(key, "".join(w.key for w in run))
            end = 0
            for j, w in enumerate(run):
                end += len(w.key)
                d = dists[end] / max(len(key), 1)
                if best is None or d < best.distance:
                    best = Match(phrase, first.start, run[j].end, d)
        return best
