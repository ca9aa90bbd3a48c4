"""The embedded broker, and the client settings that work around Tansu 0.6.0."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from infra.broker import BrokerError, EmbeddedBroker, free_port, wait_ready
from infra.config import Settings

pytestmark = pytest.mark.broker


@pytest.fixture
async def broker() -> AsyncIterator[EmbeddedBroker]:
    async with EmbeddedBroker() as b:
        yield b


async def end_offset(bootstrap: list[str], topic: str) -> int:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        return (await consumer.end_offsets([tp]))[tp]
    finally:
        await consumer.stop()


async def produce_burst(bootstrap: list[str], topic: str, n: int, max_batch_size: int) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20,
                                max_batch_size=max_batch_size)
    await producer.start()
    try:
        futures = [await producer.send(topic, b"x" * 10, partition=0) for _ in range(n)]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def test_start_ready_stop(broker: EmbeddedBroker) -> None:
    assert broker.running
    await wait_ready([f"{broker.host}:{broker.port}"], timeout_s=5)
    broker.stop()
    assert not broker.running


async def test_ready_check_fails_on_a_dead_port() -> None:
    with pytest.raises(BrokerError):
        await wait_ready([f"127.0.0.1:{free_port()}"], timeout_s=0.5)


async def test_embedded_profile_gives_exact_end_offsets(broker: EmbeddedBroker) -> None:
    profile = Settings().broker_profile(broker.url, embedded=True)
    await produce_burst(profile.bootstrap, "burst-profile", 40, profile.max_batch_bytes)
    # Table recovery reads a changelog up to this offset: it must count every record.
    assert await end_offset(profile.bootstrap, "burst-profile") == 40


async def test_batched_writes_show_the_defect_being_worked_around(
        broker: EmbeddedBroker) -> None:
    """With Kafka's batch size, Tansu 0.6.0 under-reports the end offset.

    If this starts failing, Tansu fixed ListOffsets and the single-record
    batches of the embedded profile can go.
    """
    bootstrap = [f"{broker.host}:{broker.port}"]
    await produce_burst(bootstrap, "burst-default", 40, 16384)
    assert await end_offset(bootstrap, "burst-default") < 40
