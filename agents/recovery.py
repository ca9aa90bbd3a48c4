"""Carrying in-flight utterances across workers: re-reading audio, skipping re-deliveries.

When a partition moves to another worker (a crash, a deploy, a scale-out),
the new owner has none of the old one's in-memory state: end-pointer
sessions, ASR audio buffers, revision trackers. It does have the audio: every
frame is still on the audio topic, and the utterance ledger
(:mod:`agents.ledger`) records the offset of each utterance's start.
:class:`AudioLog` reads an utterance's records back from that offset, so that
the end-pointer and ASR rebuild their state by processing them again;
decisions re-made from them are the same as before (same audio, same models)
and later stages drop what they already had (:class:`Progress`, the ledger).

:class:`Progress` is the idempotent-consumer half: the highest offset a stage
processed per partition. After a rebalance a consumer resumes from the last
committed offset, so records up to what it had processed come again; they are
re-deliveries, skipped without a dead letter (a device that really sends a
record twice sends it at a new offset, and that one is still refused).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable

from aiokafka import AIOKafkaConsumer, TopicPartition

from agents.base import Origin
from streams.connection import Connection
from streams.identity import signature_of

#: Most records one utterance's replay reads (15 s of 20 ms frames, with room).
MAX_REPLAY_RECORDS = 4000


class ReplayError(RuntimeError):
    """The utterance's audio could not be read back."""

    code = "worker-rebalanced"


class Progress:
    """Highest processed offset per (topic, partition): re-delivered records are skipped."""

    def __init__(self) -> None:
        self._done: dict[tuple[str, int], int] = {}

    def seen(self, origin: Origin) -> bool:
        """Whether ``origin`` is at or below what was already processed."""
        return origin.offset <= self._done.get((origin.topic, origin.partition), -1)

    def mark(self, origin: Origin) -> None:
        """Record ``origin`` as processed."""
        key = (origin.topic, origin.partition)
        if origin.offset > self._done.get(key, -1):
            self._done[key] = origin.offset

    def keep(self, partitions: Iterable[int]) -> None:
        """Forget partitions this worker no longer owns (another may move them on)."""
        owned = set(partitions)
        for key in [k for k in self._done if k[1] not in owned]:
            del self._done[key]


class AudioLog:
    """Reads records of one device back from a partition of the audio topic."""

    def __init__(self, connection: Connection, topic: str, *, fetch_max_wait_ms: int = 20,
                 timeout_s: float = 15.0) -> None:
        self._connection = connection
        self._topic = topic
        self._wait_ms = fetch_max_wait_ms
        self._timeout_s = timeout_s
        self._consumer: AIOKafkaConsumer | None = None
        self._lock = asyncio.Lock()

    async def close(self) -> None:
        """Stop the reader's consumer."""
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None

    async def _reader(self) -> AIOKafkaConsumer:
        if self._consumer is None:
            consumer = AIOKafkaConsumer(**self._connection.client(
                enable_auto_commit=False, fetch_max_wait_ms=self._wait_ms))
            await consumer.start()
            self._consumer = consumer
        return self._consumer

    async def read(self, partition: int, start: int, end: int | None, key: bytes
                   ) -> list[tuple[Origin, bytes | None]]:
        """Return ``key``'s records at offsets ``start`` <= o < ``end`` (None: the end now).

        Raises :class:`ReplayError` when they cannot all be read in time.
        """
        tp = TopicPartition(self._topic, partition)
        started = time.monotonic()
        async with self._lock:
            try:
                async with asyncio.timeout(self._timeout_s):
                    consumer = await self._reader()
                    consumer.assign([tp])
                    if end is None:
                        end = (await consumer.end_offsets([tp]))[tp]
                    consumer.seek(tp, start)
                    out: list[tuple[Origin, bytes | None]] = []
                    position = start
                    while position < end:
                        batch = await consumer.getmany(tp, timeout_ms=200,
                                                       max_records=500)
                        for record in batch.get(tp, []):
                            position = record.offset + 1
                            if record.offset >= end:
                                break
                            if record.key == key:
                                out.append((Origin(record.topic, record.partition,
                                                   record.offset, record.key,
                                                   signature_of(record.headers)),
                                            record.value))
                        if len(out) > MAX_REPLAY_RECORDS:
                            raise ReplayError(f"more than {MAX_REPLAY_RECORDS} records")
                        if not batch:
                            position = max(position, await consumer.position(tp))
            except TimeoutError:
                raise ReplayError(
                    f"audio {start}..{end} of partition {partition} not read back within "
                    f"{time.monotonic() - started:.1f} s") from None
        return out
