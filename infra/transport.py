"""Faust's aiokafka transport with the fetch wait taken from the broker profile.

Faust 0.15 builds its worker consumer with ``fetch_max_wait_ms=1500`` written
into the code. On Tansu 0.6.0 a fetch waits that long even when data has
arrived, which put 0.5-4.4 s on three hops. This transport, registered as the
``voicestream://`` scheme through the ``faust.transports`` entry point, sets
the wait from :class:`infra.config.BrokerProfile` before the consumer starts.

Its producer is idempotent with ``acks=all`` where the profile says the
broker allows it (Kafka; Tansu 0.6.0 refuses ``InitProducerId``): Faust asks
for idempotence only inside transactions.

Its consumer never commits past a record still being worked on. Faust
commits the first run of consecutive acknowledged offsets, and that run may
start above a record a stage holds unacknowledged (ASR and NLU hold an
utterance's records until it is finished): where it knows no committed
offset (none yet, or 0, which it takes for none), and where the held record
is the one at the committed offset (its check lets a one-record hole at the
head pass). The commit would skip it, and a worker dying then would lose the
utterance. Nor do acknowledgements of records handed out before the last
rebalance count: Faust acknowledges such stale copies unprocessed, and the
commit could pass the fresh copy of the same record.

Its consumer, after a rebalance, seeks partitions with nothing committed
to their beginning (the configured ``earliest``), as it seeks the others to
their committed offsets: Faust drops what it fetched before the rebalance and
counts on that seek to read it again, and aiokafka skips partitions without a
committed offset above 0, so records there were never processed by anyone.
It moves them straight to the first offset the broker reports: a reset
(``seek_to_beginning``) leaves a partition's position unknown until the broker
answers, and Faust's livelock check, reading it then, crashed the consumer.

Its consumer hands out no record while it seeks. Faust's recovery resumes the
partitions, seeks them, then resumes flow control, which empties every
stream's queue: what the fetcher delivered during the seek was dropped there
unread, and the fetch after the seek skipped it too (its read offset had moved
past). A worker starting up or taking partitions over lost the first records
it was handed that way: the drain test's next worker began a partition at
offset 1, past the deferred start.

Its producer partitions a table's changelog write even before it has the
changelog topic's metadata. Tables that use the partitioner (the context
table, the utterance ledger) make Faust hash the key on the spot, and
aiokafka raises ``TypeError`` for a topic it has not fetched metadata for
yet; on Kafka the first context written after a start was lost that way,
with the agent's batch. The partition comes from the table's own partition
count with the same partitioner, and the topic is tracked from then on.

Its consumer commits only once every table write made so far is on the
broker. A table write goes to its changelog through the producer's buffer
(``send_soon``), and the offset of the record that made it may be committed
as soon as that record is acknowledged. Faust flushes before it commits, but
its buffer's flush gives up after 0.1 s without a message going out, so the
commit could pass a write still in the buffer, and a worker killed then
would lose the write while its record is never read again. The producer keeps what it was
handed that way until the broker acknowledges it; a write the broker never
took stops every later commit (the worker crashes, and the records after the
last good commit are read again), never passed over.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from typing import Any, cast

import aiokafka
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP, FutureMessage

#: Attribute of the Faust app that carries the wanted fetch wait, ms.
FETCH_WAIT_ATTR = "voicestream_fetch_max_wait_ms"
#: Attribute of the Faust app: whether producers may be idempotent.
IDEMPOTENT_ATTR = "voicestream_idempotent"


class ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    """Consumer thread whose worker consumer uses the profile's fetch wait."""

    def _create_worker_consumer(self, transport: Any) -> aiokafka.AIOKafkaConsumer:
        consumer = super()._create_worker_consumer(transport)
        wait_ms = getattr(self.app, FETCH_WAIT_ATTR, None)
        if wait_ms is not None:
            # aiokafka hands this to its Fetcher in start(), which runs after us.
            consumer._fetch_max_wait_ms = int(wait_ms)
        return consumer

    async def seek_to_committed(self) -> Any:
        return await self.call_thread(self._seek_to_committed)

    async def _seek_to_committed(self) -> Any:
        # aiokafka seeks only where the committed offset is above 0. Faust skips the
        # records it fetched before a rebalance and relies on this seek to read them
        # again, so a partition with nothing committed (or 0) would go on from where
        # the skipped fetch left it, past records nobody processed.
        consumer = self._ensure_consumer()
        committed = await consumer.seek_to_committed()
        never = [tp for tp, offset in committed.items() if not offset]
        if never:
            # Straight to the first offsets, not seek_to_beginning: that reset leaves
            # the positions unknown until the broker answers, and Faust's livelock
            # check reading one meanwhile crashed the consumer (aiokafka asserts it).
            first = await consumer.beginning_offsets(never)
            for tp in never:
                consumer.seek(tp, first[tp])
        return committed


class Consumer(faust_aiokafka.Consumer):
    """Faust consumer that creates :class:`ConsumerThread` and commits below held records."""

    def _new_consumer_thread(self) -> ConsumerThread:
        return ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    async def perform_seek(self) -> None:
        """Seek to the committed offsets with the flow stopped; the caller resumes it.

        Faust's recovery resumes the partitions, seeks, then resumes flow control,
        which empties every stream's queue. Records fetched during the seek went
        into those queues and were dropped there unread, and the read offsets they
        left behind made the fetch after the seek skip them too. Stopped, the
        consumer hands nothing out until recovery has emptied the queues and
        resumed it; a fetch that returns meanwhile makes Faust seek again.
        """
        self.stop_flow()
        await super().perform_seek()

    def ack(self, message: Any) -> bool:
        # A record handed out before the last rebalance is delivered again from the
        # committed offset; acknowledging the old copy (Faust acks the copies it
        # skips as stale) would let the commit pass the new one unprocessed.
        generation = getattr(message, "generation_id", None)
        if generation is not None and generation != self.app.consumer_generation_id:
            message.acked = True
            self._unacked_messages.discard(message)
            return False
        return bool(super().ack(message))

    def _filter_committable_offsets(self, tps: Iterable[Any]) -> dict[Any, int]:
        # The lowest offset received but not acknowledged per partition, in one pass;
        # records below the committed offset (handed out before a rebalance) do not count.
        self._held: dict[Any, int] = {}
        for message in list(self._unacked_messages):
            if message.acked:
                continue
            committed = self._committed_offset.get(message.tp)
            if committed is not None and message.offset < committed:
                continue
            held = self._held.get(message.tp)
            if held is None or message.offset < held:
                self._held[message.tp] = message.offset
        return dict(super()._filter_committable_offsets(tps))

    async def _commit_offsets(self, offsets: Mapping[Any, int],
                              start_new_transaction: bool = True) -> bool:
        # Every table write made while handling the records committed here was
        # handed to the producer before the record was acknowledged.
        await cast(Producer, self.app.producer).settle()
        return bool(await super()._commit_offsets(
            offsets, start_new_transaction=start_new_transaction))

    def _new_offset(self, tp: Any) -> int | None:
        held = getattr(self, "_held", {}).get(tp)
        acked = self._acked[tp]
        if held is None or not acked:
            return super()._new_offset(tp)
        later = [offset for offset in acked if offset >= held]
        if later:
            acked[:] = [offset for offset in acked if offset < held]
        try:
            offset = super()._new_offset(tp) if acked else None
        finally:
            if later:
                acked.extend(later)
                acked.sort()
        return offset


class ChangelogLost(RuntimeError):
    """A table write the broker did not take: no offset may be committed past it."""


class Producer(faust_aiokafka.Producer):
    """Faust producer with ``acks=all`` and, where the broker allows, idempotence."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: Records handed to :meth:`send_soon` (table changelog writes) not yet
        #: acknowledged by the broker, and those it refused.
        self.unsettled: set[FutureMessage] = set()

    def send_soon(self, fut: FutureMessage) -> None:
        self.unsettled.add(fut)
        fut.add_done_callback(self._delivered)
        super().send_soon(fut)

    def _delivered(self, fut: FutureMessage) -> None:
        if not fut.cancelled() and fut.exception() is None:
            self.unsettled.discard(fut)

    async def settle(self) -> None:
        """Wait until the broker has every record handed to :meth:`send_soon` so far.

        Raises :class:`ChangelogLost` if it refused one (then, and from then on).
        """
        pending = list(self.unsettled)
        if not pending:
            return
        results = await asyncio.gather(*pending, return_exceptions=True)
        failed = [r for r in results if isinstance(r, BaseException)]
        if failed:
            raise ChangelogLost(f"{len(failed)} table write(s) not on the broker: {failed[0]!r}")

    def _settings_extra(self) -> Any:
        extra = dict(super()._settings_extra())
        extra["acks"] = "all"
        if getattr(self.app, IDEMPOTENT_ATTR, False):
            extra["enable_idempotence"] = True
        return extra

    def key_partition(self, topic: str, key: bytes) -> TP:
        producer = self._ensure_producer()
        count = self._changelog_partitions(topic)
        if key is None or count is None or producer._metadata.partitions_for_topic(topic):
            return super().key_partition(topic, key)
        producer.client.add_topic(topic)  # fetched in the background, used next time
        return TP(topic, producer._partitioner(key, list(range(count)), []))

    def _changelog_partitions(self, topic: str) -> int | None:
        """The partition count of the table whose changelog ``topic`` is, if any."""
        for table in self.app.tables.values():
            if table.changelog_topic.get_topic_name() == topic:
                return int(table.partitions or self.app.conf.topic_partitions)
        return None


class Transport(faust_aiokafka.Transport):
    """The ``voicestream://`` transport: Faust's aiokafka one with our consumer and producer."""

    Consumer = Consumer
    Producer = Producer
