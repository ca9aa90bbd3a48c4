"""Workers and brokers failing while a fleet of devices streams: the figures.

Starts a 3-node Apache Kafka cluster (or joins ``--broker``), then for each
scenario a fresh group of workers and the example skills in topics of their
own, and prints, with the broker kind: utterances, how many got exactly one
outcome (a directive, a decline, or a stage's error), none or several,
duplicate directives, declines, seconds from a worker's death (or SIGTERM) to
the survivors' new assignment, the longest gap between consecutive outcomes
(the pause a failure caused), the error codes seen, and p50/p95 seconds from
the end of a decided utterance's audio to its outcome. Scenarios are those of
:mod:`infra.fleet`: none, kill, rolling, broker, saturate. ``--set`` runs every
scenario once per setting given (side by side in one table), e.g. past
saturation with and without a tight queue:

    python -m benchmarks.bench_fleet --scenarios saturate --workers 1 --devices 30 \
        --rounds 1 --set asr_queue_limit=4 --set asr_queue_limit=64

Run: python -m benchmarks.bench_fleet [--scenarios none,kill,rolling,broker]
     [--workers 2] [--devices 10] [--rounds 2] [--broker kafka://h:p,...] [--logs DIR]
     [--set NAME=VALUE[,NAME=VALUE] ...]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import logging
import tempfile
from collections.abc import Iterator
from pathlib import Path

from infra import logs
from infra.cluster import KafkaCluster
from infra.fleet import Fleet, run_scenario


@contextlib.contextmanager
def broker(url: str | None, folder: Path) -> Iterator[tuple[str, KafkaCluster | None]]:
    if url:
        yield url, None
        return
    with KafkaCluster(folder / "kafka", 3) as cluster:
        yield cluster.url, cluster


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenarios", default="none,kill,rolling,broker")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--devices", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--broker", default="", help="join this broker instead of starting "
                        "a 3-node Kafka cluster")
    parser.add_argument("--logs", default="", help="write each process's log under this "
                        "folder, one subfolder per scenario")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE[,...]",
                        help="worker settings of one run; repeat for runs side by side")
    args = parser.parse_args()
    logs.configure("console", "error")
    # The watcher's client reports each refused connection to a killed node; the
    # figures say what that cost.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    rows = []
    with tempfile.TemporaryDirectory(prefix="vs-fleet-") as tmp, \
            broker(args.broker, Path(tmp)) as (url, cluster):
        runs = [dict(kv.split("=", 1) for kv in spec.split(",")) for spec in args.set] or [{}]
        for scenario, (n, settings) in itertools.product(args.scenarios.split(","),
                                                         enumerate(runs)):
            if scenario == "broker" and cluster is None:
                print("broker: skipped (needs the cluster this command starts)")
                continue
            name = f"{scenario}{n}" if len(runs) > 1 else scenario
            fleet = Fleet(url, Path(tmp), name, args.workers, settings)
            try:
                fleet.start()
                result = asyncio.run(run_scenario(scenario, fleet, args.devices, args.rounds,
                                                  cluster))
            finally:
                fleet.stop(Path(args.logs) / name if args.logs else None)
            result.settings = ",".join(f"{k}={v}" for k, v in settings.items())
            row = result.row()
            rows.append(row)
            print(row, flush=True)
    head = ("scenario", "settings", "broker", "utterances", "exactly_one", "none", "several",
            "duplicate_directives", "declined", "moved_s", "max_gap_s", "decided_p50_s",
            "decided_p95_s", "errors")
    print(" | ".join(head))
    for row in rows:
        print(" | ".join(str(row[h]) for h in head))


if __name__ == "__main__":
    main()
