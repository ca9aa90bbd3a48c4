"""The understanding agent: n-best transcripts in, ranked interpretations out.

For each revision it interprets the top ``nlu_nbest`` ASR hypotheses in one
batch, combines ASR and NLU probabilities, merges hypotheses that mean the same
(intent and slot values), and conditions the result on the device context
(:mod:`models.nlu.context`). It follows the revision protocol of
:mod:`agents.revisions` on the transcripts topic: interpret on the speculative
transcript, reuse on the final, drop a revision at its reset and forward the
reset in order. :class:`Understander` is the pure core. Before interpreting, a
revision's top hypothesis may be rewritten (:mod:`agents.rewriter`): the
rewrite is then what is interpreted, and its ``Rewrite`` event precedes the
interpretation on the same topic. An utterance's
transcript records are acknowledged once its final interpretation (or error)
is published; one the utterance ledger (:mod:`agents.ledger`) shows finished
by another worker is not interpreted again.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import faust
import structlog

from agents.base import (
    Once,
    Origin,
    Overloaded,
    SendFn,
    Skipped,
    isolated,
)
from agents.ledger import Ledger
from agents.locales import DEFAULT_LOCALE, LocaleRouter, LocaleUnsupported, Route
from agents.revisions import Decode, Emit, RevisionTracker
from agents.rewriter import Rewriter
from agents.stage import UtteranceStage
from infra import metrics
from models.nlu.context import facts_consulted, resolve
from models.nlu.values import normalise
from models.rewrite import Candidate
from models.textnorm import english_nlu_form, normalizer_for
from streams import topics
from streams.asr import NBest, Partial, Transcript
from streams.control import ErrorEvent
from streams.endpoint import EndpointKind, Reset
from streams.nlu import Hypothesis, Interpretations, SlotValue
from streams.rewrite import Rewrite
from streams.settings import Settings

STAGE = "nlu"


class NluError(Exception):
    """A transcript the stage will not interpret, with a code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class Model(Protocol):
    """What the core needs of the NLU model (``models.nlu.inference.NluOnnx``)."""

    def interpret_batch(self, texts: list[str], *, top_k: int = 3) -> list[list[Any]]: ...

    def known_word(self, word: str) -> bool: ...


def nlu_text(text: str) -> str:
    """What the English model reads: ASR text written the way MASSIVE is (lower case,
    numbers as words, no punctuation); Whisper's ``730`` after "at"/"for" is a clock time."""
    return english_nlu_form(text)


def _asr_probs(scores: Sequence[float], sharpness: float) -> list[float]:
    """Posterior over the n-best from per-token log-probability scores."""
    top = max(scores)
    w = [math.exp(sharpness * (s - top)) for s in scores]
    total = sum(w)
    return [x / total for x in w]


class Understander:
    """Interpret an n-best list in a device context (pure but for the model call).

    The score of an interpretation is ``P(text | audio) * P(intent | text) *
    familiarity``, where familiarity discounts text whose words outside any
    slot are mostly unknown to the model's vocabulary (garbage, another
    language). Interpretations equal in intent and slot values are merged by
    adding their scores, keeping the best-scoring one's text and spans.
    """

    def __init__(self, model: Model, *, nbest: int = 3, intents_per_text: int = 3,
                 sharpness: float = 5.0, max_words: int = 60, keep: int = 5,
                 normalise: Callable[[str], str] = nlu_text) -> None:
        self.model = model
        #: What the model reads of a recognised text: the locale's normaliser.
        self.normalise = normalise
        self.nbest = nbest
        self.intents_per_text = intents_per_text
        self.sharpness = sharpness
        self.max_words = max_words
        self.keep = keep

    def interpret(self, nbest: Sequence[NBest], ctx: Mapping[str, Any] | None
                  ) -> list[Hypothesis]:
        """Return the ranked interpretations of ``nbest`` in context ``ctx``."""
        hyps = [h for h in nbest[: self.nbest] if h.text.strip()]
        if not hyps:
            raise NluError("nlu-empty-transcript", "the transcript has no words")
        longest = max(len(h.text.split()) for h in hyps)
        if longest > self.max_words:
            raise NluError("nlu-too-long",
                           f"{longest} words; requests over {self.max_words} are not interpreted")
        asr_p = _asr_probs([h.score for h in hyps], self.sharpness)
        texts = [self.normalise(h.text) or h.text.strip() for h in hyps]
        local_time = str((ctx or {}).get("local_time") or "")
        merged: dict[tuple[str, tuple[tuple[str, str], ...]], Hypothesis] = {}
        for rank, (text, p_asr, results) in enumerate(zip(
                texts, asr_p, self.model.interpret_batch(texts, top_k=self.intents_per_text),
                strict=True)):
            slots = tuple(SlotValue(type=s.type, text=s.value, start=s.start, end=s.end,
                                    value=normalise(s.type, s.value, local_time=local_time))
                          for s in results[0].slots) if results else ()
            familiar = self._familiarity(text, slots)
            for r in results:
                hyp = Hypothesis(intent=r.intent, score=p_asr * r.score * familiar, slots=slots,
                                 text=text, asr_rank=rank, asr_prob=round(p_asr, 4),
                                 nlu_prob=round(r.score, 4))
                hyp = resolve(hyp, ctx)
                key = (hyp.intent, tuple(sorted((s.type, s.value) for s in hyp.slots)))
                seen = merged.get(key)
                if seen is None:
                    merged[key] = hyp
                else:
                    best = seen if seen.score >= hyp.score else hyp
                    merged[key] = dataclasses.replace(best, score=seen.score + hyp.score)
        ranked = sorted(merged.values(), key=lambda h: (-h.score, h.asr_rank, h.intent))
        return [dataclasses.replace(h, score=round(h.score, 4)) for h in ranked[: self.keep]]

    def _familiarity(self, text: str, slots: Sequence[SlotValue]) -> float:
        inside = [(s.start, s.end) for s in slots if s.start >= 0]
        words, pos = [], 0
        for w in text.split():
            start = text.index(w, pos)
            pos = start + len(w)
            if not any(a <= start < b for a, b in inside):
                words.append(w)
        if not words:
            return 1.0
        unknown = sum(not self.model.known_word(w) for w in words) / len(words)
        if len(words) < 3:  # "whats the ..." or a name: only all-unknown is suspicious
            return 0.05 if unknown == 1.0 else 1.0
        return 1.0 if unknown <= 0.5 else max(0.02, 1.0 - unknown) ** 2


@dataclasses.dataclass(frozen=True, slots=True)
class Result:
    """The interpretations of one revision."""

    hypotheses: list[Hypothesis]
    context_used: tuple[str, ...]
    compute_ms: float
    error: NluError | None = None
    #: The rewrite interpreted instead of what was heard, and what was heard.
    rewrite: Candidate | None = None
    original: str = ""
    locale: str = DEFAULT_LOCALE


@dataclasses.dataclass(slots=True)
class Utterance:
    """Revision state of one utterance on this worker."""

    device_id: str
    utterance_id: str
    #: Partition of the utterance's transcripts; its interpretations go to the same one.
    partition: int = 0
    transcripts: dict[int, Transcript] = dataclasses.field(default_factory=dict)
    tracker: RevisionTracker[Result] = dataclasses.field(default_factory=RevisionTracker)
    tasks: dict[int, asyncio.Task[None]] = dataclasses.field(default_factory=dict)
    last_seen: float = dataclasses.field(default_factory=time.monotonic)
    log: Any = None
    #: Acknowledgements of this utterance's transcripts, given once it is finished here.
    acks: list[Callable[[], object]] = dataclasses.field(default_factory=list)
    #: Held while one revision's records go out: a rewrite and its interpretation
    #: stay adjacent when the final's emit starts during the speculative's.
    emitting: asyncio.Lock = dataclasses.field(default_factory=asyncio.Lock)


class NluService(UtteranceStage[Utterance]):
    """State and logic of the NLU agent, independent of how it is wired."""

    def __init__(self, settings: Settings, send: SendFn, model_factory: Any, *,
                 contexts: Any = None, ledger: Ledger | None = None,
                 rewriter: Rewriter | None = None) -> None:
        super().__init__(STAGE, topics.INTERPRETATIONS, settings, send, ledger,
                         settings.nlu_queue_limit)
        self._contexts = contexts
        self.rewriter = rewriter
        self._factory = model_factory
        self.router = LocaleRouter(settings)
        #: Models by directory ("" is the bundled English one), each loaded on first use.
        self._models: dict[str, Once[Model]] = {}

    def _model_once(self, nlu_dir: str) -> Once[Model]:
        once = self._models.get(nlu_dir)
        if once is None:
            factory: Callable[[], Model] = (
                (lambda: self._factory(Path(nlu_dir))) if nlu_dir else self._factory)
            once = self._models.setdefault(nlu_dir, Once(factory))
        return once

    @property
    def loaded(self) -> bool:
        """Whether the English model is loaded (or failed to load, which will not change);
        other languages' models load with their first request."""
        return self._model_once(self.router.route(DEFAULT_LOCALE).nlu_dir).loaded

    def core(self, route: Route | None = None) -> Understander:
        """Return the pure core for ``route`` (default ``en-US``): its locale's model and
        normaliser, loading the model on first use."""
        route = route or self.router.route(DEFAULT_LOCALE)
        normalise = normalizer_for(route.locale,
                                   arabic_clitics=self.settings.nlu_arabic_clitics,
                                   arabic_letters=self.settings.nlu_arabic_letters)
        return Understander(self._model_once(route.nlu_dir).get(),
                            nbest=self.settings.nlu_nbest,
                            max_words=self.settings.nlu_max_words, normalise=normalise)

    async def warm_up(self) -> None:
        """Load the model off the loop now rather than on the first request."""
        log = structlog.get_logger("voicestream.nlu")
        try:
            await asyncio.get_running_loop().run_in_executor(self.queue.executor, self.core)
        except (RuntimeError, OSError, ValueError) as exc:  # missing or unreadable model
            log.error("nlu.unavailable", code=getattr(exc, "code", "nlu-model-missing"),
                      detail=str(exc))
            return
        log.info("nlu.ready")
        for language, nlu_dir in sorted(self.router.nlu_dirs.items()):
            try:  # each other language's model too (one load per directory)
                await asyncio.get_running_loop().run_in_executor(
                    self.queue.executor, self._model_once(nlu_dir).get)
            except (RuntimeError, OSError, ValueError) as exc:
                log.error("nlu.language_unavailable", language=language,
                          code=getattr(exc, "code", "nlu-model-missing"), detail=str(exc))

    async def on_event(self, origin: Origin, raw: bytes | None,
                       ack: Callable[[], object] = lambda: None) -> None:
        """Follow one event of the transcripts topic.

        ``ack`` is called once the event's utterance is finished here (at once
        for an event that needs nothing more).
        """
        message = await self.pub.decode(topics.TRANSCRIPTS, origin, raw)
        if message is None:
            ack()
            return
        if isinstance(message, ErrorEvent):
            await self.pass_error(origin, message, ack)
            return
        if isinstance(message, Partial):
            ack()  # a hint while the user speaks: only end-pointed revisions are understood
            return
        assert isinstance(message, Transcript | Reset)
        if message.utterance_id in self._closed or (
                message.utterance_id not in self.utterances and
                self.ledger.finished(message.utterance_id, message.device_id, STAGE)):
            ack()  # finished here, or by the worker this partition moved from
            return
        utt = self._utterance(message.device_id, message.utterance_id, origin.partition)
        utt.acks.append(ack)
        utt.last_seen = time.monotonic()
        if isinstance(message, Reset):
            await self._apply(utt, utt.tracker.on_reset(message))
            utt.log.info("nlu.reset", cancelled_revision=message.cancelled_revision)
            await self.pub.emit(topics.INTERPRETATIONS, utt.device_id, message,
                                partition=utt.partition)
            return
        utt.transcripts[message.revision] = message
        await self._apply(utt, utt.tracker.on_endpoint(message))

    def _utterance(self, device_id: str, utterance_id: str, partition: int) -> Utterance:
        utt = self.utterances.get(utterance_id)
        if utt is None or utt.device_id != device_id:
            # A device's earlier utterance is not dropped here: its final transcript
            # may follow this one's first (ASR decodes utterances independently).
            log = structlog.get_logger("voicestream.nlu").bind(
                stage=STAGE, device_id=device_id, utterance_id=utterance_id)
            utt = self.utterances[utterance_id] = Utterance(device_id, utterance_id, partition,
                                                            log=log)
        return utt

    async def _work(self, utt: Utterance, action: Decode) -> None:
        """Interpret one revision's transcript."""
        transcript = utt.transcripts[action.revision]
        ctx = self._contexts.get(utt.device_id) if self._contexts is not None else None
        rewriter = self.rewriter if self.rewriter is not None and self.rewriter.active else None

        def interpret() -> Result:
            try:
                route = self.router.route_context(ctx)
            except LocaleUnsupported as exc:
                # The context changed since recognition: still no English guess.
                utt.log.warning("nlu.locale_unsupported", locale=exc.locale, reason=exc.reason,
                                supported=self.router.supported())
                raise NluError(exc.code, str(exc)) from exc
            # On the model's thread: a model not yet loaded loads there, once.
            core = self.core(route)
            started = time.perf_counter()
            nbest, rewrite, original = transcript.nbest, None, ""
            # The layers are English (mined English logs, an English embedder).
            if rewriter is not None and nbest and route.language == "en":
                # On this thread too: an online layer's embedding is inference.
                user = str((ctx or {}).get("user_id") or utt.device_id)
                original = nbest[0].text
                rewrite = rewriter.rewrite(user, original, ctx)
                if rewrite is not None:  # the rewrite alone is what was meant
                    nbest = (dataclasses.replace(nbest[0], text=rewrite.text, words=()),)
            hyps = core.interpret(nbest, ctx)
            return Result(hyps, facts_consulted(ctx), (time.perf_counter() - started) * 1000,
                          rewrite=rewrite, original=original if rewrite is not None else "",
                          locale=route.locale)

        try:
            result = await self.queue.run(
                utt.utterance_id, interpret,
                wanted=lambda: action.revision not in utt.tracker.cancelled)
        except Skipped:
            utt.tasks.pop(action.revision, None)
            return  # reset while queued: never interpreted
        except Overloaded as exc:
            utt.log.warning("nlu.overloaded", revision=action.revision, pending=self.queue.pending)
            result = Result([], (), 0.0, NluError(exc.code, str(exc)))
        except NluError as exc:
            result = Result([], (), 0.0, exc)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a model that cannot load or fails ends the utterance
            utt.log.exception("nlu.failed", revision=action.revision)
            code = getattr(exc, "code", "nlu-failed")
            # Its type, not its text: that can quote the transcript.
            result = Result([], (), 0.0, NluError(code, f"interpretation failed "
                                                        f"({type(exc).__name__})"))
        metrics.STAGE_LATENCY.labels(STAGE).observe(result.compute_ms / 1000)
        if result.rewrite is not None:
            metrics.REWRITES.labels(result.rewrite.source.value).inc()
        utt.tasks.pop(action.revision, None)
        utt.log.info("nlu.interpreted", revision=action.revision,
                     compute_ms=round(result.compute_ms, 2),
                     rewritten=result.rewrite.source.value if result.rewrite else None,
                     intent=result.hypotheses[0].intent if result.hypotheses else None,
                     error=result.error.code if result.error else None)
        await self._apply(utt, utt.tracker.on_result(action.revision, result, action.t_ms))

    async def _emit(self, utt: Utterance, action: Emit) -> None:
        async with utt.emitting:
            await self._emit_records(utt, action)

    async def _emit_records(self, utt: Utterance, action: Emit) -> None:
        result = utt.tracker.results.get(action.revision)
        transcript = utt.transcripts.get(action.revision)
        if result is None or transcript is None:
            return
        if result.error is not None:
            if action.kind is EndpointKind.FINAL:
                await self.pub.emit(topics.INTERPRETATIONS, utt.device_id, ErrorEvent(
                    device_id=utt.device_id, utterance_id=utt.utterance_id, stage=STAGE,
                    code=result.error.code, message=result.error.message,
                    revision=action.revision, t_ms=action.t_ms), partition=utt.partition)
                self.ledger.finish(utt.utterance_id, utt.device_id, STAGE, utt.partition)
                self._drop(utt)
            return
        if result.rewrite is not None:
            # Before the interpretation, on the same partition: readers see it first.
            await self.pub.emit(topics.INTERPRETATIONS, utt.device_id, Rewrite(
                device_id=utt.device_id, utterance_id=utt.utterance_id, kind=action.kind,
                revision=action.revision, original=result.original,
                rewrite=result.rewrite.text, source=result.rewrite.source,
                score=round(result.rewrite.score, 4), t_ms=action.t_ms),
                partition=utt.partition)
        await self.pub.emit(topics.INTERPRETATIONS, utt.device_id, Interpretations(
            device_id=utt.device_id, utterance_id=utt.utterance_id, kind=action.kind,
            revision=action.revision, t_ms=action.t_ms, locale=result.locale,
            interpretations=tuple(result.hypotheses), context_used=result.context_used,
            compute_ms=round(result.compute_ms, 2)), partition=utt.partition)
        if action.kind is EndpointKind.FINAL:
            # After the record: a worker dying between the two repeats it, never loses it.
            self.ledger.finish(utt.utterance_id, utt.device_id, STAGE, utt.partition)
            self._drop(utt)



def register(app: faust.App, settings: Settings, send: SendFn, model_factory: Any,
             contexts: Any = None, ledger: Ledger | None = None,
             rewriter: Rewriter | None = None) -> NluService:
    """Create the NLU agent on the transcripts topic, its expiry timer and warm-up."""
    service = NluService(settings, send, model_factory, contexts=contexts, ledger=ledger,
                         rewriter=rewriter)
    transcripts = app.topic(settings.topic(topics.TRANSCRIPTS.short), key_serializer="raw",
                            value_serializer="raw", partitions=settings.partitions)

    @app.agent(transcripts, name="nlu", concurrency=1)
    async def nlu(stream: Any) -> None:
        # Acknowledged by the service when the utterance is finished: see Utterance.acks.
        async for event in stream.noack().events():
            m = event.message
            origin = Origin(m.topic, m.partition, m.offset, m.key)
            await isolated(service.pub, origin, service.on_event(origin, m.value, ack=event.ack),
                           on_failure=event.ack)

    @app.timer(1.0)  # type: ignore[untyped-decorator]
    async def expire_nlu() -> None:
        service.expire()

    @app.task  # type: ignore[untyped-decorator]
    async def load_nlu() -> None:
        await service.warm_up()

    return service
