"""One outcome per utterance: errors travel in band through every stage to ``directives``.

The ASR, NLU and arbiter services are chained through recorders (no broker):
what one stage writes is what the next one reads, re-deliveries included.
"""

from __future__ import annotations

from typing import Any

from agents.arbiter import ArbiterService
from agents.asr import AsrService
from agents.base import Origin
from agents.ledger import Ledger
from agents.nlu import NluService
from agents.registry import DEFAULT_REGISTRY, Registry
from infra.config import Settings
from streams import topics
from streams.client import is_outcome
from streams.codec import Codec, decode, encode
from streams.control import ErrorEvent
from streams.directive import Declined, Directive
from streams.endpoint import Endpoint, EndpointKind
from streams.nlu import Hypothesis, Interpretations

REGISTRY = Registry.load(DEFAULT_REGISTRY)


class Topics:
    """Every record a stage wrote, by topic, as raw values (what the next stage reads)."""

    def __init__(self) -> None:
        self.records: list[tuple[str, bytes]] = []

    async def __call__(self, short: str, key: bytes, value: bytes,
                       partition: int | None = None) -> None:
        self.records.append((short, value))

    def raw(self, short: str) -> list[bytes]:
        return [v for s, v in self.records if s == short]

    def on(self, short: str) -> list[Any]:
        return [decode(v, topics.by_short(short).codec) for v in self.raw(short)]


class NoEngine:
    name = "none"

    def transcribe(self, *args: Any, **kwargs: Any) -> list[Any]:
        raise AssertionError("nothing is decoded after an end-pointer error")


class NoModel:
    def interpret(self, *args: Any, **kwargs: Any) -> list[Any]:
        raise AssertionError("nothing is interpreted after an end-pointer error")


def origin(short: str, offset: int) -> Origin:
    return Origin(f"voicestream.{short}", 0, offset, b"d1")


def error(code: str = "stream-timeout", revision: int = 0) -> bytes:
    return encode(ErrorEvent(device_id="d1", utterance_id="u1", stage="endpointer", code=code,
                             message="no audio and no stop for 10 s", revision=revision,
                             t_ms=4000), Codec.JSON)


async def test_an_end_pointer_error_reaches_directives_once_through_every_stage() -> None:
    out, ledger = Topics(), Ledger()
    asr = AsrService(Settings(), out, NoEngine, ledger=ledger)
    nlu = NluService(Settings(), out, NoModel, ledger=ledger)
    arbiter = ArbiterService(Settings(), out, REGISTRY, check_liveness=False, ledger=ledger)
    # Delivered twice, as after a rebalance: forwarded and decided once all the same.
    for offset in (0, 0):
        await asr.on_endpoint_event(origin("endpoints", offset), error())
    for offset, raw in enumerate(out.raw("transcripts") * 2):
        await nlu.on_event(origin("transcripts", offset), raw)
    for offset, raw in enumerate(out.raw("interpretations") * 2):
        await arbiter.on_event(origin("interpretations", offset), raw)
    [forwarded] = out.on("transcripts")
    assert out.on("interpretations") == [forwarded]
    [outcome] = out.on("directives")
    assert isinstance(outcome, ErrorEvent)
    assert (outcome.stage, outcome.code, outcome.utterance_id) == \
        ("endpointer", "stream-timeout", "u1")
    assert ledger.finished("u1", "d1", "arbiter")
    nlu.close()


def interpretations(kind: EndpointKind, revision: int = 0) -> bytes:
    hyp = Hypothesis(intent="iot_wemo_off", score=0.9, text="turn off the plug")
    return encode(Interpretations(device_id="d1", utterance_id="u1", kind=kind,
                                  revision=revision, t_ms=1000, interpretations=(hyp,)),
                  Codec.JSON)


async def test_an_error_ends_an_utterance_whose_decision_was_held() -> None:
    out = Topics()
    arbiter = ArbiterService(Settings(), out, REGISTRY, check_liveness=False)
    await arbiter.on_event(origin("interpretations", 0),
                           interpretations(EndpointKind.SPECULATIVE))
    await arbiter.on_event(origin("interpretations", 1), error("superseded"))
    # The final of the held revision, had it crossed the error, releases nothing.
    await arbiter.on_event(origin("interpretations", 2), interpretations(EndpointKind.FINAL))
    assert [type(m) for m in out.on("directives")] == [ErrorEvent]
    assert out.raw("skill.smart-home") == []


async def test_an_error_after_the_decision_is_not_a_second_outcome() -> None:
    out = Topics()
    arbiter = ArbiterService(Settings(), out, REGISTRY, check_liveness=False)
    await arbiter.on_event(origin("interpretations", 0), interpretations(EndpointKind.FINAL))
    await arbiter.on_event(origin("interpretations", 1), error("superseded"))
    assert [type(m) for m in out.on("directives")] == [Directive]


async def test_an_nlu_error_is_the_outcome_not_a_decline() -> None:
    out = Topics()
    arbiter = ArbiterService(Settings(), out, REGISTRY, check_liveness=False)
    await arbiter.on_event(origin("interpretations", 0), encode(ErrorEvent(
        device_id="d1", utterance_id="u1", stage="nlu", code="nlu-empty-transcript",
        message="nothing to interpret"), Codec.JSON))
    [outcome] = out.on("directives")
    assert not isinstance(outcome, Declined)
    assert isinstance(outcome, ErrorEvent) and outcome.stage == "nlu"


async def test_a_final_end_point_is_not_an_error() -> None:
    # The forwarding is for errors only: end-points take the normal path.
    out = Topics()
    asr = AsrService(Settings(), out, NoEngine)
    await asr.on_endpoint_event(origin("endpoints", 0), encode(Endpoint(
        device_id="d1", utterance_id="u1", kind=EndpointKind.FINAL, revision=0, at_ms=900,
        t_ms=1700), Codec.JSON))
    assert not any(isinstance(m, ErrorEvent) and m.stage == "endpointer"
                   for m in out.on("transcripts"))


def test_an_error_counts_as_the_outcome_only_where_the_arbiter_wrote_it() -> None:
    message = decode(error(), Codec.JSON)
    assert is_outcome(message, "voicestream.directives")
    assert is_outcome(message, "directives") and is_outcome(message, "replay.7.directives")
    assert not is_outcome(message, "voicestream.endpoints")
    assert not is_outcome(message, "voicestream.interpretations")
