"""Whisper on onnxruntime with numpy: beam search, n-best, shallow-fusion biasing,
word times.

No torch and no CTranslate2 at run time. The ONNX graphs come from
``voicestream models build`` (see ``models/whisper/build.py``); tiny.en is the
default model, base the other one.
"""

from __future__ import annotations

import abc
import dataclasses
import itertools
import json
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from models.asr import WordTime
from models.whisper.bias import BiasState, BiasTrie
from models.whisper.features import FULL_FRAMES, HOP, SAMPLE_RATE_HZ, log_mel
from models.whisper.phonetic import SoundIndex
from models.whisper.tokenizer import Tokenizer

Float32Array = npt.NDArray[np.float32]
#: Frames added after the audio when the encoder runs on the utterance's length.
TRIM_PAD_FRAMES = 100
#: Hypotheses whose sound-alike phrases are tried (:meth:`WhisperOnnx.rescore`).
RESCORE_FROM = 3
#: Audio per encoder position (the encoder halves the 10 ms mel frames), ms.
POSITION_MS = 2 * HOP * 1000 // SAMPLE_RATE_HZ
#: The strong second search runs only when the first result's mean log-probability
#: per token is below this (nats): the model is unsure of what it wrote. Chosen on
#: the tuning sets: every name it recovered there came from a result at -0.7 or
#: below, while half the tuning voice's name-free MASSIVE sentences score above -0.5.
STRONG_BELOW = -0.5
#: What putting a context phrase into a transcript does to how plausible it reads:
#: ``judge(before, after, phrase)`` gives the nats that ``after`` (holding
#: ``phrase``) gains over ``before`` besides the audio's word; the context passes add
#: them to its audio log-probability (see :func:`models.asr.phrase_judge`).
PhraseJudge = Callable[[str, str, str], float]


#: The least encoder window of a partial transcript, s. Measured on 12 MASSIVE dev
#: sentences (flite), cut every second: 71 / 31 / 32 ms p50 per partial at a 10 s /
#: 4 s / no minimum, the same words but for case and punctuation in all but one of
#: the first eight; below a few seconds Whisper tends to loop on short audio.
PARTIAL_WINDOW_S = 4.0


class DecodeStopped(Exception):
    """A search's ``stop`` check said its result is no longer wanted."""


class AsrModelMissing(RuntimeError):
    """The converted Whisper model is not there; ``voicestream models build`` makes it."""

    code = "asr-model-missing"


def model_dir(model: str = "tiny.en") -> Path:
    """Return where converted ``model`` lives (under ``$VOICESTREAM_MODEL_DIR``, else the
    user cache)."""
    root = os.environ.get("VOICESTREAM_MODEL_DIR")
    base = Path(root) if root else Path.home() / ".cache" / "voicestream" / "models"
    return base / f"whisper-{model}"


@dataclasses.dataclass(frozen=True, slots=True)
class Hypothesis:
    """One recognition result: text, tokens and scores (natural-log probabilities)."""

    text: str
    tokens: tuple[int, ...]
    #: Sum of token log-probabilities under the model, without biasing.
    logprob: float
    #: Search score: model log-probability plus biasing bonus, per token.
    score: float
    #: When each word was said (the best hypothesis of a transcription only).
    words: tuple[WordTime, ...] = ()


@dataclasses.dataclass(slots=True)
class Beam:
    """A hypothesis of a beam search: its tokens, log-probability, search score (with the
    bias) and bias state, and its position in a grammar's trie (Moonshine's search)."""

    tokens: list[int]
    logprob: float
    fused: float
    bias: BiasState
    node: int = 0


def cpu_session(path: Path, threads: int) -> ort.InferenceSession:
    """An onnxruntime CPU session of ``path`` with ``threads`` intra-op threads, quiet."""
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


def scorer_session(path: Path, suffix: str, threads: int) -> ort.InferenceSession | None:
    """The model's ``scorer`` graph (:attr:`ContextPasses.scorer`) in ``path``, or None
    where the build has none."""
    scorer = path / f"scorer{suffix}"
    return cpu_session(scorer, threads) if scorer.is_file() else None


class _PromptTokenizer(Protocol):
    """What the context passes need of a tokenizer."""

    prompt: tuple[int, ...]
    eot: int

    def encode(self, text: str) -> list[int]: ...

    def decode(self, tokens: list[int]) -> str: ...


def _phrase_wins(candidate: Hypothesis, against: Hypothesis, phrases: set[str],
                 judge: PhraseJudge, bonus: float) -> bool:
    """Whether ``candidate``, which holds ``phrases``, wins over ``against`` on the
    rescoring's terms: its audio log-probability plus what ``judge`` gives its longest
    phrase comes within ``bonus`` nats of ``against``'s."""
    credit = judge(against.text, candidate.text, max(phrases, key=len))
    return candidate.logprob + credit + bonus >= against.logprob


class ContextPasses(abc.ABC):
    """The passes after the beam search that bring in a context's phrases: sound-alike
    rescoring (:meth:`rescore`) and the strong second search (:meth:`second_pass`).

    Shared by every model whose ``decoder.onnx`` takes ``tokens``, ``self_k``,
    ``self_v``, ``cross_k`` and ``cross_v`` and returns the last position's logits
    and the grown cache (Whisper's and Moonshine's graphs).
    """

    decoder: ort.InferenceSession
    tokenizer: _PromptTokenizer
    layers: int
    width: int
    #: Whether the decoder takes one row of audio keys/values for any number of token
    #: rows (it broadcasts them); otherwise they are repeated to one row per token row.
    shares_audio_rows: bool = False
    #: A graph that gives every position's log-probability of its target token after a
    #: cached prefix (the build's ``scorer.onnx``, Whisper's and Moonshine's alike):
    #: :meth:`logprobs` and :meth:`best_above` then force all tokens in one pass.
    #: Without it (an older build), one decoder step per token.
    scorer: ort.InferenceSession | None = None

    @abc.abstractmethod
    def search(self, cross_k: Float32Array, cross_v: Float32Array, *, beam_size: int,
               nbest: int, bias: BiasTrie | None, max_tokens: int,
               grammar: BiasTrie | None = None,
               prompt: tuple[int, ...] | None = None,
               stop: Callable[[], bool] | None = None) -> list[Hypothesis]:
        """Beam search over the decoder (each model's own); ``stop`` is asked before each
        step (:class:`DecodeStopped` when it says so)."""

    def _ranked(self, finished: Sequence[Beam], nbest: int, *,
                repeats: bool) -> list[Hypothesis]:
        """The finished hypotheses as an n-best of distinct texts, ranked by search score
        per token; ``repeats`` keeps a repeated phrase (a grammar's phrases may repeat a
        word on purpose: a PIN of 1111), else only its first copy is kept."""
        out: dict[str, Hypothesis] = {}
        for beam in sorted(finished, key=lambda x: x.fused / max(len(x.tokens), 1),
                           reverse=True):
            tokens = beam.tokens if repeats else self._one_copy(beam.tokens)
            text = self.tokenizer.decode(tokens).strip()
            if text not in out:
                n = max(len(beam.tokens), 1)
                out[text] = Hypothesis(text, tuple(tokens), beam.logprob, beam.fused / n)
        return list(out.values())[:nbest]

    def _one_copy(self, tokens: list[int]) -> list[int]:
        """``tokens`` up to the end of the first copy of a phrase the decoder went on to
        repeat ("Turn on the kitchen light Turn on the kitchen light"), else as they are.

        A short command padded to the encoder's window leaves the decoder room to
        say it again; scores stay the search's.
        """
        text = self.tokenizer.decode(tokens)
        kept = repeat_free(text)
        if kept == text.strip():
            return tokens
        for end in range(1, len(tokens) + 1):
            if _words(self.tokenizer.decode(tokens[:end])) == _words(kept):
                return tokens[:end]
        return tokens

    def fusion_check(self, cross_k: Float32Array, cross_v: Float32Array,
                     hyps: list[Hypothesis], sounds: SoundIndex, judge: PhraseJudge, *,
                     bonus: float, beam_size: int, nbest: int, max_tokens: int,
                     prompt: tuple[int, ...] | None = None) -> list[Hypothesis]:
        """``hyps`` (a search under shallow fusion) when their best holds no context
        phrase, or holds one on terms :meth:`rescore` would take it on; else the
        search again without the bias.

        Fusion's bonus is added token by token, and on a sentence with no name in
        it a beam can follow a phrase all the way: the whole n-best of "play the
        newest album by jay z" began "Siobhan Abernathy:", 34 nats less likely on
        the audio than the unbiased search's best. The phrase is held to what the
        rescoring asks of one (its audio log-probability plus the ``judge``'s veto
        within ``bonus`` nats of the unbiased best); failing that, the unbiased
        n-best goes on to the rescoring, which puts a phrase back where the audio
        supports it. Costs a second search, only when fusion wrote a phrase.
        """
        found = sounds.contained(hyps[0].text) if hyps else set()
        if not found:
            return hyps
        plain = self.search(cross_k, cross_v, beam_size=beam_size, nbest=nbest, bias=None,
                            max_tokens=max_tokens, prompt=prompt)
        if not plain or sounds.contained(plain[0].text):
            return hyps
        return hyps if _phrase_wins(hyps[0], plain[0], found, judge, bonus) else plain

    def second_pass(self, cross_k: Float32Array, cross_v: Float32Array,
                    hyps: list[Hypothesis], sounds: SoundIndex, strong: BiasTrie, *,
                    beam_size: int, max_tokens: int,
                    prompt: tuple[int, ...] | None = None,
                    judge: PhraseJudge | None = None, bonus: float = 0.0
                    ) -> list[Hypothesis]:
        """Search again with the ``strong`` bias when ``hyps[0]`` holds no context phrase
        and the model is unsure of it (mean log-probability per token below
        :data:`STRONG_BELOW`; ``hyps`` is not empty); the result goes first only when
        it holds a phrase in full.

        A heavy bias finds names tiny.en writes as unrelated words ("Daniel snuck
        on the wall"), but on ordinary sentences it mostly produces broken pieces
        of names, which cost WER when they win. Whole phrases are what it is
        good for, so only those are taken. With a ``judge``, only when the result's
        audio log-probability plus what the judge gives it comes within ``bonus``
        nats of the first result's, as in :meth:`rescore`.
        """
        top = hyps[0]
        if sounds.contained(top.text):
            return hyps  # a name is already written: the heavy search would only repeat it
        if top.logprob / max(len(top.tokens), 1) > STRONG_BELOW:
            return hyps  # words the model is sure of are not a name it misheard
        again = self.search(cross_k, cross_v, beam_size=beam_size, nbest=1, bias=strong,
                            max_tokens=max_tokens, prompt=prompt)
        found = sounds.contained(again[0].text) if again else set()
        if not found:
            return hyps
        if judge is not None and not _phrase_wins(again[0], top, found, judge, bonus):
            return hyps
        return [again[0], *(h for h in hyps if h.text != again[0].text)][: len(hyps)]

    def rescore(self, cross_k: Float32Array, cross_v: Float32Array, hyps: list[Hypothesis],
                sounds: SoundIndex, bonus: float, *, consider: int = RESCORE_FROM,
                candidates: int = 8,
                prompt: tuple[int, ...] | None = None,
                judge: PhraseJudge | None = None) -> list[Hypothesis]:
        """Put a context phrase where a hypothesis has words that sound like it, if audio agrees.

        For each of the top ``consider`` hypotheses, up to ``candidates`` phrases whose
        sound key is near one of its runs of words (:class:`SoundIndex`) replace that
        run; the ``candidates`` closest variants are scored by the decoder on the same
        audio (teacher forcing, one batch, :meth:`best_above`). The best variant
        replaces the top hypothesis when its log-probability plus ``bonus`` nats
        beats the top's. This recovers names the beam never held, which shallow
        fusion alone cannot: the audio, not the spelling, has the last word.

        With a ``judge``, each variant's log-probability also gets what the judge
        gives it against the top's text: a name that turns a likely request into an
        unlikely one ("phone Marisol on the mobile" into "phone Marisol on the
        Roborock") needs that much more from the audio.
        """
        found: dict[str, tuple[float, str, str]] = {}
        words = [_words(h.text) for h in hyps[:consider]]
        heard = set(words)
        for n, hyp in enumerate(hyps[:consider]):
            if n and words[n] == words[0]:
                continue  # the top one again, cased or punctuated otherwise
            for m in sounds.search(hyp.text, limit=candidates):
                text = hyp.text[: m.start] + m.phrase + hyp.text[m.end:]
                key = _words(text)
                if key not in found and key not in heard:
                    found[key] = (m.distance, text, m.phrase)
        if not found:
            return hyps
        chosen = sorted(found.values())[:candidates]
        variants = [text for _, text, _ in chosen]
        credits = [judge(hyps[0].text, text, phrase) for _, text, phrase in chosen] \
            if judge is not None else [0.0] * len(chosen)
        seqs = [self.tokenizer.encode(" " + t) for t in variants]
        best = self.best_above(cross_k, cross_v, seqs, hyps[0].logprob - bonus, prompt=prompt,
                               credits=credits)
        if best is None:
            return hyps
        # The winner's search score is the top's, plus what it gained per token.
        i, logprob = best
        gain = logprob + credits[i] + bonus - hyps[0].logprob
        won = Hypothesis(variants[i], tuple(seqs[i]), logprob,
                         hyps[0].score + gain / max(len(seqs[i]), 1))
        return [won, *(h for h in hyps if h.text != won.text)][: len(hyps)]

    def logprobs(self, cross_k: Float32Array, cross_v: Float32Array,
                 seqs: Sequence[Sequence[int]],
                 prompt: tuple[int, ...] | None = None) -> list[float]:
        """Return each of ``seqs``' log-probability given the audio, end of text included
        (teacher forcing, all rows in one batch: the prompt through the decoder, then
        the rows through :attr:`scorer` in one pass, else one decoder step per token).

        The prompt goes through the decoder on its own so that the int8 graphs quantise
        the rows' activations without the prompt's, which are far larger (forced with
        the rows, the per-token figures moved twice as far from float32's)."""
        if not seqs:
            return []
        rows = [[*s, self.tokenizer.eot] for s in seqs]
        empty = np.zeros((self.layers, 1, 0, self.width), np.float32)
        logits, sk, sv = self.decoder.run(None, {
            "tokens": np.array([prompt or self.tokenizer.prompt], np.int64), "self_k": empty,
            "self_v": empty, "cross_k": cross_k, "cross_v": cross_v})
        one = np.zeros(len(rows), np.int64)
        sk, sv = sk[:, one], sv[:, one]
        if self.scorer is not None:
            return self._scored(self.scorer, _log_softmax(logits.astype(np.float64))[0],
                                rows, sk, sv, cross_k, cross_v)
        ck, cv = (cross_k, cross_v) if self.shares_audio_rows else (
            np.repeat(cross_k, len(rows), axis=1), np.repeat(cross_v, len(rows), axis=1))
        total = np.zeros(len(rows))
        longest = max(map(len, rows))
        for step in range(longest):
            logp = _log_softmax(logits.astype(np.float64))
            for i, row in enumerate(rows):
                if step < len(row):
                    total[i] += logp[0 if step == 0 else i, row[step]]
            if step + 1 == longest:
                break
            feed = np.array([[row[min(step, len(row) - 1)]] for row in rows], np.int64)
            logits, sk, sv = self.decoder.run(None, {
                "tokens": feed, "self_k": sk, "self_v": sv, "cross_k": ck, "cross_v": cv})
        return [float(t) for t in total]

    def _scored(self, scorer: ort.InferenceSession, first: npt.NDArray[np.float64],
                rows: list[list[int]], sk: Float32Array, sv: Float32Array,
                cross_k: Float32Array, cross_v: Float32Array) -> list[float]:
        """:meth:`logprobs` in one ``scorer`` pass: ``first`` is the log-softmax after the
        prompt, ``sk``/``sv`` its cache copied to one row per sequence."""
        longest = max(map(len, rows))
        if longest == 1:
            return [float(first[row[0]]) for row in rows]
        padded = np.array([row + [self.tokenizer.eot] * (longest - len(row)) for row in rows],
                          np.int64)
        (logp,) = scorer.run(None, {
            "tokens": padded[:, :-1], "targets": padded[:, 1:], "self_k": sk, "self_v": sv,
            "cross_k": cross_k, "cross_v": cross_v})
        return [float(first[row[0]] + logp[i, : len(row) - 1].sum(dtype=np.float64))
                for i, row in enumerate(rows)]

    def best_above(self, cross_k: Float32Array, cross_v: Float32Array,
                   seqs: list[list[int]], floor: float,
                   prompt: tuple[int, ...] | None = None,
                   credits: Sequence[float] | None = None) -> tuple[int, float] | None:
        """Return the index and log-probability of the likeliest of ``seqs`` given the audio,
        if it beats ``floor``; None when none does. ``credits`` (one per sequence,
        nats) are added to the log-probabilities they are ranked and held to
        ``floor`` by; the one returned is the audio's alone.

        Log-probabilities are totals from the start of text, end of text included
        (as :attr:`Hypothesis.logprob`). Token log-probabilities are never positive,
        so a sequence is dropped as soon as its running total falls to ``floor``:
        most sound-alike variants fall within a few tokens of the name. With a
        :attr:`scorer`, every sequence is forced in one pass instead (:meth:`logprobs`).
        """
        if not seqs:
            return None
        if self.scorer is not None:
            audio = np.array(self.logprobs(cross_k, cross_v, seqs, prompt))
            ranked = audio + (0.0 if credits is None else np.array(credits, np.float64))
            best = int(np.argmax(ranked))
            return (best, float(audio[best])) if ranked[best] > floor else None
        empty = np.zeros((self.layers, 1, 0, self.width), np.float32)
        logits, sk, sv = self.decoder.run(None, {
            "tokens": np.array([prompt or self.tokenizer.prompt], np.int64), "self_k": empty,
            "self_v": empty, "cross_k": cross_k, "cross_v": cross_v})
        rows = [[*s, self.tokenizer.eot] for s in seqs]
        total = np.zeros(len(rows)) if credits is None else np.array(credits, np.float64)
        alive = list(range(len(rows)))
        shared = True  # every live row has the same tokens so far: one decoder row
        ck, cv = cross_k, cross_v
        found: tuple[int, float] | None = None
        for step in itertools.count():
            logp = _log_softmax(logits.astype(np.float64))
            for r, i in enumerate(alive):
                total[i] += logp[0 if shared else r, rows[i][step]]
            for i in alive:
                if step + 1 == len(rows[i]) and total[i] > floor:
                    floor = float(total[i])
                    found = (i, floor - (credits[i] if credits is not None else 0.0))
            keep = [r for r, i in enumerate(alive)
                    if total[i] > floor and step + 1 < len(rows[i])]
            if not keep:
                return found
            if shared and len({rows[alive[r]][step] for r in keep}) == 1:
                alive = [alive[r] for r in keep]
                feed = np.array([[rows[alive[0]][step]]], np.int64)
            else:
                idx = np.zeros(len(keep), np.int64) if shared else np.array(keep)
                sk, sv = sk[:, idx], sv[:, idx]
                shared = False
                alive = [alive[r] for r in keep]
                feed = np.array([[rows[i][step]] for i in alive], np.int64)
                if not self.shares_audio_rows and ck.shape[1] != len(alive):
                    # The audio rows are alike: copy on change only.
                    ck = np.repeat(cross_k, len(alive), axis=1)
                    cv = np.repeat(cross_v, len(alive), axis=1)
            logits, sk, sv = self.decoder.run(None, {
                "tokens": feed, "self_k": sk, "self_v": sv, "cross_k": ck, "cross_v": cv})
        return found


class WhisperOnnx(ContextPasses):
    """Transcribe 16 kHz audio with the exported encoder and decoder."""

    tokenizer: Tokenizer

    def __init__(self, path: Path | None = None, *, model: str = "tiny.en",
                 quantized: bool = True, threads: int = 1, min_window_s: float = 0.0) -> None:
        self.min_window_s = min_window_s
        path = path or model_dir(model)
        suffix = ".int8.onnx" if quantized else ".onnx"
        enc, dec = path / f"encoder{suffix}", path / f"decoder{suffix}"
        if not (enc.is_file() and dec.is_file() and (path / "tokenizer.json").is_file()):
            raise AsrModelMissing(
                f"no Whisper model in {path}; build it with: voicestream models build"
                + ("" if model == "tiny.en" else f" --whisper {model}"))
        self.encoder, self.decoder = (cpu_session(f, threads) for f in (enc, dec))
        self.tokenizer = Tokenizer(path / "tokenizer.json")
        config = json.loads((path / "config.json").read_text())
        self.suppress = np.array(sorted(set(config["suppress_ids"])), dtype=np.int64)
        self.suppress_begin = np.array(config["suppress_ids_begin"], dtype=np.int64)
        heads = config.get("alignment_heads") or []
        self.alignment_heads = np.array(heads, dtype=np.int64).reshape(-1, 2)
        aligner = path / "aligner.onnx"
        self.aligner = (cpu_session(aligner, threads)
                        if aligner.is_file() and len(self.alignment_heads) else None)
        self.layers = int(self.decoder.get_inputs()[1].shape[0])
        self.width = int(self.decoder.get_inputs()[1].shape[3])
        self.scorer = scorer_session(path, suffix, threads)

    def features(self, audio: Float32Array, *, trim: bool = True,
                 min_window_s: float | None = None) -> Float32Array:
        """Return the ``[1, 80, F]`` log-mel input: trimmed to the audio, or Whisper's 30 s.

        Trimmed, the window is the audio plus 1 s, but at least ``min_window_s``
        (the model's own when not given).
        """
        if trim:
            least = self.min_window_s if min_window_s is None else min_window_s
            frames = max(audio.size // HOP + TRIM_PAD_FRAMES, int(least * 100))
            frames = min(frames, FULL_FRAMES)
            frames += frames % 2
        else:
            frames = FULL_FRAMES
        return log_mel(audio[: FULL_FRAMES * HOP], frames=frames)[None]

    def encode(self, mel: Float32Array) -> tuple[Float32Array, Float32Array]:
        """Return the decoder's cross-attention keys and values ``[L, 1, T, D]``."""
        k, v = self.encoder.run(None, {"mel": mel})
        return k, v

    @staticmethod
    def token_limit(samples: int, max_tokens: int = 96) -> int:
        """Return the most tokens a transcript of ``samples`` at 16 kHz may have: speech
        runs at most ~5 tokens a second; more is the decoder looping."""
        return min(max_tokens, 6 + int(samples / SAMPLE_RATE_HZ * 6))

    def partial(self, audio: Float32Array, *, bias: BiasTrie | None = None,
                max_tokens: int = 96, language: str = "en",
                stop: Callable[[], bool] | None = None) -> Hypothesis | None:
        """Return the greedy hypothesis for audio still being spoken, or None for too
        little audio.

        The cheap path for partial transcripts: one beam, shallow fusion only, no
        word times, and an encoder window of the audio plus 1 s but at least
        :data:`PARTIAL_WINDOW_S` (a third of the encoder's cost at 10 s, with
        nearly the same words). ``stop`` is asked before each decoder step; when
        it answers True the search ends with :class:`DecodeStopped`, so that a
        job waiting for the thread is delayed by one step at most once the
        encoder has run.
        """
        if audio.size < SAMPLE_RATE_HZ // 10:
            return None
        prompt = self.tokenizer.prompt_for(language)
        cross_k, cross_v = self.encode(self.features(audio, min_window_s=PARTIAL_WINDOW_S))
        limit = self.token_limit(audio.size, max_tokens)
        hyps = self.search(cross_k, cross_v, beam_size=1, nbest=1, bias=bias,
                           max_tokens=limit, prompt=prompt, stop=stop)
        return hyps[0] if hyps else None

    def transcribe(self, audio: Float32Array, *, beam_size: int = 5, nbest: int = 5,
                   bias: BiasTrie | None = None, grammar: BiasTrie | None = None,
                   sounds: SoundIndex | None = None, phrase_bonus: float = 0.0,
                   strong: BiasTrie | None = None, trim: bool = True,
                   max_tokens: int = 96, word_times: bool = True,
                   language: str = "en") -> list[Hypothesis]:
        """Return up to ``nbest`` hypotheses, best first, for 16 kHz mono ``audio``.

        With ``sounds``, the phrases that sound like part of a hypothesis are
        tried in its place and kept when the audio supports them (:meth:`rescore`).
        With ``strong`` too (a trie of the same phrases with a larger weight), a
        result holding none of the phrases is searched again under it, and the
        new best hypothesis goes first when it holds one of them in full.
        With ``word_times``, the best hypothesis carries its words' times.
        ``language`` (a multilingual model only; ``ValueError`` for one it has no
        token for) is the language token of the prompt: ``de`` transcribes German.
        """
        prompt = self.tokenizer.prompt_for(language)
        if audio.size < SAMPLE_RATE_HZ // 10:
            return []
        cross_k, cross_v = self.encode(self.features(audio, trim=trim))
        limit = self.token_limit(audio.size, max_tokens)
        rescoring = sounds is not None and len(sounds) > 0 and grammar is None
        hyps = self.search(cross_k, cross_v, beam_size=beam_size,
                           nbest=max(nbest, RESCORE_FROM) if rescoring else nbest, bias=bias,
                           grammar=grammar, max_tokens=limit, prompt=prompt)
        if rescoring and hyps and sounds is not None:
            hyps = self.rescore(cross_k, cross_v, hyps, sounds, phrase_bonus, prompt=prompt)
            if strong is not None:
                hyps = self.second_pass(cross_k, cross_v, hyps, sounds, strong,
                                        beam_size=beam_size, max_tokens=limit, prompt=prompt)
        if hyps and word_times:
            words = self.word_times(cross_k, cross_v, hyps[0].tokens, audio.size // HOP,
                                    prompt=prompt)
            hyps[0] = dataclasses.replace(hyps[0], words=tuple(words))
        return hyps[:nbest]

    def search(self, cross_k: Float32Array, cross_v: Float32Array, *, beam_size: int,
               nbest: int, bias: BiasTrie | None, max_tokens: int,
               grammar: BiasTrie | None = None,
               prompt: tuple[int, ...] | None = None,
               stop: Callable[[], bool] | None = None) -> list[Hypothesis]:
        """Beam search over the decoder.

        ``bias`` adds its bonus to the search score only; ``grammar`` restricts the
        output to its phrases (a hard constraint, for prompts like a PIN). ``stop``
        is asked before each step (:class:`DecodeStopped` when it says so).
        """
        empty = np.zeros((self.layers, 1, 0, self.width), np.float32)
        logits, sk, sv = self.decoder.run(None, {
            "tokens": np.array([prompt or self.tokenizer.prompt], np.int64), "self_k": empty,
            "self_v": empty, "cross_k": cross_k, "cross_v": cross_v})
        eot = self.tokenizer.eot
        trie = bias or BiasTrie.empty()
        beams = [Beam([], 0.0, 0.0, trie.start())]
        nodes = [0]  # each beam's position in the grammar
        finished: list[Beam] = []
        ck = cv = cross_k
        for step in range(max_tokens):
            if stop is not None and stop():
                raise DecodeStopped
            logp = _log_softmax(logits.astype(np.float64))
            logp[:, self.suppress] = -np.inf
            logp[:, eot + 1:] = -np.inf  # timestamps and other specials
            if step == 0:
                logp[:, self.suppress_begin] = -np.inf
            candidates: list[tuple[float, float, int, int, BiasState]] = []
            for b, beam in enumerate(beams):
                fused = logp[b] + trie.bonus_vector(beam.bias, logp.shape[1])
                if grammar is not None:
                    fused = fused + grammar.allowed(nodes[b], logp.shape[1], eot)
                top = np.argpartition(-fused, beam_size + 1)[: beam_size + 1]
                for t in top:
                    if not np.isfinite(fused[t]):
                        continue
                    candidates.append((beam.fused + float(fused[t]),
                                       beam.logprob + float(logp[b, t]), b, int(t), beam.bias))
            candidates.sort(key=lambda c: c[0], reverse=True)
            keep: list[Beam] = []
            rows: list[int] = []
            for fused_score, lp, b, t, state in candidates:
                if t == eot:
                    finished.append(Beam(beams[b].tokens, lp, fused_score, state))
                else:
                    keep.append(Beam([*beams[b].tokens, t], lp, fused_score,
                                      trie.advance(state, t)))
                    rows.append(b)
                if len(keep) == beam_size:
                    break
            if len(finished) >= beam_size or not keep:
                break
            if step == 0:
                ck = np.repeat(cross_k, len(keep), axis=1)
                cv = np.repeat(cross_v, len(keep), axis=1)
            elif len(keep) != ck.shape[1]:
                ck, cv = ck[:, : len(keep)], cv[:, : len(keep)]
            nodes = ([grammar.step(nodes[b], bm.tokens[-1])
                      for b, bm in zip(rows, keep, strict=True)]
                     if grammar is not None else [0] * len(keep))
            idx = np.array(rows)
            logits, sk, sv = self.decoder.run(None, {
                "tokens": np.array([[bm.tokens[-1]] for bm in keep], np.int64),
                "self_k": sk[:, idx], "self_v": sv[:, idx], "cross_k": ck, "cross_v": cv})
            beams = keep
        if not finished:
            finished = beams
        return self._ranked(finished, nbest, repeats=grammar is not None)

    def word_times(self, cross_k: Float32Array, cross_v: Float32Array,
                   tokens: tuple[int, ...], audio_frames: int,
                   prompt: tuple[int, ...] | None = None) -> list[WordTime]:
        """Return when each word of ``tokens`` was said, from the cross-attention of
        Whisper's alignment heads (the config's ``alignment_heads``); empty when the
        model has no aligner.

        The heads' weights over the audio, standardised per head along the tokens
        and median-filtered along time, give a cost per (token, 20 ms position); the
        cheapest monotonic path through it (dynamic time warping) puts each token
        at the frame where its row is entered. Row ``i`` is the position that
        predicts text token ``i``, so a word starts where its first token's row does
        and ends where the next word's starts (the end-of-text row ends the last).
        """
        if self.aligner is None or not tokens:
            return []
        prompt = prompt or self.tokenizer.prompt
        seq = np.array([[*prompt, *tokens, self.tokenizer.eot]], np.int64)
        (weights,) = self.aligner.run(None, {"tokens": seq, "cross_k": cross_k,
                                             "cross_v": cross_v})
        frames = max(1, min(weights.shape[-1], audio_frames // 2))
        w = weights[self.alignment_heads[:, 0], self.alignment_heads[:, 1]]
        w = w[:, len(prompt) - 1: len(prompt) + len(tokens), :frames].astype(np.float64)
        w = (w - w.mean(axis=1, keepdims=True)) / (w.std(axis=1, keepdims=True) + 1e-9)
        matrix = _median_filter(w, 7).mean(axis=0)
        rows, cols = _dtw(-matrix)
        entered = cols[np.concatenate([[True], np.diff(rows) > 0])]
        out: list[WordTime] = []
        start_row = 0
        for i in range(1, len(tokens) + 1):
            if i < len(tokens) and not self.tokenizer.token_text(tokens[i]).startswith(" "):
                continue  # the word goes on (a piece of it, or punctuation)
            word = self.tokenizer.decode(list(tokens[start_row:i])).strip()
            if word:
                out.append(WordTime(word, int(entered[start_row]) * POSITION_MS,
                                    int(entered[i]) * POSITION_MS))
            start_row = i
        return out


def _median_filter(x: npt.NDArray[np.float64], width: int) -> npt.NDArray[np.float64]:
    """Median over a window of ``width`` along the last axis (edges reflected)."""
    if x.shape[-1] <= width // 2:
        return x
    pad = [(0, 0)] * (x.ndim - 1) + [(width // 2, width // 2)]
    windows = np.lib.stride_tricks.sliding_window_view(np.pad(x, pad, mode="reflect"), width,
                                                       axis=-1)
    out: npt.NDArray[np.float64] = np.median(windows, axis=-1)
    return out


def _dtw(cost: npt.NDArray[np.float64]) -> tuple[npt.NDArray[np.int64],
                                                   npt.NDArray[np.int64]]:
    """Return the (row, column) indices of the cheapest monotonic path from the first
    cell to the last of ``cost`` ``[N, M]``, moving right, down or diagonally."""
    n, m = cost.shape
    total = np.full((n + 1, m + 1), np.inf)
    total[0, 0] = 0.0
    step = np.zeros((n + 1, m + 1), np.int8)  # 0 diagonal, 1 down (row), 2 right (column)
    c = cost.tolist()
    for i in range(1, n + 1):
        prev, row, here, moves = total[i - 1].tolist(), total[i].tolist(), c[i - 1], step[i]
        for j in range(1, m + 1):
            options = (prev[j - 1], prev[j], row[j - 1])
            k = 0 if options[0] <= options[1] and options[0] <= options[2] else \
                (1 if options[1] <= options[2] else 2)
            row[j] = here[j - 1] + options[k]
            moves[j] = k
        total[i] = row
    i, j = n, m
    path: list[tuple[int, int]] = []
    while i > 0 and j > 0:
        path.append((i - 1, j - 1))
        move = int(step[i, j])
        if move == 0:
            i, j = i - 1, j - 1
        elif move == 1:
            i -= 1
        else:
            j -= 1
    path.reverse()
    arr = np.array(path, np.int64)
    return arr[:, 0], arr[:, 1]


def repeat_free(text: str) -> str:
    """``text`` without the copies of a phrase repeated back to back at its end.

    The repeated phrase (compared as lower-case words) must be at least two words
    said at least twice, the last copy perhaps cut short, or one word said at
    least five times ("no no no" is speech; five times "Third." is the decoder
    looping), and hold a word of three letters or more ("2 + 2 + 2" is left
    alone). The earliest such repetition is cut.
    """
    words = text.split()
    plain = [_words(w) for w in words]
    n = len(words)
    for start in range(n):
        for period in range(1, (n - start) // 2 + 1):
            if (n - start) / period < (5 if period == 1 else 2) or not any(
                    re.search(r"[^\W\d_]{3}", w) for w in plain[start: start + period]):
                continue
            if _periodic(plain[start: start + period]):
                continue  # "one one" twice is "one" four times
            if all(plain[i] == plain[i - period] for i in range(start + period, n)):
                return " ".join(words[: start + period])
    return text.strip()


def _periodic(unit: list[str]) -> bool:
    """Whether ``unit`` is a shorter run of words said more than once."""
    p = len(unit)
    return any(p % q == 0 and unit == unit[:q] * (p // q) for q in range(1, p))


def _words(text: str) -> str:
    """Return ``text`` as lower-case words: variants that differ only in case or
    punctuation are one variant."""
    return " ".join(re.findall(r"[\w']+", text.lower()))


def _log_softmax(x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    m = x.max(axis=-1, keepdims=True)
    out: npt.NDArray[np.float64] = x - m - np.log(np.exp(x - m).sum(axis=-1, keepdims=True))
    return out
