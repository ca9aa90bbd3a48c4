"""The live rewrite stage: the pure Rewriter, the table layer, and the NLU service rewriting."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Mapping
from typing import Any

import pytest

from agents.base import Origin
from agents.nlu import NluService
from agents.rewriter import Rewriter, RuleTable, TableLayer
from infra.config import Settings
from models.rewrite import Candidate
from streams import topics
from streams.codec import encode
from streams.endpoint import EndpointKind, Reset, ResetReason
from streams.nlu import Interpretations
from streams.rewrite import Interaction, Rewrite, RewriteRule, RewriteSource
from tests.agents.test_nlu import ORIGIN, FakeModel, Sent, transcript


def record(f: str, rewrite: str, probability: float) -> tuple[bytes, bytes]:
    """One record of the rewrite-rules topic: key and JSON value."""
    return f.encode(), encode(RewriteRule(form=f, rewrite=rewrite, probability=probability,
                                          support=5), topics.REWRITE_RULES.codec)


def rules(*pairs: tuple[str, str, float]) -> RuleTable:
    """A rule table fed these records in order."""
    table = RuleTable()
    for f, r, p in pairs:
        table.apply(*record(f, r, p))
    return table


class Fixed:
    """A layer that proposes one fixed candidate (or none) and remembers what it learnt."""

    def __init__(self, candidate: Candidate | None) -> None:
        self.candidate = candidate
        self.asked: list[str] = []
        self.learnt: list[Interaction] = []

    def learn(self, interaction: Interaction) -> None:
        self.learnt.append(interaction)

    def propose(self, user_id: str, utterance: str,
                context: Mapping[str, Any] | None = None) -> Candidate | None:
        self.asked.append(user_id)
        return self.candidate


def test_table_layer_looks_the_form_up_and_honours_withdrawals() -> None:
    table = rules(("play the beetles", "play the beatles", 0.8))
    layer = TableLayer(table)
    found = layer.propose("u", "Play  the Beetles!")
    assert found == Candidate("play the beatles", RewriteSource.PRECOMPUTED, 0.8)
    assert layer.propose("u", "play the rolling stones") is None
    table.apply(*record("play the beetles", "", 0.0))  # a withdrawal record
    assert layer.propose("u", "play the beetles") is None
    table.apply(*record("play jazz", "play some jazz", 0.7))
    table.apply(b"play jazz", None)  # a tombstone
    assert len(layer) == 0


def test_table_skips_an_undecodable_record() -> None:
    table = rules(("stop", "stop the music", 0.9))
    table.apply(b"play jazz", b"{not json")
    table.apply(b"stop", encode(Reset(device_id="d", utterance_id="u", cancelled_revision=0,
                                      reason=ResetReason.SPEECH_RESUMED, t_ms=0),
                                topics.ENDPOINTS.codec))
    assert table.skipped == 2 and len(table) == 1
    assert TableLayer(table).propose("u", "stop") is not None


def test_first_confident_layer_wins_in_order() -> None:
    weak = Fixed(Candidate("turn the lights on", RewriteSource.ONLINE_PERSONAL, 0.3))
    personal = Fixed(Candidate("call mum", RewriteSource.ONLINE_PERSONAL, 0.9))
    glob = Fixed(Candidate("call tom", RewriteSource.ONLINE_GLOBAL, 0.95))
    rewriter = Rewriter([weak, personal, glob], min_score=0.5)
    assert rewriter.rewrite("alice", "call mom") == personal.candidate
    assert glob.asked == []  # never asked once an earlier layer answered
    assert weak.asked == ["alice"]


def test_a_rewrite_to_the_same_request_is_no_rewrite() -> None:
    same = Fixed(Candidate("Call Mom.", RewriteSource.PRECOMPUTED, 0.99))
    other = Fixed(Candidate("call tom", RewriteSource.ONLINE_GLOBAL, 0.7))
    assert Rewriter([same, other]).rewrite("u", "call mom") == other.candidate
    assert Rewriter([same]).rewrite("u", "call mom") is None
    assert Rewriter([other]).rewrite("u", "   ") is None


def test_an_empty_table_turns_rewriting_off() -> None:
    table = RuleTable()
    rewriter = Rewriter([TableLayer(table)])
    assert not rewriter.active
    table.apply(*record("a", "b", 0.9))
    assert rewriter.active  # a rule published later switches it on, no restart
    assert Rewriter([Fixed(None)]).active  # a layer without a size is always asked


def test_learn_reaches_every_layer() -> None:
    a, b = Fixed(None), Fixed(None)
    record = Interaction(session_id="s", user_id="u", device_id="d", ts=1, utterance="x",
                         outcome="success")  # type: ignore[arg-type]
    Rewriter([a, b]).learn(record)
    assert a.learnt == [record] and b.learnt == [record]


def test_min_score_is_checked() -> None:
    with pytest.raises(ValueError, match="min_score"):
        Rewriter([], min_score=1.5)


RULES = rules(("turn of the lie", "turn off the light", 0.8))


def reset(revision: int) -> bytes:
    return encode(Reset(device_id="d1", utterance_id="u1", cancelled_revision=revision,
                        reason=ResetReason.SPEECH_RESUMED, t_ms=950), topics.TRANSCRIPTS.codec)


async def _settle(service: NluService) -> None:
    tasks = [t for u in service.utterances.values() for t in u.tasks.values()]
    await asyncio.gather(*tasks, return_exceptions=True)


def summary(sent: Sent) -> list[tuple[str, object, object]]:
    return [(type(m).__name__, getattr(m, "kind", None), m.revision) for m in sent.messages]


async def test_nlu_interprets_the_rewrite_and_emits_it_first_per_revision() -> None:
    model, sent = FakeModel(), Sent()
    service = NluService(Settings(), sent, lambda: model,
                         rewriter=Rewriter([TableLayer(RULES)]))
    await service.on_event(ORIGIN, transcript(EndpointKind.SPECULATIVE, 0, "Turn of the lie."))
    await _settle(service)
    await service.on_event(ORIGIN, transcript(EndpointKind.FINAL, 0, "Turn of the lie."))
    assert summary(sent) == [("Rewrite", EndpointKind.SPECULATIVE, 0),
                             ("Interpretations", EndpointKind.SPECULATIVE, 0),
                             ("Rewrite", EndpointKind.FINAL, 0),
                             ("Interpretations", EndpointKind.FINAL, 0)]
    assert model.calls == [["turn off the light"]]  # the rewrite alone, once per revision
    rewrite, final = sent.messages[2], sent.messages[3]
    assert isinstance(rewrite, Rewrite) and isinstance(final, Interpretations)
    assert (rewrite.original, rewrite.rewrite, rewrite.source, rewrite.score) == \
        ("Turn of the lie.", "turn off the light", RewriteSource.PRECOMPUTED, 0.8)
    assert rewrite.t_ms == final.t_ms
    assert final.best is not None and final.best.intent == "iot_hue_lightoff"
    assert set(sent.partitions) == {ORIGIN.partition}  # one partition: the order holds
    service.close()


async def test_nothing_of_a_cancelled_revision_follows_its_reset() -> None:
    model, sent = FakeModel(), Sent()
    model.gate = threading.Event()
    service = NluService(Settings(), sent, lambda: model,
                         rewriter=Rewriter([TableLayer(RULES)]))
    await service.on_event(ORIGIN, transcript(EndpointKind.SPECULATIVE, 0, "turn of the lie"))
    assert await asyncio.to_thread(model.started.wait, 5)  # rewritten, being interpreted
    await service.on_event(ORIGIN, reset(0))
    model.gate.set()
    assert await asyncio.to_thread(model.finished.wait, 5)
    model.gate = None
    await service.on_event(ORIGIN, transcript(EndpointKind.SPECULATIVE, 1, "turn of the lie"))
    await _settle(service)
    await service.on_event(ORIGIN, transcript(EndpointKind.FINAL, 1, "turn of the lie"))
    assert summary(sent) == [("Reset", None, 0),
                             ("Rewrite", EndpointKind.SPECULATIVE, 1),
                             ("Interpretations", EndpointKind.SPECULATIVE, 1),
                             ("Rewrite", EndpointKind.FINAL, 1),
                             ("Interpretations", EndpointKind.FINAL, 1)]
    service.close()


@pytest.mark.parametrize("table", [RuleTable(), RULES])
async def test_no_rule_no_rewrite_event_and_the_words_as_heard(table: RuleTable) -> None:
    model, sent = FakeModel(), Sent()
    service = NluService(Settings(), sent, lambda: model,
                         rewriter=Rewriter([TableLayer(table)]))
    await service.on_event(ORIGIN, transcript(EndpointKind.FINAL, 0, "what is that now"))
    await _settle(service)
    assert summary(sent) == [("Interpretations", EndpointKind.SPECULATIVE, 0),
                             ("Interpretations", EndpointKind.FINAL, 0)]
    assert model.calls == [["what is that now"]]
    service.close()


async def test_the_personal_layer_is_asked_for_the_context_user() -> None:
    layer = Fixed(None)
    contexts = {"d1": {"user_id": "alice"}}
    service = NluService(Settings(), Sent(), FakeModel, contexts=contexts,
                         rewriter=Rewriter([layer]))
    await service.on_event(Origin("t", 0, 0, b"d1"),
                           transcript(EndpointKind.FINAL, 0, "call mom"))
    await _settle(service)
    assert layer.asked == ["alice"]
    service.close()
