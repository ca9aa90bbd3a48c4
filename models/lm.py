"""A word trigram language model of assistant requests, for reranking recognisers' n-best.

Interpolated Kneser-Ney (one absolute discount, 0.75) over words in the form
WER is scored on (:func:`models.textnorm.normalize`: lower case, numbers as words,
no punctuation), with sentence start and end. Trained on MASSIVE en-US
**train** (CC BY 4.0): its trigram counts ship with the package
(``models/lm-massive-en-train.tsv.gz``, package data, written by
:func:`build_bundled`), so nothing is read from ``shared/data`` at run time.
Evaluation uses MASSIVE **dev**, which the counts never saw.

A recogniser's n-best comes from its acoustic model and its own (general)
language model; a request to an assistant is a narrow kind of sentence, so
"said an alarm" and "set an alarm" sound alike and are not alike here. See
:func:`rerank` in :mod:`models.asr`.
"""

from __future__ import annotations

import functools
import gzip
import json
import math
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

from models.textnorm import normalize

BUNDLED = Path(__file__).parent / "lm-massive-en-train.tsv.gz"
DISCOUNT = 0.75
_START, _END = "<s>", "</s>"
#: One word standing for a device's phrase (a name) in :func:`phrase_words`; never
#: counted (normalised text has no angle brackets), so scored as an unseen word.
PHRASE = "<phrase>"


class WordTrigram:
    """Interpolated Kneser-Ney trigram probabilities from trigram counts."""

    def __init__(self, trigrams: Counter[tuple[str, str, str]],
                 discount: float = DISCOUNT) -> None:
        if not 0 < discount < 1:
            raise ValueError(f"discount must be within (0, 1), got {discount}")
        self.discount = discount
        self.trigrams = trigrams
        #: Distinct words seen before "v w" (the bigram's continuation count), and
        #: distinct bigrams "v w" ending in w (the unigram's).
        self._bigram_cont: Counter[tuple[str, str]] = Counter()
        self._context3: Counter[tuple[str, str]] = Counter()
        self._types3: Counter[tuple[str, str]] = Counter()
        for (u, v, w), c in trigrams.items():
            self._bigram_cont[(v, w)] += 1
            self._context3[(u, v)] += c
            self._types3[(u, v)] += 1
        self._unigram_cont: Counter[str] = Counter()
        self._context2: Counter[str] = Counter()
        self._types2: Counter[str] = Counter()
        for (v, w), c in self._bigram_cont.items():
            self._unigram_cont[w] += 1
            self._context2[v] += c
            self._types2[v] += 1
        self._bigram_types = sum(self._unigram_cont.values())
        #: Words that can be predicted, and one more for any word never seen.
        self.vocabulary = len(self._unigram_cont) + 1

    @classmethod
    def from_sentences(cls, sentences: Iterable[str]) -> WordTrigram:
        """Count the trigrams of ``sentences`` (normalised first)."""
        counts: Counter[tuple[str, str, str]] = Counter()
        for sentence in sentences:
            words = [_START, _START, *normalize(sentence).split(), _END]
            counts.update(zip(words, words[1:], words[2:], strict=False))
        return cls(counts)

    def save(self, path: Path) -> None:
        """Write the trigram counts, one ``u v w<TAB>count`` line each, gzipped."""
        path.parent.mkdir(parents=True, exist_ok=True)
        lines = (f"{' '.join(k)}\t{c}\n" for k, c in sorted(self.trigrams.items()))
        with gzip.open(path, "wt", encoding="utf-8", compresslevel=9) as f:
            f.writelines(lines)

    @classmethod
    def load(cls, path: Path = BUNDLED) -> WordTrigram:
        """Read counts that :meth:`save` wrote."""
        counts: Counter[tuple[str, str, str]] = Counter()
        with gzip.open(path, "rt", encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                key, _, count = line.rstrip("\n").partition("\t")
                words = tuple(key.split(" "))
                if len(words) != 3 or not count.isdigit():
                    raise ValueError(f"{path}:{n}: expected 'u v w<TAB>count'")
                counts[words] = int(count)
        return cls(counts)

    def _p1(self, w: str) -> float:
        # Continuation counts, add-half smoothed so an unseen word keeps some mass.
        return (self._unigram_cont[w] + 0.5) / (self._bigram_types + 0.5 * self.vocabulary)

    def _p2(self, v: str, w: str) -> float:
        total = self._context2[v]
        if not total:
            return self._p1(w)
        d = self.discount
        return (max(self._bigram_cont[(v, w)] - d, 0.0) / total
                + d * self._types2[v] / total * self._p1(w))

    def probability(self, u: str, v: str, w: str) -> float:
        """P(w | u v)."""
        total = self._context3[(u, v)]
        if not total:
            return self._p2(v, w)
        d = self.discount
        return (max(self.trigrams[(u, v, w)] - d, 0.0) / total
                + d * self._types3[(u, v)] / total * self._p2(v, w))

    def logprob(self, words: Sequence[str]) -> float:
        """Natural-log probability of ``words`` (normalised already) and the end."""
        seq = [_START, _START, *words, _END]
        return sum(math.log(self.probability(u, v, w))
                   for u, v, w in zip(seq, seq[1:], seq[2:], strict=False))

    def per_word(self, text: str) -> float:
        """Mean natural-log probability of ``text``'s words and its end, normalised first."""
        words = normalize(text).split()
        return self.logprob(words) / (len(words) + 1)


def phrase_words(text: str, phrase: str) -> list[str]:
    """``text``'s words (normalised) with ``phrase``'s as the one word :data:`PHRASE`.

    A device's names are not in the requests' counts, and as unseen words one
    by one, a long name would cost more than a short one; as one unseen word,
    "call <phrase>" is scored as a request for a name, whatever the name.
    Where ``phrase`` is not there as whole words, the words are returned as they are.
    """
    words = f" {normalize(text)} "
    wanted = normalize(phrase)
    if not wanted or f" {wanted} " not in words:
        return words.split()
    return words.replace(f" {wanted} ", f" {PHRASE} ", 1).split()


@functools.cache
def bundled() -> WordTrigram:
    """The MASSIVE en-US train model, read once per process."""
    return WordTrigram.load(BUNDLED)


def build_bundled(train_jsonl: Path, out: Path = BUNDLED) -> WordTrigram:
    """Count MASSIVE's ``train.jsonl`` requests (``utt``) and save the counts to ``out``."""
    with train_jsonl.open(encoding="utf-8") as f:
        texts = [json.loads(line)["utt"] for line in f if line.strip()]
    model = WordTrigram.from_sentences(texts)
    model.save(out)
    return model
