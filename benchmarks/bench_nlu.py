"""Time the NLU model per hypothesis on one thread; several model folders side by side.

Run: python benchmarks/bench_nlu.py [--model DIR ...] [--n 400] [--batch 1,3]

Each model interprets the same MASSIVE en-US dev requests, one call per batch
of ``--batch`` hypotheses (the agent sends the top 3 ASR hypotheses as one
batch); the models take turns request by request so that load on the host
falls on all of them alike. Prints ms per call and per hypothesis (p50, p95)
and the file size.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from models.nlu.inference import DEFAULT_DIR, NluOnnx
from models.nlu.massive import load

DEV = Path(__file__).resolve().parents[2] / "shared" / "data" / "massive-en-US" / "dev.jsonl"


def main() -> None:
    """Print the timing table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", action="append", type=Path,
                        help="model folder (repeatable) [default: the committed model]")
    parser.add_argument("--data", type=Path, default=DEV, help="MASSIVE-format JSONL")
    parser.add_argument("--n", type=int, default=400, help="requests per cell")
    parser.add_argument("--batch", default="1,3", help="hypotheses per call, comma-separated")
    args = parser.parse_args()
    dirs: list[Path] = args.model or [DEFAULT_DIR]
    models = [NluOnnx(d, threads=1) for d in dirs]
    texts = [e.text for e in load(args.data)][: args.n]
    print(f"{'model':40} {'MB':>5} {'batch':>5} {'ms/call p50':>12} {'p95':>6} "
          f"{'ms/hyp p50':>11}")
    for batch in (int(b) for b in args.batch.split(",")):
        times: list[list[float]] = [[] for _ in models]
        for m in models:  # warm-up
            m.interpret_batch(texts[:batch])
        for i, text in enumerate(texts):
            # Variants of one request, as an n-best list would give.
            group = [text, *(texts[(i + k) % len(texts)] for k in range(1, batch))]
            for t, m in zip(times, models, strict=True):
                start = time.perf_counter()
                m.interpret_batch(group)
                t.append((time.perf_counter() - start) * 1000)
        for d, t in zip(dirs, times, strict=True):
            size = (d / "nlu.int8.onnx").stat().st_size / 1e6
            p50, p95 = np.percentile(t, 50), np.percentile(t, 95)
            print(f"{str(d)[-40:]:40} {size:5.1f} {batch:5d} {p50:12.2f} {p95:6.2f} "
                  f"{p50 / batch:11.2f}")


if __name__ == "__main__":
    main()
