"""Two workers in one group on the broker: they share the work, and losing one loses nothing.

The same scenarios ``benchmarks/bench_fleet.py`` measures, smaller: two
``voicestream up`` processes and the example skills, devices streaming in
real time, one worker SIGKILLed (or each one restarted with SIGTERM) mid-burst.
Every utterance must end with exactly one outcome, and each with a directive
(every command spoken has a running skill), never two.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from infra.fleet import Fleet, Outcome, run_scenario

pytestmark = pytest.mark.broker


def check(result: Outcome, utterances: int) -> None:
    row = result.row()
    print(row)
    assert row["utterances"] == utterances
    assert row["exactly_one"] == utterances, row
    assert row["duplicate_directives"] == 0
    # Every command is one a running skill handles: each outcome is its directive.
    assert all(kinds == [kinds[0]] and kinds[0][1] == "directive"
               for kinds in (result.outcomes[u] for u in result.utterances)), result.outcomes


@pytest.mark.parametrize("scenario", ["kill", "rolling"])
async def test_two_workers_lose_nothing_when_one_goes(tmp_path: Path, broker_url: str,
                                                      broker_kind: str, scenario: str) -> None:
    if broker_kind == "tansu" and scenario == "rolling":
        pytest.skip("one rolling restart on Kafka is enough; the kill covers Tansu")
    fleet = Fleet(broker_url, tmp_path, scenario, 2)
    try:
        await asyncio.to_thread(fleet.start)
        result = await run_scenario(scenario, fleet, devices=4, rounds=2, cluster=None)
    finally:
        await asyncio.to_thread(fleet.stop, tmp_path / "logs")
    # The survivors took the partitions over (how fast: benchmarks/bench_fleet.py).
    assert result.moved_s, "no new assignment after the worker left"
    check(result, len(result.utterances))
    assert len(result.utterances) >= 8
