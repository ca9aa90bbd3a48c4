"""Label encoding for the joint model: intents, BIO slot tags, and spans back from tags."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterable, Sequence
from typing import Protocol

import numpy as np

from models.nlu.massive import Example, Slot

IGNORE = -100
MAX_PIECES = 62


@dataclasses.dataclass(frozen=True)
class Labels:
    """The intent and tag inventories, in a fixed order."""

    intents: tuple[str, ...]
    tags: tuple[str, ...]

    @classmethod
    def from_examples(cls, examples: Sequence[Example]) -> Labels:
        """Collect the inventories from training data (sorted, so stable)."""
        intents = tuple(sorted({e.intent for e in examples}))
        types = sorted({s.type for e in examples for s in e.slots})
        tags = ("O", *(f"{p}-{t}" for t in types for p in ("B", "I")))
        return cls(intents, tags)


class Tokenizer(Protocol):
    """What :func:`encode` needs: :class:`~models.nlu.wordpiece.WordPiece` (English)
    or :class:`~models.nlu.e5.Unigram` (multilingual)."""

    cls: int
    sep: int
    pad: int
    unk: int

    def words(self, text: str) -> list[tuple[str, int, int]]: ...

    def split_word(self, word: str) -> list[int]: ...


@dataclasses.dataclass(frozen=True, slots=True)
class Encoded:
    """Model input for one utterance and, for training, its targets."""

    ids: list[int]
    #: Index in ``ids`` of the first piece of every basic word, and the word's span.
    word_starts: list[tuple[int, int, int]]
    intent: int = IGNORE
    tags: list[int] = dataclasses.field(default_factory=list)


def encode(text: str, wp: Tokenizer, labels: Labels | None = None,
           example: Example | None = None) -> Encoded:
    """Tokenize ``text``; with ``example``, also build the intent and BIO targets."""
    ids = [wp.cls]
    starts: list[tuple[int, int, int]] = []
    for word, s, e in wp.words(text):
        pieces = wp.split_word(word)
        if len(ids) + len(pieces) > MAX_PIECES + 1:
            break
        starts.append((len(ids), s, e))
        ids.extend(pieces)
    ids.append(wp.sep)
    if example is None or labels is None:
        return Encoded(ids, starts)
    tag_index = {t: i for i, t in enumerate(labels.tags)}
    tags = [IGNORE] * len(ids)
    for pos, s, e in starts:
        tag = "O"
        for slot in example.slots:
            if slot.start <= s and e <= slot.end:
                tag = ("B-" if s == slot.start else "I-") + slot.type
                break
        tags[pos] = tag_index.get(tag, 0)
    intent = labels.intents.index(example.intent) if example.intent in labels.intents \
        else IGNORE
    return Encoded(ids, starts, intent, tags)


def spans(text: str, word_starts: Sequence[tuple[int, int, int]],
          word_tags: Sequence[str]) -> list[Slot]:
    """Turn per-word BIO tags back into slots with values and character spans.

    An ``I-`` tag that does not continue a slot of its type starts one.
    """
    out: list[Slot] = []
    cur_type, cur_start, cur_end = "", -1, -1
    for (_, s, e), tag in zip(word_starts, word_tags, strict=True):
        kind, _, typ = tag.partition("-")
        if kind == "I" and typ == cur_type:
            cur_end = e
            continue
        if cur_type:
            out.append(Slot(cur_type, text[cur_start:cur_end], cur_start, cur_end))
        cur_type, cur_start, cur_end = (typ, s, e) if kind in {"B", "I"} else ("", -1, -1)
    if cur_type:
        out.append(Slot(cur_type, text[cur_start:cur_end], cur_start, cur_end))
    return out


@functools.lru_cache(maxsize=8)
def _bio_constraints(tags: tuple[str, ...], join_touching: bool = True
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Transition penalties ``[from, to]`` and start penalties: 0 allowed, -inf not.

    ``I-X`` follows only ``B-X`` or ``I-X``; ``B-X`` never follows ``B-X`` or
    ``I-X``: MASSIVE never annotates two slots of one type touching (none of
    the 3585 neighbouring slot pairs in en-US train), so such a pair is one
    slot the tagger split ("old school" + "rap").
    """
    kinds = [tag.partition("-") for tag in tags]
    allowed = np.array([[not (kj == "I" and (ki == "O" or tj != ti))
                         and not (join_touching and kj == "B" and ki != "O" and tj == ti)
                         for kj, _, tj in kinds] for ki, _, ti in kinds])
    start_ok = np.array([k != "I" for k, _, _ in kinds])
    return np.where(allowed, 0.0, -np.inf), np.where(start_ok, 0.0, -np.inf)


def type_mask(tags: Sequence[str], types: Iterable[str]) -> np.ndarray:
    """Additive mask over ``tags``: 0 for ``O`` and the tags of ``types``, -inf elsewhere."""
    keep = set(types)
    return np.array([0.0 if t == "O" or t.partition("-")[2] in keep else -np.inf
                     for t in tags])


def intent_slot_types(examples: Sequence[Example]) -> dict[str, list[str]]:
    """The slot types each intent's training requests use (what its slots may be)."""
    out: dict[str, set[str]] = {}
    for e in examples:
        out.setdefault(e.intent, set()).update(s.type for s in e.slots)
    return {k: sorted(v) for k, v in sorted(out.items())}


def viterbi_bio(log_probs: np.ndarray, tags: Sequence[str],
                mask: np.ndarray | None = None, *, join_touching: bool = True) -> list[str]:
    """The best tag sequence under the BIO rules of :func:`_bio_constraints`.

    ``log_probs`` is ``[words, tags]`` (per-word log-probabilities); ``mask``
    (from :func:`type_mask`) leaves out the slot types an intent never uses.
    Taking each word's arg-max separately can produce an ``I-`` that continues
    nothing, or a span whose type changes midway; this decoding cannot.
    ``join_touching=False`` allows touching slots of one type (for comparison).
    """
    n, t = log_probs.shape
    if n == 0:
        return []
    if mask is not None:
        log_probs = log_probs + mask
    penalty, start = _bio_constraints(tuple(tags), join_touching)
    score = log_probs[0] + start
    back = np.zeros((n, t), dtype=np.int64)
    for i in range(1, n):
        cand = score[:, None] + penalty
        back[i] = cand.argmax(axis=0)
        score = cand.max(axis=0) + log_probs[i]
    best = [int(score.argmax())]
    for i in range(n - 1, 0, -1):
        best.append(int(back[i, best[-1]]))
    return [tags[j] for j in reversed(best)]


def slot_f1(gold: Sequence[Sequence[Slot]], pred: Sequence[Sequence[Slot]]) -> float:
    """Micro F1 over exact (type, span) matches, as the MASSIVE paper counts it."""
    tp = fp = fn = 0
    for g, p in zip(gold, pred, strict=True):
        gs = {(s.type, s.start, s.end) for s in g}
        ps = {(s.type, s.start, s.end) for s in p}
        tp += len(gs & ps)
        fp += len(ps - gs)
        fn += len(gs - ps)
    return 2 * tp / max(2 * tp + fp + fn, 1)
