"""Our Faust consumer never commits past a record a stage still holds."""

from __future__ import annotations

import functools
from collections import defaultdict
from types import SimpleNamespace
from typing import Any

import pytest
from intervaltree import IntervalTree

from infra.transport import Consumer

TP = ("voicestream.endpoints", 0)


class Unacked(list[Any]):
    """Stands in for Faust's weak set of records handed out and not acknowledged."""

    def discard(self, item: Any) -> None:
        if item in self:
            self.remove(item)


def consumer(acked: list[int], held: list[int], committed: int | None) -> Any:
    c: Any = object.__new__(Consumer)
    c._acked = defaultdict(list, {TP: list(acked)})
    c._acked_index = defaultdict(set, {TP: set(acked)})
    c._gap = defaultdict(IntervalTree)
    c._committed_offset = {TP: committed}
    c._unacked_messages = Unacked(
        [SimpleNamespace(tp=TP, offset=o, acked=False) for o in held]
        + [SimpleNamespace(tp=TP, offset=o, acked=True) for o in acked])
    c._should_commit = lambda tp, offset: True
    return c


def test_after_an_assignment_the_commit_stops_below_a_held_record() -> None:
    # Faust does not know the committed offset yet (None): it would commit 8,
    # skipping 4, which an unfinished utterance holds.
    c = consumer(acked=[5, 6, 7], held=[4], committed=None)
    assert c._filter_committable_offsets([TP]) == {}
    # Once the held record is acknowledged, the rest follows.
    c._acked[TP].append(4)
    c._unacked_messages = Unacked()
    assert c._filter_committable_offsets([TP]) == {TP: 8}


def test_a_held_record_at_the_committed_offset_is_not_skipped() -> None:
    from faust.transport.consumer import Consumer as FaustConsumer

    stock = consumer(acked=[11, 12], held=[10], committed=10)
    assert FaustConsumer._new_offset(stock, TP) == 13  # Faust lets a one-record hole pass
    c = consumer(acked=[11, 12], held=[10], committed=10)
    assert c._filter_committable_offsets([TP]) == {}
    # A record handed out before a rebalance, below the committed offset, holds nothing.
    c = consumer(acked=[10, 11, 13], held=[4, 12], committed=10)
    assert c._filter_committable_offsets([TP]) == {TP: 12}


def test_stock_faust_commits_past_the_held_record() -> None:
    from faust.transport.consumer import Consumer as FaustConsumer

    c = consumer(acked=[5, 6, 7], held=[4], committed=None)
    assert FaustConsumer._new_offset(c, TP) == 8  # the defect the override prevents


def test_nothing_held_commits_as_faust_does() -> None:
    c = consumer(acked=[10, 11, 12], held=[], committed=10)
    assert c._filter_committable_offsets([TP]) == {TP: 13}


def test_the_first_record_held_commits_nothing() -> None:
    c = consumer(acked=[1, 2], held=[0], committed=None)
    assert c._filter_committable_offsets([TP]) == {}
    assert sorted(c._acked[TP]) == [1, 2]  # kept for a later commit


def test_a_stale_copy_from_before_a_rebalance_is_not_acknowledged() -> None:
    c = consumer(acked=[], held=[], committed=5)
    c.app = SimpleNamespace(consumer_generation_id=7,
                            topics=SimpleNamespace(acks_enabled_for=lambda topic: True))
    c._n_acked = 0
    c._waiting_for_ack = None
    stale = SimpleNamespace(tp=TP, offset=5, acked=False, generation_id=6, topic=TP[0])
    fresh = SimpleNamespace(tp=TP, offset=5, acked=False, generation_id=7, topic=TP[0])
    assert c.ack(stale) is False and c._acked[TP] == []
    assert c.ack(fresh) is True and c._acked[TP] == [5]


def producer(known: dict[str, int]) -> tuple[Any, set[str]]:
    """Our producer over an aiokafka one that has metadata for ``known`` topics only."""
    from aiokafka import AIOKafkaProducer
    from aiokafka.partitioner import DefaultPartitioner

    from infra.transport import Producer

    tracked: set[str] = set()
    inner = SimpleNamespace(
        _metadata=SimpleNamespace(
            partitions_for_topic=lambda t: set(range(known[t])) if t in known else None,
            available_partitions_for_topic=lambda t: set(range(known[t]))),
        client=SimpleNamespace(add_topic=tracked.add),
        _partitioner=DefaultPartitioner())
    inner._partition = functools.partial(AIOKafkaProducer._partition, inner)
    table = SimpleNamespace(partitions=4, changelog_topic=SimpleNamespace(
        get_topic_name=lambda: "vs-device-context-changelog"))
    p: Any = object.__new__(Producer)
    p.__dict__["app"] = SimpleNamespace(tables={"device-context": table},
                                        conf=SimpleNamespace(topic_partitions=8))
    p._ensure_producer = lambda: inner
    return p, tracked


def test_a_changelog_write_before_its_metadata_is_partitioned_like_after() -> None:
    from faust.transport.drivers.aiokafka import Producer as FaustProducer

    topic = "vs-device-context-changelog"
    cold, tracked = producer(known={})
    # Stock Faust: aiokafka has no partitions for the topic yet, and the write raises.
    with pytest.raises(TypeError):
        FaustProducer.key_partition(cold, topic, b"kitchen-1")
    warm, _ = producer(known={topic: 4})
    for key in (b"kitchen-1", b"victim", b"d-17"):
        assert cold.key_partition(topic, key) == warm.key_partition(topic, key)
    assert tracked == {topic}  # its metadata is fetched for the next write
    # A topic that is no table's changelog is left to Faust.
    with pytest.raises(TypeError):
        cold.key_partition("vs-audio", b"kitchen-1")


def seeking(consumer_cls: Any) -> tuple[Any, list[bool]]:
    """A consumer of ``consumer_cls`` whose seek notes whether records still flowed meanwhile."""
    import asyncio

    c: Any = object.__new__(consumer_cls)
    c.flow_active = True
    c.can_resume_flow = asyncio.Event()
    c.can_resume_flow.set()
    c.suspend_flow = asyncio.Event()
    c._read_offset = defaultdict(lambda: None)
    c._committed_offset = defaultdict(lambda: None)
    flowing: list[bool] = []

    async def seek_to_committed() -> dict[Any, int | None]:
        flowing.append(c.flow_active)
        return {TP: None}

    c.seek_to_committed = seek_to_committed
    return c, flowing


async def test_nothing_is_handed_out_while_seeking_to_the_committed_offsets() -> None:
    from faust.transport.consumer import Consumer as FaustConsumer

    # Stock Faust fetches on while it seeks; recovery then empties the streams'
    # queues, and what was fetched meanwhile is lost (the drain test's next
    # worker began a partition at offset 1 that way).
    stock, flowing = seeking(Consumer)
    await FaustConsumer.perform_seek(stock)
    assert flowing == [True]
    c, flowing = seeking(Consumer)
    await c.perform_seek()
    assert flowing == [False]
    # Left stopped: recovery resumes the flow once it has emptied the queues.
    assert not c.flow_active and c.suspend_flow.is_set()
    assert c._read_offset[TP] is None  # the next fetch starts where the seek put it


async def test_never_committed_partitions_are_positioned_at_their_first_offset() -> None:
    from infra.transport import ConsumerThread

    seeks: dict[Any, int] = {}

    class Kafka:
        """An aiokafka consumer: committed offsets, first offsets, seeks."""

        async def seek_to_committed(self) -> dict[Any, int | None]:
            return {("a", 0): None, ("a", 1): 0, ("a", 2): 7}

        async def beginning_offsets(self, tps: list[Any]) -> dict[Any, int]:
            return {tp: 3 for tp in tps}  # the log's start, after retention

        def seek(self, tp: Any, offset: int) -> None:
            seeks[tp] = offset

        async def seek_to_beginning(self, *tps: Any) -> None:
            raise AssertionError("a reset leaves the position unknown until the broker answers")

    thread: Any = object.__new__(ConsumerThread)
    thread._ensure_consumer = Kafka
    committed = await thread._seek_to_committed()
    assert committed == {("a", 0): None, ("a", 1): 0, ("a", 2): 7}  # what Faust records
    # Nothing committed (or 0, which aiokafka does not seek to): from the log's start.
    assert seeks == {("a", 0): 3, ("a", 1): 3}


def committing(monkeypatch: pytest.MonkeyPatch) -> tuple[Any, Any, list[dict[Any, int]]]:
    """Our consumer and producer over a buffer that keeps what it is handed;
    Faust's own commit records the offsets it would commit."""
    from faust.transport.consumer import Consumer as FaustConsumer

    from infra.transport import Producer

    commits: list[dict[Any, int]] = []

    async def stock_commit(self: Any, offsets: dict[Any, int], **_: Any) -> bool:
        commits.append(dict(offsets))
        return True

    monkeypatch.setattr(FaustConsumer, "_commit_offsets", stock_commit)
    p: Any = object.__new__(Producer)
    p.unsettled = set()
    p.buffer = SimpleNamespace(put=lambda fut: None)  # not sent until the test says
    c: Any = object.__new__(Consumer)
    c.__dict__["app"] = SimpleNamespace(producer=p)
    return c, p, commits


async def test_the_commit_waits_until_the_table_writes_are_on_the_broker(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import asyncio

    c, p, commits = committing(monkeypatch)
    write: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    p.send_soon(write)  # a changelog write made while handling offset 41
    commit = asyncio.create_task(c._commit_offsets({TP: 42}))
    await asyncio.sleep(0.05)
    # Stock Faust commits here, with the write still in the buffer (its flush
    # gives up after 0.1 s); killed now, the worker loses the write.
    assert not commit.done() and commits == []
    write.set_result("acknowledged")
    assert await commit is True
    assert commits == [{TP: 42}] and p.unsettled == set()
    # Nothing pending: the commit goes straight through.
    assert await c._commit_offsets({TP: 43}) is True and commits[-1] == {TP: 43}


async def test_a_table_write_the_broker_refused_stops_every_later_commit(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import asyncio

    from infra.transport import ChangelogLost

    c, p, commits = committing(monkeypatch)
    lost: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    kept: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    p.send_soon(lost)
    p.send_soon(kept)
    lost.set_exception(TimeoutError("delivery timed out"))
    kept.set_result("acknowledged")
    for offset in (42, 43):
        with pytest.raises(ChangelogLost, match="1 table write"):
            await c._commit_offsets({TP: offset})
    assert commits == []
    assert p.unsettled == {lost}
