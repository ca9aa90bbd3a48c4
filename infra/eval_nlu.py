"""NLU evaluation on MASSIVE-format files: intent accuracy, slot F1, exact match, latency.

Definitions follow the MASSIVE paper: slot F1 is micro F1 over exact
(type, span) matches; exact match needs the intent and every slot right.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from infra.inputs import InputFileError, read_jsonl
from models.nlu.inference import NluOnnx
from models.nlu.labels import slot_f1
from models.nlu.massive import Example, parse_annotation

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
