"""A device on librdkafka (confluent-kafka), whose default partitioner is not murmur2.

Its context and audio land on partitions the Java client (and aiokafka)
would not choose; the worker must still find the context for the audio and
send every result to the partition its input came from.
"""

from __future__ import annotations

import asyncio
import time
import uuid
import zlib

import pytest
from aiokafka.partitioner import murmur2

from infra.demo import audio_path
from streams import topics
from streams.audio import AudioFrame, UtteranceStart, UtteranceStop
from streams.client import EventWatcher, read_wav
from streams.codec import encode
from streams.context import DeviceContext
from streams.endpoint import Endpoint
from streams.nlu import Interpretations
from tests.conftest import connection

pytestmark = pytest.mark.broker
PARTITIONS = 4  # the worker's default


def device_apart() -> str:
    """A device id that librdkafka's CRC32 and Java's murmur2 put on different partitions."""
    for n in range(100):
        device = f"rdkafka-{n}"
        crc = zlib.crc32(device.encode()) % PARTITIONS
        java = (murmur2(device.encode()) & 0x7FFFFFFF) % PARTITIONS
        if crc != java:
            return device
    raise AssertionError("no such device id")


async def test_a_librdkafka_device_gets_context_aware_results(stack: str) -> None:
    from confluent_kafka import Producer

    device, utt = device_apart(), uuid.uuid4().hex[:16]
    conn = connection(stack)
    # librdkafka's default partitioner: consistent_random (CRC32 of the key).
    producer = Producer({"bootstrap.servers": ",".join(conn.bootstrap), "linger.ms": 0})
    placed: list[int] = []

    def sent(err: object, msg: object) -> None:
        assert err is None, err
        placed.append(msg.partition())  # type: ignore[attr-defined]

    def produce(spec: topics.TopicSpec, message: object) -> None:
        producer.produce(spec.name(topics.DEFAULT_PREFIX), encode(message, spec.codec),  # type: ignore[arg-type]
                         key=device.encode(), on_delivery=sent)
        producer.poll(0)

    context = DeviceContext(device_id=device, states={"oven": "on", "oven_temperature": "180"})
    pcm, rate = read_wav(audio_path("temperature.wav"))
    step = rate // 50 * 2
    chunks = [pcm[i:i + step] for i in range(0, len(pcm), step)] + [bytes(step)] * 75
    async with EventWatcher(conn) as watch:
        produce(topics.CONTEXT, context)
        assert producer.flush(30) == 0
        await asyncio.sleep(1.0)  # the context table takes it before the audio starts
        produce(topics.AUDIO, UtteranceStart(device_id=device, utterance_id=utt,
                                             sample_rate_hz=rate,
                                             started_at_ms=int(time.time() * 1000)))
        for seq, chunk in enumerate(chunks):
            produce(topics.AUDIO, AudioFrame(device_id=device, utterance_id=utt, seq=seq,
                                             pcm=chunk, sample_rate_hz=rate,
                                             audio_ms=seq * 20))
        produce(topics.AUDIO, UtteranceStop(device_id=device, utterance_id=utt,
                                            last_seq=len(chunks) - 1))
        assert producer.flush(30) == 0
        events = [m async for m in watch.events(utt, timeout_s=60)]
    # The device's records went where librdkafka put them, not where murmur2 would.
    assert set(placed) == {zlib.crc32(device.encode()) % PARTITIONS}
    finals = [m for m in events if isinstance(m, Interpretations) and m.kind.value == "final"]
    assert finals, [m.TYPE for m in events]
    best = finals[0].interpretations[0]
    assert best.intent == "iot_appliance_query" and "states.oven=on" in best.context
    decisions = [m for m in events if m.TYPE.value in ("directive", "declined")]
    assert [getattr(d, "skill", None) for d in decisions] == ["smart-home"]
    assert any(isinstance(m, Endpoint) for m in events)
