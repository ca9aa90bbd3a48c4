"""The live rewrite stage: the pure Rewriter, the table layer, and the NLU service rewriting."""

from __future__ import annotations

import asyncio
import hashlib
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from agents.base import Origin
from agents.nlu import NluService
from agents.rewriter import (
    OnlineLayer,
    Rewriter,
    RuleTable,
    TableLayer,
    _interaction,
    load_online,
)
from infra.config import Settings
from models.rewrite import Candidate
from models.rewrite.online import OnlineRewriter, OnlineStateError
from streams import topics
from streams.codec import encode
from streams.endpoint import EndpointKind, Reset, ResetReason
from streams.nlu import Interpretations
from streams.rewrite import (
    Interaction,
    Meaning,
    Outcome,
    Rewrite,
    RewriteRule,
    RewriteSource,
    form,
)
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


async def test_a_rewrite_and_its_interpretation_stay_adjacent_when_sends_are_slow() -> None:
    # The final arrives while the speculative's records are still being sent (a
    # broker's acknowledgement takes a while): its pair waits for the first pair.
    sent = Sent()
    first_send_started, first_send_may_finish = asyncio.Event(), asyncio.Event()

    async def slow(short: str, key: bytes, value: bytes, partition: int | None = None) -> None:
        if not first_send_started.is_set():
            first_send_started.set()
            await first_send_may_finish.wait()
        await sent(short, key, value, partition)

    model = FakeModel()
    service = NluService(Settings(), slow, lambda: model,
                         rewriter=Rewriter([TableLayer(RULES)]))
    await service.on_event(ORIGIN, transcript(EndpointKind.SPECULATIVE, 0, "turn of the lie"))
    speculative = asyncio.gather(*service.utterances["u1"].tasks.values())
    await first_send_started.wait()  # the speculative's rewrite is on its way
    final = asyncio.create_task(
        service.on_event(ORIGIN, transcript(EndpointKind.FINAL, 0, "turn of the lie")))
    for _ in range(20):
        await asyncio.sleep(0)
    first_send_may_finish.set()
    await asyncio.gather(speculative, final)
    assert summary(sent) == [("Rewrite", EndpointKind.SPECULATIVE, 0),
                             ("Interpretations", EndpointKind.SPECULATIVE, 0),
                             ("Rewrite", EndpointKind.FINAL, 0),
                             ("Interpretations", EndpointKind.FINAL, 0)]
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


# -- the online layers inside the live stage ------------------------------------------

class HashEmbedder:
    """Unit vectors from hashed words and character trigrams: similar texts, near vectors."""

    dim = 384

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), np.float32)
        for row, text in enumerate(texts):
            words = form(text).split()
            grams = [w[i:i + 3] for w in words for i in range(max(1, len(w) - 2))]
            for token in [*words, *grams]:
                digest = hashlib.blake2b(token.encode(), digest_size=4).digest()
                out[row, int.from_bytes(digest, "little") % self.dim] += 1.0
            out[row] /= max(float(np.linalg.norm(out[row])), 1e-9)
        return out


def said(user: str, session: str, ts: int, text: str, outcome: Outcome,
         intent: str = "play_music") -> Interaction:
    return Interaction(session_id=session, user_id=user, device_id=f"d-{user}", ts=ts,
                       utterance=text, interpretation=Meaning(intent=intent), outcome=outcome)


#: What the crowd succeeds with (the global layer's entries).
CROWD = [said(u, f"{u}{k}", 1_000 * k, text, Outcome.SUCCESS, intent)
         for k, u in enumerate(["ann", "bob", "cat"] * 3)
         for text, intent in (("play some jazz", "play_music"),
                              ("set an alarm for seven", "alarm_set"))]


def online(personal: bool = True) -> OnlineLayer:
    layer = OnlineRewriter(HashEmbedder(), personal=personal)
    for r in CROWD:
        layer.learn(r)
    return OnlineLayer(layer)


def test_online_layer_learns_a_users_rephrase_live_and_only_when_asked() -> None:
    layer = online()
    assert layer.propose("zoe", "play heritage sing") is None
    # Zoe is misheard, then rephrases and is served: her fix, learned on the next lookup.
    layer.learn(said("zoe", "z1", 50_000, "play heritage sing", Outcome.DEFECT))
    layer.learn(said("zoe", "z1", 58_000, "play songs by arijit singh", Outcome.SUCCESS))
    assert layer.learned == 0  # queued: nothing ran on the caller's (event-loop) thread
    found = layer.propose("zoe", "Play Heritage Sing.")
    assert layer.learned == 2
    assert found is not None
    assert (found.text, found.source) == ("play songs by arijit singh",
                                          RewriteSource.ONLINE_PERSONAL)
    # The same words from someone else: not their fix (at most the crowd's, never Zoe's).
    other = layer.propose("yan", "play heritage sing")
    assert other is None or other.source is RewriteSource.ONLINE_GLOBAL


def test_online_layer_queue_is_bounded() -> None:
    layer = OnlineLayer(OnlineRewriter(HashEmbedder()), limit=3)
    for k in range(5):
        layer.learn(said("u", "s", k, f"play track {k}", Outcome.SUCCESS))
    assert layer.dropped == 2
    assert layer.catch_up() == 3
    assert layer.rewriter.forms == ["play track 2", "play track 3", "play track 4"]


def test_history_records_decode_and_anything_else_is_skipped() -> None:
    record = said("zoe", "z1", 58_000, "play songs by arijit singh", Outcome.SUCCESS)
    assert _interaction(encode(record, topics.INTERACTIONS.codec)) == record
    assert _interaction(b"{not json") is None
    assert _interaction(None) is None
    reset = Reset(device_id="d", utterance_id="u", cancelled_revision=0,
                  reason=ResetReason.SPEECH_RESUMED, t_ms=0)
    assert _interaction(encode(reset, topics.ENDPOINTS.codec)) is None
    layer = OnlineLayer(OnlineRewriter(HashEmbedder()))
    layer.learn(record)
    assert layer.pending() == 1 and layer.catch_up() == 1 and layer.pending() == 0


def test_the_table_comes_before_the_online_layer() -> None:
    table = rules(("play heritage sing", "play arijit singh", 0.9))
    layer = online()
    layer.learn(said("zoe", "z1", 50_000, "play heritage sing", Outcome.DEFECT))
    layer.learn(said("zoe", "z1", 58_000, "play songs by arijit singh", Outcome.SUCCESS))
    rewriter = Rewriter([TableLayer(table), layer])
    assert rewriter.active
    first = rewriter.rewrite("zoe", "play heritage sing")
    assert first == Candidate("play arijit singh", RewriteSource.PRECOMPUTED, 0.9)
    table.apply(*record("play heritage sing", "", 0.0))  # withdrawn: the online layer answers
    second = rewriter.rewrite("zoe", "play heritage sing")
    assert second is not None and second.source is RewriteSource.ONLINE_PERSONAL


def test_load_online_without_a_directory_or_an_embedder_is_the_table_only(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert load_online("") is None
    import models.rewrite.embedder as embedder

    monkeypatch.setattr(embedder, "model_dir", lambda: tmp_path / "no-build")
    saved = online().rewriter.save(tmp_path / "online")
    assert load_online(str(saved)) is None  # warned, not raised: the worker still runs


@pytest.mark.parametrize(("damage", "code"), [
    (lambda d: (d / "state.json").unlink(), "online-state-missing"),
    (lambda d: (d / "state.json").write_text('{"format": 1,\n "forms": ['),
     "online-state-corrupt"),
    (lambda d: (d / "global.usearch").write_bytes(b"not an index"), "online-state-corrupt"),
])
def test_load_online_of_a_damaged_directory_is_a_coded_error(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
        damage: Callable[[Path], object], code: str) -> None:
    import models.rewrite.embedder as embedder

    monkeypatch.setattr(embedder, "Embedder", lambda threads=1: HashEmbedder())
    saved = online().rewriter.save(tmp_path / "online")
    good = load_online(str(saved))
    assert good is not None and good.propose("bob", "play jazz") is not None
    damage(saved)
    with pytest.raises(OnlineStateError) as caught:
        load_online(str(saved))
    assert caught.value.code == code
