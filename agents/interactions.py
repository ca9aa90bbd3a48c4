"""The interactions agent: one ``Interaction`` record per finished utterance.

Per utterance it joins what the pipeline already publishes, keyed by device:
the final transcript (``transcripts``), the rewrite and the final
interpretation (``interpretations``), the outcome (``directives``: directive,
declined or error), the device's feedback (``feedback``, signed like audio)
and the skill's answer and verdict (``responses``, read by every worker since
that topic is keyed by directive id). :class:`Joiner` is the pure core: it
decides success or defect and says when a record is due; the agent publishes
it on ``interactions``, where the rewrite layers learn from it.

Defect: a decline, an error, ``reject``/``misheard``/``barge-in``/``repeat``/
``abandon`` feedback, a similar request from the same device within
``interaction_repeat_s`` of the outcome, a skill's ``defect`` mark or a skill
that failed. Success otherwise, once ``interaction_window_s`` has passed
since the outcome with no defect signal. Utterances in which nothing was heard
(no transcript text: ``no-speech``) are not interactions. State is bounded:
at most ``interaction_limit`` utterances (the oldest decided one is written
early, an undecided one dropped), undecided ones expire, and ids already
written are remembered so that late events are ignored.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections import OrderedDict
from typing import Any

import faust
from rapidfuzz import fuzz

from agents.base import DeviceGate, Origin, Publisher, RecentIds, SendFn, isolated
from infra import metrics
from streams import topics
from streams.asr import Transcript
from streams.control import ErrorEvent
from streams.directive import Declined, Directive, ResponseStatus, SkillResponse
from streams.endpoint import EndpointKind
from streams.identity import signature_of
from streams.nlu import Interpretations
from streams.rewrite import Feedback, FeedbackKind, Interaction, Meaning, Outcome, Rewrite, form
from streams.settings import Settings

STAGE = "interactions"

#: Signals that make an interaction a defect.
DEFECT_FEEDBACK = frozenset({FeedbackKind.BARGE_IN, FeedbackKind.REJECT, FeedbackKind.MISHEARD,
                             FeedbackKind.REPEAT, FeedbackKind.ABANDON})
DEFECT_PREFIXES = ("declined:", "error:", "skill-defect", "skill-failed", "skill-interrupted")


def is_defect(signal: str) -> bool:
    """Whether ``signal`` (a feedback kind or one of the joiner's own tags) marks a defect."""
    return signal in DEFECT_FEEDBACK or signal.startswith(DEFECT_PREFIXES)


@dataclasses.dataclass(frozen=True, slots=True)
class JoinConfig:
    """How the joiner decides; durations in ms (see the ``interaction_*`` settings)."""

    window_ms: int = 8_000
    repeat_ms: int = 8_000
    repeat_similarity: float = 70.0
    session_gap_ms: int = 300_000
    limit: int = 10_000
    #: An utterance with no outcome this long after it was first seen is dropped.
    undecided_ttl_ms: int = 120_000

    def __post_init__(self) -> None:
        if not 0 < self.repeat_ms <= self.window_ms:
            raise ValueError("need 0 < repeat_ms <= window_ms")
        if not 0 <= self.repeat_similarity <= 100:
            raise ValueError("repeat_similarity must be in 0..100")
        if self.session_gap_ms <= 0 or self.limit < 1 or self.undecided_ttl_ms <= 0:
            raise ValueError("session_gap_ms, limit and undecided_ttl_ms must be positive")

    @classmethod
    def of(cls, settings: Settings) -> JoinConfig:
        """The joiner's configuration from the worker's settings."""
        return cls(window_ms=int(settings.interaction_window_s * 1000),
                   repeat_ms=int(settings.interaction_repeat_s * 1000),
                   repeat_similarity=settings.interaction_repeat_similarity,
                   session_gap_ms=int(settings.interaction_session_gap_s * 1000),
                   limit=settings.interaction_limit)


@dataclasses.dataclass(slots=True)
class Pending:
    """What is known so far of one utterance."""

    device_id: str
    utterance_id: str
    user_id: str
    session_id: str
    first_seen_ms: int
    partition: int
    heard: str = ""
    #: The rewrite interpreted instead of ``heard``, if any.
    rewrite: str = ""
    meaning: Meaning | None = None
    #: When the outcome was seen, wall-clock ms; None until then.
    outcome_ms: int | None = None
    signals: list[str] = dataclasses.field(default_factory=list)

    def signal(self, tag: str) -> None:
        """Add a signal once."""
        if tag not in self.signals:
            self.signals.append(tag)


@dataclasses.dataclass(frozen=True, slots=True)
class Finished:
    """A record to publish and the partition of the utterance it is about."""

    interaction: Interaction
    partition: int


class Joiner:
    """Join an utterance's events into one interaction record (pure; the caller gives times).

    ``now_ms`` is wall-clock ms since epoch. Call :meth:`due` periodically; it
    returns every record whose feedback window closed, each utterance once.
    """

    def __init__(self, config: JoinConfig | None = None) -> None:
        self.config = config or JoinConfig()
        self.pending: OrderedDict[str, Pending] = OrderedDict()
        #: device id -> (session id, wall ms of its latest request).
        self.sessions: OrderedDict[str, tuple[str, int]] = OrderedDict()
        #: Signals for utterances not seen yet (a mark or feedback ahead of the rest).
        self.early: OrderedDict[str, list[str]] = OrderedDict()
        self.written = RecentIds(max(4096, self.config.limit))
        self._forced: list[Finished] = []
        self.dropped = 0
        self.late = 0

    # -- input -------------------------------------------------------------------------
    def _get(self, device_id: str, utterance_id: str, now_ms: int, partition: int,
             user_id: str) -> Pending | None:
        if utterance_id in self.written:
            self.late += 1
            return None
        utt = self.pending.get(utterance_id)
        if utt is not None:
            return utt if utt.device_id == device_id else None
        session = self._session(device_id, now_ms)
        utt = self.pending[utterance_id] = Pending(device_id, utterance_id,
                                                   user_id or device_id, session, now_ms,
                                                   partition)
        for tag in self.early.pop(utterance_id, ()):
            utt.signal(tag)
        self._bound()
        return utt

    def _session(self, device_id: str, now_ms: int) -> str:
        current = self.sessions.pop(device_id, None)
        if current is None or now_ms - current[1] > self.config.session_gap_ms:
            session = f"{device_id}-{now_ms}"
        else:
            session = current[0]
        self.sessions[device_id] = (session, now_ms)
        while len(self.sessions) > self.config.limit:
            self.sessions.popitem(last=False)
        return session

    def _bound(self) -> None:
        while len(self.pending) > self.config.limit:
            _, oldest = self.pending.popitem(last=False)
            finished = self._finish(oldest)
            if finished is not None:
                self._forced.append(finished)
            else:
                self.dropped += 1

    def on_transcript(self, t: Transcript, now_ms: int, partition: int = 0,
                      user_id: str = "") -> None:
        """Take a transcript; the final one is what was heard (and may repeat an earlier one)."""
        utt = self._get(t.device_id, t.utterance_id, now_ms, partition, user_id)
        if utt is None or t.kind is not EndpointKind.FINAL or not t.nbest:
            return
        utt.heard = t.nbest[0].text.strip()
        self._repeats(utt, now_ms)

    def _repeats(self, new: Pending, now_ms: int) -> None:
        """Mark the device's recent decided requests that ``new`` says again."""
        said = form(new.heard)
        if not said:
            return
        for utt in self.pending.values():
            if utt is new or utt.device_id != new.device_id or utt.outcome_ms is None or \
                    now_ms - utt.outcome_ms > self.config.repeat_ms:
                continue
            before = form(utt.heard)
            if before and fuzz.token_set_ratio(said, before) >= self.config.repeat_similarity:
                utt.signal(FeedbackKind.REPEAT.value)

    def on_rewrite(self, r: Rewrite, now_ms: int, partition: int = 0, user_id: str = "") -> None:
        """Take the final revision's rewrite: the request as interpreted."""
        utt = self._get(r.device_id, r.utterance_id, now_ms, partition, user_id)
        if utt is not None and r.kind is EndpointKind.FINAL:
            utt.rewrite = r.rewrite
            utt.heard = utt.heard or r.original

    def on_interpretation(self, i: Interpretations, now_ms: int, partition: int = 0,
                          user_id: str = "") -> None:
        """Take the final interpretation's best hypothesis as the meaning (until a directive)."""
        utt = self._get(i.device_id, i.utterance_id, now_ms, partition, user_id)
        if utt is None or i.kind is not EndpointKind.FINAL or i.best is None:
            return
        if utt.meaning is None:
            utt.meaning = Meaning(intent=i.best.intent,
                                  slots={s.type: s.value or s.text for s in i.best.slots})
        if not utt.heard and i.best.text:
            utt.heard = i.best.text

    def on_outcome(self, o: Directive | Declined | ErrorEvent, now_ms: int, partition: int = 0,
                   user_id: str = "") -> None:
        """Take the utterance's outcome: its feedback window starts now."""
        utt = self._get(o.device_id, o.utterance_id, now_ms, partition, user_id)
        if utt is None or utt.outcome_ms is not None:
            return
        utt.outcome_ms = now_ms
        if isinstance(o, Directive):  # what the skill was asked to do is the meaning
            utt.meaning = Meaning(intent=o.intent,
                                  slots={s.type: s.value or s.text for s in o.slots})
        elif isinstance(o, Declined):
            utt.signal(f"declined:{o.reason.value}")
            if utt.meaning is None and o.intent:
                utt.meaning = Meaning(intent=o.intent)
        else:
            utt.signal(f"error:{o.code}")

    def _signal(self, utterance_id: str, device_id: str, tag: str) -> None:
        if utterance_id in self.written:
            self.late += 1
            return
        utt = self.pending.get(utterance_id)
        if utt is not None:
            if utt.device_id == device_id:
                utt.signal(tag)
            return
        self.early.setdefault(utterance_id, []).append(tag)
        while len(self.early) > self.config.limit:
            self.early.popitem(last=False)

    def on_feedback(self, f: Feedback) -> None:
        """Take the device's feedback about one of its utterances."""
        self._signal(f.utterance_id, f.device_id, f.kind.value)

    def on_response(self, r: SkillResponse) -> None:
        """Take a skill's answer: a failure or the skill's own mark is a signal."""
        if r.status in (ResponseStatus.FAILED, ResponseStatus.INTERRUPTED):
            self._signal(r.utterance_id, r.device_id, f"skill-{r.status.value}")
        if r.outcome is not None:
            self._signal(r.utterance_id, r.device_id, f"skill-{r.outcome.value}")

    # -- output ------------------------------------------------------------------------
    def _finish(self, utt: Pending) -> Finished | None:
        """The record of a decided utterance (None for one with nothing heard or undecided)."""
        self.written.add(utt.utterance_id)
        if utt.outcome_ms is None or not (utt.heard or utt.rewrite):
            return None
        outcome = Outcome.DEFECT if any(map(is_defect, utt.signals)) else Outcome.SUCCESS
        return Finished(Interaction(
            session_id=utt.session_id, user_id=utt.user_id, device_id=utt.device_id,
            utterance_id=utt.utterance_id, ts=utt.outcome_ms,
            utterance=utt.rewrite or utt.heard, interpretation=utt.meaning or Meaning(),
            outcome=outcome, signals=tuple(utt.signals),
            original=utt.heard if utt.rewrite else ""), utt.partition)

    def due(self, now_ms: int) -> list[Finished]:
        """Records whose window has closed (and any written early); drop stale undecided ones."""
        out, self._forced = self._forced, []
        for utt in list(self.pending.values()):
            if utt.outcome_ms is not None:
                if now_ms - utt.outcome_ms < self.config.window_ms:
                    continue
            elif now_ms - utt.first_seen_ms < self.config.undecided_ttl_ms:
                continue
            else:
                self.dropped += 1
            del self.pending[utt.utterance_id]
            finished = self._finish(utt)
            if finished is not None:
                out.append(finished)
        return out


def _now_ms() -> int:
    return int(time.time() * 1000)


class InteractionsService:
    """State and logic of the interactions agent, independent of how it is wired.

    The rewrite layers learn the records from the topic (``agents.rewriter.register_history``).
    """

    def __init__(self, settings: Settings, send: SendFn, *, contexts: Any = None,
                 gate: DeviceGate | None = None) -> None:
        self.settings = settings
        self.pub = Publisher(STAGE, send)
        self.joiner = Joiner(JoinConfig.of(settings))
        self._contexts = contexts
        self._gate = gate if gate is not None else DeviceGate(None)
        self._by_name = {settings.topic(s.short): s for s in
                         (topics.TRANSCRIPTS, topics.INTERPRETATIONS, topics.DIRECTIVES,
                          topics.FEEDBACK)}
        self.published = 0

    def _user(self, device_id: str) -> str:
        ctx = self._contexts.get(device_id) if self._contexts is not None else None
        return str((ctx or {}).get("user_id") or device_id)

    async def on_event(self, origin: Origin, raw: bytes | None,
                       now_ms: int | None = None) -> None:
        """Follow one record of the transcripts, interpretations, directives or feedback topics."""
        spec = self._by_name[origin.topic]
        message = await self.pub.decode(spec, origin, raw)
        if message is None:
            return
        now = _now_ms() if now_ms is None else now_ms
        j, part = self.joiner, origin.partition
        if isinstance(message, Feedback):
            if await self._gate.admit(self.pub, topics.FEEDBACK, origin, raw or b"", message):
                j.on_feedback(message)
                self.pub.log.info("interactions.feedback", device_id=message.device_id,
                                  utterance_id=message.utterance_id, kind=message.kind.value)
            return
        user = self._user(getattr(message, "device_id", ""))
        if isinstance(message, Transcript):
            j.on_transcript(message, now, part, user)
        elif isinstance(message, Rewrite):
            j.on_rewrite(message, now, part, user)
        elif isinstance(message, Interpretations):
            j.on_interpretation(message, now, part, user)
        elif isinstance(message, Directive | Declined) or (
                isinstance(message, ErrorEvent) and spec is topics.DIRECTIVES):
            j.on_outcome(message, now, part, user)

    def on_response(self, response: SkillResponse) -> None:
        """Take a skill's answer (read from the responses topic by every worker)."""
        self.joiner.on_response(response)

    async def flush(self, now_ms: int | None = None) -> int:
        """Publish the records that are due; return how many."""
        done = self.joiner.due(_now_ms() if now_ms is None else now_ms)
        for item in done:
            record = item.interaction
            await self.pub.emit(topics.INTERACTIONS, record.device_id, record,
                                partition=item.partition)
            self.published += 1
            metrics.INTERACTIONS.labels(record.outcome.value).inc()
            # Ids and the verdict only: the request's words stay on the topic.
            self.pub.log.info("interactions.written", device_id=record.device_id,
                              utterance_id=record.utterance_id, outcome=record.outcome.value,
                              signals=list(record.signals), rewritten=bool(record.original))
        return len(done)


def register(app: faust.App, settings: Settings, send: SendFn, *, contexts: Any = None,
             gate: DeviceGate | None = None, connection: Any = None) -> InteractionsService:
    """Create the interactions agent, its flush timer and (given ``connection``) the
    reader of the skills' answers."""
    service = InteractionsService(settings, send, contexts=contexts, gate=gate)
    source = app.topic(*service._by_name, key_serializer="raw", value_serializer="raw",
                       partitions=settings.partitions)

    @app.agent(source, name="interactions", concurrency=1)
    async def interactions(stream: Any) -> None:
        async for event in stream.events():
            m = event.message
            origin = Origin(m.topic, m.partition, m.offset, m.key, signature_of(m.headers))
            await isolated(service.pub, origin, service.on_event(origin, m.value))

    @app.timer(0.5)  # type: ignore[untyped-decorator]
    async def flush_interactions() -> None:
        await service.flush()

    if connection is not None:
        @app.task  # type: ignore[untyped-decorator]
        async def watch_responses() -> None:
            # Every worker reads every answer (keyed by directive id, not by device)
            # and applies those of the utterances it holds.
            from streams.client import EventWatcher

            while True:
                try:
                    async with EventWatcher(connection, specs=[topics.RESPONSES],
                                            topic_prefix=settings.topic_prefix) as watch:
                        async for _topic, message in watch.messages():
                            if isinstance(message, SkillResponse):
                                service.on_response(message)
                except asyncio.CancelledError:
                    raise
                except Exception:  # a broker hiccup: log, wait, reconnect
                    service.pub.log.exception("interactions.responses_reader_failed")
                    await asyncio.sleep(1.0)

    return service
