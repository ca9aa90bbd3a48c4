"""The NLU stage: the pure core with a fake model, the service's revision protocol, the model."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from agents.base import Origin
from agents.nlu import NluError, NluService, Understander, nlu_text
from infra.config import Settings
from models.nlu.inference import Interpretation
from models.nlu.massive import Slot
from streams import topics
from streams.asr import NBest, Partial, Transcript
from streams.codec import Codec, decode, encode
from streams.control import ErrorEvent
from streams.endpoint import EndpointKind, Reset, ResetReason
from streams.nlu import Interpretations


class FakeModel:
    """Intent by keyword; optionally blocks until released (to race a reset)."""

    def __init__(self) -> None:
        self.gate: threading.Event | None = None
        self.calls: list[list[str]] = []
        self.started = threading.Event()
        self.finished = threading.Event()

    def known_word(self, word: str) -> bool:
        return word.isalpha() and not word.startswith("zq")

    def interpret_batch(self, texts: list[str], *, top_k: int = 3) -> list[list[Interpretation]]:
        self.calls.append(texts)
        self.started.set()
        if self.gate is not None:
            self.gate.wait(5)
        self.finished.set()
        out = []
        for t in texts:
            if "light" in t:
                start = t.index("light")
                slots = (Slot("device_type", "light", start, start + 5),)
                out.append([Interpretation("iot_hue_lightoff", 0.8, slots),
                            Interpretation("iot_wemo_off", 0.2, slots)])
            else:
                out.append([Interpretation("general_quirky", 0.6, ()),
                            Interpretation("qa_factoid", 0.4, ())])
        return out


def test_asr_and_nlu_scores_combine_and_equal_meanings_merge() -> None:
    core = Understander(FakeModel(), sharpness=1.0)
    nbest = [NBest(text="turn off the light", score=-0.1),
             NBest(text="turn of the light", score=-0.1),
             NBest(text="turn off the lie", score=-0.1)]
    hyps = core.interpret(nbest, None)
    best = hyps[0]
    # Two of three equally likely transcripts say lightoff with the same slot: merged.
    assert best.intent == "iot_hue_lightoff"
    assert best.score == pytest.approx(2 / 3 * 0.8, abs=1e-3)
    assert best.asr_rank == 0 and best.slots[0].value == "light"
    assert [h.intent for h in hyps][:2] == ["iot_hue_lightoff", "general_quirky"]
    assert sum(h.score for h in hyps) <= 1.0 + 1e-6


def test_asr_posterior_follows_the_scores() -> None:
    core = Understander(FakeModel(), sharpness=5.0)
    hyps = core.interpret([NBest(text="what now", score=-0.1),
                           NBest(text="the light", score=-1.0)], None)
    quirky = next(h for h in hyps if h.intent == "general_quirky")
    light = next(h for h in hyps if h.intent == "iot_hue_lightoff")
    assert quirky.asr_prob > 0.95 and light.asr_prob < 0.05 and quirky.score > light.score


@pytest.mark.parametrize(("nbest", "code"), [
    ([], "nlu-empty-transcript"),
    ([NBest(text="   ", score=0.0)], "nlu-empty-transcript"),
    ([NBest(text="word " * 200, score=0.0)], "nlu-too-long"),
])
def test_unreadable_transcripts_get_a_coded_error(nbest: list[NBest], code: str) -> None:
    with pytest.raises(NluError) as err:
        Understander(FakeModel()).interpret(nbest, None)
    assert err.value.code == code


def test_garbage_gets_a_low_score() -> None:
    core = Understander(FakeModel())
    [normal] = core.interpret([NBest(text="what is that now", score=0.0)], None)[:1]
    garbage = core.interpret([NBest(text="zqx zqv zqk zqp", score=0.0)], None)[0]
    assert normal.score == pytest.approx(0.6) and garbage.score < 0.05


def test_asr_text_is_written_the_way_the_model_was_trained() -> None:
    assert nlu_text("Wake me up at 730.") == "wake me up at seven thirty"
    assert nlu_text("Set a timer for 10 minutes!") == "set a timer for ten minutes"


class Sent:
    def __init__(self) -> None:
        self.messages: list[Any] = []
        #: The partition each record was pinned to (None: the partitioner chose).
        self.partitions: list[int | None] = []

    async def __call__(self, short: str, key: bytes, value: bytes,
                       partition: int | None = None) -> None:
        self.partitions.append(partition)
        self.messages.append(decode(value, topics.by_short(short).codec))


def transcript(kind: EndpointKind, revision: int, text: str = "turn off the light") -> bytes:
    return encode(Transcript(device_id="d1", utterance_id="u1", kind=kind, revision=revision,
                             at_ms=900, t_ms=1000 + revision, engine="fake",
                             nbest=(NBest(text=text, score=-0.1),)), Codec.JSON)


ORIGIN = Origin("voicestream.transcripts", 0, 0, b"d1")


async def _settle(service: NluService) -> None:
    """Wait until the work in flight has finished (each task emits before it ends)."""
    tasks = [t for u in service.utterances.values() for t in u.tasks.values()]
    await asyncio.gather(*tasks, return_exceptions=True)


async def test_reset_while_nlu_is_running_drops_that_revision() -> None:
    model = FakeModel()
    model.gate = threading.Event()
    sent = Sent()
    service = NluService(Settings(), sent, lambda: model)
    await service.on_event(ORIGIN, transcript(EndpointKind.SPECULATIVE, 0))
    # The model is now busy with revision 0.
    assert await asyncio.to_thread(model.started.wait, 5)
    await service.on_event(ORIGIN, encode(Reset(
        device_id="d1", utterance_id="u1", cancelled_revision=0,
        reason=ResetReason.SPEECH_RESUMED, t_ms=950), Codec.JSON))
    model.gate.set()
    assert await asyncio.to_thread(model.finished.wait, 5)  # the cancelled work ends
    model.gate = None
    await service.on_event(ORIGIN, transcript(EndpointKind.SPECULATIVE, 1))
    await _settle(service)
    await service.on_event(ORIGIN, transcript(EndpointKind.FINAL, 1))
    kinds = [(type(m).__name__, getattr(m, "kind", None), getattr(m, "revision", None))
             for m in sent.messages]
    assert kinds == [("Reset", None, 0),  # a reset's revision is the cancelled one
                     ("Interpretations", EndpointKind.SPECULATIVE, 1),
                     ("Interpretations", EndpointKind.FINAL, 1)]
    final = sent.messages[-1]
    assert isinstance(final, Interpretations) and final.best is not None
    assert final.best.intent == "iot_hue_lightoff" and final.revision == 1
    service.close()


async def test_partial_transcripts_are_acknowledged_and_never_interpreted() -> None:
    sent, model = Sent(), FakeModel()
    service = NluService(Settings(), sent, lambda: model)
    acked: list[int] = []
    for seq in range(3):
        await service.on_event(ORIGIN, encode(Partial(
            device_id="d1", utterance_id="u1", revision=0, t_ms=500 * (seq + 1),
            text="turn off", seq=seq), Codec.JSON), ack=lambda: acked.append(1))
    assert len(acked) == 3 and service.utterances == {} and sent.messages == []
    await service.on_event(ORIGIN, transcript(EndpointKind.SPECULATIVE, 0))
    await _settle(service)
    await service.on_event(ORIGIN, transcript(EndpointKind.FINAL, 0))
    assert [getattr(m, "kind", None) for m in sent.messages] == \
        [EndpointKind.SPECULATIVE, EndpointKind.FINAL]
    service.close()


async def test_an_utterance_idle_while_asr_is_slow_is_still_interpreted() -> None:
    # The reset arrives, then ASR takes longer than the idle timeout to decode the
    # new revision: its transcripts are still interpreted, not ignored.
    sent = Sent()
    service = NluService(Settings(), sent, FakeModel)
    await service.on_event(ORIGIN, encode(Reset(
        device_id="d1", utterance_id="u1", cancelled_revision=0,
        reason=ResetReason.SPEECH_RESUMED, t_ms=950), Codec.JSON))
    service.expire(now=1e12)
    assert service.utterances == {}
    await service.on_event(ORIGIN, transcript(EndpointKind.SPECULATIVE, 1))
    await _settle(service)
    await service.on_event(ORIGIN, transcript(EndpointKind.FINAL, 1))
    assert [type(m).__name__ for m in sent.messages] == ["Reset", "Interpretations",
                                                         "Interpretations"]
    service.close()


async def test_each_utterance_of_a_device_is_interpreted_when_transcripts_interleave() -> None:
    sent = Sent()
    service = NluService(Settings(), sent, FakeModel)

    def of(utt: str, kind: EndpointKind) -> bytes:
        return encode(Transcript(device_id="d1", utterance_id=utt, kind=kind, revision=0,
                                 at_ms=900, t_ms=1000, engine="fake",
                                 nbest=(NBest(text="turn off the light", score=-0.1),)),
                      Codec.JSON)

    await service.on_event(ORIGIN, of("u1", EndpointKind.SPECULATIVE))
    await _settle(service)
    await service.on_event(ORIGIN, of("u2", EndpointKind.SPECULATIVE))
    await _settle(service)
    await service.on_event(ORIGIN, of("u1", EndpointKind.FINAL))
    await service.on_event(ORIGIN, of("u2", EndpointKind.FINAL))
    finals = [m.utterance_id for m in sent.messages
              if isinstance(m, Interpretations) and m.kind is EndpointKind.FINAL]
    assert finals == ["u1", "u2"]
    service.close()


async def test_empty_transcript_ends_with_a_coded_error() -> None:
    sent = Sent()
    service = NluService(Settings(), sent, FakeModel)
    await service.on_event(ORIGIN, transcript(EndpointKind.SPECULATIVE, 0, text=""))
    await _settle(service)
    assert sent.messages == []  # errors wait for the final: a reset may still come
    await service.on_event(ORIGIN, transcript(EndpointKind.FINAL, 0, text=""))
    [error] = sent.messages
    assert isinstance(error, ErrorEvent) and error.code == "nlu-empty-transcript"
    service.close()


async def test_missing_model_is_a_coded_error_not_a_crash() -> None:
    from models.nlu.inference import NluModelMissing

    def missing() -> Any:
        raise NluModelMissing("no model")

    sent = Sent()
    service = NluService(Settings(), sent, missing)
    await service.on_event(ORIGIN, transcript(EndpointKind.FINAL, 0))
    await _settle(service)
    [error] = [m for m in sent.messages if isinstance(m, ErrorEvent)]
    assert error.code == "nlu-model-missing"
    service.close()
