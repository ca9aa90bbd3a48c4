"""Bad input: each case gets a dead letter or an error event, and others keep being served."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import msgpack
import pytest
from aiokafka import AIOKafkaProducer

from streams import topics
from streams.audio import AudioFrame, UtteranceStart, UtteranceStop
from streams.client import DeviceClient, EventWatcher, read_wav
from streams.codec import Codec, encode
from streams.control import DeadLetter, ErrorEvent
from streams.endpoint import Endpoint, EndpointKind
from streams.schema import Message
from tests.conftest import connection

pytestmark = pytest.mark.broker
AUDIO = topics.AUDIO.name(topics.DEFAULT_PREFIX)
Sender = Callable[[str, object], Awaitable[None]]


def enc(message: Message) -> bytes:
    return encode(message, Codec.MSGPACK)


def start(dev: str, utt: str, rate: int = 16000) -> bytes:
    return enc(UtteranceStart(device_id=dev, utterance_id=utt, sample_rate_hz=rate))


def frame(dev: str, utt: str, seq: int, pcm: bytes, rate: int = 16000) -> bytes:
    return enc(AudioFrame(device_id=dev, utterance_id=utt, seq=seq, pcm=pcm,
                          sample_rate_hz=rate, audio_ms=seq * 20))


def stop(dev: str, utt: str, last: int) -> bytes:
    return enc(UtteranceStop(device_id=dev, utterance_id=utt, last_seq=last))


def frames_of(pcm: bytes, rate: int = 16000) -> list[bytes]:
    step = rate // 50 * 2
    return [pcm[i:i + step] for i in range(0, len(pcm), step)]


def future_version(dev: str, utt: str) -> bytes:
    data = UtteranceStart(device_id=dev, utterance_id=utt, sample_rate_hz=16000).to_wire()
    data["v"] = 42
    return msgpack.packb(data)


# (name, device, build the raw messages, expected dead-letter code, expected error code)
CASES: list[tuple[str, str, Callable[[str, str, list[bytes]], list[bytes]], str, str | None]] = [
    ("garbage", "bad-garbage", lambda d, u, f: [b"\x00\xffnot msgpack at all"],
     "undecodable", None),
    ("future-schema", "bad-schema", lambda d, u, f: [future_version(d, u)],
     "unsupported-schema-version", None),
    ("wrong-rate", "bad-rate", lambda d, u, f: [start(d, u, 12345)],
     "unsupported-sample-rate", "unsupported-sample-rate"),
    ("oversized-frame", "bad-big", lambda d, u, f: [start(d, u), frame(d, u, 0, bytes(16000))],
     "frame-too-large", None),
    ("oversized-payload", "bad-huge", lambda d, u, f: [b"\x00" * 300_000],
     "payload-too-large", None),
    ("no-start", "bad-nostart", lambda d, u, f: [frame(d, u, 0, f[0])],
     "unknown-utterance", None),
    ("duplicates", "bad-dup", lambda d, u, f: [start(d, u), *[x for i, fr in enumerate(f)
                                                             for x in [frame(d, u, i, fr)] * 2],
                                               stop(d, u, len(f) - 1)],
     "duplicate-frame", None),
]


async def collect(watch: EventWatcher, until: Callable[[list[Message]], bool],
                  timeout_s: float = 30) -> list[Message]:
    seen: list[Message] = []
    try:
        async with asyncio.timeout(timeout_s):
            async for _topic, message in watch.messages():
                if isinstance(message, Message):
                    seen.append(message)
                if until(seen):
                    return seen
    except TimeoutError:
        pass  # the assertions below say what is missing
    return seen


async def test_bad_input_table(stack: str, speech: dict[str, Path]) -> None:
    bootstrap = connection(stack)
    pcm, rate = read_wav(speech["whole"])
    good_frames = frames_of(pcm + bytes(rate * 2 * 2))
    specs = [topics.ENDPOINTS, topics.DEAD_LETTERS]
    async with EventWatcher(bootstrap, specs=specs) as watch:
        producer = AIOKafkaProducer(**bootstrap.producer())
        await producer.start()
        try:
            for name, dev, build, _, _ in CASES:
                for raw in build(dev, f"u-{name}", good_frames):
                    await producer.send(AUDIO, raw, key=dev.encode())
            # A gap: frames 10..19 never arrive; the utterance still completes.
            gap = [start("bad-gap", "u-gap")] + [
                frame("bad-gap", "u-gap", i, fr) for i, fr in enumerate(good_frames)
                if not 10 <= i < 20]
            for raw in gap:
                await producer.send(AUDIO, raw, key=b"bad-gap")
            await producer.flush()
        finally:
            await producer.stop()
        async with DeviceClient(bootstrap, "good-1") as dev:
            await dev.stream(pcm, rate, utterance_id="u-good", realtime=False)

        expected_letters = {(f"u-{n}" if code != "undecodable" and code != "payload-too-large"
                             else dev_id, code) for n, dev_id, _, code, _ in CASES}

        def finished(seen: list[Message]) -> bool:
            letters = {(m.utterance_id or m.key, m.code) for m in seen
                       if isinstance(m, DeadLetter)}
            finals = {m.utterance_id for m in seen
                      if isinstance(m, Endpoint) and m.kind is EndpointKind.FINAL}
            return expected_letters <= letters and {"u-good", "u-gap", "u-duplicates"} <= finals

        seen = await collect(watch, finished)
    letters = {(m.utterance_id or m.key, m.code): m for m in seen if isinstance(m, DeadLetter)}
    assert expected_letters - letters.keys() == set()
    for letter in letters.values():
        assert letter.topic == AUDIO and letter.offset >= 0 and letter.stage == "endpointer"
    errors = {(m.utterance_id, m.code) for m in seen if isinstance(m, ErrorEvent)}
    assert ("u-wrong-rate", "unsupported-sample-rate") in errors
    finals = {m.utterance_id for m in seen
              if isinstance(m, Endpoint) and m.kind is EndpointKind.FINAL}
    # The worker went on serving: the good device, the gapped and the duplicated stream end.
    assert {"u-good", "u-gap", "u-duplicates"} <= finals
