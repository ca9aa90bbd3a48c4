"""Two workers in one group on the broker: they share the work, and losing one loses nothing.

The ``kill`` scenario ``benchmarks/bench_fleet.py`` measures, smaller: two
``voicestream up`` processes and the example skills, devices streaming in
real time, one worker SIGKILLed mid-burst. (The rolling restart does not
lose nothing yet: see the README's figures.)
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
    # Every command is one a running skill handles: each outcome is its directive (on
    # both brokers; on Tansu since workers join it as dynamic members, see BrokerProfile).
    assert all(kinds == [kinds[0]] and kinds[0][1] == "directive"
               for kinds in (result.outcomes[u] for u in result.utterances)), \
        result.outcomes


async def test_two_workers_lose_nothing_when_one_is_killed(tmp_path: Path,
                                                          broker_url: str) -> None:
    scenario = "kill"
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
