"""Query rewriting live: a published rule reaches the running worker, rewrites a spoken
request, and the utterance's interaction record (with the device's feedback) is written."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from pathlib import Path

import pytest

from infra.cli.rewriting import publish_rules
from infra.demo import audio_path
from streams import topics
from streams.client import EventWatcher
from streams.rewrite import Interaction, Outcome, RewriteRule, form
from tests.conftest import VOICESTREAM, connection, env_with, send

pytestmark = pytest.mark.broker

#: What users say instead when "what's the temperature" is not served (no weather skill).
REWRITE = "set a timer for ten minutes"


def final_text(events: list[dict[str, object]]) -> str:
    [t] = [e for e in events if e["type"] == "transcript" and e["kind"] == "final"]
    return str(t["nbest"][0]["text"])  # type: ignore[index]


async def interaction(broker: str, utterance_id: str, timeout_s: float) -> Interaction:
    """Wait for the utterance's record on the interactions topic."""
    async with EventWatcher(connection(broker), specs=[topics.INTERACTIONS],
                            from_beginning=True) as watch:
        async with asyncio.timeout(timeout_s):
            async for _topic, message in watch.messages():
                if isinstance(message, Interaction) and message.utterance_id == utterance_id:
                    return message
    raise AssertionError("unreachable")


def test_a_published_rule_rewrites_a_spoken_request_live(stack: str, tmp_path: Path) -> None:
    device = "rw-kitchen"
    _, before = send(stack, audio_path("temperature.wav"), device, "--fast")
    heard = final_text(before)
    declined = [e for e in before if e["type"] == "declined"]
    assert declined and not any(e["type"] == "rewrite" for e in before)

    # The mining command's publisher, as `voicestream rewrites mine --publish` uses it.
    rule = RewriteRule(form=form(heard), rewrite=REWRITE, probability=0.9, support=12,
                       mined_at_ms=int(time.time() * 1000))
    assert asyncio.run(publish_rules(connection(stack), topics.DEFAULT_PREFIX, [rule])) == 1

    # The worker is not restarted: its global table takes the rule from the topic.
    deadline = time.monotonic() + 30
    while True:
        utt = f"rw{int(time.monotonic() * 1000)}"
        code, events = send(stack, audio_path("temperature.wav"), device, "--fast",
                            "--utterance", utt)
        if any(e["type"] == "rewrite" for e in events) or time.monotonic() > deadline:
            break
        time.sleep(1.0)
    assert code == 0
    types = [(e["type"], e.get("kind")) for e in events]
    rewrites = [e for e in events if e["type"] == "rewrite" and e["kind"] == "final"]
    assert len(rewrites) == 1, types
    rewrite = rewrites[0]
    assert (rewrite["original"], rewrite["rewrite"], rewrite["source"]) == \
        (heard, REWRITE, "precomputed")
    # The rewrite comes before its interpretation, which is of the rewritten text.
    final = types.index(("interpretation", "final"))
    assert types.index(("rewrite", "final")) < final
    best = events[final]["interpretations"][0]  # type: ignore[index]
    assert best["text"] == REWRITE
    [decision] = [e for e in events if e["type"] in ("directive", "declined")]
    assert decision["type"] == "directive" and decision["skill"] == "timers", \
        (decision, best)

    # The user says it was not what they meant: the record is a defect, with the rewrite.
    run = subprocess.run([*VOICESTREAM, "feedback", "--device", device, "--utterance", utt,
                          "--kind", "misheard", "--broker", stack],
                         capture_output=True, text=True, timeout=60, env=env_with())
    assert run.returncode == 0, run.stderr
    record = asyncio.run(interaction(stack, utt, timeout_s=60))
    assert (record.device_id, record.user_id) == (device, device)
    assert (record.utterance, record.original) == (REWRITE, heard)
    assert record.outcome is Outcome.DEFECT and "misheard" in record.signals
    assert record.interpretation.intent == decision["intent"]

    # Exported in the log format the mining command reads.
    out = tmp_path / "interactions.jsonl"
    run = subprocess.run([*VOICESTREAM, "interactions", "export", "--out", str(out),
                          "--broker", stack], capture_output=True, text=True, timeout=120,
                         env=env_with())
    assert run.returncode == 0, run.stderr
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    mine = [line for line in lines if line.get("utterance_id") == utt]
    assert mine == [record.to_log()]
    assert all(Interaction.from_log(line).device_id for line in lines)
