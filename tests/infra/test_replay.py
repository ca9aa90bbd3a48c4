"""Replay writes under its own topic prefix and refuses the live one (no broker needed)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import TracebackType
from typing import Any

import pytest
from click.testing import CliRunner

from infra import replay as replay_mod
from infra.cli import main
from infra.replay import LiveTopicsError, check_prefix, live_collisions
from streams import topics

SESSION = Path(__file__).resolve().parents[1] / "data" / "demo_session.jsonl"


def test_the_default_replay_prefix_shares_no_topic_with_the_live_one() -> None:
    assert live_collisions(topics.REPLAY_PREFIX, topics.DEFAULT_PREFIX) == []
    check_prefix(topics.REPLAY_PREFIX, topics.DEFAULT_PREFIX)  # no error


@pytest.mark.parametrize(("prefix", "live", "shorts", "shared"), [
    ("voicestream.", "voicestream.", ["audio", "context"],
     ["voicestream.audio", "voicestream.context"]),
    ("", "", ["audio"], ["audio"]),
    # A replay prefix that reaches into a live skill's topic.
    ("vs.skill.", "vs.", ["audio", "skill.audio"], ["vs.skill.audio"]),
    ("replay.", "voicestream.", ["audio", "skill.timers"], []),
])
def test_shared_topic_names_are_found(prefix: str, live: str, shorts: list[str],
                                      shared: list[str]) -> None:
    assert live_collisions(prefix, live, shorts) == shared


def test_the_live_prefix_is_refused_unless_allowed() -> None:
    with pytest.raises(LiveTopicsError, match=r"voicestream\.audio"):
        check_prefix("voicestream.", "voicestream.")
    check_prefix("voicestream.", "voicestream.", into_live=True)


class FakeProducer:
    """Stands for AIOKafkaProducer: keeps the topic of every record sent."""

    sent: list[str] = []

    def __init__(self, **_kw: Any) -> None:
        pass

    async def start(self) -> None:
        pass

    async def send(self, topic: str, value: bytes, key: bytes | None = None,
                   headers: Any = None) -> None:
        FakeProducer.sent.append(topic)

    async def flush(self) -> None:
        pass

    async def stop(self) -> None:
        pass


class FakeWatcher:
    """Stands for EventWatcher: keeps the prefix it was asked to read under; hears nothing."""

    prefixes: list[str] = []

    def __init__(self, bootstrap: Any, *, specs: Any, topic_prefix: str) -> None:
        FakeWatcher.prefixes.append(topic_prefix)

    async def __aenter__(self) -> FakeWatcher:
        return self

    async def __aexit__(self, *_exc: type[BaseException] | BaseException | TracebackType | None
                        ) -> None:
        pass

    async def messages(self) -> Any:
        return
        yield  # an async generator that ends at once


@pytest.fixture
def fakes(monkeypatch: pytest.MonkeyPatch) -> tuple[list[str], list[str]]:
    FakeProducer.sent, FakeWatcher.prefixes = [], []
    monkeypatch.setattr(replay_mod, "AIOKafkaProducer", FakeProducer)
    monkeypatch.setattr(replay_mod, "EventWatcher", FakeWatcher)
    return FakeProducer.sent, FakeWatcher.prefixes


def test_replay_writes_and_reads_under_the_replay_prefix(
        fakes: tuple[list[str], list[str]]) -> None:
    sent, prefixes = fakes
    result = asyncio.run(replay_mod.replay(SESSION, "kafka://127.0.0.1:1", speed=1000,
                                           timeout_s=0.05))
    assert result.inputs == len(sent) > 0
    assert set(sent) == {"replay.audio", "replay.context"}
    assert prefixes == ["replay."]


def test_replay_into_the_live_prefix_sends_nothing_unless_allowed(
        fakes: tuple[list[str], list[str]]) -> None:
    sent, _ = fakes
    with pytest.raises(LiveTopicsError):
        asyncio.run(replay_mod.replay(SESSION, "kafka://127.0.0.1:1",
                                      prefix=topics.DEFAULT_PREFIX, speed=1000, timeout_s=0.05))
    assert sent == []
    asyncio.run(replay_mod.replay(SESSION, "kafka://127.0.0.1:1", prefix=topics.DEFAULT_PREFIX,
                                  into_live=True, speed=1000, timeout_s=0.05))
    assert set(sent) == {"voicestream.audio", "voicestream.context"}


@pytest.mark.parametrize(("args", "env"), [
    (["--topic-prefix", "voicestream."], {}),
    ([], {"VOICESTREAM_TOPIC_PREFIX": "replay."}),  # the live prefix is the replay's
])
def test_cli_refuses_the_live_prefix_before_starting_anything(
        args: list[str], env: dict[str, str], fakes: tuple[list[str], list[str]]) -> None:
    run = CliRunner().invoke(main, ["replay", str(SESSION), "--check", *args], env=env)
    assert run.exit_code == 2, run.output
    assert "live topics" in run.output and "--into-live" in run.output
    assert fakes == ([], [])


def test_cli_refuses_a_prefix_that_is_no_topic_name() -> None:
    run = CliRunner().invoke(main, ["replay", str(SESSION), "--topic-prefix", "re play."])
    assert run.exit_code == 2 and "topic_prefix" in run.output


def test_interaction_records_are_recorded_but_not_compared() -> None:
    # Their session ids and times follow the replay's clock; their content is
    # compared on the transcripts and interpretations topics.
    from infra.replay import COMPARED
    from streams import topics

    assert topics.INTERACTIONS not in COMPARED
    assert topics.INTERPRETATIONS in COMPARED and topics.DIRECTIVES in COMPARED
    assert topics.INTERACTIONS.role is topics.Role.OUTPUT  # still recorded


def test_in_band_error_copies_compare_as_one_but_a_second_directive_does_not() -> None:
    from infra.replay import _group

    error = {"type": "error", "utterance_id": "u1", "device_id": "d", "code": "no-speech",
             "stage": "endpointer", "revision": 0}
    directive = {"type": "directive", "utterance_id": "u2", "device_id": "d", "revision": 0,
                 "intent": "x"}
    recorded = _group([error, dict(error), dict(error), dict(error), directive])
    replayed = _group([error, dict(error), directive])
    assert recorded == replayed and len(recorded["utterance u1"]) == 1
    assert _group([directive, dict(directive)]) != _group([directive])  # a real duplicate


def test_partial_transcripts_are_not_compared_but_transcripts_are() -> None:
    from infra.replay import _group

    transcript = {"type": "transcript", "utterance_id": "u1", "device_id": "d",
                  "kind": "final", "revision": 0, "nbest": [{"text": "turn it off"}]}
    partial = {"type": "partial", "utterance_id": "u1", "device_id": "d", "revision": 0,
               "t_ms": 500, "text": "turn", "seq": 0}
    # The live run had time for two partials, the replay for none.
    assert _group([partial, dict(partial, seq=1, t_ms=1000), transcript]) == \
        _group([transcript])
    assert _group([partial, transcript]) != \
        _group([dict(transcript, nbest=[{"text": "turn it on"}])])
