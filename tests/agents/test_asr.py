"""The ASR stage: the revision protocol (pure) and the service with a scripted engine."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
from collections.abc import Sequence

import pytest

from agents.asr import AsrService, Result
from agents.base import Origin
from agents.ledger import Ledger
from agents.revisions import Cancel, Decode, Emit, RevisionTracker
from infra.config import Settings
from models.asr import AsrError, Float32Array, Hypothesis, WordTime
from streams import topics
from streams.asr import Transcript
from streams.audio import AudioFrame, UtteranceStart, UtteranceStop
from streams.codec import Codec, decode, encode
from streams.control import ErrorEvent
from streams.endpoint import Endpoint, EndpointKind, Reset, ResetReason
from streams.schema import Message

SPEC, FINAL = EndpointKind.SPECULATIVE, EndpointKind.FINAL


def ep(kind: EndpointKind, rev: int, at: int = 1000, t: int = 1300, utt: str = "u"
       ) -> Endpoint:
    return Endpoint(device_id="d", utterance_id=utt, kind=kind, revision=rev, at_ms=at, t_ms=t)


def reset(rev: int) -> Reset:
    return Reset(device_id="d", utterance_id="u", cancelled_revision=rev,
                 reason=ResetReason.SPEECH_RESUMED, t_ms=1500)


def result(text: str = "hello") -> Result:
    return Result([Hypothesis(text, -0.5)], 1000)


def test_speculative_decodes_and_final_reuses() -> None:
    tr = RevisionTracker()
    assert tr.on_endpoint(ep(SPEC, 0)) == [Decode(0, 1000, 1300)]
    assert tr.on_result(0, result(), 1300) == [Emit(0, SPEC, 1300)]
    assert tr.on_endpoint(ep(FINAL, 0, t=1800)) == [Emit(0, FINAL, 1800)]
    assert tr.done


def test_final_before_result_waits_for_it() -> None:
    tr = RevisionTracker()
    tr.on_endpoint(ep(SPEC, 0))
    assert tr.on_endpoint(ep(FINAL, 0, t=1800)) == []
    assert tr.on_result(0, result(), 1300) == [Emit(0, SPEC, 1300), Emit(0, FINAL, 1800)]


def test_reset_drops_a_result_that_arrives_later() -> None:
    tr = RevisionTracker()
    tr.on_endpoint(ep(SPEC, 0))
    assert tr.on_reset(reset(0)) == [Cancel(0)]
    assert tr.on_result(0, result(), 1300) == []
    assert tr.on_endpoint(ep(SPEC, 1, at=2500, t=2800)) == [Decode(1, 2500, 2800)]
    assert tr.on_result(1, result("revised"), 2800) == [Emit(1, SPEC, 2800)]
    assert tr.on_endpoint(ep(FINAL, 1)) == [Emit(1, FINAL, 1300)]


def test_each_revision_is_decoded_once() -> None:
    tr = RevisionTracker()
    tr.on_endpoint(ep(SPEC, 0))
    assert tr.on_endpoint(ep(SPEC, 0)) == []


def test_final_without_speculative_decodes() -> None:
    tr = RevisionTracker()
    assert tr.on_endpoint(ep(FINAL, 0)) == [Decode(0, 1000, 1300)]
    assert tr.on_result(0, result(), 1300) == [Emit(0, SPEC, 1300), Emit(0, FINAL, 1300)]


class ScriptedEngine:
    """An engine whose answer and timing the test controls."""

    name = "scripted"

    def __init__(self, gate: asyncio.Event | None = None) -> None:
        self.calls: list[tuple[int, tuple[str, ...]]] = []
        self.release = gate

    def transcribe(self, audio: Float32Array, *, phrases: Sequence[str] = (),
                   bias_weight: float = 0.0, phrase_bonus: float = 0.0,
                   strong_weight: float = 0.0, nbest: int = 5,
                   grammar: Sequence[str] = (), language: str = "en") -> list[Hypothesis]:
        self.calls.append((audio.size, tuple(phrases)))
        ms = audio.size // 16
        return [Hypothesis(f"heard {audio.size} samples", -0.1,
                           (WordTime("heard", 0, ms // 2), WordTime(str(audio.size), ms // 2, ms),
                            WordTime("samples", ms, ms)))]


class Sent:
    def __init__(self) -> None:
        self.messages: list[Message] = []
        #: The partition each record was pinned to (None: the partitioner chose).
        self.partitions: list[int | None] = []

    async def __call__(self, short: str, key: bytes, value: bytes,
                       partition: int | None = None) -> None:
        self.partitions.append(partition)
        self.messages.append(decode(value, topics.by_short(short).codec))


_offsets = itertools.count()


def origin(n: int | None = None) -> Origin:
    """Where a record came from: each at a new offset, as a broker gives them."""
    return Origin("t", 0, next(_offsets) if n is None else n, b"d")


async def feed_audio(svc: AsrService, seconds: float, *, stop: bool = True, utt: str = "u"
                     ) -> None:
    await svc.on_audio(origin(), encode(UtteranceStart(device_id="d", utterance_id=utt,
                                                       sample_rate_hz=16000), Codec.MSGPACK))
    for seq in range(int(seconds * 50)):
        frame = AudioFrame(device_id="d", utterance_id=utt, seq=seq, pcm=bytes(640),
                           sample_rate_hz=16000, audio_ms=seq * 20)
        await svc.on_audio(origin(), encode(frame, Codec.MSGPACK))
    if stop:
        await svc.on_audio(origin(), encode(UtteranceStop(device_id="d", utterance_id=utt,
                                                          last_seq=0), Codec.MSGPACK))


async def endpoint_event(svc: AsrService, message: Message) -> None:
    await svc.on_endpoint_event(origin(), encode(message, Codec.JSON))


async def settle(svc: AsrService) -> None:
    while svc._recovery_tasks:  # audio being read back, then the records that waited
        await asyncio.gather(*list(svc._recovery_tasks), return_exceptions=True)
    for utt in list(svc.utterances.values()):
        for task in list(utt.tasks.values()):
            await asyncio.gather(task, return_exceptions=True)


def kinds(sent: Sent) -> list[tuple[str, object, int]]:
    out: list[tuple[str, object, int]] = []
    for m in sent.messages:
        if isinstance(m, Transcript):
            out.append(("transcript", m.kind.value, m.revision))
        elif isinstance(m, ErrorEvent):
            out.append(("error", m.code, m.revision))
    return out


async def test_decode_uses_audio_to_end_of_speech_and_context_phrases() -> None:
    sent, engine = Sent(), ScriptedEngine()
    contexts = {"d": {"contacts": ["Ada Lovelace"], "appliances": ["oven"]}}
    svc = AsrService(Settings(), sent, lambda: engine, contexts=contexts)
    await feed_audio(svc, 2.0)
    await endpoint_event(svc, ep(SPEC, 0, at=1000))
    await settle(svc)
    await endpoint_event(svc, ep(FINAL, 0, at=1000, t=1800))
    assert kinds(sent) == [("transcript", "speculative", 0), ("transcript", "final", 0)]
    assert engine.calls == [(16000 * 1200 // 1000, ("Ada Lovelace", "oven"))]
    final = sent.messages[-1]
    assert isinstance(final, Transcript) and final.nbest[0].text == "heard 19200 samples"
    # The engine's word times travel on the wire with the best hypothesis.
    assert [(w.word, w.start_ms, w.end_ms) for w in final.nbest[0].words] == \
        [("heard", 0, 600), ("19200", 600, 1200), ("samples", 1200, 1200)]
    assert final.biased_phrases == 2
    assert svc.utterances == {}


async def test_reset_while_decoding_never_emits_the_cancelled_revision() -> None:
    sent, engine = Sent(), ScriptedEngine()
    svc = AsrService(Settings(), sent, lambda: engine)
    await feed_audio(svc, 0.5, stop=False)  # audio up to 500 ms only: the decode waits
    await endpoint_event(svc, ep(SPEC, 0, at=1000))
    await asyncio.sleep(0)
    await endpoint_event(svc, reset(0))
    await endpoint_event(svc, ep(SPEC, 1, at=1500, t=1800))
    for seq in range(25, 150):
        frame = AudioFrame(device_id="d", utterance_id="u", seq=seq, pcm=bytes(640),
                           sample_rate_hz=16000, audio_ms=seq * 20)
        await svc.on_audio(origin(), encode(frame, Codec.MSGPACK))
    await settle(svc)
    await endpoint_event(svc, ep(FINAL, 1, at=1500, t=2300))
    assert kinds(sent) == [("transcript", "speculative", 1), ("transcript", "final", 1)]
    assert len(engine.calls) == 1  # revision 0 never reached the engine


async def test_next_utterance_starting_before_the_final_end_point_loses_nothing() -> None:
    # Under load the end-pointer's final decision on "u" reaches ASR after the
    # device has begun its next utterance "v": "u" is still transcribed.
    sent, engine = Sent(), ScriptedEngine()
    svc = AsrService(Settings(), sent, lambda: engine)
    await feed_audio(svc, 2.0, utt="u")
    await endpoint_event(svc, ep(SPEC, 0, at=1000, utt="u"))
    await feed_audio(svc, 1.0, stop=False, utt="v")
    await settle(svc)
    await endpoint_event(svc, ep(FINAL, 0, at=1000, t=1800, utt="u"))
    await endpoint_event(svc, ep(SPEC, 0, at=600, utt="v"))
    await settle(svc)
    await endpoint_event(svc, ep(FINAL, 0, at=600, t=900, utt="v"))
    finals = [(m.utterance_id, m.kind.value) for m in sent.messages
              if isinstance(m, Transcript)]
    assert finals == [("u", "speculative"), ("u", "final"), ("v", "speculative"),
                      ("v", "final")]
    assert [size for size, _ in engine.calls] == [16000 * 1200 // 1000, 16000 * 800 // 1000]
    assert svc.utterances == {}


async def test_engine_failure_is_a_coded_error() -> None:
    def broken() -> ScriptedEngine:
        raise AsrError("asr-model-missing", "no model")

    sent = Sent()
    svc = AsrService(Settings(), sent, broken)
    await feed_audio(svc, 1.5)
    await endpoint_event(svc, ep(SPEC, 0))
    await settle(svc)
    assert kinds(sent) == [("error", "asr-model-missing", 0)]


async def test_empty_result_on_final_is_asr_no_speech() -> None:
    class Deaf(ScriptedEngine):
        def transcribe(self, audio: Float32Array, **kw: object) -> list[Hypothesis]:
            return []

    sent = Sent()
    svc = AsrService(Settings(), sent, Deaf)
    await feed_audio(svc, 1.5)
    await endpoint_event(svc, ep(SPEC, 0))
    await settle(svc)
    await endpoint_event(svc, ep(FINAL, 0))
    assert kinds(sent) == [("transcript", "speculative", 0), ("error", "asr-no-speech", 0)]


async def test_endpoint_without_audio_is_an_error_once() -> None:
    sent = Sent()
    svc = AsrService(Settings(), sent, ScriptedEngine)
    await endpoint_event(svc, ep(SPEC, 0))
    await endpoint_event(svc, ep(FINAL, 0))
    assert kinds(sent) == [("error", "asr-no-audio", 0)]


async def test_audio_buffer_is_bounded() -> None:
    svc = AsrService(Settings.from_mapping({"endpointer": {"max_utterance_ms": 1000}}),
                     Sent(), ScriptedEngine)
    await feed_audio(svc, 5.0, stop=False)
    utt = svc.utterances["u"]
    assert utt.samples == (1000 + 2000) * 16
    assert utt.audio(10_000).size == utt.samples


@pytest.mark.parametrize("garbage", [b"", b"\xff\x00", None])
async def test_bad_audio_messages_are_ignored_here(garbage: bytes | None) -> None:
    svc = AsrService(Settings(), Sent(), ScriptedEngine)
    await svc.on_audio(origin(), garbage)  # the end-pointer dead-letters these
    assert svc.utterances == {}


async def test_an_engine_bug_ends_the_utterance_with_an_error() -> None:
    class Buggy(ScriptedEngine):
        def transcribe(self, audio: Float32Array, **kw: object) -> list[Hypothesis]:
            raise ZeroDivisionError("bug")

    sent = Sent()
    svc = AsrService(Settings(), sent, Buggy)
    await feed_audio(svc, 1.5)
    await endpoint_event(svc, ep(SPEC, 0))
    await settle(svc)
    assert kinds(sent) == [("error", "asr-failed", 0)]
    assert svc.utterances == {}


async def test_device_grammar_reaches_the_engine() -> None:
    seen: list[tuple[str, ...]] = []

    class Recording(ScriptedEngine):
        def transcribe(self, audio: Float32Array, *, phrases: Sequence[str] = (),
                       bias_weight: float = 0.0, phrase_bonus: float = 0.0,
                       strong_weight: float = 0.0, nbest: int = 5,
                       grammar: Sequence[str] = (), language: str = "en") -> list[Hypothesis]:
            seen.append(tuple(grammar))
            return [Hypothesis("seven", -0.1)]

    contexts = {"d": {"grammar": ["zero", "seven"]}}
    svc = AsrService(Settings(), Sent(), Recording, contexts=contexts)
    await feed_audio(svc, 1.5)
    await endpoint_event(svc, ep(SPEC, 0))
    await settle(svc)
    assert seen == [("zero", "seven")]


class AudioTopic:
    """Records as the audio topic holds them, read back as ``AudioLog.read`` would."""

    def __init__(self) -> None:
        self.records: list[tuple[Origin, bytes | None]] = []

    async def on_audio(self, o: Origin, raw: bytes | None) -> None:
        self.records.append((o, raw))

    async def read(self, partition: int, start: int, end: int | None, key: bytes
                   ) -> list[tuple[Origin, bytes | None]]:
        return [(o, v) for o, v in self.records if o.partition == partition and o.key == key
                and start <= o.offset and (end is None or o.offset < end)]


async def test_endpoint_for_a_moved_utterance_rebuilds_its_audio_from_the_topic() -> None:
    topic = AudioTopic()
    await feed_audio(topic, 2.0)  # type: ignore[arg-type]
    first = topic.records[0][0]
    ledger = Ledger()
    ledger.start("u", "d", 0, first.offset)
    sent, engine = Sent(), ScriptedEngine()
    # The new owner saw none of the audio: the old worker had consumed it.
    svc = AsrService(Settings(), sent, lambda: engine, ledger=ledger,
                     audio_log=topic)  # type: ignore[arg-type]
    await endpoint_event(svc, ep(SPEC, 0, at=1000))
    await settle(svc)
    await endpoint_event(svc, ep(FINAL, 0, at=1000, t=1800))
    assert kinds(sent) == [("transcript", "speculative", 0), ("transcript", "final", 0)]
    assert svc.recovered == 1
    # The same audio as a worker that saw it all: 1.2 s to the end of speech plus tail.
    assert engine.calls[0][0] == 16000 * 1200 // 1000


async def test_endpoint_without_a_recorded_start_is_still_a_coded_error() -> None:
    sent, engine = Sent(), ScriptedEngine()
    svc = AsrService(Settings(), sent, lambda: engine, ledger=Ledger(),
                     audio_log=AudioTopic())  # type: ignore[arg-type]
    await endpoint_event(svc, ep(SPEC, 0, at=1000))
    assert kinds(sent) == [("error", "asr-no-audio", 0)]


async def test_end_point_events_are_acknowledged_only_once_the_utterance_is_finished() -> None:
    sent, engine = Sent(), ScriptedEngine()
    svc = AsrService(Settings(), sent, lambda: engine)
    acked: list[str] = []
    await feed_audio(svc, 2.0)
    await svc.on_endpoint_event(origin(), encode(ep(SPEC, 0), Codec.JSON),
                                ack=lambda: acked.append("speculative"))
    await settle(svc)
    # Transcribed, but not finished: a worker taking over must receive it again.
    assert kinds(sent) == [("transcript", "speculative", 0)] and acked == []
    await svc.on_endpoint_event(origin(), encode(ep(FINAL, 0, t=1800), Codec.JSON),
                                ack=lambda: acked.append("final"))
    assert acked == ["speculative", "final"]


async def test_a_new_owner_skips_what_the_old_one_finished_and_carries_on_the_rest() -> None:
    topic = AudioTopic()
    ledger = Ledger()
    old_sent, engine = Sent(), ScriptedEngine()
    old = AsrService(Settings(), old_sent, lambda: engine, ledger=ledger,
                     audio_log=topic)  # type: ignore[arg-type]
    for utt in ("u", "v"):
        n = len(topic.records)
        await feed_audio(topic, 2.0, utt=utt)  # type: ignore[arg-type]
        ledger.start(utt, "d", 0, topic.records[n][0].offset)
        for o, raw in topic.records[n:]:
            await old.on_audio(o, raw)
    events = [(origin(), encode(e, Codec.JSON)) for e in
              (ep(SPEC, 0, utt="u"), ep(FINAL, 0, t=1800, utt="u"), ep(SPEC, 0, utt="v"))]
    for o, raw in events[:2]:
        await old.on_endpoint_event(o, raw)
        await settle(old)
    # "u" finished on the old worker; it dies before handling "v". The new owner
    # receives every uncommitted end-point event again.
    new_sent = Sent()
    new = AsrService(Settings(), new_sent, lambda: engine, ledger=ledger,
                     audio_log=topic)  # type: ignore[arg-type]
    for o, raw in events:
        await new.on_endpoint_event(o, raw)
    await settle(new)
    await new.on_endpoint_event(origin(), encode(ep(FINAL, 0, t=1800, utt="v"), Codec.JSON))
    assert [(m.utterance_id, m.kind.value) for m in new_sent.messages] == \
        [("v", "speculative"), ("v", "final")]
    assert ledger.finished("u", "d", "asr") and ledger.finished("v", "d", "asr")


async def test_a_re_delivered_event_of_an_utterance_in_flight_is_not_acknowledged_early() -> None:
    # A rebalance hands this worker its partition back and the consumer re-delivers
    # from the committed offset: the second delivery's acknowledgement must wait
    # for the utterance too, or the commit passes work still in flight.
    sent, engine = Sent(), ScriptedEngine()
    svc = AsrService(Settings(), sent, lambda: engine)
    acked: list[str] = []
    await feed_audio(svc, 2.0)
    at = origin()
    await svc.on_endpoint_event(at, encode(ep(SPEC, 0), Codec.JSON),
                                ack=lambda: acked.append("first"))
    await settle(svc)
    await svc.on_endpoint_event(at, encode(ep(SPEC, 0), Codec.JSON),
                                ack=lambda: acked.append("again"))
    assert acked == []
    await svc.on_endpoint_event(origin(), encode(ep(FINAL, 0, t=1800), Codec.JSON),
                                ack=lambda: acked.append("final"))
    assert sorted(acked) == ["again", "final", "first"]
    assert kinds(sent) == [("transcript", "speculative", 0), ("transcript", "final", 0)]


async def test_reading_one_utterance_back_does_not_hold_up_the_others() -> None:
    class SlowTopic(AudioTopic):
        def __init__(self) -> None:
            super().__init__()
            self.release = asyncio.Event()

        async def read(self, *args: object, **kw: object) -> list[tuple[Origin, bytes | None]]:
            await self.release.wait()
            return await super().read(*args, **kw)  # type: ignore[arg-type]

    topic = SlowTopic()
    await feed_audio(topic, 2.0, utt="moved")  # type: ignore[arg-type]
    ledger = Ledger()
    ledger.start("moved", "d", 0, topic.records[0][0].offset)
    sent, engine = Sent(), ScriptedEngine()
    svc = AsrService(Settings(), sent, lambda: engine, ledger=ledger,
                     audio_log=topic)  # type: ignore[arg-type]
    await endpoint_event(svc, ep(SPEC, 0, at=1000, utt="moved"))  # starts the read-back
    await endpoint_event(svc, ep(FINAL, 0, at=1000, t=1800, utt="moved"))  # waits behind it
    # Another device's utterance is served while the read-back is pending.
    await feed_audio(svc, 2.0, utt="other")
    await endpoint_event(svc, ep(SPEC, 0, at=1000, utt="other"))
    await asyncio.gather(*svc.utterances["other"].tasks.values())
    await endpoint_event(svc, ep(FINAL, 0, at=1000, t=1800, utt="other"))
    assert [m.utterance_id for m in sent.messages] == ["other", "other"]
    topic.release.set()
    await settle(svc)
    assert [(m.utterance_id, m.kind.value) for m in sent.messages[2:]] == \
        [("moved", "speculative"), ("moved", "final")]


async def test_audio_not_signed_by_its_device_never_reaches_the_decoder() -> None:
    from agents.base import DeviceGate
    from streams.identity import device_key, sign

    master = bytes(range(32))
    sent, engine = Sent(), ScriptedEngine()
    svc = AsrService(Settings(), sent, lambda: engine, gate=DeviceGate(master))

    async def send(message: Message, key: bytes | None) -> None:
        value = encode(message, Codec.MSGPACK)
        sig = sign(key, "audio", b"d", value) if key else None
        await svc.on_audio(dataclasses.replace(origin(), signature=sig), value)

    start = UtteranceStart(device_id="d", utterance_id="u", sample_rate_hz=16000)
    await send(start, None)
    await send(start, device_key(master, "intruder"))
    assert svc.utterances == {}
    await send(start, device_key(master, "d"))
    frame = AudioFrame(device_id="d", utterance_id="u", seq=0, pcm=b"\x10\x00" * 320,
                       sample_rate_hz=16000, audio_ms=0)
    await send(frame, device_key(master, "intruder"))  # injected into the victim's audio
    assert svc.utterances["u"].assembler.next_seq == 0
    await send(frame, device_key(master, "d"))
    assert svc.utterances["u"].assembler.next_seq == 1
