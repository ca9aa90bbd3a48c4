"""The speech-recognition agent: audio plus end-points in, n-best transcripts out.

It keeps a bounded buffer of each utterance's 16 kHz audio (from the audio
topic, assembled like the end-pointer does) and follows the end-pointer's
decisions: it decodes when a speculative end-point arrives, reuses that
result when the final end-point confirms the revision, and drops the work of
a revision when its reset arrives. :class:`RevisionTracker` is the pure core
of that protocol; decoding runs in a single inference thread off the loop.

When an utterance's partition moved here from another worker mid-utterance,
its audio buffer is rebuilt by reading the utterance's records back from the
audio topic (from the start offset in the utterance ledger,
:mod:`agents.ledger`), whether a frame or an end-point of it arrives first;
see :mod:`agents.recovery`. An utterance's end-point records are acknowledged
only once its final transcript (or error) is published, so that a worker
dying mid-decode leaves them to the next owner; one the ledger shows
finished is not transcribed again.

While the user speaks, the agent also sends ``Partial`` transcripts: every
``asr_partial_ms`` of new speech (a level gate on the buffered audio: louder
than -50 dBFS and than 10 dB over the utterance's quietest 20 ms, or -35
dBFS when that is higher), a greedy
decode of the audio so far, but only when the inference thread is idle, so
that a partial never waits in front of an end-pointed revision; one that is
running stops at its next decoder step when other work is queued; none
starts while the CPU pressure (Linux PSI) is above
``asr_partial_max_cpu_pressure``. A revision's partials stop with its
speculative end-point.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import time
from collections.abc import Awaitable, Callable
from typing import Any

import faust
import numpy as np
import structlog

from agents.base import (
    CpuPressure,
    DeviceGate,
    Once,
    Origin,
    Overloaded,
    RecentIds,
    SendFn,
    Skipped,
    isolated,
)
from agents.endpointing import FrameAssembler
from agents.ledger import Ledger
from agents.locales import LocaleRouter, LocaleUnsupported
from agents.recovery import AudioLog, Progress, ReplayError
from agents.revisions import Decode, Emit, RevisionTracker
from agents.stage import CLOSED_MEMORY, UtteranceStage
from infra import metrics
from models.asr import (
    AsrError,
    Engine,
    Float32Array,
    Hypothesis,
    PartialEngine,
    decoder_name,
)
from streams import topics
from streams.asr import NBest, Partial, Transcript, WordTime
from streams.audio import SUPPORTED_SAMPLE_RATES_HZ, AudioFrame, UtteranceStart, UtteranceStop
from streams.codec import decode
from streams.control import ErrorEvent
from streams.endpoint import Endpoint, EndpointKind, Reset
from streams.identity import signature_of
from streams.schema import SerializationError
from streams.settings import Settings

STAGE = "asr"
RATE = 16000
#: Audio after the end of speech that the decoder also gets, ms.
TAIL_MS = 200
#: How long a decode waits for its audio to arrive, s.
AUDIO_WAIT_S = 5.0
#: ``Utterance.tasks`` key of the partial decode in flight (revisions are >= 0).
PARTIAL_TASK = -1
#: Speech gate for partials: a 20 ms block is speech when its RMS is above the
#: floor and 10 dB over the quietest block of the utterance so far, that second
#: threshold capped (speech that starts with the utterance has no quiet block).
SPEECH_FLOOR_RMS = 10 ** (-50 / 20)
SPEECH_OVER_QUIETEST = 10 ** (10 / 20)
SPEECH_CAP_RMS = 10 ** (-35 / 20)
BLOCK = RATE // 50


@dataclasses.dataclass(frozen=True, slots=True)
class Result:
    """What decoding one revision gave."""

    hypotheses: list[Hypothesis]
    at_ms: int
    compute_ms: float = 0.0
    phrases: int = 0
    locale: str = "en-US"
    language: str = "en"
    #: The engine that decoded it ("" for the worker's own).
    engine: str = ""


@dataclasses.dataclass(slots=True)
class Utterance:
    """Audio and revision state of one utterance on this worker."""

    device_id: str
    utterance_id: str
    assembler: FrameAssembler
    max_samples: int
    #: Partition of the utterance's audio; its transcripts go to the same one.
    partition: int = 0
    #: Offset of the last audio record added (records at or below it are not added again).
    last_offset: int = -1
    chunks: list[Float32Array] = dataclasses.field(default_factory=list)
    samples: int = 0
    stopped: bool = False
    tracker: RevisionTracker[Result] = dataclasses.field(default_factory=RevisionTracker)
    tasks: dict[int, asyncio.Task[None]] = dataclasses.field(default_factory=dict)
    arrived: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)
    last_seen: float = dataclasses.field(default_factory=time.monotonic)
    log: Any = None
    #: Acknowledgements of this utterance's end-pointer events, given once it is finished
    #: here: until then a worker taking the partition over receives them again.
    acks: list[Callable[[], object]] = dataclasses.field(default_factory=list)
    #: Partials: the revision being spoken (resets seen), whether its speculative
    #: end-point came (its partials stop), speech samples since the last partial,
    #: partials sent, and the quietest 20 ms block's RMS (the level gate's floor).
    open_revision: int = 0
    endpointed: bool = False
    speech_since_partial: int = 0
    partials: int = 0
    quietest: float = float("inf")
    _gated: int = 0

    def add(self, chunks: list[Float32Array]) -> None:
        """Append audio, refusing to grow past ``max_samples``."""
        for c in chunks:
            room = self.max_samples - self.samples
            if room <= 0:
                break
            self.chunks.append(c[:room])
            self.samples += min(c.size, room)
        self.last_seen = time.monotonic()
        self.arrived.set()

    def gate_speech(self) -> None:
        """Count the speech in the 20 ms blocks added since the last call."""
        whole = (self.samples - self._gated) // BLOCK * BLOCK
        if whole <= 0:
            return
        tail = self._last(self.samples - self._gated)[:whole]
        rms = np.sqrt(np.mean(np.square(tail.reshape(-1, BLOCK), dtype=np.float64), axis=1))
        self.quietest = min(self.quietest, float(rms.min()))
        threshold = max(SPEECH_FLOOR_RMS,
                        min(self.quietest * SPEECH_OVER_QUIETEST, SPEECH_CAP_RMS))
        self.speech_since_partial += int(np.count_nonzero(rms > threshold)) * BLOCK
        self._gated += whole

    def _last(self, n: int) -> Float32Array:
        """The last ``n`` samples, joining only the chunks that hold them (called for
        every frame: the whole buffer is not copied each time)."""
        parts: list[Float32Array] = []
        held = 0
        for chunk in reversed(self.chunks):
            if held >= n:
                break
            parts.append(chunk[max(0, chunk.size - (n - held)):])
            held += parts[-1].size
        return np.concatenate(parts[::-1]) if parts else np.zeros(0, np.float32)

    def audio(self, end_ms: int) -> Float32Array:
        """Return the audio from the start to ``end_ms``."""
        if not self.chunks:
            return np.zeros(0, np.float32)
        if len(self.chunks) > 1:
            self.chunks = [np.concatenate(self.chunks)]
        return self.chunks[0][: end_ms * RATE // 1000]


class AsrService(UtteranceStage[Utterance]):
    """State and logic of the ASR agent, independent of how it is wired."""

    def __init__(self, settings: Settings, send: SendFn,
                 engine_factory: Callable[[], Engine], *, contexts: Any = None,
                 ledger: Ledger | None = None, audio_log: AudioLog | None = None,
                 gate: DeviceGate | None = None,
                 pressure: Callable[[], float | None] | None = None) -> None:
        super().__init__(STAGE, topics.TRANSCRIPTS, settings, send, ledger,
                         settings.asr_queue_limit)
        #: CPU pressure, %: partials are the first work shed when the box has none spare.
        self.pressure = pressure if pressure is not None else CpuPressure()
        self.partials_shed = 0
        self._shedding = False
        self.gate = gate if gate is not None else DeviceGate(settings.device_master_key())
        self.progress = Progress()
        self._audio_log = audio_log
        #: Utterances whose audio is being read back -> records waiting for it, in order.
        self._recovering: dict[str, list[Callable[[], Awaitable[None]]]] = {}
        self._recovery_tasks: set[asyncio.Task[None]] = set()
        self._unrecoverable = RecentIds(CLOSED_MEMORY)
        self.recovered = 0
        self._contexts = contexts
        self.router = LocaleRouter(settings)
        self._engine = Once(engine_factory, AsrError)
        self._max_samples = (settings.endpointer.max_utterance_ms + 2000) * RATE // 1000
        self._partial_samples = settings.asr_partial_ms * RATE // 1000

    @property
    def loaded(self) -> bool:
        """Whether the engine is loaded (or failed to load, which will not change)."""
        return self._engine.loaded

    def engine(self) -> Engine:
        """Return the engine, creating it on first use; raise ``AsrError`` if it cannot be."""
        return self._engine.get()

    async def warm_up(self) -> None:
        """Load the engine in the inference thread now, not on the first utterance."""
        loop = asyncio.get_running_loop()
        try:
            engine = await loop.run_in_executor(self.queue.executor, self.engine)
        except AsrError as exc:
            structlog.get_logger("voicestream.asr").error("asr.unavailable", code=exc.code,
                                                          detail=str(exc))
            return
        structlog.get_logger("voicestream.asr").info("asr.ready", engine=engine.name)
        # The model of each other language served (Whisper base) loads now too: a
        # few milliseconds of silence load it and decode nothing.
        languages = sorted(set(self.router.nlu_dirs) - {"en"})
        for language in languages:
            try:
                await loop.run_in_executor(self.queue.executor, functools.partial(
                    engine.transcribe, np.zeros(RATE // 100, np.float32), language=language))
            except AsrError as exc:
                structlog.get_logger("voicestream.asr").error(
                    "asr.language_unavailable", language=language, code=exc.code,
                    detail=str(exc))
        # Every model is loaded: the first utterance waits for none of them.
        structlog.get_logger("voicestream.asr").info("asr.warm", languages=["en", *languages])

    # -- audio ------------------------------------------------------------------------------

    def on_assigned(self, partitions: set[int]) -> None:
        """Drop the utterances of audio partitions this worker no longer owns."""
        for utt in [u for u in self.utterances.values() if u.partition not in partitions]:
            utt.log.info("asr.moved", partition=utt.partition)
            for task in utt.tasks.values():
                task.cancel()
            del self.utterances[utt.utterance_id]
        self.progress.keep(partitions)
        metrics.OPEN_UTTERANCES.labels(STAGE).set(len(self.utterances))

    async def on_audio(self, origin: Origin, raw: bytes | None, *,
                       replay: bool = False) -> None:
        """Buffer one audio-topic message (bad ones are the end-pointer's to dead-letter)."""
        if not replay:
            if self.progress.seen(origin):
                return  # re-delivered after a rebalance
            self.progress.mark(origin)
        try:
            message = decode(raw or b"", topics.AUDIO.codec)
        except SerializationError:
            return
        if not isinstance(message, UtteranceStart | AudioFrame | UtteranceStop):
            return
        if self.gate.refusal(topics.AUDIO, origin, raw or b"", message.device_id):
            return  # not the device's own: refused (and dead-lettered) by the end-pointer
        if not replay and self._queued(message.utterance_id,
                                       lambda: self._take_audio(origin, message, True)):
            return
        await self._take_audio(origin, message, replay)

    async def _take_audio(self, origin: Origin,
                          message: UtteranceStart | AudioFrame | UtteranceStop,
                          replay: bool) -> None:
        if isinstance(message, UtteranceStart):
            if self._get(message.device_id, message.utterance_id) is None:
                self._start(message, origin.partition)
            return
        utt = self._get(message.device_id, message.utterance_id)
        if utt is None and not replay and self._recover(
                origin, message.device_id, message.utterance_id,
                lambda: self._take_audio(origin, message, True)):
            return
        if utt is None or origin.offset <= utt.last_offset:
            return
        utt.last_offset = origin.offset
        if isinstance(message, AudioFrame):
            chunks, _ = utt.assembler.push(message)
            utt.add(chunks)
            if not replay:
                self._maybe_partial(utt)
        else:
            chunks, _ = utt.assembler.flush()
            utt.add(chunks)
            utt.stopped = True

    def _start(self, start: UtteranceStart, partition: int) -> None:
        if start.sample_rate_hz not in SUPPORTED_SAMPLE_RATES_HZ or start.channels != 1:
            return
        if start.utterance_id in self._closed:
            return
        # A device's earlier utterance stays: its end-points may still be on their way
        # (the end-pointer ends it, with a decision or ``superseded``).
        if len(self.utterances) >= self.settings.max_open_utterances:
            return
        log = structlog.get_logger("voicestream.asr").bind(
            stage=STAGE, device_id=start.device_id, utterance_id=start.utterance_id)
        self.utterances[start.utterance_id] = Utterance(
            start.device_id, start.utterance_id, FrameAssembler(start.sample_rate_hz),
            self._max_samples, partition, log=log)
        metrics.OPEN_UTTERANCES.labels(STAGE).set(len(self.utterances))

    def _get(self, device_id: str, utterance_id: str) -> Utterance | None:
        utt = self.utterances.get(utterance_id)
        return utt if utt is not None and utt.device_id == device_id else None

    def _queued(self, utterance_id: str, resume: Callable[[], Awaitable[None]]) -> bool:
        """Queue ``resume`` behind the utterance's recovery, if one is running."""
        queue = self._recovering.get(utterance_id)
        if queue is None:
            return False
        queue.append(resume)
        return True

    def _recover(self, origin: Origin, device_id: str, utterance_id: str,
                 resume: Callable[[], Awaitable[None]]) -> bool:
        """Start rebuilding an utterance begun on another worker; False if not ours.

        The audio is read back in the background, so that other utterances'
        records keep flowing; ``resume`` (the record that asked) and every
        record of the utterance arriving meanwhile run, in order, once it is
        rebuilt (or once that failed).
        """
        if utterance_id in self._closed or utterance_id in self._unrecoverable or \
                self._audio_log is None:
            return False
        entry = self.ledger.get(utterance_id, device_id)
        if entry is None or STAGE in entry["done"] or \
                entry.get("partition") != origin.partition or \
                not isinstance(entry.get("offset"), int):
            return False
        self._recovering[utterance_id] = [resume]
        task = asyncio.create_task(self._rebuild(origin, device_id, utterance_id,
                                                 entry["offset"]))
        self._recovery_tasks.add(task)
        task.add_done_callback(self._recovery_tasks.discard)
        return True

    async def _rebuild(self, origin: Origin, device_id: str, utterance_id: str,
                       start: int) -> None:
        queue = self._recovering[utterance_id]
        try:
            await self._replay(origin, device_id, utterance_id, start, None)
        except ReplayError as exc:
            self._unrecoverable.add(utterance_id)
            structlog.get_logger("voicestream.asr").warning(
                "asr.recovery_failed", device_id=device_id, utterance_id=utterance_id,
                detail=str(exc))
        try:
            while queue:
                await queue.pop(0)()
        finally:
            del self._recovering[utterance_id]

    async def _replay(self, origin: Origin, device_id: str, utterance_id: str, start: int,
                      end: int | None) -> None:
        assert self._audio_log is not None
        records = await self._audio_log.read(origin.partition, start, end,
                                             origin.key or device_id.encode())
        for record_origin, raw in records:
            await self.on_audio(record_origin, raw, replay=True)
        utt = self._get(device_id, utterance_id)
        if utt is not None:
            self.recovered += 1
            metrics.RECOVERED.labels(STAGE).inc()
            utt.log.info("asr.recovered", records=len(records), from_offset=start)

    # -- end-pointer events -----------------------------------------------------------------

    async def on_endpoint_event(self, origin: Origin, raw: bytes | None,
                                ack: Callable[[], object] = lambda: None) -> None:
        """Follow one event of the end-pointer's output topic.

        ``ack`` is called once the event's utterance is finished here (at once
        for an event that needs nothing more).
        """
        if self.progress.seen(origin):
            # Re-delivered after a rebalance that gave this worker the partition
            # back. Its acknowledgement now stands for the offset: it waits with
            # the utterance if that is still in flight here.
            held = self._holder(raw)
            if held is not None:
                held.acks.append(ack)
            else:
                ack()
            return
        self.progress.mark(origin)
        message = await self.pub.decode(topics.ENDPOINTS, origin, raw)
        if message is None:
            ack()
            return
        assert isinstance(message, Endpoint | Reset | ErrorEvent)
        if not self._queued(message.utterance_id,
                            lambda: self._on_endpoint(origin, message, ack, True)):
            await self._on_endpoint(origin, message, ack, False)

    async def _on_endpoint(self, origin: Origin, message: Endpoint | Reset | ErrorEvent,
                           ack: Callable[[], object], resumed: bool) -> None:
        if isinstance(message, ErrorEvent):
            await self.pass_error(origin, message, ack)
            return
        utt = self._get(message.device_id, message.utterance_id)
        if utt is None and self.ledger.finished(message.utterance_id, message.device_id, STAGE):
            self._closed.add(message.utterance_id)
            ack()
            return  # finished by the worker this partition moved from
        if utt is None and not resumed and self._recover(
                origin, message.device_id, message.utterance_id,
                lambda: self._on_endpoint(origin, message, ack, True)):
            return
        if utt is None:
            if message.utterance_id not in self._closed:
                await self._error(message.device_id, message.utterance_id, "asr-no-audio",
                                  "end-point for an utterance whose audio this worker "
                                  "does not hold", getattr(message, "revision", 0),
                                  message.t_ms, origin.partition)
                self._closed.add(message.utterance_id)
            ack()
            return
        utt.acks.append(ack)
        if isinstance(message, Reset):
            utt.open_revision = max(utt.open_revision, message.cancelled_revision + 1)
            utt.endpointed = False
            await self._apply(utt, utt.tracker.on_reset(message))
            utt.log.info("asr.reset", cancelled_revision=message.cancelled_revision)
            # Forwarded in order: nothing of the cancelled revision follows it downstream.
            await self.pub.emit(topics.TRANSCRIPTS, utt.device_id, message,
                                partition=origin.partition)
        else:
            if message.revision >= utt.open_revision:
                utt.open_revision = message.revision
                utt.endpointed = True
            await self._apply(utt, utt.tracker.on_endpoint(message))

    # -- partial transcripts ----------------------------------------------------------------

    def _maybe_partial(self, utt: Utterance) -> None:
        """Start a partial decode of ``utt`` if it has new speech and the thread is idle."""
        if self._partial_samples <= 0 or utt.stopped or utt.endpointed or \
                PARTIAL_TASK in utt.tasks:
            return
        utt.gate_speech()
        if utt.speech_since_partial < self._partial_samples or self.queue.pending > 0:
            return
        pressure = self.pressure()
        shedding = pressure is not None and \
            pressure > self.settings.asr_partial_max_cpu_pressure
        if shedding != self._shedding:
            self._shedding = shedding
            structlog.get_logger("voicestream.asr").info(
                "asr.partials_shed" if shedding else "asr.partials_resumed",
                cpu_pressure=pressure, limit=self.settings.asr_partial_max_cpu_pressure)
        if shedding:
            # The box has no CPU to spare: a partial would slow everyone's decodes.
            utt.speech_since_partial = 0
            self.partials_shed += 1
            metrics.PARTIALS_SHED.inc()
            return
        engine = self._engine.value
        if not isinstance(engine, PartialEngine):
            return  # not loaded yet, or an engine without partials (PocketSphinx)
        ctx = self._contexts.get(utt.device_id) if self._contexts is not None else None
        try:
            route = self.router.route_context(ctx)
        except LocaleUnsupported:
            return  # the end-pointed revision ends the utterance with the coded outcome
        utt.speech_since_partial = 0
        utt.tasks[PARTIAL_TASK] = asyncio.create_task(self._partial(utt, engine, route.locale,
                                                                    route.language))

    async def _partial(self, utt: Utterance, engine: PartialEngine, locale: str,
                       language: str) -> None:
        revision = utt.open_revision
        audio = utt.audio(utt.samples * 1000 // RATE)
        phrases = self._phrases(utt.device_id)

        def current() -> bool:
            return (self.utterances.get(utt.utterance_id) is utt and not utt.endpointed
                    and utt.open_revision == revision)

        def wanted() -> bool:
            # Asked on the model's thread too, before each decoder step: other work
            # waiting (pending counts this job) or the revision end-pointed stops it.
            return current() and self.queue.pending <= 1

        def decode() -> tuple[Hypothesis | None, float, str]:
            started = time.perf_counter()
            decoder = decoder_name(engine, audio, language)
            bias, _, _ = self.settings.context_weights(decoder)
            hyp = engine.partial(audio, phrases=phrases, bias_weight=bias,
                                 language=language, stop=lambda: not wanted())
            return hyp, (time.perf_counter() - started) * 1000, decoder

        try:
            hyp, compute_ms, decoder = await self.queue.run(utt.utterance_id, decode,
                                                            wanted=wanted)
        except (Skipped, Overloaded, AsrError):
            return  # a partial is a hint: the end-pointed revision reports any error
        except asyncio.CancelledError:
            raise
        except Exception:
            utt.log.exception("asr.partial_failed", revision=revision)
            return
        finally:
            utt.tasks.pop(PARTIAL_TASK, None)
        if hyp is None or not current():
            return  # stopped, or its revision was end-pointed meanwhile: never after it
        t_ms = audio.size * 1000 // RATE
        utt.log.info("asr.partial", revision=revision, seq=utt.partials, audio_ms=t_ms,
                     compute_ms=round(compute_ms, 1), words=len(hyp.text.split()))
        metrics.PARTIALS.inc()
        await self.pub.emit(topics.TRANSCRIPTS, utt.device_id, Partial(
            device_id=utt.device_id, utterance_id=utt.utterance_id, revision=revision,
            t_ms=t_ms, text=hyp.text, seq=utt.partials, engine=decoder,
            compute_ms=round(compute_ms, 1), locale=locale, language=language),
            partition=utt.partition)
        utt.partials += 1

    def _holder(self, raw: bytes | None) -> Utterance | None:
        """The in-flight utterance an end-pointer record belongs to, if any."""
        try:
            message = decode(raw or b"", topics.ENDPOINTS.codec)
        except SerializationError:
            return None
        device_id = getattr(message, "device_id", "")
        return self._get(device_id, getattr(message, "utterance_id", ""))

    async def _work(self, utt: Utterance, action: Decode) -> None:
        """Decode one revision's audio (to the end of speech, and a little after), in the
        language of the device's locale."""
        ctx = self._contexts.get(utt.device_id) if self._contexts is not None else None
        try:
            route = self.router.route_context(ctx)
        except LocaleUnsupported as exc:
            # Never an English guess at another language: the utterance ends here.
            utt.log.warning("asr.locale_unsupported", locale=exc.locale, reason=exc.reason,
                            supported=self.router.supported())
            if action.revision not in utt.tracker.cancelled:
                await self._error(utt.device_id, utt.utterance_id, exc.code, str(exc),
                                  action.revision, action.t_ms, utt.partition)
                self._drop(utt)
            return
        end_ms = action.at_ms + TAIL_MS
        deadline = time.monotonic() + AUDIO_WAIT_S
        while utt.samples < end_ms * RATE // 1000 and not utt.stopped:
            utt.arrived.clear()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a
                # cancellation that races with the event being set.
                async with asyncio.timeout(remaining):
                    await utt.arrived.wait()
            except TimeoutError:
                break
        if action.revision in utt.tracker.cancelled:
            return  # reset while waiting for audio
        audio = utt.audio(end_ms)
        phrases = self._phrases(utt.device_id)
        grammar = self._grammar(utt.device_id)
        # The sound-alike pass spells names by English rules: English locales only.
        phonetic = 1.0 if route.phonetic else 0.0

        def transcribe() -> tuple[list[Hypothesis], float, str]:
            # On the model's thread: a model not yet loaded loads there, once.
            engine = self.engine()
            started = time.perf_counter()
            decoder = decoder_name(engine, audio, route.language)
            bias, bonus, strong = self.settings.context_weights(decoder)
            hyps = engine.transcribe(
                audio, phrases=phrases, bias_weight=bias, phrase_bonus=bonus * phonetic,
                strong_weight=strong * phonetic, nbest=self.settings.asr_nbest,
                grammar=grammar, language=route.language)
            return hyps, (time.perf_counter() - started) * 1000, decoder

        try:
            hyps, compute_ms, decoder = await self.queue.run(
                utt.utterance_id, transcribe,
                wanted=lambda: action.revision not in utt.tracker.cancelled)
        except Skipped:
            return  # reset while queued: never decoded
        except Overloaded as exc:
            utt.log.warning("asr.overloaded", revision=action.revision, pending=self.queue.pending)
            if action.revision not in utt.tracker.cancelled:
                await self._error(utt.device_id, utt.utterance_id, exc.code, str(exc),
                                  action.revision, action.t_ms, utt.partition)
                self._drop(utt)
            return
        except AsrError as exc:
            if action.revision not in utt.tracker.cancelled:
                await self._error(utt.device_id, utt.utterance_id, exc.code, str(exc),
                                  action.revision, action.t_ms, utt.partition)
                self._drop(utt)
            return
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # an engine bug is logged and still ends the utterance
            utt.log.exception("asr.failed", revision=action.revision)
            if action.revision not in utt.tracker.cancelled:
                await self._error(utt.device_id, utt.utterance_id, "asr-failed",
                                  f"recognition failed: {type(exc).__name__}",
                                  action.revision, action.t_ms, utt.partition)
                self._drop(utt)
            return
        metrics.STAGE_LATENCY.labels(STAGE).observe(compute_ms / 1000)
        utt.log.info("asr.decoded", revision=action.revision, audio_ms=audio.size * 1000 // RATE,
                     compute_ms=round(compute_ms, 1), hypotheses=len(hyps),
                     biased_phrases=len(phrases), locale=route.locale, language=route.language)
        utt.tasks.pop(action.revision, None)
        result = Result(hyps, action.at_ms, compute_ms, len(phrases), route.locale,
                        route.language, decoder)
        await self._apply(utt, utt.tracker.on_result(action.revision, result, action.t_ms))

    def _grammar(self, device_id: str) -> list[str]:
        ctx = self._contexts.get(device_id) if self._contexts is not None else None
        grammar = ctx.get("grammar", ()) if ctx else ()
        return [p for p in grammar if isinstance(p, str) and p.strip()][:1000]

    def _phrases(self, device_id: str) -> list[str]:
        ctx = self._contexts.get(device_id) if self._contexts is not None else None
        if not ctx:
            return []
        return [p for p in [*ctx.get("contacts", ()), *ctx.get("appliances", ())]
                if isinstance(p, str) and p.strip()][:500]

    async def _emit(self, utt: Utterance, action: Emit) -> None:
        result = utt.tracker.results.get(action.revision)
        hyps = result.hypotheses if result is not None else []
        if action.kind is EndpointKind.FINAL and not hyps:
            await self._error(utt.device_id, utt.utterance_id, "asr-no-speech",
                              "nothing was recognised in the utterance's audio",
                              action.revision, action.t_ms, utt.partition)
            self._drop(utt)
            return
        message = Transcript(
            device_id=utt.device_id, utterance_id=utt.utterance_id, kind=action.kind,
            revision=action.revision, at_ms=result.at_ms if result else 0, t_ms=action.t_ms,
            engine=(result.engine if result and result.engine else self._engine_name()),
            nbest=tuple(NBest(text=h.text, score=h.score,
                              words=tuple(WordTime(word=w.word, start_ms=w.start_ms,
                                                   end_ms=w.end_ms) for w in h.words))
                    for h in hyps),
            biased_phrases=result.phrases if result else 0,
            compute_ms=round(result.compute_ms, 1) if result else 0.0,
            locale=result.locale if result else "en-US",
            language=result.language if result else "en",
        )
        await self.pub.emit(topics.TRANSCRIPTS, utt.device_id, message,
                            partition=utt.partition)
        if action.kind is EndpointKind.FINAL:
            # After the record: a worker dying between the two repeats it, never loses it.
            self.ledger.finish(utt.utterance_id, utt.device_id, STAGE, utt.partition)
            self._drop(utt)

    def _engine_name(self) -> str:
        return self._engine.value.name if self._engine.value is not None else "none"

    async def _error(self, device_id: str, utterance_id: str, code: str, message: str,
                     revision: int, t_ms: int, partition: int) -> None:
        await self.pub.emit(topics.TRANSCRIPTS, device_id, ErrorEvent(
            device_id=device_id, utterance_id=utterance_id, stage=STAGE, code=code,
            message=message, revision=revision, t_ms=t_ms), partition=partition)
        # NLU passes it on; the arbiter records it as the utterance's outcome.
        self.ledger.finish(utterance_id, device_id, STAGE, partition, failed=True)



def register(app: faust.App, settings: Settings, send: SendFn, engine_factory:
             Callable[[], Engine], contexts: Any = None, ledger: Ledger | None = None,
             audio_log: AudioLog | None = None, gate: DeviceGate | None = None) -> AsrService:
    """Create the ASR agents (audio and end-points) and the expiry timer on ``app``."""
    service = AsrService(settings, send, engine_factory, contexts=contexts,
                         ledger=ledger, audio_log=audio_log, gate=gate)
    audio_name = settings.topic(topics.AUDIO.short)

    @app.on_partitions_assigned.connect
    async def moved(_app: Any, /, *args: Any, signal: Any, **_kwargs: Any) -> None:
        assigned: set[Any] = args[0]  # the new assignment: every topic-partition we own
        service.on_assigned({tp.partition for tp in assigned if tp.topic == audio_name})

    audio = app.topic(audio_name, key_serializer="raw",
                      value_serializer="raw", partitions=settings.partitions)
    endpoints = app.topic(settings.topic(topics.ENDPOINTS.short), key_serializer="raw",
                          value_serializer="raw", partitions=settings.partitions)

    @app.agent(audio, name="asr-audio", concurrency=1)
    async def asr_audio(stream: Any) -> None:
        async for event in stream.events():
            m = event.message
            origin = Origin(m.topic, m.partition, m.offset, m.key, signature_of(m.headers))
            await isolated(service.pub, origin, service.on_audio(origin, m.value))

    @app.agent(endpoints, name="asr", concurrency=1)
    async def asr(stream: Any) -> None:
        # Acknowledged by the service when the utterance is finished: see Utterance.acks.
        async for event in stream.noack().events():
            m = event.message
            origin = Origin(m.topic, m.partition, m.offset, m.key)
            await isolated(service.pub, origin,
                           service.on_endpoint_event(origin, m.value, ack=event.ack),
                           on_failure=event.ack)

    @app.timer(1.0)  # type: ignore[untyped-decorator]
    async def expire_asr() -> None:
        service.expire()

    @app.task  # type: ignore[untyped-decorator]
    async def load_engine() -> None:
        await service.warm_up()

    return service
