"""Skill SDK: receive my directives, act on each at most once, answer, change device state.

Needs only aiokafka (and this package's wire types). A skill::

    skill = Skill("timers", bootstrap)

    @skill.handler
    async def handle(directive: Directive, ctx: SkillContext) -> str:
        await ctx.update_context(states={"timer": "running"})
        return "Timer set."

    await skill.run()          # until cancelled or ``stop`` is set

Delivery is at least once (Kafka redelivers after a crash or rebalance); the
SDK makes acting at most once per ``directive_id``: before the handler runs it
publishes ``SkillResponse(accepted)`` and waits for the broker's ack, and at
start-up it reads the responses topic back, so a directive already accepted
by any earlier run is never handled again. One accepted but never finished
(the process died inside the handler) is answered ``interrupted``, not
retried. While running, the skill sends ``SkillStatus`` heartbeats; the
arbiter declines directives for a skill without a recent one.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import time
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from streams import topics
from streams.client import Subscriber
from streams.codec import Codec, decode, encode
from streams.connection import BrokerTarget, Connection
from streams.directive import (
    ContextUpdate,
    Directive,
    ResponseStatus,
    SkillResponse,
    SkillState,
    SkillStatus,
)
from streams.rewrite import Outcome
from streams.schema import Message, SerializationError

#: Directives a skill remembers the status of (its at-most-once journal), newest kept.
JOURNAL_SIZE = 100_000

log = logging.getLogger("voicestream.skill")


def _now_ms() -> int:
    return int(time.time() * 1000)


@dataclasses.dataclass
class SkillContext:
    """What a handler can do besides answering: change the device's context."""

    skill: Skill
    directive: Directive
    #: The verdict set by :meth:`mark`, sent with the answer.
    outcome: Outcome | None = None

    async def update_context(self, *, states: dict[str, str] | None = None,
                             playing: dict[str, str] | None = None,
                             history: tuple[str, ...] = ()) -> None:
        """Merge a change into the device's context (see ``ContextUpdate``)."""
        await self.skill.publish(topics.CONTEXT_UPDATES, self.directive.device_id, ContextUpdate(
            device_id=self.directive.device_id, states=states or {}, playing=playing,
            history=history, source=self.skill.name))


    async def announce(self, text: str) -> None:
        """Say something more about this directive later (a timer that ran out)."""
        await self.skill._respond(self.directive, ResponseStatus.DONE, text)

    def mark(self, outcome: Outcome | str) -> None:
        """Give the skill's verdict on the request: ``success`` or ``defect``.

        A defect is a request the skill could not serve as the user meant it
        (no such song, a contact it cannot find). The verdict travels with the
        skill's answer and decides the utterance's interaction record (see the
        interactions agent); the last mark before the handler returns counts.
        Raises ``ValueError`` for another value.
        """
        self.outcome = Outcome(outcome)


Handler = Callable[[Directive, SkillContext], Awaitable[str | None]]


class Skill:
    """One skill instance, consuming its topic in the group ``voicestream-skill-<name>``."""

    def __init__(self, name: str, bootstrap: BrokerTarget, *, topic: str | None = None,
                 topic_prefix: str = topics.DEFAULT_PREFIX, instance: str | None = None,
                 heartbeat_s: float = 2.0, fetch_max_wait_ms: int = 20) -> None:
        self.name = name
        self.connection = Connection.of(bootstrap)
        self.prefix = topic_prefix
        self.topic = topic or f"{topics.SKILL_TOPIC_PREFIX}{name}"
        self.instance = instance or f"{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.heartbeat_s = heartbeat_s
        self.fetch_max_wait_ms = fetch_max_wait_ms
        self._handler: Handler | None = None
        self._producer: AIOKafkaProducer | None = None
        #: directive_id -> the newest status this skill published for it (any run).
        #: directive id -> its last status (bounded: the oldest are forgotten first).
        self.journal: OrderedDict[str, ResponseStatus] = OrderedDict()
        #: Directives handed to the handler by this run, in order (for tests and logs).
        self.handled: list[str] = []
        self.ready = asyncio.Event()

    def handler(self, fn: Handler) -> Handler:
        """Register the coroutine that carries out a directive and returns the text to say."""
        self._handler = fn
        return fn

    async def publish(self, spec: topics.TopicSpec, key: str, message: Message) -> None:
        """Send ``message`` to ``spec``'s topic and wait for the broker's ack."""
        assert self._producer is not None, "publish() needs a running skill"
        await self._producer.send_and_wait(spec.name(self.prefix), encode(message, spec.codec),
                                           key=key.encode())

    async def _respond(self, d: Directive, status: ResponseStatus, text: str = "",
                       outcome: Outcome | None = None) -> None:
        # Keyed by directive id: compaction keeps each directive's last status.
        await self.publish(topics.RESPONSES, d.directive_id, SkillResponse(
            directive_id=d.directive_id, device_id=d.device_id, utterance_id=d.utterance_id,
            skill=self.name, status=status, text=text, at_ms=_now_ms(), outcome=outcome))
        self._note(d.directive_id, status)

    def _note(self, directive_id: str, status: ResponseStatus) -> None:
        self.journal[directive_id] = status
        self.journal.move_to_end(directive_id)
        while len(self.journal) > JOURNAL_SIZE:
            self.journal.popitem(last=False)

    async def _status(self, state: SkillState) -> None:
        # Keyed per instance: compaction keeps each instance's last heartbeat.
        await self.publish(topics.SKILLS, f"{self.name}/{self.instance}", SkillStatus(
            skill=self.name, instance=self.instance, state=state, at_ms=_now_ms()))

    async def _heartbeats(self) -> None:
        while True:
            await self._status(SkillState.UP)
            await asyncio.sleep(self.heartbeat_s)

    async def _read_journal(self) -> None:
        """Read the responses topic up to its current end: what earlier runs did."""
        name = topics.RESPONSES.name(self.prefix)
        consumer = AIOKafkaConsumer(**self.connection.client(
            enable_auto_commit=False, fetch_max_wait_ms=self.fetch_max_wait_ms))
        await consumer.start()
        try:
            parts = consumer.partitions_for_topic(name)
            for _ in range(50):
                if parts:
                    break
                await consumer._client.force_metadata_update()
                parts = consumer.partitions_for_topic(name)
                await asyncio.sleep(0.1)
            tps = [TopicPartition(name, p) for p in sorted(parts or ())]
            if not tps:
                return
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            ends = await consumer.end_offsets(tps)
            while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
                batches = await consumer.getmany(timeout_ms=200)
                for records in batches.values():
                    for r in records:
                        try:
                            msg = decode(r.value or b"", Codec.JSON)
                        except SerializationError:
                            continue
                        if isinstance(msg, SkillResponse) and msg.skill == self.name:
                            self._note(msg.directive_id, msg.status)
        finally:
            await consumer.stop()

    async def _handle(self, d: Directive) -> None:
        seen = self.journal.get(d.directive_id)
        if seen is not None:
            if seen is ResponseStatus.ACCEPTED:
                await self._respond(d, ResponseStatus.INTERRUPTED,
                                    "stopped before finishing; not retried")
            log.info("skill %s: directive %s already %s, not acting again", self.name,
                     d.directive_id, seen.value)
            return
        await self._respond(d, ResponseStatus.ACCEPTED)
        self.handled.append(d.directive_id)
        assert self._handler is not None
        ctx = SkillContext(self, d)
        try:
            text = await self._handler(d, ctx)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("skill %s failed on %s", self.name, d.directive_id)
            # Its type, not its text: that can quote the request's slots.
            await self._respond(d, ResponseStatus.FAILED,
                                f"the skill failed ({type(exc).__name__})", ctx.outcome)
            return
        await self._respond(d, ResponseStatus.DONE, text or "", ctx.outcome)

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Serve directives until ``stop`` is set or the task is cancelled."""
        if self._handler is None:
            raise RuntimeError(f"skill {self.name} has no handler")
        self._producer = AIOKafkaProducer(**self.connection.producer(linger_ms=0))
        await self._producer.start()
        beats: asyncio.Task[None] | None = None
        spec = topics.TopicSpec(self.topic, Codec.JSON, topics.Role.OUTPUT,
                                topics.SKILL_DIRECTIVES.kinds)
        try:
            await self._read_journal()
            beats = asyncio.create_task(self._heartbeats())
            async with Subscriber(self.connection, f"voicestream-skill-{self.name}", [spec],
                                  topic_prefix=self.prefix,
                                  fetch_max_wait_ms=self.fetch_max_wait_ms,
                                  session_timeout_ms=6000) as sub:
                self.ready.set()
                stopper = asyncio.create_task(stop.wait()) if stop is not None else None
                it = sub.__aiter__()
                while True:
                    nxt = asyncio.ensure_future(it.__anext__())
                    waits: set[asyncio.Future[Any]] = {nxt}
                    if stopper is not None:
                        waits.add(stopper)
                    done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
                    if nxt not in done:
                        nxt.cancel()
                        break
                    delivery = nxt.result()
                    if isinstance(delivery.message, Directive):
                        await self._handle(delivery.message)
                    else:
                        log.warning("skill %s: skipping undecodable record at %s[%d]@%d",
                                    self.name, delivery.topic, delivery.partition,
                                    delivery.offset)
                    await sub.commit(delivery)
                if stopper is not None:
                    stopper.cancel()
        finally:
            if beats is not None:
                beats.cancel()
            try:
                await self._status(SkillState.DOWN)
            finally:
                await self._producer.stop()
