"""What each slot-decoding rule is worth: one model, four decodings, MASSIVE figures.

Run: python benchmarks/nlu_decoding.py [--model DIR] [--data FILE.jsonl]

The model runs once per request; its tag log-probabilities are then decoded
four ways: per-word arg-max; Viterbi with the BIO rule; plus no touching
slots of one type; plus the slot types of the predicted intent (what
inference does). Prints intent accuracy, slot F1 and exact match per row.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from models.nlu.inference import DEFAULT_DIR, NluOnnx
from models.nlu.labels import slot_f1, spans, viterbi_bio
from models.nlu.massive import Slot, load

DEV = Path(__file__).resolve().parents[2] / "shared" / "data" / "massive-en-US" / "dev.jsonl"
ROWS = ("arg-max per word", "BIO rule", "+ no touching slots of one type",
        "+ the intent's slot types (inference)")


def main() -> None:
    """Print the table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", type=Path, default=DEFAULT_DIR)
    parser.add_argument("--data", type=Path, default=DEV, help="MASSIVE-format JSONL")
    args = parser.parse_args()
    nlu = NluOnnx(args.model)
    examples = load(args.data)
    gold = [ex.slots for ex in examples]
    pred: dict[str, list[tuple[Slot, ...]]] = {row: [] for row in ROWS}
    right = dict.fromkeys(ROWS, 0)
    exact = dict.fromkeys(ROWS, 0)
    for ex in examples:
        ((enc, probs, rows),) = nlu.scores([ex.text])
        intent = nlu.intents[int(probs.argmax())]
        decoded = {
            ROWS[0]: [nlu.tags[int(j)] for j in rows.argmax(axis=-1)] if len(rows) else [],
            ROWS[1]: viterbi_bio(rows, nlu.tags, join_touching=False),
            ROWS[2]: viterbi_bio(rows, nlu.tags),
            ROWS[3]: viterbi_bio(rows, nlu.tags, nlu.masks.get(intent)),
        }
        want = {(s.type, s.start, s.end) for s in ex.slots}
        for row, tags in decoded.items():
            slots = tuple(spans(ex.text, enc.word_starts, tags))
            pred[row].append(slots)
            right[row] += intent == ex.intent
            exact[row] += intent == ex.intent and {(s.type, s.start, s.end)
                                                   for s in slots} == want
    n = max(len(examples), 1)
    print(f"{args.data} ({len(examples)} requests), model {args.model}")
    print(f"{'decoding':40} {'intent':>7} {'slot F1':>8} {'exact':>7}")
    for row in ROWS:
        print(f"{row:40} {right[row] / n:7.4f} {slot_f1(gold, pred[row]):8.4f} "
              f"{exact[row] / n:7.4f}")


if __name__ == "__main__":
    main()
