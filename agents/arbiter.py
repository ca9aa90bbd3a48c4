"""The arbiter: ranked interpretations in, one directive or decline per utterance out.

Two pure cores and a thin agent:

* :class:`Registry` is the skill registry (a TOML file, validated on load).
* :class:`Arbiter` picks the skill for an utterance's interpretations in the
  device's context, or declines with a reason, explaining near-ties.
* :class:`Gate` holds a decision made on a speculative revision until the
  final end-point confirms that revision, releases it at once then, and drops
  it on the revision's reset. A directive is only ever released on a *final*
  interpretation, which exists only for a revision the final end-pointer
  confirmed, so nothing from a cancelled branch reaches a skill, whenever the
  reset arrives.

Directives go to the chosen skill's topic and, as the record of the decision,
to the directives topic; declines go to the directives topic.
"""

from __future__ import annotations

import asyncio
import dataclasses
import fnmatch
import re
import time
import tomllib
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import faust
import structlog

from agents.base import Origin, Publisher, SendFn, isolated
from agents.ledger import Ledger
from infra import metrics
from infra.config import Settings
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
from streams.nlu import Hypothesis, Interpretations

STAGE = "arbiter"
#: Bundled registry of the example skills.
DEFAULT_REGISTRY = Path(__file__).resolve().parent / "skills" / "registry.toml"
CAPABILITIES = frozenset({"screen", "speaker"})
#: Two interpretations closer than this in score are a near-tie.
NEAR_TIE = 0.1
_NAME = re.compile(r"^[a-z][a-z0-9-]{0,62}$")
_CLOSED_MEMORY = 4096


class RegistryError(ValueError):
    """The skill registry is malformed; the message names the entry and the field."""


@dataclasses.dataclass(frozen=True, slots=True)
class SkillSpec:
    """One skill: what it handles, what it needs, and how it ranks."""

    name: str
    intents: tuple[str, ...]
    topic: str
    requires: frozenset[str] = frozenset()
    priority: int = 0
    min_confidence: float = 0.3
    description: str = ""

    def handles(self, intent: str) -> bool:
        """Whether one of the skill's intent patterns (``iot_*``) matches ``intent``."""
        return any(fnmatch.fnmatchcase(intent, p) for p in self.intents)


_FIELDS = {"name", "intents", "topic", "requires", "priority", "min_confidence", "description"}


class Registry:
    """The skills, in file order; built from TOML ``[[skill]]`` tables."""

    def __init__(self, skills: Sequence[SkillSpec]) -> None:
        self.skills = tuple(skills)

    @classmethod
    def load(cls, path: Path | str = DEFAULT_REGISTRY) -> Registry:
        """Read and validate a registry file; raise ``RegistryError`` naming what is wrong."""
        path = Path(path)
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise RegistryError(f"{path}: {exc.strerror or type(exc).__name__}") from exc
        except UnicodeDecodeError as exc:
            raise RegistryError(f"{path}: not UTF-8 text (byte {exc.start})") from exc
        except tomllib.TOMLDecodeError as exc:
            # Python 3.11 writes the place into the message: "... (at line 3, column 15)".
            at = re.search(r"\(at line (\d+), column (\d+)\)$", str(exc))
            if at is None:
                raise RegistryError(f"{path}: not valid TOML: {exc}") from exc
            raise RegistryError(f"{path}:{at[1]}: not valid TOML: {str(exc)[:at.start()]}"
                                f"(column {at[2]})") from exc
        return cls.parse(data, str(path))

    @classmethod
    def parse(cls, data: Mapping[str, Any], source: str = "registry") -> Registry:
        """Validate a decoded registry document."""
        extra = set(data) - {"skill"}
        if extra:
            raise RegistryError(f"{source}: unknown top-level keys {sorted(extra)}; "
                                "use [[skill]] tables")
        entries = data.get("skill")
        if not isinstance(entries, list) or not entries:
            raise RegistryError(f"{source}: no [[skill]] entries")
        skills: list[SkillSpec] = []
        for i, entry in enumerate(entries):
            where = f"{source}: skill #{i + 1}"
            if not isinstance(entry, dict):
                raise RegistryError(f"{where}: must be a table")
            unknown = set(entry) - _FIELDS
            if unknown:
                raise RegistryError(f"{where}: unknown keys {sorted(unknown)}; "
                                    f"valid: {sorted(_FIELDS)}")
            name = entry.get("name")
            if not isinstance(name, str) or not _NAME.match(name):
                raise RegistryError(f"{where}: name must be lower-case letters, digits, '-'")
            where = f"{source}: skill {name!r}"
            if any(s.name == name for s in skills):
                raise RegistryError(f"{where}: defined twice")
            intents = entry.get("intents")
            if not isinstance(intents, list) or not intents or not all(
                    isinstance(x, str) and re.fullmatch(r"[a-z0-9_*]+", x) for x in intents):
                raise RegistryError(f"{where}: intents must be a non-empty list of intent "
                                    "names (lower case, '*' as a wildcard)")
            requires = entry.get("requires", [])
            if not isinstance(requires, list) or not set(requires) <= CAPABILITIES:
                raise RegistryError(f"{where}: requires must list capabilities from "
                                    f"{sorted(CAPABILITIES)}")
            priority = entry.get("priority", 0)
            if isinstance(priority, bool) or not isinstance(priority, int):
                raise RegistryError(f"{where}: priority must be an integer")
            conf = entry.get("min_confidence", 0.3)
            if isinstance(conf, bool) or not isinstance(conf, int | float) or not 0 <= conf <= 1:
                raise RegistryError(f"{where}: min_confidence must be a number in 0..1")
            topic = entry.get("topic", f"{topics.SKILL_TOPIC_PREFIX}{name}")
            if not isinstance(topic, str) or not re.fullmatch(r"[A-Za-z0-9._-]{1,200}", topic):
                raise RegistryError(f"{where}: topic must be a Kafka topic name")
            skills.append(SkillSpec(name, tuple(intents), topic, frozenset(requires), priority,
                                    float(conf), str(entry.get("description", ""))))
        return cls(skills)

    def get(self, name: str) -> SkillSpec | None:
        """The skill called ``name``."""
        return next((s for s in self.skills if s.name == name), None)

    def handling(self, intent: str) -> list[SkillSpec]:
        """Skills that handle ``intent``, highest priority first, then by name."""
        return sorted((s for s in self.skills if s.handles(intent)),
                      key=lambda s: (-s.priority, s.name))


def capabilities(ctx: Mapping[str, Any] | None) -> frozenset[str]:
    """What the device can do, from its context (a device without context has a speaker)."""
    ctx = ctx or {}
    caps = set()
    if ctx.get("has_screen"):
        caps.add("screen")
    if ctx.get("has_speaker", True):
        caps.add("speaker")
    return frozenset(caps)


@dataclasses.dataclass(frozen=True, slots=True)
class Choice:
    """A skill chosen for an interpretation, or why none was."""

    hypothesis: Hypothesis | None
    skill: SkillSpec | None
    reason: DeclineReason | None
    explanation: str


def _tie_order(pair: tuple[SkillSpec | None, Hypothesis]) -> tuple[int, float, str]:
    """Near-tie order: a routable skill first, higher priority, higher score, intent name."""
    skill, hyp = pair
    return (-(skill.priority if skill else -(10**9)), -hyp.score, hyp.intent)


class Arbiter:
    """Choose a skill for ranked interpretations (pure).

    For the best interpretation: skills that handle its intent, then those the
    device can serve, then those whose ``min_confidence`` the score reaches;
    among them the highest priority, then the name. When the runner-up
    interpretation is within :data:`NEAR_TIE` and would go to another skill,
    the tie is broken by skill priority, then score, then intent name, and the
    event says so.
    """

    def __init__(self, registry: Registry) -> None:
        self.registry = registry

    def _route(self, hyp: Hypothesis, caps: frozenset[str]
               ) -> tuple[SkillSpec | None, DeclineReason | None, str]:
        handlers = self.registry.handling(hyp.intent)
        if not handlers:
            return None, DeclineReason.OUT_OF_DOMAIN, f"no skill handles {hyp.intent}"
        capable = [s for s in handlers if s.requires <= caps]
        if not capable:
            needs = ", ".join(f"{s.name} needs {'+'.join(sorted(s.requires - caps))}"
                              for s in handlers)
            return None, DeclineReason.NO_CAPABLE_SKILL, f"{hyp.intent}: {needs}"
        confident = [s for s in capable if hyp.score >= s.min_confidence]
        if not confident:
            s = capable[0]
            return None, DeclineReason.LOW_CONFIDENCE, \
                f"{hyp.intent} scored {hyp.score:.2f} < {s.name}'s minimum {s.min_confidence:.2f}"
        skill = confident[0]
        others = [s.name for s in confident[1:]]
        why = f"{hyp.intent} -> {skill.name} (priority {skill.priority})"
        if others:
            why += f" over {', '.join(others)}"
        return skill, None, why

    def choose(self, hyps: Sequence[Hypothesis], ctx: Mapping[str, Any] | None) -> Choice:
        """Pick the skill for the ranked ``hyps`` in context ``ctx``."""
        if not hyps:
            return Choice(None, None, DeclineReason.NOT_UNDERSTOOD, "no interpretation")
        caps = capabilities(ctx)
        best = hyps[0]
        skill, reason, why = self._route(best, caps)
        if len(hyps) > 1 and best.score - hyps[1].score < NEAR_TIE and \
                hyps[1].intent != best.intent:
            second = hyps[1]
            skill2, _, why2 = self._route(second, caps)
            if skill2 is not None and (skill is None or skill2.name != skill.name):
                order = sorted([(skill, best), (skill2, second)], key=_tie_order)
                if skill is None or order[0][0] is skill2:
                    return Choice(second, skill2, None,
                                  f"near-tie {best.intent} {best.score:.2f} vs {second.intent} "
                                  f"{second.score:.2f}: chose {skill2.name} "
                                  f"({'no skill for the first' if skill is None else 'priority'})"
                                  f"; {why2}")
                why = (f"near-tie {best.intent} {best.score:.2f} vs {second.intent} "
                       f"{second.score:.2f}: kept {skill.name}; {why}")
        return Choice(best, skill, reason, why)


@dataclasses.dataclass(slots=True)
class _Held:
    decision: Directive | Declined
    decided_at: float


@dataclasses.dataclass(slots=True)
class Gate:
    """Release gating for one utterance (pure; times are passed in).

    ``hold`` keeps the decision for a speculative revision; ``confirm`` releases
    the decision for the final revision (held or new); ``cancel`` drops a
    revision at its reset. At most one decision is released per utterance.
    """

    held: dict[int, _Held] = dataclasses.field(default_factory=dict)
    cancelled: set[int] = dataclasses.field(default_factory=set)
    released: bool = False
    #: Decisions thrown away because their revision was reset.
    dropped: int = 0

    def hold(self, revision: int, decision: Directive | Declined, now: float) -> None:
        """Keep the decision made on the speculative interpretation of ``revision``."""
        if revision not in self.cancelled and not self.released:
            self.held[revision] = _Held(decision, now)

    def wants(self, revision: int) -> bool:
        """Whether a decision for ``revision`` could still be released."""
        return not self.released and revision not in self.cancelled

    def confirm(self, revision: int, now: float) -> tuple[Directive | Declined, float] | None:
        """Release the held decision for ``revision``: (decision, ms it was held)."""
        if not self.wants(revision):
            return None
        held = self.held.pop(revision, None)
        if held is None:
            return None
        self.released = True
        self.held.clear()
        return held.decision, (now - held.decided_at) * 1000

    def cancel(self, revision: int) -> None:
        """Drop ``revision`` (its reset arrived)."""
        self.cancelled.add(revision)
        if self.held.pop(revision, None) is not None:
            self.dropped += 1


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

    def on_status(self, status: SkillStatus) -> None:
        """Record a skill instance's heartbeat (or its clean shutdown)."""
        instances = self.heartbeats.setdefault(status.skill, {})
        if status.state is SkillState.DOWN:
            instances.pop(status.instance, None)
        else:
            instances[status.instance] = max(status.at_ms, instances.get(status.instance, 0))

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
        choice = self.arbiter.choose(msg.interpretations, ctx)
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
                         t_ms=msg.t_ms)

    async def on_event(self, origin: Origin, raw: bytes | None) -> None:
        """Follow one event of the interpretations topic."""
        message = await self.pub.decode(topics.INTERPRETATIONS, origin, raw)
        if message is None:
            return
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
            gate = self._gate(message.utterance_id)
            if gate.wants(message.revision) and \
                    not self.ledger.finished(message.utterance_id, message.device_id, STAGE):
                gate.released = True
                await self._publish(Declined(
                    device_id=message.device_id, utterance_id=message.utterance_id,
                    revision=message.revision, reason=DeclineReason.NOT_UNDERSTOOD,
                    detail=message.code, t_ms=message.t_ms), 0.0, origin.partition)
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

    async def _publish(self, decision: Directive | Declined, held_ms: float,
                       partition: int | None = None) -> None:
        """Publish a released decision on the partition of the interpretation it answers."""
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
        else:
            await self.pub.emit(topics.DIRECTIVES, decision.device_id, decision,
                                partition=partition)
            metrics.RELEASES.labels("declined").inc()
            log.info("arbiter.declined", revision=decision.revision,
                     reason=decision.reason.value, detail=decision.detail)
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
