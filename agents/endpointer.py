"""The end-pointing agent: audio frames in, end-points, resets and errors out.

A thin Faust agent around :mod:`agents.endpointing`. It takes events in small
batches, assembles each utterance's frames, runs the VAD for every ready
chunk of every utterance in one onnxruntime call off the event loop, then
feeds the probabilities to each utterance's state machine in order.

The utterance ledger (:mod:`agents.ledger`, a changelogged global table)
records each utterance's device, the audio offset of its start and whether it
is still open. When a partition moves to this worker (a crash, a deploy, a
scale-out), the old owner's VAD state is gone: a frame of an utterance the
ledger shows open makes this worker read the utterance's audio back from its
start (:class:`agents.recovery.AudioLog`) and carry it on; the decisions it
re-makes are the same, and later stages drop those they already had. Only
when the audio cannot be read back does the utterance end with
``worker-rebalanced``. Records re-delivered after a rebalance are skipped
quietly: up to what this worker had processed (:class:`agents.recovery.Progress`),
and those of utterances the ledger shows closed.

With ``endpointer.semantic`` the agent also follows the transcripts topic
(written by ASR to its input's partition, so the partitions this worker owns
on the audio topic are the ones it reads there). A speculative transcript of
an utterance's *current* revision goes to :class:`agents.turn.TurnDecider`,
whose final silence :meth:`Endpointer.require_silence` applies: at once when
the silence has already passed, otherwise when it is reached. A transcript of
a revision a reset cancelled is ignored, so it cannot confirm the next one.
It follows the interpretations topic the same way: the speculative
interpretation of the judged revision, a few milliseconds later, re-judges the
same words blended with its confidence (``nlu_weight``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import faust
import numpy as np
import structlog

from agents.base import INTERNAL_ERROR, DeviceGate, Origin, Publisher, SendFn, isolated
from agents.endpointing import (
    STAGE,
    TARGET_RATE_HZ,
    Chunker,
    Decision,
    Endpointer,
    FrameAssembler,
    Problem,
)
from agents.ledger import Ledger
from agents.recovery import AudioLog, Progress, ReplayError
from agents.turn import TurnDecider
from infra import metrics
from models.eot import EotModel
from models.vad import CHUNK_MS, CHUNK_SAMPLES, Float32Array, SileroVad, VadState
from streams import topics
from streams.asr import Transcript
from streams.audio import SUPPORTED_SAMPLE_RATES_HZ, AudioFrame, UtteranceStart, UtteranceStop
from streams.codec import from_dict, loads
from streams.control import ErrorEvent
from streams.endpoint import Endpoint, EndpointKind, Reset
from streams.identity import signature_of
from streams.nlu import Interpretations
from streams.schema import SerializationError
from streams.settings import Settings

M = TypeVar("M", Transcript, Interpretations)

#: Closed utterance ids remembered so that trailing frames are dropped quietly.
_CLOSED_MEMORY = 4096
_STOP = object()


@dataclasses.dataclass(slots=True)
class Session:
    """One open utterance on this worker."""

    device_id: str
    utterance_id: str
    partition: int
    #: Offset of the utterance's start on the audio topic.
    start_offset: int
    assembler: FrameAssembler
    endpointer: Endpointer
    chunker: Chunker = dataclasses.field(default_factory=lambda: Chunker(CHUNK_SAMPLES))
    vad: VadState = dataclasses.field(default_factory=VadState)
    last_seen: float = dataclasses.field(default_factory=time.monotonic)
    log: Any = None
    #: The speculative words the turn decider last judged, and their revision: the
    #: interpretation of that revision re-judges them with its confidence.
    turn_words: tuple[int, str] | None = None


class EndpointerService:
    """State and logic of the end-pointing agent, independent of how it is wired."""

    def __init__(self, settings: Settings, send: SendFn, *, vad: SileroVad | None = None,
                 ledger: Ledger | None = None, known_devices: Any = None,
                 audio_log: AudioLog | None = None, gate: DeviceGate | None = None,
                 turn: TurnDecider | None = None) -> None:
        self.settings = settings
        #: The semantic final end-pointer; None: fixed ``final_silence_ms``.
        self.turn = turn
        if turn is None and settings.endpointer.semantic:
            self.turn = TurnDecider(settings.endpointer, EotModel.load())
        self.pub = Publisher(STAGE, send)
        self.gate = gate if gate is not None else DeviceGate(settings.device_master_key())
        self.vad = vad or SileroVad()
        self.sessions: dict[str, Session] = {}
        self._closed: OrderedDict[str, None] = OrderedDict()
        self.ledger = ledger if ledger is not None else Ledger()
        self._known_devices = known_devices
        self._audio_log = audio_log
        self.progress = Progress()
        #: Utterances carried on from another worker's partition, and rebalance drops.
        self.recovered = 0
        #: Set by :meth:`drain`: utterances starting now are left to the next owner.
        self.draining = False
        #: Deferred utterance id -> its device.
        self._deferred: dict[str, str] = {}
        #: (partition, offset) of the starts left unacknowledged while draining, so
        #: that the committed offset stays below them and the next owner reads them.
        self.held: set[tuple[int, int]] = set()
        #: The held records themselves (the agent's events), kept referenced.
        self.kept: list[Any] = []
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vad")
        #: Sessions whose handling raised in the current batch (ended after it).
        self._broken: list[Session] = []

    def close(self) -> None:
        """Release the inference thread."""
        self._executor.shutdown(wait=False, cancel_futures=True)

    def drain(self) -> None:
        """Take no new utterances (leave them unacknowledged); finish the open ones."""
        self.draining = True

    def busy(self) -> int:
        """Open utterances not yet decided (draining waits for them)."""
        waiting = set(self._deferred.values())
        return sum(not s.endpointer.done and s.device_id not in waiting
                   for s in self.sessions.values())

    def on_assigned(self, partitions: set[int]) -> None:
        """Drop the sessions of audio partitions this worker no longer owns."""
        for session in [s for s in self.sessions.values() if s.partition not in partitions]:
            session.log.info("utterance.moved", partition=session.partition)
            self._forget(session, closed=False)
        self.progress.keep(partitions)
        metrics.OPEN_UTTERANCES.labels(STAGE).set(len(self.sessions))

    async def handle_batch(self, batch: list[tuple[Origin, bytes | None]], *,
                           replay: bool = False) -> None:
        """Process a batch of audio-topic messages in order.

        ``replay``: records read back for an utterance being carried on; they
        are below what this worker processed, and are not re-deliveries.
        """
        started = time.perf_counter()
        ops: dict[int, tuple[Session, list[Any]]] = {}
        for origin, raw in batch:
            if not replay:
                if self.progress.seen(origin):
                    continue  # re-delivered after a rebalance: already processed here
                self.progress.mark(origin)
            if not await isolated(self.pub, origin, self._take(origin, raw, ops)):
                self._fail_record(origin, ops)
        if ops:
            await self._run(list(ops.values()))
            metrics.STAGE_LATENCY.labels(STAGE).observe(time.perf_counter() - started)
        await self._end_broken()
        metrics.OPEN_UTTERANCES.labels(STAGE).set(len(self.sessions))

    async def _take(self, origin: Origin, raw: bytes | None,
                    ops: dict[int, tuple[Session, list[Any]]]) -> None:
        """Handle one audio-topic record (its chunks join ``ops``)."""
        message = await self.pub.decode(topics.AUDIO, origin, raw)
        if message is None or not await self.gate.admit(self.pub, topics.AUDIO, origin,
                                                         raw or b"", message):
            return
        if getattr(message, "utterance_id", None) in self._deferred:
            return  # the next owner reads it from its start
        if isinstance(message, UtteranceStart):
            if self.draining and not self._decided(message):
                self._defer(origin, message)
                return
            await self._start(origin, message, ops)
        elif isinstance(message, AudioFrame):
            session = await self._session_for(origin, message.device_id,
                                              message.utterance_id)
            if session is not None:
                chunks, problems = session.assembler.push(message)
                await self._report(origin, session, problems)
                self._queue(ops, session, chunks)
        elif isinstance(message, UtteranceStop):
            session = await self._session_for(origin, message.device_id,
                                              message.utterance_id, stopping=True)
            if session is not None:
                chunks, problems = session.assembler.flush()
                await self._report(origin, session, problems)
                self._queue(ops, session, chunks)
                ops[id(session)][1].append(_STOP)

    def _fail_record(self, origin: Origin, ops: dict[int, tuple[Session, list[Any]]]) -> None:
        """A record's handling raised: its device's open utterance ends, no other."""
        session = self.sessions.get((origin.key or b"").decode(errors="replace"))
        if session is None:
            return
        ops.pop(id(session), None)
        self._broken.append(session)

    def _decided(self, start: UtteranceStart) -> bool:
        entry = self.ledger.get(start.utterance_id, start.device_id)
        return entry is not None and not entry["open"]

    def _defer(self, origin: Origin, start: UtteranceStart) -> None:
        self._deferred[start.utterance_id] = start.device_id
        self.held.add((origin.partition, origin.offset))
        structlog.get_logger("voicestream.endpointer").info(
            "utterance.deferred", stage=STAGE, device_id=start.device_id,
            utterance_id=start.utterance_id, partition=origin.partition)

    def _queue(self, ops: dict[int, tuple[Session, list[Any]]], session: Session,
               samples: list[Float32Array]) -> None:
        session.last_seen = time.monotonic()
        entry = ops.setdefault(id(session), (session, []))
        if not session.endpointer.done:
            entry[1].extend(session.chunker.push(samples))

    async def _run(self, work: list[tuple[Session, list[Any]]]) -> None:
        """Run the VAD for all queued chunks off the loop, then apply decisions in order."""
        loop = asyncio.get_running_loop()
        probs = await loop.run_in_executor(self._executor, self._infer, work)
        for (session, items), session_probs in zip(work, probs, strict=True):
            try:
                await self._decide(session, items, session_probs)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a bug: this utterance ends, the others go on
                session.log.exception("utterance.failed", error=type(exc).__name__)
                self._broken.append(session)

    async def _decide(self, session: Session, items: list[Any], probs: list[float]) -> None:
        it = iter(probs)
        decisions: list[Decision] = []
        for item in items:
            if item is _STOP:
                decisions.extend(session.endpointer.stop())
            else:
                decisions.extend(session.endpointer.process(CHUNK_MS, next(it)))
        for decision in decisions:
            await self._publish(session, decision)
        if items and items[-1] is _STOP:
            self._forget(session, closed=True)

    async def _end_broken(self) -> None:
        """End the utterances whose handling raised with ``internal-error``."""
        broken, self._broken = self._broken, []
        for session in broken:
            if self.sessions.get(session.device_id) is not session:
                continue
            if not session.endpointer.done:
                await self._publish(session, self._error(
                    session, INTERNAL_ERROR, "the end-pointer failed on this utterance"))
            self._forget(session, closed=True)

    def _infer(self, work: list[tuple[Session, list[Any]]]) -> list[list[float]]:
        """Batch chunk k of every session into one call, for k = 0, 1, ..."""
        queues = [[c for c in items if c is not _STOP] for _, items in work]
        out: list[list[float]] = [[] for _ in work]
        depth = max((len(q) for q in queues), default=0)
        for k in range(depth):
            idx = [i for i, q in enumerate(queues) if len(q) > k]
            states = [work[i][0].vad for i in idx]
            chunks = [np.asarray(queues[i][k], dtype=np.float32) for i in idx]
            metrics.VAD_BATCH.observe(len(idx))
            for i, p in zip(idx, self.vad.probabilities(states, chunks), strict=True):
                out[i].append(p)
        return out

    async def _publish(self, session: Session, decision: Decision) -> None:
        await self.pub.emit(topics.ENDPOINTS, session.device_id, decision,
                            partition=session.partition)
        if isinstance(decision, Endpoint):
            metrics.ENDPOINTS.labels(decision.kind.value).inc()
            session.log.info("endpoint", kind=decision.kind.value, revision=decision.revision,
                             at_ms=decision.at_ms, t_ms=decision.t_ms, forced=decision.forced)
        elif isinstance(decision, Reset):
            metrics.RESETS.inc()
            session.log.info("reset", cancelled_revision=decision.cancelled_revision,
                             t_ms=decision.t_ms)
        if isinstance(decision, ErrorEvent) or (
            isinstance(decision, Endpoint) and decision.kind is EndpointKind.FINAL
        ):
            self.ledger.close(session.utterance_id, session.device_id,
                              failed=isinstance(decision, ErrorEvent))

    async def on_transcript(self, origin: Origin, raw: bytes | None) -> None:
        """Follow one transcripts-topic record: a speculative transcript of the current
        revision sets that revision's final silence (and may confirm it at once).

        Records that do not decode are left to the NLU agent, which dead-letters them.
        """
        message = self._speculative(raw, topics.TRANSCRIPTS, Transcript)
        if message is None:
            return
        session = self._turn_session(origin, message.device_id, message.utterance_id)
        if session is None:
            return
        if message.revision != session.endpointer.revision:
            session.log.info("turn.stale", revision=message.revision,
                             current=session.endpointer.revision)
            return
        if message.language != "en":
            # The end-of-turn model reads English: other languages wait the full silence.
            session.log.info("turn.other_language", revision=message.revision,
                             language=message.language)
            return
        text = message.nbest[0].text if message.nbest else ""
        session.turn_words = (message.revision, text)
        await self._judge(session, message.revision, text, None)

    async def on_interpretation(self, origin: Origin, raw: bytes | None) -> None:
        """Follow one interpretations-topic record: the speculative interpretation of the
        revision whose words were judged re-judges them with its confidence.

        It comes a few milliseconds after the transcript (NLU follows ASR), so it can
        only lengthen or shorten a final silence that has not passed yet.
        """
        message = self._speculative(raw, topics.INTERPRETATIONS, Interpretations)
        if message is None:
            return
        session = self._turn_session(origin, message.device_id, message.utterance_id)
        if session is None or session.turn_words is None:
            return
        revision, text = session.turn_words
        if message.revision != revision or revision != session.endpointer.revision:
            return
        best = message.best
        await self._judge(session, revision, text, best.score if best is not None else 0.0)

    def _speculative(self, raw: bytes | None, spec: topics.TopicSpec, kind: type[M]) -> M | None:
        """A speculative ``kind`` record of ``spec``'s topic, when the turn decider is on;
        records that do not decode are the consuming stage's to dead-letter."""
        if self.turn is None or raw is None:
            return None
        try:
            message = from_dict(loads(raw, spec.codec))
        except SerializationError:
            return None
        if not isinstance(message, kind) or message.kind is not EndpointKind.SPECULATIVE:
            return None
        return message

    def _turn_session(self, origin: Origin, device_id: str, utterance_id: str) -> Session | None:
        """The open session a transcript or interpretation record speaks of, if this worker
        holds it on the record's partition."""
        session = self.sessions.get(device_id)
        if (session is None or session.utterance_id != utterance_id
                or session.partition != origin.partition or session.endpointer.done):
            return None
        return session

    async def _judge(self, session: Session, revision: int, text: str,
                     nlu_confidence: float | None) -> None:
        assert self.turn is not None
        decision = self.turn.decide(text, nlu_confidence=nlu_confidence,
                                    device_type=self._device_type(session.device_id))
        metrics.TURN_SILENCE.observe(decision.silence_ms)
        session.log.info("turn", revision=revision, silence_ms=decision.silence_ms,
                         p_complete=decision.p_complete,
                         nlu_confidence=nlu_confidence)  # never the words
        for d in session.endpointer.require_silence(revision, decision.silence_ms):
            await self._publish(session, d)

    def _device_type(self, device_id: str) -> str:
        ctx = self._known_devices.get(device_id) if self._known_devices is not None else None
        kind = ctx.get("device_type", "") if isinstance(ctx, dict) else ""
        return kind if isinstance(kind, str) else ""

    async def _start(self, origin: Origin, start: UtteranceStart,
                     ops: dict[int, tuple[Session, list[Any]]]) -> None:
        dev, utt = start.device_id, start.utterance_id
        log = structlog.get_logger("voicestream.endpointer").bind(
            stage=STAGE, device_id=dev, utterance_id=utt)
        if start.sample_rate_hz not in SUPPORTED_SAMPLE_RATES_HZ:
            await self._refuse(origin, dev, utt, "unsupported-sample-rate",
                               f"{start.sample_rate_hz} Hz; supported: "
                               f"{', '.join(map(str, SUPPORTED_SAMPLE_RATES_HZ))}")
            return
        if start.channels != 1:
            await self._refuse(origin, dev, utt, "unsupported-format",
                               f"{start.channels} channels; need mono s16le")
            return
        if self.settings.require_known_devices and (
            self._known_devices is None or self._known_devices.get(dev) is None
        ):
            await self._refuse(origin, dev, utt, "unknown-device",
                               "no context was ever published for this device")
            return
        entry = self.ledger.get(utt, dev)
        if entry is None and utt in self.ledger.table:
            await self.pub.dead_letter(origin, "duplicate-start",
                                       "utterance id in use by another device",
                                       device_id=dev, utterance_id=utt)
            return
        if entry is not None and entry.get("offset") == origin.offset and not entry["open"]:
            self._remember_closed(utt)
            return  # re-delivered after a partition move; decided already
        if entry is not None and entry.get("offset") != origin.offset:
            await self.pub.dead_letter(origin, "duplicate-start", "utterance already started",
                                       device_id=dev, utterance_id=utt)
            return
        queued = self.sessions.get(dev)
        if queued is not None and id(queued) in ops:
            # The device's open utterance has audio (perhaps its stop) earlier in this
            # batch: decide that first, or a backlog read in one batch would have each
            # next start supersede an utterance its own stop had already ended.
            await self._run([ops.pop(id(queued))])
        old = self.sessions.get(dev)
        if old is not None:
            if old.utterance_id == utt:
                await self.pub.dead_letter(origin, "duplicate-start", "utterance already open",
                                           device_id=dev, utterance_id=utt)
                return
            if not old.endpointer.done:
                await self._publish(old, self._error(old, "superseded",
                                                     f"device started utterance {utt}"))
            self._forget(old, closed=True)
        elif utt in self._closed:
            await self.pub.dead_letter(origin, "duplicate-start", "utterance already closed",
                                       device_id=dev, utterance_id=utt)
            return
        if len(self.sessions) >= self.settings.max_open_utterances:
            await self._refuse(origin, dev, utt, "too-many-utterances",
                               f"worker holds {len(self.sessions)} open utterances")
            return
        self.sessions[dev] = Session(
            device_id=dev, utterance_id=utt, partition=origin.partition,
            start_offset=origin.offset,
            assembler=FrameAssembler(start.sample_rate_hz),
            endpointer=Endpointer(self.settings.endpointer, dev, utt), log=log,
        )
        if self.ledger.get(utt, dev) is None:
            self.ledger.start(utt, dev, origin.partition, origin.offset)
        log.info("utterance.start", sample_rate_hz=start.sample_rate_hz,
                 resampled=start.sample_rate_hz != TARGET_RATE_HZ)

    async def _refuse(self, origin: Origin, dev: str, utt: str, code: str, why: str) -> None:
        """Dead-letter a start message and end its utterance with the same code."""
        await self.pub.dead_letter(origin, code, why, device_id=dev, utterance_id=utt)
        await self.pub.emit(topics.ENDPOINTS, dev, ErrorEvent(
            device_id=dev, utterance_id=utt, stage=STAGE, code=code, message=why),
            partition=origin.partition)
        self._remember_closed(utt)

    async def _session_for(self, origin: Origin, dev: str, utt: str, *,
                           stopping: bool = False) -> Session | None:
        session = self.sessions.get(dev)
        if session is not None and session.utterance_id == utt:
            if session.endpointer.done and stopping:
                self._forget(session, closed=True)
                return None
            return None if session.endpointer.done else session
        if utt in self._closed:
            return None  # frames after the final end-point, or after an error: expected
        entry = self.ledger.get(utt, dev)
        if entry is not None and entry["open"]:
            # Another worker held this utterance's audio state: carry it on from its audio.
            return await self._recover(origin, entry, dev, utt)
        if entry is not None:
            # Decided already (here or by a worker this partition moved from): the
            # trailing frames, or records re-delivered after the move.
            self._remember_closed(utt)
            return None
        await self.pub.dead_letter(origin, "unknown-utterance",
                                   "audio for an utterance that was never started",
                                   device_id=dev, utterance_id=utt)
        self._remember_closed(utt)
        return None

    async def _recover(self, origin: Origin, entry: dict[str, Any], dev: str, utt: str
                       ) -> Session | None:
        """Rebuild an utterance begun on another worker by processing its audio again."""
        log = structlog.get_logger("voicestream.endpointer").bind(
            stage=STAGE, device_id=dev, utterance_id=utt)
        start = entry.get("offset")
        why = "the worker that held it left and no audio log is configured"
        if self._audio_log is not None and isinstance(start, int) and \
                entry.get("partition") == origin.partition and start < origin.offset:
            try:
                records = await self._audio_log.read(origin.partition, start, origin.offset,
                                                     origin.key or dev.encode())
            except ReplayError as exc:
                why = str(exc)
            else:
                await self.handle_batch(records, replay=True)
                session = self.sessions.get(dev)
                if session is not None and session.utterance_id == utt:
                    self.recovered += 1
                    metrics.RECOVERED.labels(STAGE).inc()
                    log.info("utterance.recovered", records=len(records), from_offset=start,
                             partition=origin.partition)
                    return None if session.endpointer.done else session
                why = "its start could not be processed again"
        self._remember_closed(utt)
        self.ledger.close(utt, dev, failed=True)
        await self.pub.emit(topics.ENDPOINTS, dev, ErrorEvent(
            device_id=dev, utterance_id=utt, stage=STAGE, code="worker-rebalanced",
            message=f"the utterance moved to another worker mid-stream and could not be "
                    f"carried on ({why}); please repeat"), partition=origin.partition)
        return None

    async def _report(self, origin: Origin, session: Session, problems: list[Problem]) -> None:
        for problem in problems:
            if problem.dead_letter:
                await self.pub.dead_letter(origin, problem.code, problem.message,
                                           device_id=session.device_id,
                                           utterance_id=session.utterance_id)
            else:
                session.log.warning(problem.code, detail=problem.message, seq=problem.seq)

    def _error(self, session: Session, code: str, message: str) -> ErrorEvent:
        session.endpointer.done = True
        return ErrorEvent(device_id=session.device_id, utterance_id=session.utterance_id,
                          stage=STAGE, code=code, message=message,
                          revision=session.endpointer.revision, t_ms=session.endpointer.pos_ms)

    def _forget(self, session: Session, *, closed: bool) -> None:
        if self.sessions.get(session.device_id) is session:
            del self.sessions[session.device_id]
        if closed:
            self._remember_closed(session.utterance_id)

    def _remember_closed(self, utterance_id: str) -> None:
        self._closed[utterance_id] = None
        while len(self._closed) > _CLOSED_MEMORY:
            self._closed.popitem(last=False)

    async def expire(self, now: float | None = None) -> None:
        """End utterances that sent nothing for ``utterance_idle_timeout_s``."""
        now = time.monotonic() if now is None else now
        ttl = self.settings.utterance_idle_timeout_s
        for session in list(self.sessions.values()):
            if now - session.last_seen < ttl:
                continue
            if not session.endpointer.done:
                await self._publish(session, self._error(
                    session, "stream-timeout", f"no audio for {ttl:.0f} s and no stop"))
            self._forget(session, closed=True)
        metrics.OPEN_UTTERANCES.labels(STAGE).set(len(self.sessions))


def register(app: faust.App, settings: Settings, send: SendFn, *, ledger: Ledger,
             contexts: Any = None, audio_log: AudioLog | None = None,
             gate: DeviceGate | None = None) -> EndpointerService:
    """Create the end-pointing agent and its expiry timer on ``app``."""
    audio_name = settings.topic(topics.AUDIO.short)
    audio = app.topic(audio_name, key_serializer="raw",
                      value_serializer="raw", partitions=settings.partitions)
    service = EndpointerService(settings, send, ledger=ledger, known_devices=contexts,
                                audio_log=audio_log, gate=gate)

    @app.on_partitions_assigned.connect
    async def moved(_app: Any, /, *args: Any, signal: Any, **_kwargs: Any) -> None:
        assigned: set[Any] = args[0]  # the new assignment: every topic-partition we own
        service.on_assigned({tp.partition for tp in assigned if tp.topic == audio_name})

    @app.agent(audio, name="endpointer", concurrency=1)
    async def endpointer(stream: Any) -> None:
        # Faust acknowledges each batch once it is handled, but for the starts a
        # draining worker leaves to the next owner: one more reference keeps those
        # unacknowledged, and the service keeps the events, so that they stay in
        # Faust's weak set of unacknowledged records (which holds the commit back)
        # after this agent stops, until the consumer's last commit.
        async for events in stream.take_events(64, within=0.002):
            batch = [(Origin(e.message.topic, e.message.partition, e.message.offset,
                             e.message.key, signature_of(e.message.headers)), e.message.value)
                     for e in events]
            try:
                await service.handle_batch(batch)
            finally:
                for e in events:
                    if (e.message.partition, e.message.offset) in service.held:
                        e.message.incref()
                        service.kept.append(e)

    def follow(spec: topics.TopicSpec, name: str,
               handle: Callable[[Origin, bytes | None], Awaitable[None]]) -> None:
        """An agent that hands each record of ``spec``'s topic to ``handle``."""
        topic = app.topic(settings.topic(spec.short), key_serializer="raw",
                          value_serializer="raw", partitions=settings.partitions)

        @app.agent(topic, name=name, concurrency=1)
        async def follower(stream: Any) -> None:
            async for event in stream.events():
                m = event.message
                origin = Origin(m.topic, m.partition, m.offset, m.key)
                await isolated(service.pub, origin, handle(origin, m.value))

    if service.turn is not None:
        follow(topics.TRANSCRIPTS, "endpointer-turn", service.on_transcript)
        if settings.endpointer.nlu_weight > 0:
            follow(topics.INTERPRETATIONS, "endpointer-turn-nlu", service.on_interpretation)

    @app.timer(1.0)  # type: ignore[untyped-decorator]
    async def expire_idle() -> None:
        await service.expire()

    return service


def endpoint_audio(pcm: bytes, sample_rate_hz: int, settings: Settings,
                   vad: SileroVad, *, frame_ms: int = 20,
                   device_id: str = "offline", utterance_id: str = "offline") -> list[Decision]:
    """End-point a whole recording offline, frame by frame, as the agent would."""
    assembler = FrameAssembler(sample_rate_hz)
    endpointer = Endpointer(settings.endpointer, device_id, utterance_id)
    chunker = Chunker(CHUNK_SAMPLES)
    state = VadState()
    step = sample_rate_hz * frame_ms // 1000 * 2
    decisions: list[Decision] = []
    for seq, i in enumerate(range(0, len(pcm), step)):
        frame = AudioFrame(device_id=device_id, utterance_id=utterance_id, seq=seq,
                           pcm=pcm[i:i + step], sample_rate_hz=sample_rate_hz,
                           audio_ms=seq * frame_ms)
        samples, _ = assembler.push(frame)
        for chunk in chunker.push(samples):
            (prob,) = vad.probabilities([state], [chunk])
            decisions.extend(endpointer.process(CHUNK_MS, prob))
        if endpointer.done:
            return decisions
    return decisions + endpointer.stop()
