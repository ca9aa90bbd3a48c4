"""No stage lets a name or what was said reach a log line, a dead letter or an error text.

Each case drives a stage's service without a broker, on input holding a
recognisable name and transcript, once with structlog capturing the events
as the call sites log them (no redaction: the call sites alone must be
clean) and once through the project's configured JSON logging (what an
operator reads, tracebacks included).
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import msgpack
import pytest
import structlog
from structlog.testing import capture_logs

from agents.arbiter import ArbiterService
from agents.asr import AsrService
from agents.base import Origin, Publisher
from agents.endpointer import EndpointerService
from agents.nlu import NluService
from agents.registry import DEFAULT_REGISTRY, Registry
from infra import logs
from infra.config import Settings
from models.asr import Float32Array, Hypothesis
from models.nlu.inference import Interpretation
from models.nlu.massive import Slot
from models.vad import SileroVad
from streams import topics
from streams.asr import NBest, Transcript
from streams.audio import AudioFrame, UtteranceStart, UtteranceStop
from streams.codec import Codec, decode, encode
from streams.context import DeviceContext
from streams.control import DeadLetter, ErrorEvent, payload_digest
from streams.directive import Declined, Directive
from streams.endpoint import Endpoint, EndpointKind
from streams.nlu import Hypothesis as Interpreted
from streams.nlu import Interpretations, SlotValue
from streams.schema import Message

NAME = "Zebulon Quarrington"
SPOKEN = f"call {NAME} on the kitchen phone"
#: What must not appear: the name (any case) and its bytes as hex.
NEEDLES = ("quarrington", "zebulon", NAME.encode().hex(), b"Quarrington".hex())

_offsets = itertools.count()


class Sent:
    """A send function keeping what a stage published."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, Message]] = []

    async def __call__(self, short: str, key: bytes, value: bytes,
                       partition: int | None = None) -> None:
        spec = topics.SKILL_DIRECTIVES if short.startswith("skill.") else topics.by_short(short)
        self.messages.append((short, decode(value, spec.codec)))

    def reports(self) -> list[Message]:
        """What describes a failure or a refusal: dead letters, errors, declines."""
        return [m for _, m in self.messages if isinstance(m, DeadLetter | ErrorEvent | Declined)]


def origin(topic: str, key: bytes = b"d1") -> Origin:
    return Origin(topic, 0, next(_offsets), key)


def packed(data: dict[str, Any]) -> bytes:
    return msgpack.packb(data, use_bin_type=True)


def start_wire(**changes: object) -> dict[str, Any]:
    data = UtteranceStart(device_id="d1", utterance_id="u1", sample_rate_hz=16000).to_wire()
    data.update(changes)
    return data


# -- the cases: each returns what its stage published ---------------------------------------

async def endpointer_bad_audio(vad: SileroVad) -> Sent:
    sent = Sent()
    svc = EndpointerService(Settings(), sent, vad=vad)
    audio = "voicestream.audio"
    await svc.handle_batch([
        (origin(audio), b"\xc1" + NAME.encode()),                              # undecodable
        (origin(audio), packed(start_wire(device_id=SPOKEN))),                  # invalid id
        (origin(audio, key=NAME.encode()), packed(start_wire(device_id=NAME))),  # key too
        (origin(audio), packed(start_wire(type=NAME))),                         # unknown type
        (origin(audio), packed(start_wire(sample_format=NAME))),                # bad enum
        (origin(audio), packed(start_wire(sample_rate_hz=NAME))),               # wrong type
        (origin(audio), packed({**start_wire(), "v": 1, "extra": SPOKEN,
                                "utterance_id": SPOKEN})),
    ])
    svc.close()
    assert len(sent.reports()) == 7
    return sent


async def context_bad_snapshot(_vad: SileroVad) -> Sent:
    sent = Sent()
    pub = Publisher("context", sent)
    good = DeviceContext(device_id="d1", contacts=(NAME,), appliances=(f"{NAME}'s lamp",),
                         states={f"{NAME}'s lamp": "on"}).to_wire()
    for bad in ({**good, "has_screen": NAME},
                {**good, "states": {f"{NAME}'s lamp": 1}},
                {**good, "contacts": [NAME, 7]},
                {**good, "device_id": NAME}):
        raw = json.dumps(bad).encode()
        assert await pub.decode(topics.CONTEXT, origin("voicestream.context"), raw) is None
    assert len(sent.reports()) == 4
    return sent


class LeakyEngine:
    """Transcribes what the test says; fails quoting its input when asked to."""

    name = "leaky"

    def __init__(self, fail: bool) -> None:
        self.fail = fail

    def transcribe(self, audio: Float32Array, *, phrases: Sequence[str] = (),
                   bias_weight: float = 0.0, phrase_bonus: float = 0.0,
                   strong_weight: float = 0.0, nbest: int = 5,
                   grammar: Sequence[str] = (), language: str = "en") -> list[Hypothesis]:
        if self.fail:
            raise RuntimeError(f"cannot bias towards {list(phrases)}")
        return [Hypothesis(SPOKEN, -0.1), Hypothesis(SPOKEN.upper(), -0.9)]


async def _asr(fail: bool) -> Sent:
    sent = Sent()
    contexts = {"d1": {"contacts": [NAME], "appliances": [f"{NAME}'s lamp"],
                       "grammar": []}}
    engine = LeakyEngine(fail)
    svc = AsrService(Settings(), sent, lambda: engine, contexts=contexts)
    audio = "voicestream.audio"
    await svc.on_audio(origin(audio), encode(UtteranceStart(
        device_id="d1", utterance_id="u1", sample_rate_hz=16000), Codec.MSGPACK))
    for seq in range(75):
        await svc.on_audio(origin(audio), encode(AudioFrame(
            device_id="d1", utterance_id="u1", seq=seq, pcm=bytes(640), sample_rate_hz=16000,
            audio_ms=seq * 20), Codec.MSGPACK))
    await svc.on_audio(origin(audio), encode(UtteranceStop(
        device_id="d1", utterance_id="u1", last_seq=74), Codec.MSGPACK))
    for kind in (EndpointKind.SPECULATIVE, EndpointKind.FINAL):
        await svc.on_endpoint_event(origin("voicestream.endpoints"), encode(Endpoint(
            device_id="d1", utterance_id="u1", kind=kind, revision=0, at_ms=1400,
            t_ms=1500), Codec.JSON))
        for utt in list(svc.utterances.values()):
            await asyncio.gather(*utt.tasks.values(), return_exceptions=True)
    svc.close()
    kinds = [type(m).__name__ for _, m in sent.messages]
    assert kinds == (["ErrorEvent"] if fail else ["Transcript", "Transcript"])
    return sent


async def asr_transcribes(_vad: SileroVad) -> Sent:
    return await _asr(fail=False)


async def asr_engine_fails(_vad: SileroVad) -> Sent:
    return await _asr(fail=True)


class LeakyModel:
    """Finds a contact slot; fails quoting its input when asked to."""

    def __init__(self, fail: bool) -> None:
        self.fail = fail

    def known_word(self, word: str) -> bool:
        return True

    def interpret_batch(self, texts: list[str], *, top_k: int = 3) -> list[list[Interpretation]]:
        if self.fail:
            raise ValueError(f"cannot read {texts}")
        out = []
        for text in texts:
            at = text.find("zebulon")
            slots = (Slot("person", text[at:at + len(NAME)], at, at + len(NAME)),) \
                if at >= 0 else ()
            out.append([Interpretation("calling_call", 0.9, slots)])
        return out


async def _nlu(fail: bool) -> Sent:
    sent = Sent()
    model = LeakyModel(fail)
    contexts = {"d1": {"contacts": [NAME]}}
    svc = NluService(Settings(), sent, lambda: model, contexts=contexts)
    for kind in (EndpointKind.SPECULATIVE, EndpointKind.FINAL):
        await svc.on_event(origin("voicestream.transcripts"), encode(Transcript(
            device_id="d1", utterance_id="u1", kind=kind, revision=0, at_ms=900, t_ms=1000,
            engine="fake", nbest=(NBest(text=SPOKEN, score=-0.1),)), Codec.JSON))
        for utt in list(svc.utterances.values()):
            await asyncio.gather(*utt.tasks.values(), return_exceptions=True)
    svc.close()
    if fail:
        assert [m.code for m in sent.reports()] == ["nlu-failed"]
    else:
        [*_, last] = [m for _, m in sent.messages]
        assert isinstance(last, Interpretations) and last.interpretations[0].slots
    return sent


async def nlu_interprets(_vad: SileroVad) -> Sent:
    return await _nlu(fail=False)


async def nlu_model_fails(_vad: SileroVad) -> Sent:
    return await _nlu(fail=True)


async def arbiter_decides(_vad: SileroVad) -> Sent:
    sent = Sent()
    contexts = {"d1": {"contacts": [NAME], "states": {f"{NAME}'s lamp": "on"}}}
    svc = ArbiterService(Settings(), sent, Registry.load(DEFAULT_REGISTRY),
                         check_liveness=False, contexts=contexts)
    slot = SlotValue(type="house_place", text=NAME, value=NAME)
    for utt, intent, score in (("u1", "iot_hue_lightoff", 0.9), ("u2", "calling_call", 0.9),
                               ("u3", "iot_hue_lightoff", 0.01)):
        await svc.on_event(origin("voicestream.interpretations"), encode(Interpretations(
            device_id="d1", utterance_id=utt, kind=EndpointKind.FINAL, revision=0, t_ms=1000,
            interpretations=(Interpreted(intent=intent, score=score, slots=(slot,),
                                         text=SPOKEN),)), Codec.JSON))
    await svc.on_event(origin("voicestream.interpretations"),
                       b'{"type": "interpretation", "text": "' + SPOKEN.encode())
    decisions = [m for s, m in sent.messages if s == "directives"]
    assert [type(m).__name__ for m in decisions] == ["Directive", "Declined", "Declined"]
    assert isinstance(decisions[0], Directive) and decisions[0].slots[0].value == NAME
    assert [m.code for m in sent.reports() if isinstance(m, DeadLetter)] == ["undecodable"]
    return sent


CASES: list[Callable[[SileroVad], Awaitable[Sent]]] = [
    endpointer_bad_audio, context_bad_snapshot, asr_transcribes, asr_engine_fails,
    nlu_interprets, nlu_model_fails, arbiter_decides,
]


@pytest.fixture(scope="module")
def vad() -> SileroVad:
    return SileroVad()


def leaks(text: str) -> list[str]:
    return [n for n in NEEDLES if n.lower() in text.lower()]


@pytest.mark.parametrize("case", CASES, ids=[c.__name__ for c in CASES])
async def test_call_sites_log_no_name_or_speech(case: Callable[[SileroVad], Awaitable[Sent]],
                                                vad: SileroVad) -> None:
    with capture_logs() as events:
        sent = await case(vad)
    assert events, "the case logged nothing: it tests nothing"
    assert leaks(repr(events)) == [], [e for e in events if leaks(repr(e))]
    reports = [json.dumps(m.to_wire(), default=repr) for m in sent.reports()]
    assert leaks("\n".join(reports)) == [], reports


@pytest.mark.parametrize("case", CASES, ids=[c.__name__ for c in CASES])
async def test_configured_logs_hold_no_name_or_speech(
        case: Callable[[SileroVad], Awaitable[Sent]], vad: SileroVad,
        capsys: pytest.CaptureFixture[str]) -> None:
    logs.configure("json", "debug")
    try:
        await case(vad)
    finally:
        structlog.reset_defaults()
    lines = capsys.readouterr().err.splitlines()
    assert lines
    assert [line for line in lines if leaks(line)] == []


def test_dead_letters_describe_a_payload_by_size_and_digest() -> None:
    sent = Sent()
    raw = b"\xc1" + NAME.encode()
    where = origin("voicestream.context", key=b"d1")
    assert asyncio.run(Publisher("context", sent).decode(topics.CONTEXT, where, raw)) is None
    [(short, letter)] = sent.messages
    assert short == "deadletter" and isinstance(letter, DeadLetter)
    assert (letter.code, letter.key, letter.offset) == ("undecodable", "d1", where.offset)
    assert (letter.size_bytes, letter.digest) == (len(raw), payload_digest(raw))
    assert "excerpt_hex" not in letter.to_wire()
