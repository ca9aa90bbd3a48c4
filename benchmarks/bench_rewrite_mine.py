"""Time mining rewrites from a large interaction log: read, chain, solve, keep.

Run: python benchmarks/bench_rewrite_mine.py --logs FILE.jsonl [--limit N]

Make the log with the simulator first, e.g. about 1 M records::

    voicestream rewrites simulate --users 8000 --days 21 --seed 2 --out .voicestream/sim-1m

(and pass ``--logs .voicestream/sim-1m/train.jsonl --logs .voicestream/sim-1m/test.jsonl``).
Prints records, forms, rules, the seconds of each phase, records/s and the
peak resident memory.
"""

from __future__ import annotations

import argparse
import itertools
import resource
import time
from pathlib import Path

from models.rewrite.logs import LogStats, read_interactions
from models.rewrite.precomputed import (
    ChainCounts,
    MiningConfig,
    chains_of_turns,
    rules_from_counts,
    turn,
)


def main() -> None:
    """Print the timing figures."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--logs", action="append", type=Path, required=True,
                        help="interaction JSONL (repeatable)")
    parser.add_argument("--limit", type=int, default=0, help="read at most this many (0: all)")
    args = parser.parse_args()
    config = MiningConfig()
    stats = LogStats()
    t0 = time.perf_counter()
    records = read_interactions(args.logs, stats)
    if args.limit:
        records = itertools.islice(records, args.limit)
    turns = sorted(turn(r) for r in records)
    t1 = time.perf_counter()
    counts = ChainCounts()
    for chain in chains_of_turns(turns, config):
        counts.add(chain)
    t2 = time.perf_counter()
    rules = rules_from_counts(counts, config)
    t3 = time.perf_counter()
    n = len(turns)
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"records {n}  skipped lines {stats.skipped}  forms {len(counts.index)}  "
          f"rules {len(rules)}")
    print(f"read+sort {t1 - t0:.1f} s  chains {t2 - t1:.1f} s  solve {t3 - t2:.1f} s  "
          f"total {t3 - t0:.1f} s  {n / (t3 - t0):,.0f} records/s  peak RSS {peak_mib:.0f} MiB")


if __name__ == "__main__":
    main()
