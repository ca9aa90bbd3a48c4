"""Moonshine base English on onnxruntime with numpy: beam search, n-best, biasing.

No torch and no Moonshine runtime: the graphs come from ``voicestream models
build --moonshine`` (:mod:`models.moonshine.build`). Unlike Whisper, the
encoder reads raw 16 kHz samples (no log-mel) and its cost grows with the
audio's length rather than a fixed window.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt
from scipy.special import log_softmax

from models.moonshine.build import model_dir
from models.moonshine.tokenizer import Tokenizer
from models.whisper.bias import BiasTrie
from models.whisper.inference import (
    RESCORE_FROM,
    Beam,
    ContextPasses,
    DecodeStopped,
    Hypothesis,
    PhraseJudge,
    cpu_session,
    scorer_session,
)
from models.whisper.phonetic import SoundIndex

Float32Array = npt.NDArray[np.float32]
SAMPLE_RATE_HZ = 16000
#: The token cap: this many tokens plus this many per second of audio. Moonshine's
#: pieces are short (digits one by one), so the cap is looser than Whisper's 6 + 6/s;
#: more than this is the decoder looping.
TOKENS_BASE, TOKENS_PER_S = 6, 8.0
#: Audio shorter than this (seconds) is not decoded: the stem's first convolution
#: alone spans 8 ms, and a tenth of a second holds no word.
MIN_AUDIO_S = 0.1
#: Audio shorter than this (seconds) is centred in silence of this length: single
#: words under a second came out as other words or repeated ("Hello, hello, hello."
#: for "zero"). Chosen on every third FSDD dev recording (100 digits, 8 kHz):
#: digits wrong 56 % unpadded, 39 % at 1 s, 45 % at 1.5 s, 41 % at 2 s.
MIN_WINDOW_S = 1.0
#: Only the first this many seconds are decoded, as Whisper decodes its 30 s window:
#: the encoder's self-attention grows with the square of the audio's length (the
#: worker's utterances end at ``max_utterance_ms`` + 2 s, 17 s by default).
MAX_AUDIO_S = 30.0
_MAX_SAMPLES = int(MAX_AUDIO_S * SAMPLE_RATE_HZ)


class MoonshineModelMissing(RuntimeError):
    """The built model is not there; ``voicestream models build --moonshine`` makes it."""

    code = "asr-model-missing"


class MoonshineOnnx(ContextPasses):
    """Transcribe 16 kHz audio with our Moonshine encoder and decoder graphs.

    The context passes after the search (sound-alike rescoring, the strong second
    search) are Whisper's (:class:`ContextPasses`): both decoders have one interface.
    """

    tokenizer: Tokenizer
    shares_audio_rows = True

    def __init__(self, path: Path | None = None, *, quantized: bool = True,
                 threads: int = 1) -> None:
        path = path or model_dir()
        suffix = ".int8.onnx" if quantized else ".onnx"
        enc, dec = path / f"encoder{suffix}", path / f"decoder{suffix}"
        if not (enc.is_file() and dec.is_file() and (path / "tokenizer.bin").is_file()):
            raise MoonshineModelMissing(
                f"no Moonshine model in {path}; build it with: voicestream models build "
                "--moonshine")
        self.encoder, self.decoder = (cpu_session(f, threads) for f in (enc, dec))
        self.tokenizer = Tokenizer(path / "tokenizer.bin")
        self.layers = int(self.decoder.get_inputs()[1].shape[0])
        self.width = int(self.decoder.get_inputs()[1].shape[3])
        self.scorer = scorer_session(path, suffix, threads)
        vocab = int(self.decoder.get_outputs()[0].shape[1])
        # Never written: unknown, start, and the logits' padding past the vocabulary.
        self.suppress = np.array([0, self.tokenizer.sot,
                                  *range(len(self.tokenizer), vocab)], np.int64)

    def encode(self, audio: Float32Array) -> tuple[Float32Array, Float32Array]:
        """Return the decoder's cross-attention keys ``[L, 1, H, hd, T]`` and values
        ``[L, 1, H, T, hd]``."""
        k, v = self.encoder.run(None, {"audio": np.asarray(audio, np.float32)[None]})
        return k, v

    def heard(self, audio: Float32Array) -> tuple[Float32Array, Float32Array] | None:
        """The encoder's keys and values for ``audio``'s first :data:`MAX_AUDIO_S`
        seconds, or None for too little audio to decode (under :data:`MIN_AUDIO_S`)."""
        if audio.size < int(MIN_AUDIO_S * SAMPLE_RATE_HZ):
            return None
        return self.encode(self.window(audio[:_MAX_SAMPLES]))

    @staticmethod
    def window(audio: Float32Array) -> Float32Array:
        """Return ``audio`` centred in silence up to :data:`MIN_WINDOW_S`, else as it is."""
        short = int(MIN_WINDOW_S * SAMPLE_RATE_HZ) - audio.size
        if short <= 0:
            return audio
        return np.pad(np.asarray(audio, np.float32), (short // 2, short - short // 2))

    @staticmethod
    def token_limit(samples: int, max_tokens: int = 192) -> int:
        """Return the most tokens a transcript of ``samples`` at 16 kHz may have."""
        return min(max_tokens, TOKENS_BASE + int(samples / SAMPLE_RATE_HZ * TOKENS_PER_S))

    def transcribe(self, audio: Float32Array, *, beam_size: int = 5, nbest: int = 5,
                   bias: BiasTrie | None = None, grammar: BiasTrie | None = None,
                   sounds: SoundIndex | None = None, phrase_bonus: float = 0.0,
                   strong: BiasTrie | None = None, max_tokens: int = 192,
                   judge: PhraseJudge | None = None,
                   heard: tuple[Float32Array, Float32Array] | None = None
                   ) -> list[Hypothesis]:
        """Return up to ``nbest`` hypotheses, best first, for 16 kHz mono ``audio`` (its
        first :data:`MAX_AUDIO_S` seconds); ``heard`` is :meth:`heard` of it where the
        caller has it already.

        ``bias`` adds its bonus to the search score only (shallow fusion);
        ``grammar`` restricts the output to its phrases. Scores are per token.
        With ``sounds``, phrases that sound like part of a hypothesis are tried in
        its place (:meth:`rescore`, ``phrase_bonus`` nats); with ``strong`` too, a
        result holding none of them is searched again under that heavier bias
        (:meth:`second_pass`), as Whisper does. ``judge`` weighs what a phrase does
        to the sentence in both passes (:data:`models.whisper.inference.PhraseJudge`),
        and holds a phrase that shallow fusion wrote to the same terms
        (:meth:`fusion_check`).
        """
        heard = heard or self.heard(audio)
        if heard is None:
            return []
        cross_k, cross_v = heard
        limit = self.token_limit(min(audio.size, _MAX_SAMPLES), max_tokens)
        rescoring = sounds is not None and len(sounds) > 0 and grammar is None
        hyps = self.search(cross_k, cross_v, beam_size=beam_size,
                           nbest=max(nbest, RESCORE_FROM) if rescoring else nbest, bias=bias,
                           grammar=grammar, max_tokens=limit)
        if rescoring and hyps and sounds is not None:
            if judge is not None and bias is not None:
                hyps = self.fusion_check(cross_k, cross_v, hyps, sounds, judge,
                                         bonus=phrase_bonus, beam_size=beam_size,
                                         nbest=max(nbest, RESCORE_FROM), max_tokens=limit)
            hyps = self.rescore(cross_k, cross_v, hyps, sounds, phrase_bonus, judge=judge)
            if strong is not None:
                hyps = self.second_pass(cross_k, cross_v, hyps, sounds, strong,
                                        beam_size=beam_size, max_tokens=limit, judge=judge,
                                        bonus=phrase_bonus)
        return hyps[:nbest]

    def partial(self, audio: Float32Array, *, bias: BiasTrie | None = None,
                stop: Callable[[], bool] | None = None) -> Hypothesis | None:
        """Return the greedy hypothesis for audio still being spoken, or None for too
        little audio: one beam, shallow fusion only. The encoder's cost follows the
        audio's length, so a partial costs what its audio does. ``stop`` as in
        :meth:`search`."""
        heard = self.heard(audio)
        if heard is None:
            return None
        hyps = self.search(*heard, beam_size=1, nbest=1, bias=bias,
                           max_tokens=self.token_limit(min(audio.size, _MAX_SAMPLES)),
                           stop=stop)
        return hyps[0] if hyps else None

    def step(self, tokens: npt.NDArray[np.int64], self_k: Float32Array, self_v: Float32Array,
             cross_k: Float32Array, cross_v: Float32Array
             ) -> tuple[Float32Array, Float32Array, Float32Array]:
        """Run the decoder once: logits of the last position and the grown cache."""
        logits, sk, sv = self.decoder.run(None, {"tokens": tokens, "self_k": self_k,
                                                 "self_v": self_v, "cross_k": cross_k,
                                                 "cross_v": cross_v})
        return logits, sk, sv

    def greedy(self, audio: Float32Array, max_tokens: int = 192) -> list[int]:
        """Return the greedy tokens of ``audio`` (end of text excluded), for checks."""
        cross_k, cross_v = self.encode(audio)
        sk = sv = np.zeros((self.layers, 1, 0, self.width), np.float32)
        token, out = self.tokenizer.sot, []
        for _ in range(self.token_limit(audio.size, max_tokens)):
            logits, sk, sv = self.step(np.array([[token]], np.int64), sk, sv, cross_k, cross_v)
            token = int(logits[0].argmax())
            if token == self.tokenizer.eot:
                break
            out.append(token)
        return out

    def search(self, cross_k: Float32Array, cross_v: Float32Array, *, beam_size: int,
               nbest: int, bias: BiasTrie | None, max_tokens: int,
               grammar: BiasTrie | None = None,
               prompt: tuple[int, ...] | None = None,
               stop: Callable[[], bool] | None = None) -> list[Hypothesis]:
        """Beam search over the decoder; finished hypotheses are ranked by their search
        score per token (length-normalised) and distinct texts are kept. ``stop`` is
        asked before each step (:class:`DecodeStopped` when it says so)."""
        eot = self.tokenizer.eot
        trie = bias or BiasTrie.empty()
        empty = np.zeros((self.layers, 1, 0, self.width), np.float32)
        logits, sk, sv = self.step(np.array([prompt or self.tokenizer.prompt], np.int64),
                                   empty, empty, cross_k, cross_v)
        beams = [Beam([], 0.0, 0.0, trie.start())]
        finished: list[Beam] = []
        for step in range(max_tokens):
            if stop is not None and stop():
                raise DecodeStopped
            logp = log_softmax(logits.astype(np.float64), axis=-1)
            logp[:, self.suppress] = -np.inf
            if step == 0:
                logp[:, eot] = -np.inf  # something was said: the encoder saw speech-length audio
            candidates: list[tuple[float, float, int, int]] = []
            for b, beam in enumerate(beams):
                fused = logp[b] + trie.bonus_vector(beam.bias, logp.shape[1])
                if grammar is not None:
                    fused = fused + grammar.allowed(beam.node, logp.shape[1], eot)
                top = np.argpartition(-fused, beam_size + 1)[: beam_size + 1]
                for t in top:
                    if np.isfinite(fused[t]):
                        candidates.append((beam.fused + float(fused[t]),
                                           beam.logprob + float(logp[b, t]), b, int(t)))
            candidates.sort(key=lambda c: c[0], reverse=True)
            keep: list[Beam] = []
            rows: list[int] = []
            for fused_score, lp, b, t in candidates:
                parent = beams[b]
                if t == eot:
                    finished.append(Beam(parent.tokens, lp, fused_score, parent.bias))
                else:
                    node = grammar.step(parent.node, t) if grammar is not None else 0
                    keep.append(Beam([*parent.tokens, t], lp, fused_score,
                                      trie.advance(parent.bias, t), node))
                    rows.append(b)
                if len(keep) == beam_size:
                    break
            if len(finished) >= beam_size or not keep:
                break
            idx = np.array(rows)
            # The audio's keys and values stay one row: the graph broadcasts them.
            logits, sk, sv = self.step(np.array([[bm.tokens[-1]] for bm in keep], np.int64),
                                       sk[:, idx], sv[:, idx], cross_k, cross_v)
            beams = keep
        if not finished:
            finished = beams  # the cap cut every hypothesis: keep what there is
        return self._ranked(finished, nbest, repeats=grammar is not None)

