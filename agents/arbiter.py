"""The arbiter agent: ranked interpretations in, exactly one outcome per utterance out.

A thin service around the pure cores of :mod:`agents.registry` (the skills)
and :mod:`agents.routing` (the choice and the release gate). Every utterance
ends with exactly one outcome on the directives topic: a ``Directive`` (also
sent to the chosen skill's topic), a ``Declined``, or the ``ErrorEvent`` with
which an earlier stage ended it (forwarded in band, like resets).
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections import OrderedDict
from typing import Any

import faust
import structlog

from agents.base import Origin, Publisher, SendFn, isolated
from agents.ledger import Ledger
from agents.registry import Registry
from agents.routing import Arbiter, Gate
from infra import metrics
from models.textnorm import language_of
from streams import topics
from streams.codec import encode
from streams.connection import Connection
from streams.control import ErrorEvent
from streams.directive import (
    Declined,
    DeclineReason,
    Directive,
    SkillState,
    SkillStatus,
    directive_id,
)
from streams.endpoint import EndpointKind, Reset
from streams.nlu import Interpretations
from streams.rewrite import Rewrite
from streams.settings import Settings

STAGE = "arbiter"
_CLOSED_MEMORY = 4096
#: A skill instance silent this many skill timeouts is forgotten.
HEARTBEAT_TTL = 6


class ArbiterService:
    """State and logic of the arbiter agent, independent of how it is wired."""

    def __init__(self, settings: Settings, send: SendFn, registry: Registry, *,
                 contexts: Any = None, check_liveness: bool = True,
                 ledger: Ledger | None = None) -> None:
        self.settings = settings
        self.pub = Publisher(STAGE, send)
        self.ledger = ledger if ledger is not None else Ledger()
        self._send = send
        self.arbiter = Arbiter(registry)
        self.registry = registry
        self.gates: OrderedDict[str, Gate] = OrderedDict()
        self._contexts = contexts
        #: Last heartbeat per skill and instance (the skill's wall clock, ms since epoch).
        self.heartbeats: dict[str, dict[str, int]] = {}
        self.check_liveness = check_liveness
        self.log = structlog.get_logger("voicestream.arbiter").bind(stage=STAGE)

    def on_status(self, status: SkillStatus, now_ms: int | None = None) -> None:
        """Record a skill instance's heartbeat (or its clean shutdown).

        Instances silent for ``HEARTBEAT_TTL`` skill timeouts are forgotten (a
        crashed instance never says it is down).
        """
        instances = self.heartbeats.setdefault(status.skill, {})
        if status.state is SkillState.DOWN:
            instances.pop(status.instance, None)
        else:
            instances[status.instance] = max(status.at_ms, instances.get(status.instance, 0))
        now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        expired = now_ms - HEARTBEAT_TTL * self.settings.skill_timeout_s * 1000
        for skill in list(self.heartbeats):
            kept = {i: t for i, t in self.heartbeats[skill].items() if t >= expired}
            if kept:
                self.heartbeats[skill] = kept
            else:
                del self.heartbeats[skill]

    def live(self, skill: str, now_ms: int | None = None) -> bool:
        """Whether an instance of ``skill`` sent a heartbeat within ``skill_timeout_s``."""
        if not self.check_liveness:
            return True
        now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        return any(now_ms - t <= self.settings.skill_timeout_s * 1000
                   for t in self.heartbeats.get(skill, {}).values())

    def _gate(self, utterance_id: str) -> Gate:
        gate = self.gates.get(utterance_id)
        if gate is None:
            gate = self.gates[utterance_id] = Gate()
            while len(self.gates) > _CLOSED_MEMORY:
                self.gates.popitem(last=False)
        return gate

    def decide(self, msg: Interpretations) -> Directive | Declined:
        """Make the decision for ``msg`` (before gating)."""
        ctx = self._contexts.get(msg.device_id) if self._contexts is not None else None
        choice = self.arbiter.choose(msg.interpretations, ctx, language_of(msg.locale))
        hyp = choice.hypothesis
        if choice.skill is None or hyp is None:
            return Declined(device_id=msg.device_id, utterance_id=msg.utterance_id,
                            revision=msg.revision,
                            reason=choice.reason or DeclineReason.NOT_UNDERSTOOD,
                            detail=choice.explanation, intent=hyp.intent if hyp else "",
                            score=hyp.score if hyp else 0.0, t_ms=msg.t_ms)
        return Directive(directive_id=directive_id(msg.utterance_id, msg.revision),
                         device_id=msg.device_id, utterance_id=msg.utterance_id,
                         revision=msg.revision, skill=choice.skill.name, intent=hyp.intent,
                         slots=hyp.slots, text=hyp.text, score=hyp.score,
                         explanation=choice.explanation, context=hyp.context,
                         states={str(k): str(v)
                                 for k, v in ((ctx or {}).get("states") or {}).items()},
                         t_ms=msg.t_ms, locale=msg.locale)

    async def on_event(self, origin: Origin, raw: bytes | None) -> None:
        """Follow one event of the interpretations topic."""
        message = await self.pub.decode(topics.INTERPRETATIONS, origin, raw)
        if message is None or isinstance(message, Rewrite):
            return  # a rewrite is for observers: its interpretation follows
        now = time.monotonic()
        if isinstance(message, Reset):
            gate = self._gate(message.utterance_id)
            dropped = gate.dropped
            gate.cancel(message.cancelled_revision)
            if gate.dropped > dropped:  # a decision was waiting: gating saved an action
                metrics.RELEASES.labels("cancelled").inc()
            self.log.info("arbiter.reset", device_id=message.device_id,
                          utterance_id=message.utterance_id,
                          cancelled_revision=message.cancelled_revision)
            return
        if isinstance(message, ErrorEvent):
            # An earlier stage ended the utterance: the error is its outcome, unless
            # a decision was released already (then the error came too late to count).
            gate = self._gate(message.utterance_id)
            if not gate.wants(message.revision) or \
                    self.ledger.finished(message.utterance_id, message.device_id, STAGE):
                self.log.info("arbiter.error_after_outcome", device_id=message.device_id,
                              utterance_id=message.utterance_id, code=message.code)
                return
            gate.end()
            await self._publish(message, 0.0, origin.partition)
            return
        assert isinstance(message, Interpretations)
        gate = self._gate(message.utterance_id)
        if not gate.wants(message.revision):
            return
        if message.kind is EndpointKind.FINAL and \
                self.ledger.finished(message.utterance_id, message.device_id, STAGE):
            gate.released = True
            return  # decided by the worker this partition moved from
        if message.kind is EndpointKind.SPECULATIVE:
            gate.hold(message.revision, self.decide(message), now)
            return
        if message.revision not in gate.held:
            gate.hold(message.revision, self.decide(message), now)
        released = gate.confirm(message.revision, time.monotonic())
        if released is not None:
            decision, held_ms = released
            # Stamped with the final end-point's audio time: when it was released.
            await self._publish(dataclasses.replace(decision, t_ms=message.t_ms), held_ms,
                                origin.partition)

    async def _publish(self, decision: Directive | Declined | ErrorEvent, held_ms: float,
                       partition: int | None = None) -> None:
        """Publish an utterance's outcome on the partition of the event it answers."""
        log = self.log.bind(device_id=decision.device_id, utterance_id=decision.utterance_id)
        if isinstance(decision, Directive) and not self.live(decision.skill):
            decision = Declined(
                device_id=decision.device_id, utterance_id=decision.utterance_id,
                revision=decision.revision, reason=DeclineReason.SKILL_UNAVAILABLE,
                detail=f"skill {decision.skill} has no live consumer (no heartbeat in "
                       f"{self.settings.skill_timeout_s:g} s)",
                intent=decision.intent, score=decision.score, t_ms=decision.t_ms)
        if isinstance(decision, Directive):
            decision = dataclasses.replace(decision, held_ms=round(held_ms, 2))
            spec = self.registry.get(decision.skill)
            assert spec is not None
            # The record first, so that observers never see a skill act before it.
            await self.pub.emit(topics.DIRECTIVES, decision.device_id, decision,
                                partition=partition)
            await self._send(spec.topic, decision.device_id.encode(),
                             encode(decision, topics.SKILL_DIRECTIVES.codec), partition)
            metrics.RELEASES.labels("directive").inc()
            log.info("arbiter.directive", revision=decision.revision, skill=decision.skill,
                     intent=decision.intent, score=decision.score, held_ms=decision.held_ms)
        elif isinstance(decision, Declined):
            await self.pub.emit(topics.DIRECTIVES, decision.device_id, decision,
                                partition=partition)
            metrics.RELEASES.labels("declined").inc()
            log.info("arbiter.declined", revision=decision.revision,
                     reason=decision.reason.value, detail=decision.detail)
        else:
            await self.pub.emit(topics.DIRECTIVES, decision.device_id, decision,
                                partition=partition)
            metrics.RELEASES.labels("error").inc()
            log.info("arbiter.error", revision=decision.revision, stage=decision.stage,
                     code=decision.code)
        # After the records: a worker dying between the two repeats them, never loses them.
        self.ledger.finish(decision.utterance_id, decision.device_id, STAGE,
                           partition if partition is not None else -1)


def register(app: faust.App, settings: Settings, send: SendFn, registry: Registry,
             contexts: Any = None, connection: Connection | None = None,
             ledger: Ledger | None = None) -> ArbiterService:
    """Create the arbiter agent and, given ``connection``, the skill-heartbeat reader."""
    service = ArbiterService(settings, send, registry, contexts=contexts,
                             check_liveness=connection is not None, ledger=ledger)
    source = app.topic(settings.topic(topics.INTERPRETATIONS.short), key_serializer="raw",
                       value_serializer="raw", partitions=settings.partitions)

    @app.agent(source, name="arbiter", concurrency=1)
    async def arbiter(stream: Any) -> None:
        async for event in stream.events():
            m = event.message
            origin = Origin(m.topic, m.partition, m.offset, m.key)
            await isolated(service.pub, origin, service.on_event(origin, m.value))

    if connection is not None:
        @app.task  # type: ignore[untyped-decorator]
        async def watch_skills() -> None:
            # Every worker reads every heartbeat: no consumer group, all partitions.
            from streams.client import EventWatcher

            while True:
                try:
                    async with EventWatcher(connection, specs=[topics.SKILLS],
                                            topic_prefix=settings.topic_prefix,
                                            from_beginning=True) as watch:
                        async for _topic, message in watch.messages():
                            if isinstance(message, SkillStatus):
                                service.on_status(message)
                except asyncio.CancelledError:
                    raise
                except Exception:  # a broker hiccup: log, wait, reconnect
                    service.log.exception("arbiter.heartbeat_reader_failed")
                    await asyncio.sleep(1.0)

    return service
