"""The interactions core: success and defect rules, one record per utterance, bounded state."""

from __future__ import annotations

from typing import Any

import pytest

from agents.base import DeviceGate, Origin
from agents.interactions import InteractionsService, JoinConfig, Joiner
from infra.config import Settings
from streams import identity, topics
from streams.asr import NBest, Transcript
from streams.codec import decode, encode
from streams.control import ErrorEvent
from streams.directive import (
    Declined,
    DeclineReason,
    Directive,
    ResponseStatus,
    SkillResponse,
    directive_id,
)
from streams.endpoint import EndpointKind
from streams.nlu import Hypothesis, Interpretations, SlotValue
from streams.rewrite import Feedback, FeedbackKind, Interaction, Outcome, Rewrite, RewriteSource

WINDOW = 5_000
T0 = 1_700_000_000_000


def heard(j: Joiner, utt: str, text: str, at: int, device: str = "d1") -> None:
    for kind in (EndpointKind.SPECULATIVE, EndpointKind.FINAL):
        j.on_transcript(Transcript(device_id=device, utterance_id=utt, kind=kind, revision=0,
                                   at_ms=900, t_ms=1000, engine="fake",
                                   nbest=(NBest(text=text, score=-0.1),)), at)


def understood(j: Joiner, utt: str, intent: str, at: int, device: str = "d1") -> None:
    hyp = Hypothesis(intent=intent, score=0.9, text="x",
                     slots=(SlotValue(type="time", text="seven", value="07:00"),))
    j.on_interpretation(Interpretations(device_id=device, utterance_id=utt,
                                        kind=EndpointKind.FINAL, revision=0, t_ms=1000,
                                        interpretations=(hyp,)), at)


def directive(j: Joiner, utt: str, at: int, device: str = "d1", intent: str = "alarm_set"
              ) -> None:
    j.on_outcome(Directive(directive_id=directive_id(utt, 0), device_id=device,
                           utterance_id=utt, revision=0, skill="timers", intent=intent,
                           slots=(SlotValue(type="time", text="seven", value="07:00"),)), at)


def declined(j: Joiner, utt: str, at: int) -> None:
    j.on_outcome(Declined(device_id="d1", utterance_id=utt, revision=0,
                          reason=DeclineReason.LOW_CONFIDENCE, intent="alarm_set"), at)


def request(j: Joiner, utt: str, text: str, at: int, device: str = "d1") -> None:
    """A whole request that reached a skill: heard, understood, a directive."""
    heard(j, utt, text, at, device)
    understood(j, utt, "alarm_set", at + 50, device)
    directive(j, utt, at + 100, device)


def joiner(**kw: Any) -> Joiner:
    return Joiner(JoinConfig(window_ms=WINDOW, repeat_ms=WINDOW, **kw))


def only(records: list[Any]) -> Interaction:
    [one] = records
    assert isinstance(one.interaction, Interaction)
    return one.interaction


def test_a_served_request_is_a_success_once_its_window_closes() -> None:
    j = joiner()
    request(j, "u1", "wake me up at seven", T0)
    assert j.due(T0 + 100 + WINDOW - 1) == []  # feedback may still come
    record = only(j.due(T0 + 100 + WINDOW))
    assert record.outcome is Outcome.SUCCESS and record.signals == ()
    assert (record.utterance, record.user_id, record.device_id, record.ts) == \
        ("wake me up at seven", "d1", "d1", T0 + 100)
    assert record.interpretation.intent == "alarm_set"
    assert record.interpretation.slots == {"time": "07:00"}
    assert j.due(T0 + 10 * WINDOW) == []  # one record per utterance


@pytest.mark.parametrize("kind", [FeedbackKind.MISHEARD, FeedbackKind.REJECT,
                                  FeedbackKind.BARGE_IN])
def test_negative_feedback_in_the_window_is_a_defect(kind: FeedbackKind) -> None:
    j = joiner()
    request(j, "u1", "play the beetles", T0)
    j.on_feedback(Feedback(device_id="d1", utterance_id="u1", kind=kind, t_ms=T0 + 900))
    record = only(j.due(T0 + 100 + WINDOW))
    assert record.outcome is Outcome.DEFECT and record.signals == (kind.value,)


def test_a_confirmation_keeps_it_a_success() -> None:
    j = joiner()
    request(j, "u1", "play the beatles", T0)
    j.on_feedback(Feedback(device_id="d1", utterance_id="u1", kind=FeedbackKind.CONFIRM,
                           t_ms=T0 + 900))
    assert only(j.due(T0 + 100 + WINDOW)).outcome is Outcome.SUCCESS


def test_declines_and_errors_are_defects() -> None:
    j = joiner()
    heard(j, "u1", "wake me up", T0)
    declined(j, "u1", T0 + 100)
    heard(j, "u2", "blah blah", T0 + 20_000)
    j.on_outcome(ErrorEvent(device_id="d1", utterance_id="u2", stage="nlu", code="nlu-failed",
                            message="x"), T0 + 20_100)
    first, second = (f.interaction for f in j.due(T0 + 60_000))
    assert (first.outcome, first.signals) == (Outcome.DEFECT, ("declined:low-confidence",))
    assert first.interpretation.intent == "alarm_set"
    assert (second.outcome, second.signals) == (Outcome.DEFECT, ("error:nlu-failed",))


def test_nothing_heard_is_no_interaction() -> None:
    j = joiner()
    j.on_outcome(ErrorEvent(device_id="d1", utterance_id="u1", stage="endpointer",
                            code="no-speech", message="x"), T0)
    assert j.due(T0 + WINDOW) == [] and j.pending == {}


def test_a_similar_request_soon_after_marks_the_first_a_repeat() -> None:
    j = joiner()
    request(j, "u1", "play despacito", T0)
    request(j, "u2", "play despacito please", T0 + 3_000)  # said again 2.9 s after
    request(j, "u3", "what's the weather", T0 + 6_000)  # different: no repeat
    first = only(j.due(T0 + 100 + WINDOW))
    assert first.outcome is Outcome.DEFECT and first.signals == ("repeat",)
    second, third = (f.interaction for f in j.due(T0 + 6_100 + WINDOW))
    assert second.outcome is Outcome.SUCCESS and third.outcome is Outcome.SUCCESS


def test_a_similar_request_after_the_repeat_window_is_not_a_repeat() -> None:
    j = joiner()
    request(j, "u1", "play despacito", T0)
    assert only(j.due(T0 + 100 + WINDOW)).outcome is Outcome.SUCCESS
    request(j, "u2", "play despacito", T0 + 100 + WINDOW + 1)
    assert only(j.due(T0 + 10 * WINDOW)).signals == ()


def test_another_devices_request_is_no_repeat() -> None:
    j = joiner()
    request(j, "u1", "play despacito", T0, device="d1")
    request(j, "u2", "play despacito", T0 + 1_000, device="d2")
    assert [f.interaction.outcome for f in j.due(T0 + 1_100 + WINDOW)] == \
        [Outcome.SUCCESS, Outcome.SUCCESS]


@pytest.mark.parametrize(("status", "outcome", "signal", "expected"), [
    (ResponseStatus.DONE, Outcome.DEFECT, "skill-defect", Outcome.DEFECT),
    (ResponseStatus.DONE, Outcome.SUCCESS, "skill-success", Outcome.SUCCESS),
    (ResponseStatus.FAILED, None, "skill-failed", Outcome.DEFECT),
])
def test_the_skills_verdict_counts(status: ResponseStatus, outcome: Outcome | None,
                                   signal: str, expected: Outcome) -> None:
    j = joiner()
    request(j, "u1", "play the beatles", T0)
    j.on_response(SkillResponse(directive_id=directive_id("u1", 0), device_id="d1",
                                utterance_id="u1", skill="media", status=status,
                                outcome=outcome))
    record = only(j.due(T0 + 100 + WINDOW))
    assert record.outcome is expected and record.signals == (signal,)


def test_a_mark_before_the_rest_arrives_is_kept() -> None:
    j = joiner()
    j.on_feedback(Feedback(device_id="d1", utterance_id="u1", kind=FeedbackKind.MISHEARD,
                           t_ms=T0))
    request(j, "u1", "play the beetles", T0 + 10)
    assert only(j.due(T0 + 110 + WINDOW)).outcome is Outcome.DEFECT


def test_late_events_are_ignored_not_a_second_record() -> None:
    j = joiner()
    request(j, "u1", "play jazz", T0)
    assert only(j.due(T0 + 100 + WINDOW)).outcome is Outcome.SUCCESS
    j.on_feedback(Feedback(device_id="d1", utterance_id="u1", kind=FeedbackKind.REJECT,
                           t_ms=T0 + 9_000))
    directive(j, "u1", T0 + 9_000)
    assert j.due(T0 + 10 * WINDOW) == [] and j.late == 2 and j.pending == {}


def test_another_devices_feedback_does_not_count() -> None:
    j = joiner()
    request(j, "u1", "play jazz", T0)
    j.on_feedback(Feedback(device_id="intruder", utterance_id="u1", kind=FeedbackKind.REJECT,
                           t_ms=T0 + 900))
    assert only(j.due(T0 + 100 + WINDOW)).outcome is Outcome.SUCCESS


def test_a_rewrite_is_the_utterance_and_what_was_heard_the_original() -> None:
    j = joiner()
    heard(j, "u1", "play the beetles", T0)
    j.on_rewrite(Rewrite(device_id="d1", utterance_id="u1", kind=EndpointKind.FINAL,
                         revision=0, original="play the beetles", rewrite="play the beatles",
                         source=RewriteSource.PRECOMPUTED, score=0.8), T0 + 10)
    directive(j, "u1", T0 + 100, intent="play_music")
    record = only(j.due(T0 + 100 + WINDOW))
    assert (record.utterance, record.original) == ("play the beatles", "play the beetles")
    assert record.to_log()["original"] == "play the beetles"


def test_sessions_split_at_gaps_and_users_come_from_context() -> None:
    j = joiner(session_gap_ms=60_000)
    for n, at in enumerate((T0, T0 + 30_000, T0 + 200_000)):
        heard(j, f"u{n}", f"request number {n}", at)
        j.on_outcome(Directive(directive_id=directive_id(f"u{n}", 0), device_id="d1",
                               utterance_id=f"u{n}", revision=0, skill="timers",
                               intent="alarm_set"), at + 100, user_id="alice")
    records = [f.interaction for f in j.due(T0 + 300_000)]
    assert records[0].session_id == records[1].session_id != records[2].session_id
    # The user is taken when the utterance is first seen (here: its transcript, no user).
    assert {r.user_id for r in records} == {"d1"}
    j2 = joiner()
    j2.on_outcome(Declined(device_id="d1", utterance_id="x", revision=0,
                           reason=DeclineReason.OUT_OF_DOMAIN), T0, user_id="alice")
    heard(j2, "x", "hello", T0 + 1)
    assert only(j2.due(T0 + WINDOW)).user_id == "alice"


def test_state_is_bounded_and_undecided_utterances_expire() -> None:
    j = joiner(limit=3, undecided_ttl_ms=10_000)
    for n in range(5):
        request(j, f"u{n}", f"request {n}", T0 + n)
    assert len(j.pending) == 3
    early = j.due(T0 + 10)  # the two oldest were written early, not lost
    assert [f.interaction.utterance_id for f in early] == ["u0", "u1"]
    heard(j, "stuck", "never decided", T0 + 20)
    # "stuck" pushed u2 out early; u3 and u4 closed their windows.
    assert [f.interaction.utterance_id for f in j.due(T0 + 200 + WINDOW)] == ["u2", "u3", "u4"]
    assert "stuck" in j.pending
    assert j.due(T0 + 20 + 10_000) == [] and j.pending == {} and j.dropped == 1
    for n in range(10):  # device sessions and early marks are bounded too
        j.on_feedback(Feedback(device_id=f"d{n}", utterance_id=f"v{n}",
                               kind=FeedbackKind.REJECT, t_ms=T0))
        heard(j, f"w{n}", "x", T0 + 30_000, device=f"d{n}")
    assert len(j.early) <= 3 and len(j.sessions) <= 3 and len(j.pending) <= 3


def test_config_is_checked() -> None:
    with pytest.raises(ValueError):
        JoinConfig(window_ms=1000, repeat_ms=2000)


class Sent:
    def __init__(self) -> None:
        self.records: list[tuple[str, Any, int | None]] = []

    async def __call__(self, short: str, key: bytes, value: bytes,
                       partition: int | None = None) -> None:
        self.records.append((short, decode(value, topics.by_short(short).codec), partition))


def raw(spec: topics.TopicSpec, message: Any) -> bytes:
    return encode(message, spec.codec)


async def test_the_service_joins_topics_and_writes_one_record() -> None:
    settings = Settings(interaction_window_s=1.0, interaction_repeat_s=1.0)
    sent = Sent()
    service = InteractionsService(settings, sent, contexts={"d1": {"user_id": "alice"}})

    def at(spec: topics.TopicSpec) -> Origin:
        return Origin(settings.topic(spec.short), 2, 0, b"d1")

    t = Transcript(device_id="d1", utterance_id="u1", kind=EndpointKind.FINAL, revision=0,
                   at_ms=900, t_ms=1000, engine="fake", nbest=(NBest(text="hi", score=0.0),))
    await service.on_event(at(topics.TRANSCRIPTS), raw(topics.TRANSCRIPTS, t), now_ms=T0)
    # An error on the transcripts topic is a stage forwarding it: not the outcome.
    err = ErrorEvent(device_id="d1", utterance_id="u1", stage="asr", code="x", message="m")
    await service.on_event(at(topics.TRANSCRIPTS), raw(topics.TRANSCRIPTS, err), now_ms=T0)
    assert service.joiner.pending["u1"].outcome_ms is None
    d = Declined(device_id="d1", utterance_id="u1", revision=0,
                 reason=DeclineReason.OUT_OF_DOMAIN)
    await service.on_event(at(topics.DIRECTIVES), raw(topics.DIRECTIVES, d), now_ms=T0 + 5)
    fb = Feedback(device_id="d1", utterance_id="u1", kind=FeedbackKind.MISHEARD, t_ms=T0)
    await service.on_event(at(topics.FEEDBACK), raw(topics.FEEDBACK, fb), now_ms=T0 + 10)
    assert await service.flush(now_ms=T0 + 500) == 0
    assert await service.flush(now_ms=T0 + 1_005) == 1
    [(short, record, partition)] = sent.records
    assert (short, partition) == ("interactions", 2)
    assert isinstance(record, Interaction) and record.user_id == "alice"
    assert record.outcome is Outcome.DEFECT
    assert record.signals == ("declined:out-of-domain", "misheard")


async def test_unsigned_feedback_is_refused_where_devices_sign() -> None:
    master = bytes(range(32))
    settings = Settings()
    sent = Sent()
    service = InteractionsService(settings, sent, gate=DeviceGate(master))
    fb = raw(topics.FEEDBACK, Feedback(device_id="d1", utterance_id="u1",
                                       kind=FeedbackKind.REJECT, t_ms=T0))
    where = settings.topic(topics.FEEDBACK.short)
    await service.on_event(Origin(where, 0, 7, b"d1"), fb, now_ms=T0)
    [(short, letter, _)] = sent.records
    assert short == "deadletter" and letter.code == "device-unauthenticated"
    assert service.joiner.early == {}
    signed = identity.sign(identity.device_key(master, "d1"), "feedback", b"d1", fb)
    await service.on_event(Origin(where, 0, 8, b"d1", signed), fb, now_ms=T0)
    assert service.joiner.early == {"u1": ["reject"]}
