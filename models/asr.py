"""Speech recognition engines behind one interface, chosen per locale or configuration.

``whisper``: Whisper (tiny.en, or base) on onnxruntime with n-best, context
biasing and word times.
``moonshine``: Moonshine base English (our graphs from the ``moonshine-cpp``
weights) with n-best, context biasing and device grammars; English only.
``pocketsphinx``: CMU PocketSphinx's bundled en-us model, for constrained
grammars and speed. All take 16 kHz float32 audio.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt
import structlog

from models.lm import WordTrigram, bundled, phrase_words
from models.textnorm import normalize
from models.whisper.bias import BiasTrie
from models.whisper.phonetic import SoundIndex

if TYPE_CHECKING:
    from models.moonshine.inference import MoonshineOnnx
    from models.whisper.inference import Hypothesis as SearchHypothesis
    from models.whisper.inference import PhraseJudge, WhisperOnnx

Float32Array = npt.NDArray[np.float32]


@dataclasses.dataclass(frozen=True, slots=True)
class WordTime:
    """A word of a hypothesis and when it was said, ms from the start of the audio."""

    word: str
    start_ms: int
    end_ms: int


@dataclasses.dataclass(frozen=True, slots=True)
class Hypothesis:
    """A recognised text with its score (higher is better; engine-specific scale)."""

    text: str
    score: float
    #: Its words' times, where the engine knows them.
    words: tuple[WordTime, ...] = ()


class AsrError(RuntimeError):
    """A recognition failure with a code, e.g. ``asr-model-missing``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code


class Engine(Protocol):
    """What the ASR agent needs from an engine."""

    name: str

    def transcribe(self, audio: Float32Array, *, phrases: Sequence[str] = (),
                   bias_weight: float = 0.0, phrase_bonus: float = 0.0,
                   strong_weight: float = 0.0, nbest: int = 5,
                   grammar: Sequence[str] = (), language: str = "en") -> list[Hypothesis]:
        """Return up to ``nbest`` hypotheses, best first; empty when nothing was said.

        ``language`` (ISO 639-1, from the device's locale) is what is spoken; an
        engine that cannot recognise it raises ``AsrError`` ``locale-unsupported``.

        ``phrases`` are boosted by ``bias_weight`` (nats per token) during the search;
        with ``phrase_bonus`` > 0 an engine may also put a phrase where the words it
        heard sound like it, when the audio scores that within ``phrase_bonus`` nats,
        and with ``strong_weight`` > 0 search again under that heavier bias, taking
        the result only when it holds a whole phrase the first result lacks.
        A non-empty ``grammar`` restricts the output to one of its phrases.
        """
        ...


@runtime_checkable
class PartialEngine(Engine, Protocol):
    """An engine that can also give the words so far while the user speaks."""

    def partial(self, audio: Float32Array, *, phrases: Sequence[str] = (),
                bias_weight: float = 0.0, language: str = "en",
                stop: Callable[[], bool] | None = None) -> Hypothesis | None:
        """The words so far (greedy); None for too little audio or when ``stop`` said so."""
        ...


#: Above this frequency (Hz) telephone and 8 kHz devices carry no speech.
NARROWBAND_EDGE_HZ = 3900.0
#: Audio with less than this share of its power above the edge counts as narrowband.
NARROWBAND_SHARE = 1e-4


def is_narrowband(audio: Float32Array, rate_hz: int = 16000) -> bool:
    """Return whether 16 kHz ``audio`` holds nothing above 3.9 kHz (an 8 kHz source).

    Silent audio is not narrowband: there is nothing to tell.
    """
    x = np.asarray(audio, dtype=np.float64)
    power = np.abs(np.fft.rfft(x - x.mean())) ** 2
    total = float(power.sum())
    if total <= 1e-12 * max(x.size, 1):
        return False
    freqs = np.fft.rfftfreq(x.size, 1.0 / rate_hz)
    return float(power[freqs > NARROWBAND_EDGE_HZ].sum()) / total < NARROWBAND_SHARE


class WhisperEngine:
    """Whisper (``model``: tiny.en or base); ``phrases`` bias the beam search by
    shallow fusion.

    ``narrowband_model`` (e.g. ``base``), when set, decodes audio that holds
    nothing above 3.9 kHz (8 kHz devices, telephone audio): tiny.en loses
    fricatives there ("Turn off my life in my heart" for "turn off the lights
    in the hall"), the larger model keeps them. It is loaded on first use.

    ``multilingual_model`` (``base``) decodes every ``language`` but English,
    with that language's token in the prompt; it is loaded on first use too
    (``model`` itself serves every language when it is multilingual).
    """

    name = "whisper"

    def __init__(self, *, model: str = "tiny.en", quantized: bool = True, trim: bool = True,
                 beam_size: int = 5, threads: int = 1, min_window_s: float = 10.0,
                 word_times: bool = True, narrowband_model: str = "",
                 multilingual_model: str = "base") -> None:
        self.model = self._load(model, quantized, threads, min_window_s)
        self._multilingual_args = (multilingual_model, quantized, threads, min_window_s)
        self._multilingual: WhisperOnnx | None = None
        self._narrowband_args = (narrowband_model, quantized, threads, min_window_s)
        self._narrowband: WhisperOnnx | None = None
        self.trim = trim
        self.beam_size = beam_size
        self.word_times = word_times

    @staticmethod
    def _load(model: str, quantized: bool, threads: int, min_window_s: float) -> WhisperOnnx:
        from models.whisper.inference import AsrModelMissing, WhisperOnnx

        try:
            return WhisperOnnx(model=model, quantized=quantized, threads=threads,
                               min_window_s=min_window_s)
        except AsrModelMissing as exc:
            raise AsrError(AsrModelMissing.code, str(exc)) from exc

    def model_for(self, audio: Float32Array, language: str = "en") -> WhisperOnnx:
        """Return the model that decodes ``audio`` in ``language``: the multilingual one
        for languages but English, the narrowband one for 8 kHz sources."""
        if language != "en":
            return self.multilingual()
        name, quantized, threads, min_window_s = self._narrowband_args
        if not name or not is_narrowband(audio):
            return self.model
        if self._narrowband is None:
            try:
                self._narrowband = self._load(name, quantized, threads, min_window_s)
            except AsrError as exc:
                # An image built with one model still answers 8 kHz devices, less well.
                structlog.get_logger("voicestream.asr").warning(
                    "asr.narrowband_model_missing", model=name, code=exc.code,
                    detail="decoding narrowband audio with the main model")
                self._narrowband_args = ("", quantized, threads, min_window_s)
                return self.model
        return self._narrowband

    def multilingual(self) -> WhisperOnnx:
        """The model for languages but English (loaded on first use; ``AsrError``
        ``asr-model-missing`` when it is not built)."""
        if self.model.tokenizer.multilingual:
            return self.model
        if self._multilingual is None:
            self._multilingual = self._load(*self._multilingual_args)
        return self._multilingual

    @functools.lru_cache(maxsize=256)  # noqa: B019 - engines live as long as the worker
    def _trie(self, phrases: tuple[str, ...], weight: float, grammar: bool,
              model: WhisperOnnx | None = None) -> BiasTrie:
        endings = ("", ".", "!", "?") if grammar else ("",)
        tokenizer = (model or self.model).tokenizer
        return BiasTrie.from_phrases(phrases, tokenizer, weight, endings=endings)

    @functools.lru_cache(maxsize=256)  # noqa: B019 - engines live as long as the worker
    def _sounds(self, phrases: tuple[str, ...]) -> SoundIndex:
        return SoundIndex(phrases)

    def transcribe(self, audio: Float32Array, *, phrases: Sequence[str] = (),
                   bias_weight: float = 0.0, phrase_bonus: float = 0.0,
                   strong_weight: float = 0.0, nbest: int = 5,
                   grammar: Sequence[str] = (), language: str = "en") -> list[Hypothesis]:
        """Transcribe with beam search; n-best scores are per-token search scores."""
        model, key, trie = self._biased(audio, language, phrases, bias_weight)
        sounds = self._sounds(key) if phrases and phrase_bonus > 0 else None
        strong = self._trie(key, strong_weight, False, model) \
            if sounds is not None and strong_weight > 0 else None
        rules = self._trie(tuple(sorted(set(grammar))), 0.0, True, model) if grammar else None
        hyps = model.transcribe(audio, beam_size=self.beam_size, nbest=nbest, bias=trie,
                                     grammar=rules, sounds=sounds, phrase_bonus=phrase_bonus,
                                     strong=strong, trim=self.trim,
                                     word_times=self.word_times, language=language)
        return [Hypothesis(h.text, round(h.score, 4), h.words) for h in hyps if h.text]

    def _biased(self, audio: Float32Array, language: str, phrases: Sequence[str],
                bias_weight: float) -> tuple[WhisperOnnx, tuple[str, ...], BiasTrie | None]:
        """The model for ``audio`` in ``language``, the phrases as a key, their trie."""
        model = self.model_for(audio, language)
        if language not in model.tokenizer.languages:
            raise AsrError("locale-unsupported", f"Whisper has no language {language!r}")
        key = tuple(sorted(set(phrases)))
        trie = self._trie(key, bias_weight, False, model) \
            if phrases and bias_weight > 0 else None
        return model, key, trie

    def partial(self, audio: Float32Array, *, phrases: Sequence[str] = (),
                bias_weight: float = 0.0, language: str = "en",
                stop: Callable[[], bool] | None = None) -> Hypothesis | None:
        """The words so far of audio still being spoken (greedy, shallow fusion only).

        None when there is too little audio or ``stop`` ended the search; an
        empty text when nothing was heard.
        """
        from models.whisper.inference import DecodeStopped

        model, _, trie = self._biased(audio, language, phrases, bias_weight)
        try:
            hyp = model.partial(audio, bias=trie, language=language, stop=stop)
        except DecodeStopped:
            return None
        return Hypothesis(hyp.text, round(hyp.score, 4)) if hyp is not None else None


#: Moonshine's search score per token at or below which it asks for a second opinion:
#: about half of the natural set's requests (48 %), where its errors sit.
SECOND_BELOW = -0.15
#: The second model's log-probability per token, and the requests' model's per word,
#: against Moonshine's per token, in :func:`second_opinion`'s judgement.
SECOND_WEIGHT = 1.0
SECOND_LM_WEIGHT = 0.5


class MoonshineEngine:
    """Moonshine base English; ``phrases`` bias the beam search by shallow fusion, the
    sound-alike rescoring and the strong second search, and a ``grammar`` restricts
    it, as with Whisper (the passes are Whisper's, with its settings). Hypotheses
    carry no word times.

    ``others`` makes the engine for the rest (Whisper base in the worker): audio
    in other languages, and (with ``narrowband``) narrowband audio, which
    Moonshine decodes less well (8 kHz natural-voice WER 14.8 % against base's
    12.1 %, held-out voice). Without it, other languages get ``locale-unsupported``.

    ``lm_weight`` > 0 reorders the n-best by the requests' word trigram
    (:func:`rerank`, :mod:`models.lm`), except under a grammar and when a hypothesis
    holds one of ``phrases``. ``phrase_lm_weight`` > 0 has the same model judge
    what a context phrase does to the sentence before the context passes put it in
    (:func:`phrase_judge`).

    ``second`` makes the model for a second opinion (Whisper base in the worker,
    made on first use): where Moonshine is unsure of its best (search score per
    token at or below ``second_below``) and the same exceptions do not apply,
    both models' n-bests are judged together (:func:`second_opinion`).
    """

    name = "moonshine"

    def __init__(self, *, quantized: bool = True, beam_size: int = 5, threads: int = 1,
                 others: Callable[[], Engine] | None = None, narrowband: bool = True,
                 lm_weight: float = 0.0, phrase_lm_weight: float = 0.0,
                 second: Callable[[], WhisperOnnx] | None = None,
                 second_below: float = SECOND_BELOW) -> None:
        from models.moonshine.inference import MoonshineModelMissing, MoonshineOnnx

        if lm_weight < 0 or phrase_lm_weight < 0:
            raise ValueError(f"lm_weight and phrase_lm_weight must be >= 0, "
                             f"got {lm_weight} and {phrase_lm_weight}")
        #: Weight of the requests' language model in the n-best's order (:func:`rerank`);
        #: 0: the search's order. The model is read here (0.1 s), not at the first request.
        self.lm_weight = lm_weight
        if lm_weight:
            bundled()
        #: The context passes' judge of a phrase (:func:`phrase_judge`), or None.
        self.judge = phrase_judge(bundled(), phrase_lm_weight) if phrase_lm_weight else None

        try:
            self.model: MoonshineOnnx = MoonshineOnnx(quantized=quantized, threads=threads)
        except MoonshineModelMissing as exc:
            raise AsrError(MoonshineModelMissing.code, str(exc)) from exc
        self.beam_size = beam_size
        #: The engine for what Moonshine base does not serve, made on first use: other
        #: languages and narrowband audio (8 kHz devices, telephone lines).
        self._others = others
        self._other: Engine | None = None
        self.narrowband = narrowband
        #: Makes the second-opinion model; None once it proved missing (or never given).
        self._second_maker = second
        self._second: WhisperOnnx | None = None
        #: Moonshine's best scoring at or below this per token asks for the second opinion.
        self.second_below = second_below
        if second:
            bundled()

    def other_for(self, audio: Float32Array, language: str) -> Engine | None:
        """The engine that decodes ``audio`` in ``language`` instead, if not Moonshine."""
        if self._others is None or (
                language == "en" and not (self.narrowband and is_narrowband(audio))):
            return None
        if self._other is None:
            self._other = self._others()
        return self._other

    def second(self) -> WhisperOnnx | None:
        """The second-opinion model, made on first use; None when there is none."""
        if self._second is None and self._second_maker is not None:
            try:
                self._second = self._second_maker()
            except AsrError as exc:
                # An image built without Whisper base still answers, with Moonshine alone.
                structlog.get_logger("voicestream.asr").warning(
                    "asr.second_opinion_missing", code=exc.code,
                    detail="decoding with Moonshine alone")
                self._second_maker = None
        return self._second

    @functools.lru_cache(maxsize=256)  # noqa: B019 - engines live as long as the worker
    def _trie(self, phrases: tuple[str, ...], weight: float, grammar: bool) -> BiasTrie:
        endings = ("", ".", "!", "?") if grammar else ("",)
        return BiasTrie.from_phrases(phrases, self.model.tokenizer, weight, endings=endings)

    def transcribe(self, audio: Float32Array, *, phrases: Sequence[str] = (),
                   bias_weight: float = 0.0, phrase_bonus: float = 0.0,
                   strong_weight: float = 0.0, nbest: int = 5,
                   grammar: Sequence[str] = (), language: str = "en") -> list[Hypothesis]:
        """Transcribe with beam search; n-best scores are per-token search scores (or,
        after a second opinion, :func:`second_opinion`'s judgement)."""
        other = self.other_for(audio, language)
        if other is not None:
            return other.transcribe(audio, phrases=phrases, bias_weight=bias_weight,
                                    phrase_bonus=phrase_bonus, strong_weight=strong_weight,
                                    nbest=nbest, grammar=grammar, language=language)
        if language != "en":
            raise AsrError("locale-unsupported", "Moonshine base recognises English only")
        key = tuple(sorted(set(phrases)))
        trie = self._trie(key, bias_weight, False) if phrases and bias_weight > 0 else None
        sounds = _sound_index(key) if phrases and phrase_bonus > 0 else None
        strong = self._trie(key, strong_weight, False) \
            if sounds is not None and strong_weight > 0 else None
        rules = self._trie(tuple(sorted(set(grammar))), 0.0, True) if grammar else None
        heard = self.model.heard(audio)  # kept for the second opinion
        hyps = self.model.transcribe(audio, beam_size=self.beam_size,
                                     nbest=max(nbest, self.beam_size) if self.lm_weight else nbest,
                                     bias=trie, grammar=rules, sounds=sounds,
                                     phrase_bonus=phrase_bonus, strong=strong,
                                     judge=self.judge, heard=heard)
        hyps = [h for h in hyps if h.text]
        out = [Hypothesis(h.text, round(h.score, 4)) for h in hyps]
        # A hypothesis holding one of the device's phrases is the context passes' find;
        # the requests' model has never seen the name and would push it down.
        if grammar or not out or _holds_phrase(out, key):
            return out[:nbest]
        second = self.second() if out[0].score <= self.second_below else None
        if second is not None:
            out = second_opinion(self.model, second, audio, hyps, bundled(),
                                 beam_size=self.beam_size, heard=heard)
        elif self.lm_weight:
            out = rerank(out, bundled(), self.lm_weight)
        return out[:nbest]

    def partial(self, audio: Float32Array, *, phrases: Sequence[str] = (),
                bias_weight: float = 0.0, language: str = "en",
                stop: Callable[[], bool] | None = None) -> Hypothesis | None:
        """The words so far of audio still being spoken (greedy, shallow fusion only);
        None for too little audio or when ``stop`` ended the search."""
        from models.whisper.inference import DecodeStopped

        other = self.other_for(audio, language)
        if isinstance(other, PartialEngine):
            return other.partial(audio, phrases=phrases, bias_weight=bias_weight,
                                 language=language, stop=stop)
        if other is not None:
            return None  # that engine has no partials
        if language != "en":
            raise AsrError("locale-unsupported", "Moonshine base recognises English only")
        key = tuple(sorted(set(phrases)))
        trie = self._trie(key, bias_weight, False) if phrases and bias_weight > 0 else None
        try:
            hyp = self.model.partial(audio, bias=trie, stop=stop)
        except DecodeStopped:
            return None
        return Hypothesis(hyp.text, round(hyp.score, 4)) if hyp is not None else None


def second_opinion(first: MoonshineOnnx, second: WhisperOnnx, audio: Float32Array,
                   hyps: Sequence[SearchHypothesis], model: WordTrigram, *,
                   beam_size: int = 5,
                   heard: tuple[Float32Array, Float32Array] | None = None
                   ) -> list[Hypothesis]:
    """``hyps`` (``first``'s n-best) and ``second``'s own n-best for ``audio``, every text
    judged by both models on the audio and by the requests' ``model``, best first.

    Each text's score is its log-probability per token under ``first``, plus
    :data:`SECOND_WEIGHT` times the same under ``second``, plus
    :data:`SECOND_LM_WEIGHT` times ``model``'s mean log-probability per word.
    A model's own hypotheses keep the log-probability its search gave them; only
    the other model's texts are forced through it (teacher forcing, one batch).
    Two models of other kinds (Moonshine on raw samples, Whisper on a log-mel
    window) make other mistakes: on the natural set the right sentence is in the
    union of their 5-bests far more often than in either. ``heard``: ``first``'s
    encoding of the audio (:meth:`MoonshineOnnx.heard`) where the caller has it.
    """
    prompt = second.tokenizer.prompt_for("en")
    theirs_k, theirs_v = second.encode(second.features(audio))
    theirs = second.search(theirs_k, theirs_v, beam_size=beam_size, nbest=beam_size,
                           bias=None, max_tokens=second.token_limit(audio.size),
                           prompt=prompt)
    # Per token, end of text counted, as _forced gives it.
    mine: dict[str, float] = {}
    yours: dict[str, float] = {}
    for known, found in ((mine, hyps), (yours, theirs)):
        for h in found:  # best first: a text's best spelling keeps its score
            known.setdefault(h.text.strip(), h.logprob / (len(h.tokens) + 1))
    texts = [t for t in dict.fromkeys((*mine, *yours)) if t]
    missing = [t for t in texts if t not in mine]
    heard = (heard or first.heard(audio)) if missing else None
    if heard is not None:
        mine.update(_forced(first, *heard, missing, None))
    missing = [t for t in texts if t not in yours]
    if missing:
        yours.update(_forced(second, theirs_k, theirs_v, missing, prompt))
    scores = [mine[t] + SECOND_WEIGHT * yours[t] + SECOND_LM_WEIGHT * model.per_word(t)
              for t in texts]
    ranked = sorted(zip(scores, texts, strict=True), key=lambda st: st[0], reverse=True)
    return [Hypothesis(t, round(score, 4)) for score, t in ranked]


def _forced(judge: MoonshineOnnx | WhisperOnnx, keys: Float32Array, values: Float32Array,
            texts: Sequence[str], prompt: tuple[int, ...] | None) -> dict[str, float]:
    """Each of ``texts``' log-probability per token (end of text counted) under ``judge``,
    given the audio's encoder keys and values (teacher forcing, one batch)."""
    seqs = [judge.tokenizer.encode(" " + t) for t in texts]
    totals = judge.logprobs(keys, values, seqs, prompt=prompt)
    return {t: lp / (len(seq) + 1) for t, lp, seq in zip(texts, totals, seqs, strict=True)}


def rerank(hyps: Sequence[Hypothesis], model: WordTrigram, weight: float
           ) -> list[Hypothesis]:
    """``hyps`` ordered by their score plus ``weight`` times the mean log-probability of
    their words under ``model`` (:meth:`models.lm.WordTrigram.per_word`); each keeps
    that sum as its score, so the n-best stays sorted by score."""
    scored = [dataclasses.replace(h, score=round(h.score + weight * model.per_word(h.text), 4))
              for h in hyps]
    return sorted(scored, key=lambda h: h.score, reverse=True)


def phrase_judge(model: WordTrigram, weight: float) -> PhraseJudge:
    """The context passes' judge (:data:`models.whisper.inference.PhraseJudge`): a veto,
    in nats, on a context phrase that makes the transcript read less like a request.

    The phrase counts as one unseen word (:func:`models.lm.phrase_words`), so
    only what surrounds it matters. The two transcripts are compared by their
    mean log-probability per word, times the words (and end) of the one without
    the phrase: a phrase put in place of several words is neither rewarded for
    the words it removed nor charged for them. ``weight`` times that, where
    negative, is the veto: "phone Marisol on the <phrase>" against "phone
    Marisol on the mobile", or "give me the telephone <phrase>" against "give me
    the telephone". Where the phrase reads as likely, nothing is added: a
    request for a name the requests' model has never seen is what the passes
    are for, and the audio alone decides it.
    """
    @functools.lru_cache(maxsize=16)
    def scored(before: str) -> tuple[float, int]:
        # The rescoring judges up to 8 variants against the same transcript.
        words = normalize(before).split()
        return model.logprob(words) / (len(words) + 1), len(words) + 1

    def judge(before: str, after: str, phrase: str) -> float:
        mean_before, count = scored(before)
        words_after = phrase_words(after, phrase)
        per_word = model.logprob(words_after) / (len(words_after) + 1) - mean_before
        return weight * min(0.0, per_word * count)

    return judge


@functools.lru_cache(maxsize=64)
def _scored_phrases(phrases: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(f" {n} " for n in map(normalize, phrases) if n)


def _holds_phrase(hyps: Sequence[Hypothesis], phrases: tuple[str, ...]) -> bool:
    """Whether a hypothesis has one of ``phrases`` as whole words (scoring form)."""
    if not phrases:
        return False
    wanted = _scored_phrases(phrases)
    return any(p in f" {normalize(h.text)} " for h in hyps for p in wanted)


@functools.lru_cache(maxsize=64)
def _sound_index(phrases: tuple[str, ...]) -> SoundIndex:
    """The sound keys of a context's phrases (shared: they depend on the text only)."""
    return SoundIndex(phrases)


#: A JSGF grammar of single digits, for ``--grammar digits``.
DIGITS_JSGF = (
    "#JSGF V1.0;\ngrammar digits;\npublic <digit> = zero | one | two | three | four | five"
    " | six | seven | eight | nine | oh;\n"
)
GRAMMARS = {"digits": DIGITS_JSGF}


class PocketsphinxEngine:
    """PocketSphinx with its bundled en-us model; a JSGF grammar constrains what it hears.

    Without a grammar it uses the bundled general language model, which is
    weak on open commands; it is meant for constrained grammars and speed.
    """

    name = "pocketsphinx"

    def __init__(self, grammar: str | None = None) -> None:
        from pocketsphinx import Decoder

        self._decoder = Decoder(loglevel="FATAL")
        if grammar is not None:
            jsgf = GRAMMARS.get(grammar, grammar)
            if not jsgf.lstrip().startswith("#JSGF"):
                raise AsrError("asr-bad-grammar",
                               f"grammar must be JSGF text or one of {', '.join(GRAMMARS)}")
            self._decoder.add_jsgf_string("grammar", jsgf)
            self._decoder.activate_search("grammar")

    def transcribe(self, audio: Float32Array, *, phrases: Sequence[str] = (),
                   bias_weight: float = 0.0, phrase_bonus: float = 0.0,
                   strong_weight: float = 0.0, nbest: int = 5,
                   grammar: Sequence[str] = (), language: str = "en") -> list[Hypothesis]:
        """Decode in one pass; the n-best comes from the lattice.

        A per-request ``grammar`` is not supported here (set one at construction);
        its model is English, so any other ``language`` is ``locale-unsupported``.
        """
        if language != "en":
            raise AsrError("locale-unsupported", "PocketSphinx recognises English only")
        pcm = (np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes()
        d = self._decoder
        d.start_utt()
        d.process_raw(pcm, full_utt=True)
        d.end_utt()
        out: list[Hypothesis] = []
        seen: set[str] = set()
        for hyp in d.nbest() or ():  # None under a grammar search
            if hyp is None or not hyp.hypstr:
                continue
            text = " ".join(w for w in hyp.hypstr.split() if not w.startswith("<"))
            if text and text not in seen:
                seen.add(text)
                out.append(Hypothesis(text, float(hyp.score)))
            if len(out) >= nbest:
                break
        best = d.hyp()
        if not out and best is not None and best.hypstr:
            out.append(Hypothesis(best.hypstr, float(best.score)))
        return out


ENGINES = ("whisper", "moonshine", "pocketsphinx")


def decoder_name(engine: Engine, audio: Float32Array, language: str = "en") -> str:
    """The name of the engine that decodes ``audio`` in ``language``: ``engine``'s, or
    that of the engine it hands such audio to (Moonshine's others)."""
    if isinstance(engine, MoonshineEngine):
        other = engine.other_for(audio, language)
        if other is not None:
            return other.name
    return engine.name


def create(name: str, **options: object) -> Engine:
    """Return the engine ``name``; unknown names fail listing the valid ones."""
    if name == "whisper":
        return WhisperEngine(**options)  # type: ignore[arg-type]
    if name == "moonshine":
        return MoonshineEngine(**options)  # type: ignore[arg-type]
    if name == "pocketsphinx":
        return PocketsphinxEngine(**options)  # type: ignore[arg-type]
    raise AsrError("asr-unknown-engine", f"unknown engine {name!r}; valid: {', '.join(ENGINES)}")
