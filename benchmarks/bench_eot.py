"""Time and size of the end-of-turn text model and the turn decision, one thread.

Prints microseconds per call (median of several runs over dev-like requests)
and the weights file's size. Goal: at most 1 ms per call, a few MB at most.

Run: python benchmarks/bench_eot.py [--runs 5]
"""

from __future__ import annotations

import argparse
import statistics
import time

from agents.turn import TurnDecider
from models.eot import DEFAULT_PATH, EotModel, words_of
from streams.settings import EndpointerConfig

REQUESTS = ("turn on the kitchen light", "set an alarm for", "what is the weather like today",
            "play music by", "remind me to call", "tell me a joke")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="timed runs (median shown)")
    args = parser.parse_args()
    model = EotModel.load()
    decider = TurnDecider(EndpointerConfig(semantic=True), model)
    words = [words_of(r) for r in REQUESTS]
    calls = 2000
    for name, fn in (("model.complete_words", lambda w: model.complete_words(w)),
                     ("TurnDecider.decide", lambda w: decider.decide(w))):
        runs = []
        for _ in range(args.runs):
            start = time.perf_counter()
            for i in range(calls):
                fn(words[i % len(words)])
            runs.append((time.perf_counter() - start) / calls * 1e6)
        print(f"{name:22s} {statistics.median(runs):7.1f} us per call")
    print(f"weights {DEFAULT_PATH.name}: {DEFAULT_PATH.stat().st_size / 1024:.0f} KiB")


if __name__ == "__main__":
    main()
