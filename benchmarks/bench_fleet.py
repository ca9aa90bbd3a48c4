"""Workers and brokers failing while a fleet of devices streams: the figures.

Starts a 3-node Apache Kafka cluster (or joins ``--broker``), then for each
scenario a fresh group of workers and the example skills in topics of their
own, and prints, with the broker kind: utterances, how many got exactly one
outcome (a directive, a decline, or a stage's error), none or several,
duplicate directives, declines, seconds from a worker's death (or SIGTERM) to
the survivors' new assignment, the longest gap between consecutive outcomes
(the pause a failure caused) and the error codes seen. Scenarios are those of
:mod:`infra.fleet`: none, kill, rolling, broker.

Run: python -m benchmarks.bench_fleet [--scenarios none,kill,rolling,broker]
     [--workers 2] [--devices 10] [--rounds 2] [--broker kafka://h:p,...] [--logs DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
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
    args = parser.parse_args()
    logs.configure("console", "error")
    # The watcher's client reports each refused connection to a killed node; the
    # figures say what that cost.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    rows = []
    with tempfile.TemporaryDirectory(prefix="vs-fleet-") as tmp, \
            broker(args.broker, Path(tmp)) as (url, cluster):
        for scenario in args.scenarios.split(","):
            if scenario == "broker" and cluster is None:
                print("broker: skipped (needs the cluster this command starts)")
                continue
            fleet = Fleet(url, Path(tmp), scenario, args.workers)
            try:
                fleet.start()
                result = asyncio.run(run_scenario(scenario, fleet, args.devices, args.rounds,
                                                  cluster))
            finally:
                fleet.stop(Path(args.logs) / scenario if args.logs else None)
            row = result.row()
            rows.append(row)
            print(row, flush=True)
    head = ("scenario", "broker", "utterances", "exactly_one", "none", "several",
            "duplicate_directives", "declined", "moved_s", "max_gap_s", "errors")
    print(" | ".join(head))
    for row in rows:
        print(" | ".join(str(row[h]) for h in head))


if __name__ == "__main__":
    main()
