"""The arbiter's pure cores: registry validation, skill choice, release gating; and the service."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from agents.arbiter import ArbiterService
from agents.base import Origin
from agents.registry import DEFAULT_REGISTRY, Registry, RegistryError
from agents.routing import Arbiter, Gate
from infra.config import Settings
from streams import topics
from streams.codec import Codec, decode, encode
from streams.directive import Declined, DeclineReason, Directive, SkillState, SkillStatus
from streams.endpoint import EndpointKind, Reset, ResetReason
from streams.nlu import Hypothesis, Interpretations, SlotValue

REGISTRY = Registry.load(DEFAULT_REGISTRY)


def hyp(intent: str, score: float, **slots: str) -> Hypothesis:
    return Hypothesis(intent=intent, score=score, text="x",
                      slots=tuple(SlotValue(type=t, text=v, value=v) for t, v in slots.items()))


@pytest.mark.parametrize(("doc", "message"), [
    ({}, "no [[skill]] entries"),
    ({"skills": []}, "unknown top-level keys"),
    ({"skill": [{"name": "Bad Name", "intents": ["x"]}]}, "name must be"),
    ({"skill": [{"name": "a", "intents": []}]}, "intents must be"),
    ({"skill": [{"name": "a", "intents": ["x"], "colour": "red"}]}, "unknown keys ['colour']"),
    ({"skill": [{"name": "a", "intents": ["x"], "requires": ["hologram"]}]}, "requires"),
    ({"skill": [{"name": "a", "intents": ["x"], "min_confidence": 2}]}, "min_confidence"),
    ({"skill": [{"name": "a", "intents": ["x"], "priority": "high"}]}, "priority"),
    ({"skill": [{"name": "a", "intents": ["x"]}, {"name": "a", "intents": ["y"]}]},
     "defined twice"),
    ({"skill": [{"name": "a", "intents": ["x"], "topic": "no spaces"}]}, "topic"),
])
def test_malformed_registry_entries_are_refused_with_the_reason(doc: dict[str, Any],
                                                                message: str) -> None:
    with pytest.raises(RegistryError) as err:
        Registry.parse(doc, "skills.toml")
    assert message in str(err.value) and "skills.toml" in str(err.value)


def test_registry_file_that_is_not_toml_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "skills.toml"
    bad.write_text("[[skill]\nname = ")
    with pytest.raises(RegistryError, match=r"skills\.toml"):
        Registry.load(bad)


def test_bundled_registry_routes_the_example_intents() -> None:
    assert [s.name for s in REGISTRY.handling("iot_hue_lightoff")] == ["smart-home"]
    assert [s.name for s in REGISTRY.handling("play_video")] == ["video"]
    media = REGISTRY.get("media")
    assert media is not None and media.topic == "skill.media"
    assert REGISTRY.handling("general_joke") == []


def test_choice_declines_with_each_reason() -> None:
    arbiter = Arbiter(REGISTRY)
    assert arbiter.choose([], {}).reason is DeclineReason.NOT_UNDERSTOOD
    assert arbiter.choose([hyp("general_joke", 0.9)], {}).reason is DeclineReason.OUT_OF_DOMAIN
    no_screen = arbiter.choose([hyp("play_video", 0.9)], {"has_screen": False})
    assert no_screen.reason is DeclineReason.NO_CAPABLE_SKILL and "screen" in no_screen.explanation
    low = arbiter.choose([hyp("alarm_set", 0.2)], {})
    assert low.reason is DeclineReason.LOW_CONFIDENCE and "0.20 < timers" in low.explanation
    ok = arbiter.choose([hyp("play_video", 0.9)], {"has_screen": True})
    assert ok.skill is not None and ok.skill.name == "video" and ok.reason is None


def test_near_tie_is_broken_by_priority_and_explained() -> None:
    arbiter = Arbiter(REGISTRY)
    # timers (priority 10) beats media (priority 5) when the scores are within the margin.
    choice = arbiter.choose([hyp("play_music", 0.46), hyp("alarm_set", 0.44)], {})
    assert choice.skill is not None and choice.skill.name == "timers"
    assert "near-tie play_music 0.46 vs alarm_set 0.44: chose timers" in choice.explanation
    # Order of equal inputs never changes the answer.
    again = arbiter.choose([hyp("play_music", 0.46), hyp("alarm_set", 0.44)], {})
    assert again == choice
    # Outside the margin the best interpretation wins.
    clear = arbiter.choose([hyp("play_music", 0.8), hyp("alarm_set", 0.15)], {})
    assert clear.skill is not None and clear.skill.name == "media"
    # A near-tie with an unroutable first interpretation goes to the routable one.
    rescue = arbiter.choose([hyp("general_quirky", 0.55), hyp("iot_wemo_off", 0.5)], {})
    assert rescue.skill is not None and rescue.skill.name == "smart-home"


def test_gate_holds_until_final_and_drops_reset_revisions() -> None:
    gate = Gate()
    d0: Any = object()
    d1: Any = object()
    gate.hold(0, d0, now=1.0)
    gate.cancel(0)
    assert gate.confirm(0, now=2.0) is None and gate.dropped == 1
    gate.hold(1, d1, now=3.0)
    released = gate.confirm(1, now=3.25)
    assert released is not None and released[0] is d1 and released[1] == pytest.approx(250)
    assert gate.confirm(1, now=4.0) is None  # at most one release per utterance
    gate.hold(2, d0, now=5.0)
    assert gate.held == {}


class Sent:
    def __init__(self) -> None:
        self.records: list[tuple[str, bytes, bytes]] = []
        #: The partition each record was pinned to (None: the partitioner chose).
        self.partitions: list[int | None] = []

    async def __call__(self, short: str, key: bytes, value: bytes,
                       partition: int | None = None) -> None:
        self.partitions.append(partition)
        self.records.append((short, key, value))

    def on(self, short: str) -> list[Any]:
        spec = topics.by_short(short) if not short.startswith("skill.") else topics.SKILL_DIRECTIVES
        return [decode(v, spec.codec) for s, _, v in self.records if s == short]


def interps(kind: EndpointKind, revision: int, *h: Hypothesis, utt: str = "u1") -> bytes:
    return encode(Interpretations(device_id="d1", utterance_id=utt, kind=kind, revision=revision,
                                  t_ms=1000 + revision, interpretations=h), Codec.JSON)


def reset(revision: int, utt: str = "u1") -> bytes:
    return encode(Reset(device_id="d1", utterance_id=utt, cancelled_revision=revision,
                        reason=ResetReason.SPEECH_RESUMED, t_ms=900), Codec.JSON)


ORIGIN = Origin("voicestream.interpretations", 0, 0, b"d1")


async def test_a_reset_revision_never_reaches_a_skill_topic() -> None:
    sent = Sent()
    service = ArbiterService(Settings(), sent, REGISTRY, check_liveness=False)
    spec, final = EndpointKind.SPECULATIVE, EndpointKind.FINAL
    await service.on_event(ORIGIN, interps(spec, 0, hyp("iot_wemo_off", 0.9)))
    assert sent.records == []  # held, not released
    await service.on_event(ORIGIN, reset(0))
    # A late copy of the cancelled revision (work that crossed the reset) changes nothing.
    await service.on_event(ORIGIN, interps(final, 0, hyp("iot_wemo_off", 0.9)))
    await service.on_event(ORIGIN, interps(spec, 1, hyp("alarm_set", 0.9, time="07:30")))
    assert sent.records == []
    await service.on_event(ORIGIN, interps(final, 1, hyp("alarm_set", 0.9, time="07:30")))
    [directive] = sent.on("skill.timers")
    assert isinstance(directive, Directive)
    assert (directive.revision, directive.directive_id) == (1, "u1/1")
    assert directive.t_ms == 1001 and directive.held_ms >= 0
    assert sent.on("skill.smart-home") == []
    assert [d.directive_id for d in sent.on("directives")] == ["u1/1"]
    # The record goes out before the skill's copy.
    assert [s for s, _, _ in sent.records] == ["directives", "skill.timers"]


async def test_final_without_speculative_is_decided_and_released() -> None:
    sent = Sent()
    service = ArbiterService(Settings(), sent, REGISTRY, check_liveness=False)
    await service.on_event(ORIGIN, interps(EndpointKind.FINAL, 0, hyp("general_joke", 0.9)))
    [declined] = sent.on("directives")
    assert isinstance(declined, Declined) and declined.reason is DeclineReason.OUT_OF_DOMAIN


async def test_skill_without_heartbeat_is_declined_as_unavailable() -> None:
    sent = Sent()
    service = ArbiterService(Settings(skill_timeout_s=5), sent, REGISTRY)
    h = hyp("iot_wemo_on", 0.9)
    await service.on_event(ORIGIN, interps(EndpointKind.FINAL, 0, h, utt="a"))
    [declined] = sent.on("directives")
    assert isinstance(declined, Declined) and declined.reason is DeclineReason.SKILL_UNAVAILABLE
    import time

    service.on_status(SkillStatus(skill="smart-home", instance="i1", state=SkillState.UP,
                                  at_ms=int(time.time() * 1000)))
    await service.on_event(ORIGIN, interps(EndpointKind.FINAL, 0, h, utt="b"))
    assert len(sent.on("skill.smart-home")) == 1
    service.on_status(SkillStatus(skill="smart-home", instance="i1", state=SkillState.DOWN,
                                  at_ms=int(time.time() * 1000)))
    assert not service.live("smart-home")
    assert not service.live("media", now_ms=10**13)


async def test_garbage_on_the_interpretations_topic_is_dead_lettered() -> None:
    sent = Sent()
    service = ArbiterService(Settings(), sent, REGISTRY, check_liveness=False)
    await service.on_event(ORIGIN, b"\x00garbage")
    [letter] = sent.on("deadletter")
    assert letter.stage == "arbiter" and letter.topic == ORIGIN.topic
