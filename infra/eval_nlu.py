"""NLU evaluation on MASSIVE-format files (intent accuracy, slot F1, exact match,
latency) and on xSID CoNLL files (the part that maps onto MASSIVE's labels).

Definitions follow the MASSIVE paper: slot F1 is micro F1 over exact
(type, span) matches; exact match needs the intent and every slot right.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from infra.inputs import InputFileError, read_jsonl
from infra.xsid import (
    INTENTS,
    MASSIVE_CLASS,
    XSID_CLASS,
    XsidExample,
    load_xsid,
    normalised,
    to_classes,
)
from models.nlu.inference import NluOnnx
from models.nlu.labels import slot_f1
from models.nlu.massive import Example, Slot, parse_annotation

#: The fields of a MASSIVE record that evaluation and training read.
FIELDS = {"annot_utt": str, "intent": str}


def load(data: Path) -> list[Example]:
    """Read a MASSIVE-format JSON-lines file; raise ``InputFileError`` naming a bad line."""
    examples = []
    for line, row in read_jsonl(data, FIELDS, what="a MASSIVE record (a JSON object)"):
        text, slots = parse_annotation(row["annot_utt"])
        if not text.strip():
            raise InputFileError(data, "annot_utt is empty", line=line)
        scenario = row.get("scenario", "")
        examples.append(Example(text, row["intent"], slots,
                                scenario if isinstance(scenario, str) else ""))
    return examples


def evaluate(model: NluOnnx, data: Path, *,
             progress: Callable[[int, int], None] | None = None,
             examples: list[Example] | None = None) -> dict[str, Any]:
    """Interpret every utterance of ``data`` one at a time; return the figures.

    ``examples``: ``data`` already read with :func:`load`.
    """
    examples = load(data) if examples is None else examples
    gold, pred, times = [], [], []
    correct = exact = 0
    for i, ex in enumerate(examples):
        start = time.perf_counter()
        best = model.interpret_batch([ex.text], top_k=1)[0][0]
        times.append((time.perf_counter() - start) * 1000)
        ok = best.intent == ex.intent
        correct += ok
        same_slots = {(s.type, s.start, s.end) for s in best.slots} == \
            {(s.type, s.start, s.end) for s in ex.slots}
        exact += ok and same_slots
        gold.append(ex.slots)
        pred.append(best.slots)
        if progress is not None:
            progress(i + 1, len(examples))
    n = max(len(examples), 1)
    return {
        "data": str(data),
        "utterances": len(examples),
        "intent_accuracy": round(correct / n, 4),
        "slot_f1": round(slot_f1(gold, pred), 4),
        "exact_match": round(exact / n, 4),
        "ms_per_utterance_p50": round(float(np.percentile(times, 50)), 2) if times else None,
        "ms_per_utterance_p95": round(float(np.percentile(times, 95)), 2) if times else None,
    }


def score_xsid(examples: Sequence[XsidExample],
               predicted: Sequence[tuple[str, Sequence[Slot]]]) -> dict[str, Any]:
    """Score MASSIVE-label predictions (intent, slots) against xSID gold on the mapped part.

    Intent accuracy counts the utterances whose xSID intent is in
    :data:`infra.xsid.INTENTS`; slot F1 compares slot classes
    (:data:`infra.xsid.SLOTS`) on those same utterances, gold slots of unmapped
    types and predicted slots of unmapped MASSIVE types left out.
    """
    correct = 0
    gold: list[list[Slot]] = []
    pred: list[list[Slot]] = []
    unmapped_intents: Counter[str] = Counter()
    unmapped_slots: Counter[str] = Counter()
    per_intent: dict[str, list[int]] = {}
    for ex, (intent, slots) in zip(examples, predicted, strict=True):
        want = INTENTS.get(ex.intent)
        if want is None:
            unmapped_intents[ex.intent] += 1
            continue
        ok = intent == want
        correct += ok
        tally = per_intent.setdefault(ex.intent, [0, 0])
        tally[0] += ok
        tally[1] += 1
        unmapped_slots.update(s.type for s in ex.slots if s.type not in XSID_CLASS)
        gold.append(to_classes(ex.text, ex.slots, XSID_CLASS))
        pred.append(to_classes(ex.text, list(slots), MASSIVE_CLASS))
    mapped = len(gold)
    return {
        "utterances": len(examples),
        "mapped_utterances": mapped,
        "intent_accuracy": round(correct / mapped, 4) if mapped else None,
        "slot_f1": round(slot_f1(gold, pred), 4) if mapped else None,
        "gold_slots_mapped": sum(len(g) for g in gold),
        "gold_slots_unmapped": sum(unmapped_slots.values()),
        "intent_accuracy_by_intent": {k: round(c / n, 4) for k, (c, n) in
                                      sorted(per_intent.items())},
        "unmapped_intents": dict(unmapped_intents.most_common()),
        "unmapped_slot_types": dict(unmapped_slots.most_common()),
    }


def evaluate_xsid(model: NluOnnx, data: Path, *,
                  progress: Callable[[int, int], None] | None = None,
                  examples: list[XsidExample] | None = None,
                  batch: int = 16, normalise: Callable[[str], str] | None = None
                  ) -> dict[str, Any]:
    """Interpret every utterance of an xSID CoNLL file; return :func:`score_xsid`'s figures.

    ``normalise`` (a locale's normaliser) rewrites each utterance first, as the live
    stage does, keeping the gold slots on their words (:func:`infra.xsid.normalised`).
    """
    examples = load_xsid(data) if examples is None else examples
    if normalise is not None:
        examples = [normalised(ex, normalise) for ex in examples]
    predicted: list[tuple[str, Sequence[Slot]]] = []
    for i in range(0, len(examples), batch):
        texts = [ex.text for ex in examples[i:i + batch]]
        predicted += [(r[0].intent, r[0].slots) for r in model.interpret_batch(texts, top_k=1)]
        if progress is not None:
            progress(len(predicted), len(examples))
    return {"data": str(data), **score_xsid(examples, predicted)}
