"""End-pointing evaluation: a labelled set with mid-sentence pauses, and its scores.

The set is built from MASSIVE en-US *dev* sentences spoken by espeak-ng in
several voices and rates. Most sentences are split at a natural point (before
a preposition, article or conjunction) with a pause of 100-800 ms; a quarter
are spoken without a pause. Background noise is added at 20-35 dB SNR. Labels
give the true end of speech and the pause, measured on the clean signal.
"""

from __future__ import annotations

import dataclasses
import json
import random
import subprocess
import tempfile
import wave
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import soxr

from agents.endpointing import Chunker, Decision, Endpointer, FrameAssembler
from agents.turn import TurnDecider, energy_fall
from infra.config import EndpointerConfig
from infra.inputs import InputFileError, Shape, read_jsonl
from models.eot import EotModel, words_of
from models.vad import CHUNK_MS, CHUNK_SAMPLES, SileroVad, VadState
from streams.audio import AudioFrame
from streams.client import read_wav
from streams.control import ErrorEvent
from streams.endpoint import Endpoint, EndpointKind, Reset

RATE = 16000
VOICES = ("en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-029", "en-us+f3", "en-gb+f4")
SPLIT_BEFORE = frozenset({
    "for", "to", "at", "in", "on", "with", "and", "the", "a", "my", "of", "from", "about",
    "by", "until", "before", "after", "or",
})


def speak(text: str, voice: str, rate_wpm: int) -> np.ndarray:
    """Synthesise ``text`` with espeak-ng; return 16 kHz float32 samples."""
    with tempfile.NamedTemporaryFile(suffix=".wav") as tmp:
        subprocess.run(["espeak-ng", "-v", voice, "-s", str(rate_wpm), "-w", tmp.name, text],
                       check=True, capture_output=True)
        with wave.open(tmp.name, "rb") as w:
            sr = w.getframerate()
            x = np.frombuffer(w.readframes(w.getnframes()), "<i2").astype(np.float32) / 32768
    return np.asarray(soxr.resample(x, sr, RATE), dtype=np.float32)


def voiced_bounds(x: np.ndarray, rel: float = 0.02) -> tuple[int, int]:
    """Return (first, last) sample index whose 10 ms energy passes ``rel`` of the peak."""
    win = RATE // 100
    n = len(x) // win
    energy = np.sqrt((x[: n * win].reshape(n, win) ** 2).mean(axis=1))
    on = np.nonzero(energy > rel * energy.max())[0]
    return int(on[0] * win), int((on[-1] + 1) * win)


def _split(words: list[str], rng: random.Random) -> int:
    lo, hi = max(2, len(words) // 3), max(3, 2 * len(words) // 3 + 1)
    natural = [i for i in range(lo, min(hi, len(words) - 1) + 1) if words[i] in SPLIT_BEFORE]
    return rng.choice(natural) if natural else rng.randint(lo, max(lo, len(words) - 2))


def build(out: Path, shared: Path, *, n: int = 160, seed: int = 7) -> None:
    """Build the labelled set in ``out`` from MASSIVE dev under ``shared``."""
    rng = random.Random(seed)
    np_rng = np.random.default_rng(seed)
    dev = shared / "massive-en-US" / "dev.jsonl"
    sentences = [json.loads(line)["utt"] for line in dev.read_text().splitlines()]
    sentences = [s for s in sentences if 5 <= len(s.split()) <= 14]
    rng.shuffle(sentences)
    out.mkdir(parents=True, exist_ok=True)
    labels = []
    for i, text in enumerate(sentences[:n]):
        voice = VOICES[i % len(VOICES)]
        wpm = rng.randint(140, 200)
        words = text.split()
        paused = i % 4 != 3
        if paused:
            k = _split(words, rng)
            a = speak(" ".join(words[:k]), voice, wpm)
            b = speak(" ".join(words[k:]), voice, wpm)
            a0, a1 = voiced_bounds(a)
            b0, b1 = voiced_bounds(b)
            pause_ms = rng.randint(100, 800)
            speech = np.concatenate([a[a0:a1], np.zeros(pause_ms * RATE // 1000, np.float32),
                                     b[b0:b1]])
            pause = {"after_word": k, "start_ms": (a1 - a0) * 1000 // RATE, "ms": pause_ms}
        else:
            s = speak(text, voice, wpm)
            s0, s1 = voiced_bounds(s)
            speech, pause = s[s0:s1], None
        lead = rng.randint(200, 600) * RATE // 1000
        tail = 2500 * RATE // 1000
        clean = np.concatenate([np.zeros(lead, np.float32), speech, np.zeros(tail, np.float32)])
        snr_db = rng.uniform(20, 35)
        rms = float(np.sqrt((speech ** 2).mean()))
        noise = np_rng.standard_normal(clean.size).astype(np.float32)
        # Smoothed, so duller than white noise.
        noise = np.convolve(noise, np.ones(4, np.float32) / 4, mode="same").astype(np.float32)
        noise *= rms / (10 ** (snr_db / 20)) / max(float(np.sqrt((noise ** 2).mean())), 1e-9)
        audio = np.clip(clean + noise, -1, 1)
        name = f"{i:04d}.wav"
        with wave.open(str(out / name), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(RATE)
            w.writeframes((audio * 32767).astype("<i2").tobytes())
        if pause is not None:
            pause["start_ms"] += lead * 1000 // RATE
        labels.append({
            "file": name, "text": text, "voice": voice, "rate_wpm": wpm,
            "snr_db": round(snr_db, 1), "speech_start_ms": lead * 1000 // RATE,
            "speech_end_ms": (lead + speech.size) * 1000 // RATE, "pause": pause,
        })
    (out / "labels.jsonl").write_text("".join(json.dumps(r) + "\n" for r in labels))


def _pct(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 1) if values else None


#: What each labelled utterance must hold, and its type.
FIELDS: dict[str, Shape] = {"file": str, "speech_end_ms": (int, float),
                            "pause": (dict, type(None))}


def read_pcm(path: Path) -> tuple[bytes, int]:
    """Return (16-bit mono PCM, sample rate in Hz) of a labelled set's WAV file."""
    try:
        pcm, rate = read_wav(path)
    except ValueError as exc:
        raise InputFileError(path, str(exc).removeprefix(f"{path}: ")) from None
    return pcm, rate


def load(data: Path) -> list[dict[str, Any]]:
    """Read ``data/labels.jsonl``; raise ``InputFileError`` naming a bad line or a missing WAV."""
    labels = data / "labels.jsonl"
    rows = []
    for line, row in read_jsonl(labels, FIELDS, what="a labelled utterance"):
        if not (data / row["file"]).is_file():
            raise InputFileError(labels, f"{row['file']}: no such file", line=line)
        rows.append(row)
    return rows


def _vad_probs(pcm: bytes, rate: int, vad: SileroVad) -> tuple[list[float], np.ndarray]:
    """The VAD's probability per chunk of a recording, and its 16 kHz samples."""
    assembler = FrameAssembler(rate)
    chunker = Chunker(CHUNK_SAMPLES)
    state = VadState()
    step = rate * 20 // 1000 * 2
    probs: list[float] = []
    kept: list[np.ndarray] = []
    for seq, i in enumerate(range(0, len(pcm), step)):
        frame = AudioFrame(device_id="eval", utterance_id="eval", seq=seq, pcm=pcm[i:i + step],
                           sample_rate_hz=rate, audio_ms=seq * 20)
        samples, _ = assembler.push(frame)
        for chunk in chunker.push(samples):
            kept.append(chunk)
            (prob,) = vad.probabilities([state], [chunk])
            probs.append(prob)
    audio = np.concatenate(kept) if kept else np.zeros(0, np.float32)
    return probs, audio


def spoken_words(row: dict[str, Any], at_ms: int) -> list[str]:
    """The words spoken by ``at_ms`` (an oracle transcript, from the labels).

    An end of speech before the pause's end hears the words before the pause.
    """
    words = words_of(str(row.get("text", "")))
    pause = row["pause"]
    if pause is not None and at_ms < pause["start_ms"] + pause["ms"]:
        return words[: pause["after_word"]]
    return words


#: The speculative transcript's words, from (end of speech, decision time) in audio ms.
WordsAt = Callable[[int, int], list[str]]
#: The interpretation's confidence in a speculative transcript's words.
ConfidenceOf = Callable[[list[str]], float]


def replay(probs: list[float], config: EndpointerConfig, *,
           turn: TurnDecider | None = None, words_at: WordsAt | None = None,
           audio: np.ndarray | None = None, asr_latency_ms: int = 0,
           confidence: ConfidenceOf | None = None) -> list[Decision]:
    """Feed per-chunk probabilities to an :class:`Endpointer`, as the agent would.

    With ``turn``, each speculative end-point's transcript (``words_at``)
    reaches the end-pointer ``asr_latency_ms`` of audio later, and its
    decision sets the final silence of that revision; with ``confidence``, the
    decision blends in the interpretation's confidence in those words (the
    agent gets it a few ms after the words; here at the same moment).
    """
    ep = Endpointer(config, "eval", "eval")
    out: list[Decision] = []
    pending: list[tuple[int, int, int, int]] = []  # (due t_ms, revision, at_ms, t_ms)
    for prob in probs:
        for d in ep.process(CHUNK_MS, prob):
            out.append(d)
            if (turn is not None and isinstance(d, Endpoint)
                    and d.kind is EndpointKind.SPECULATIVE):
                pending.append((d.t_ms + asr_latency_ms, d.revision, d.at_ms, d.t_ms))
        while (pending and pending[0][0] <= ep.pos_ms and turn is not None
               and words_at is not None):
            _, revision, at_ms, t_ms = pending.pop(0)
            fall = None
            if audio is not None:
                fall = energy_fall(audio[: at_ms * RATE // 1000])
            words = words_at(at_ms, t_ms)
            nlu = confidence(words) if confidence is not None and words else None
            decision = turn.decide(words, energy_fall=fall, nlu_confidence=nlu)
            out.extend(ep.require_silence(revision, decision.silence_ms))
        if ep.done:
            return out
    return out + ep.stop()


def _score(rows: list[dict[str, Any]], runs: list[list[Decision]]) -> dict[str, Any]:
    premature_final = spec_total = resets = premature_spec = premature_spec_reset = 0
    errors = with_reset = 0
    spec_delay: list[float] = []
    final_delay: list[float] = []
    lead: list[float] = []
    for row, decisions in zip(rows, runs, strict=True):
        end = row["speech_end_ms"]
        specs = {d.revision: d for d in decisions
                 if isinstance(d, Endpoint) and d.kind is EndpointKind.SPECULATIVE}
        finals = [d for d in decisions if isinstance(d, Endpoint) and d.kind is EndpointKind.FINAL]
        cancelled = {d.cancelled_revision for d in decisions if isinstance(d, Reset)}
        errors += any(isinstance(d, ErrorEvent) for d in decisions)
        spec_total += len(specs)
        resets += len(cancelled)
        with_reset += bool(cancelled)
        for rev, spec in specs.items():
            if spec.t_ms < end:
                premature_spec += 1
                premature_spec_reset += rev in cancelled
        if not finals:
            continue
        final = finals[0]
        if final.t_ms < end:
            premature_final += 1
            continue
        confirmed = specs[final.revision]
        spec_delay.append(confirmed.t_ms - end)
        final_delay.append(final.t_ms - end)
        lead.append(final.t_ms - confirmed.t_ms)
    n = len(rows)
    return {
        "premature_final_cutoff_rate": round(premature_final / n, 4),
        "speculative_reset_rate": round(resets / max(spec_total, 1), 4),
        "utterances_with_reset_rate": round(with_reset / n, 4),
        "premature_speculatives": premature_spec,
        "premature_speculatives_reset": premature_spec_reset,
        "errors": errors,
        "speculative_delay_ms": {"p50": _pct(spec_delay, 50), "p90": _pct(spec_delay, 90)},
        "final_delay_ms": {"p50": _pct(final_delay, 50), "p90": _pct(final_delay, 90),
                           "p95": _pct(final_delay, 95)},
        "speculative_lead_ms": {"p50": _pct(lead, 50)},
    }


def whisper_words() -> Callable[[np.ndarray], list[str]]:
    """Whisper tiny.en (int8, one thread): audio to its top hypothesis' words."""
    from models.asr import WhisperEngine

    engine = WhisperEngine()

    def words(audio: np.ndarray) -> list[str]:
        hyps = engine.transcribe(audio, nbest=1)
        return words_of(hyps[0].text) if hyps else []

    return words


def nlu_confidence() -> ConfidenceOf:
    """The bundled English NLU model: the best interpretation's score for some words,
    as the NLU stage scores a one-hypothesis n-best with no device context."""
    from agents.nlu import NluError, Understander
    from models.nlu.inference import NluOnnx
    from streams.asr import NBest

    understander = Understander(NluOnnx())

    def confidence(words: list[str]) -> float:
        try:
            hyps = understander.interpret([NBest(text=" ".join(words), score=0.0)], None)
        except NluError:
            return 0.0
        return hyps[0].score if hyps else 0.0

    return confidence


def evaluate(data: Path, config: EndpointerConfig, *, asr_latency_ms: int = 150,
             model: EotModel | None = None,
             recognise: Callable[[np.ndarray], list[str]] | None = None,
             confidence: ConfidenceOf | None = None,
             progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Run the fixed and the semantic end-pointers over the set in ``data``; return both.

    The top-level figures are the fixed end-pointer's (``final_silence_ms``
    always); ``semantic`` holds the same figures with the turn decider, fed
    each speculative end-point's words ``asr_latency_ms`` later: the words
    spoken so far from the labels (an oracle), or with ``recognise`` what it
    makes of the audio up to the decision (e.g. :func:`whisper_words`); with
    ``confidence`` (e.g. :func:`nlu_confidence`), blended with the NLU's
    confidence in those words (``nlu_weight``).
    """
    rows = load(data)
    vad = SileroVad()
    fixed = dataclasses.replace(config, semantic=False)
    turn = TurnDecider(dataclasses.replace(config, semantic=True), model or EotModel.load())
    fixed_runs: list[list[Decision]] = []
    semantic_runs: list[list[Decision]] = []
    for i, row in enumerate(rows):
        pcm, rate = read_pcm(data / row["file"])
        probs, audio = _vad_probs(pcm, rate, vad)
        fixed_runs.append(replay(probs, fixed))

        def words_at(at_ms: int, t_ms: int, row: dict[str, Any] = row,
                     audio: np.ndarray = audio) -> list[str]:
            if recognise is None:
                return spoken_words(row, at_ms)
            return recognise(audio[: t_ms * RATE // 1000])

        semantic_runs.append(replay(probs, fixed, turn=turn, words_at=words_at, audio=audio,
                                    asr_latency_ms=asr_latency_ms, confidence=confidence))
        if progress is not None:
            progress(i + 1, len(rows))
    semantic = _score(rows, semantic_runs)
    source = "oracle words (labels)" if recognise is None else "Whisper tiny.en int8"
    semantic["transcript"] = f"{source} at the speculative end-point, {asr_latency_ms} ms later"
    semantic["nlu_confidence"] = confidence is not None
    return {
        "split": "MASSIVE en-US dev (espeak-ng)",
        "utterances": len(rows),
        "with_pause": sum(r["pause"] is not None for r in rows),
        **_score(rows, fixed_runs),
        "semantic": semantic,
        "config": {k: getattr(config, k) for k in config.__dataclass_fields__},
    }
