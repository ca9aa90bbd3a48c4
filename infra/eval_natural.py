"""ASR evaluation on natural voices and real recordings: 16 and 8 kHz, clean and noisy.

Sets (what ``voicestream eval asr --sets`` names):

* ``natural``: a fixed, seeded sample of MASSIVE en-US **dev** sentences, spoken
  by festival's ``cmu_us_slt_arctic_hts`` (voice ``slt-hts``) and flite's
  ``slt``, ``awb`` and ``rms``. ``rms`` is kept out of all tuning and reported
  apart (:data:`HELD_OUT`).
* ``natural-names``: the held-out name commands of ``infra.eval_asr`` ("call
  Siobhan Kowalczyk") in the same voices, decoded without and with the
  200-phrase context list; their names were never used for tuning.
* ``natural-names-tune``: the same kind of commands with the tuning names of
  ``infra.eval_asr`` (its ``names-tune`` set's, and that set's own 200-phrase
  list) in the natural voices: what the context passes' settings are chosen
  on, so that ``natural-names`` stays held out.
* ``call``: the telephone conversation that ships in the ``pyannote-audio``
  wheel (``sample.wav`` with its ``sample.stm`` transcript, MIT), cut into its
  transcribed turns: real speech.
* ``fsdd``: the real spoken digits of ``shared/data/fsdd-dev`` (8 kHz at the
  source, so its ``16k`` band is the same audio as its ``8k`` one).

Conditions: a band (``16k``, or ``8k``: resampled to 8 kHz and back, as a
device at 8 kHz reaches the recogniser after the end-pointer's resampler) and
a noise (``clean``, ``pink`` or ``babble`` from four other sentences of the
set, mixed at :data:`SNR_DB`). Noise is added before band-limiting: a noisy
room heard by an 8 kHz device.

Synthesised audio is cached under ``~/.cache/voicestream/eval/`` keyed by the
synthesiser, voice and text, so a rerun synthesises nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import subprocess
import tempfile
import time
import wave
import zipfile
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import soxr

from infra.eval_asr import (
    APPLIANCES,
    DIGITS,
    FIRST,
    LAST,
    TUNE_APPLIANCES,
    TUNE_FIRST,
    TUNE_LAST,
    _name_items,
    context_names,
)
from models.asr import Engine
from models.denoise import Denoiser
from models.textnorm import corpus_wer, normalize

Float32Array = npt.NDArray[np.float32]
RATE = 16000
#: Voice name -> (synthesiser, its voice argument).
VOICES: dict[str, tuple[str, str]] = {
    "slt-hts": ("festival", "voice_cmu_us_slt_arctic_hts"),
    "slt": ("flite", "slt"),
    "awb": ("flite", "awb"),
    "rms": ("flite", "rms"),
}
#: Kept out of all tuning: reported apart.
HELD_OUT = ("rms",)
SETS = ("natural", "natural-names", "natural-names-tune", "call", "fsdd")
BANDS = ("16k", "8k")
NOISES = ("clean", "pink", "babble")
SNR_DB = 10.0
CACHE = Path.home() / ".cache" / "voicestream" / "eval"
#: The wheel whose telephone recording and transcript make the ``call`` set.
PYANNOTE = "pyannote-audio==4.0.7"


class SynthesisError(RuntimeError):
    """A synthesiser is missing or failed; ``code`` is ``eval-no-synthesiser`` or
    ``eval-synthesis-failed``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code


def _read_wav(path: Path) -> Float32Array:
    with wave.open(str(path), "rb") as w:
        rate, width, channels = w.getframerate(), w.getsampwidth(), w.getnchannels()
        raw = w.readframes(w.getnframes())
    if width != 2:
        raise SynthesisError("eval-synthesis-failed", f"{path}: {8 * width}-bit audio")
    x = np.frombuffer(raw, "<i2").astype(np.float32).reshape(-1, channels).mean(axis=1) / 32768
    return x if rate == RATE else np.asarray(soxr.resample(x, rate, RATE), dtype=np.float32)


def _write_wav(path: Path, audio: Float32Array) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes((np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes())


def synthesize(text: str, voice: str, *, cache: Path = CACHE) -> Float32Array:
    """Return ``text`` spoken by ``voice`` (a key of :data:`VOICES`) as 16 kHz float32.

    The result is cached in ``cache`` under a hash of synthesiser, voice and text.
    """
    if voice not in VOICES:
        raise ValueError(f"unknown voice {voice!r}; valid: {', '.join(VOICES)}")
    tool, arg = VOICES[voice]
    key = hashlib.sha256(f"{tool}\0{arg}\0{text}".encode()).hexdigest()[:24]
    path = cache / f"{voice}-{key}.wav"
    if path.is_file():
        return _read_wav(path)
    program = "text2wave" if tool == "festival" else "flite"
    if shutil.which(program) is None:
        raise SynthesisError("eval-no-synthesiser",
                             f"{program} not found; install festival, festvox-us-slt-hts "
                             "and flite (setup.sh does)")
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out.wav"
        if tool == "festival":
            cmd = ["text2wave", "-eval", f"({arg})", "-o", str(out)]
            done = subprocess.run(cmd, input=text.encode(), capture_output=True, check=False)
        else:
            cmd = ["flite", "-voice", arg, "-t", text, "-o", str(out)]
            done = subprocess.run(cmd, capture_output=True, check=False)
        if done.returncode != 0 or not out.is_file():
            raise SynthesisError("eval-synthesis-failed",
                                 f"{program} exited {done.returncode}: "
                                 f"{done.stderr.decode(errors='replace')[-200:]}")
        audio = _read_wav(out)
        # Written aside and renamed: a concurrent run never reads half a file.
        part = cache / f".{path.name}.{os.getpid()}"
        _write_wav(part, audio)
        part.replace(path)
    return _read_wav(path)  # what a rerun reads: the same samples


def pink_noise(n: int, rng: np.random.Generator) -> Float32Array:
    """Return ``n`` samples of pink (1/f power) noise with unit RMS."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n)
    spectrum[1:] /= np.sqrt(freqs[1:])
    spectrum[0] = 0
    x = np.fft.irfft(spectrum, n)
    out: Float32Array = (x / (np.sqrt(np.mean(x**2)) + 1e-12)).astype(np.float32)
    return out


def babble(n: int, others: Sequence[Float32Array]) -> Float32Array:
    """Return ``n`` samples of several other utterances summed (each looped), unit RMS."""
    out = np.zeros(n, np.float64)
    for x in others:
        if x.size:
            out += np.resize(x / (np.sqrt(np.mean(x**2)) + 1e-12), n)
    result: Float32Array = (out / (np.sqrt(np.mean(out**2)) + 1e-12)).astype(np.float32)
    return result


def mix_at_snr(speech: Float32Array, noise: Float32Array, snr_db: float) -> Float32Array:
    """Return ``speech`` plus ``noise`` scaled so that speech power / noise power is ``snr_db``.

    Speech power is taken over its active part (10 ms frames above 2 % of the peak
    level), so leading and trailing silence do not lower the ratio.
    """
    win = RATE // 100
    frames = speech[: speech.size // win * win].reshape(-1, win)
    level = np.sqrt(np.mean(frames.astype(np.float64) ** 2, axis=1))
    active = frames[level > 0.02 * level.max()] if level.size and level.max() > 0 else frames
    p_speech = float(np.mean(active.astype(np.float64) ** 2)) if active.size else 0.0
    p_noise = float(np.mean(noise.astype(np.float64) ** 2))
    if p_speech == 0 or p_noise == 0:
        return speech.copy()
    gain = np.sqrt(p_speech / (p_noise * 10 ** (snr_db / 10)))
    mixed: Float32Array = (speech + gain * noise[: speech.size]).astype(np.float32)
    return mixed


def band_limit(audio: Float32Array, rate_hz: int = 8000) -> Float32Array:
    """Return 16 kHz ``audio`` as a ``rate_hz`` device sends it, resampled back to 16 kHz."""
    low = soxr.resample(audio, RATE, rate_hz)
    return np.asarray(soxr.resample(low, rate_hz, RATE), dtype=np.float32)[: audio.size]


def sample_sentences(shared: Path, count: int, *, seed: int = 16) -> list[str]:
    """Return ``count`` MASSIVE en-US dev sentences of 3-14 words, a fixed seeded sample."""
    dev = shared / "massive-en-US" / "dev.jsonl"
    texts = [json.loads(x)["utt"] for x in dev.read_text().splitlines()]
    texts = sorted({t for t in texts if 3 <= len(t.split()) <= 14})
    random.Random(seed).shuffle(texts)
    return texts[:count]


def _pyannote_wheel(cache: Path) -> Path:
    found = sorted((cache / "wheels").glob("pyannote_audio-*.whl"))
    if found:
        return found[-1]
    (cache / "wheels").mkdir(parents=True, exist_ok=True)
    import sys

    done = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q",
                           PYANNOTE, "-d", str(cache / "wheels")], capture_output=True,
                          check=False)
    found = sorted((cache / "wheels").glob("pyannote_audio-*.whl"))
    if done.returncode != 0 or not found:
        raise SynthesisError("eval-synthesis-failed",
                             f"pip download {PYANNOTE} failed: "
                             f"{done.stderr.decode(errors='replace')[-200:]}")
    return found[-1]


def call_turns(cache: Path = CACHE) -> list[dict[str, Any]]:
    """Return the transcribed turns of pyannote-audio's telephone sample (real speech)."""
    with zipfile.ZipFile(_pyannote_wheel(cache.parent)) as whl:
        stm = whl.read("pyannote/audio/sample/sample.stm").decode()
        with tempfile.TemporaryDirectory() as tmp:
            wav = Path(tmp) / "sample.wav"
            wav.write_bytes(whl.read("pyannote/audio/sample/sample.wav"))
            audio = _read_wav(wav)
    rows = []
    for i, line in enumerate(stm.splitlines()):
        parts = line.split()
        if len(parts) < 6:
            continue
        start, end = float(parts[3]), float(parts[4])
        # 0.15 s either side: the turn times are tight.
        a, b = max(0, int((start - 0.15) * RATE)), int((end + 0.15) * RATE)
        rows.append({"set": "call", "voice": parts[2].lower(), "text": " ".join(parts[5:]),
                     "audio": audio[a:b], "id": f"call-{i:02d}"})
    return rows


def build_rows(sets: Iterable[str], voices: Sequence[str], shared: Path, *,
               sentences: int = 150, cache: Path = CACHE,
               progress: Callable[[int, int], None] | None = None) -> list[dict[str, Any]]:
    """Return the utterances of ``sets``: set, voice, text, 16 kHz audio (and name)."""
    chosen = set(sets)
    todo: list[tuple[str, str, str, str | None]] = []
    if "natural" in chosen:
        todo += [("natural", v, t, None) for t in sample_sentences(shared, sentences)
                 for v in voices]
    if "natural-names" in chosen:
        todo += [("natural-names", v, t, n) for t, n in _name_items(FIRST, LAST, APPLIANCES)
                 for v in voices]
    if "natural-names-tune" in chosen:
        todo += [("natural-names-tune", v, t, n)
                 for t, n in _name_items(TUNE_FIRST, TUNE_LAST, TUNE_APPLIANCES)
                 for v in voices]
    rows: list[dict[str, Any]] = []
    for i, (name, voice, text, target) in enumerate(todo):
        row: dict[str, Any] = {"set": name, "voice": voice, "text": text,
                               "audio": synthesize(text, voice, cache=cache), "id": f"{i:04d}"}
        if target is not None:
            row["name"] = target
        rows.append(row)
        if progress is not None:
            progress(i + 1, len(todo))
    if "call" in chosen:
        rows += call_turns(cache)
    if "fsdd" in chosen:
        for f in sorted((shared / "fsdd-dev").glob("*.wav")):
            rows.append({"set": "fsdd", "voice": f.name.split("_")[1],
                         "text": DIGITS[int(f.name[0])], "audio": _read_wav(f), "id": f.stem})
    return rows


def condition(row: dict[str, Any], band: str, noise: str,
              rows: Sequence[dict[str, Any]]) -> Float32Array:
    """Return ``row``'s audio under ``band`` and ``noise``; deterministic per row."""
    audio: Float32Array = row["audio"]
    seed = int(hashlib.sha256(f"{row['set']}{row['id']}{row['voice']}".encode())
               .hexdigest()[:8], 16)
    rng = np.random.default_rng(seed)
    if noise == "pink":
        audio = mix_at_snr(audio, pink_noise(audio.size, rng), SNR_DB)
    elif noise == "babble":
        others = [r["audio"] for r in rows
                  if r["set"] == row["set"] and r["text"] != row["text"]]
        picks: list[int] = [int(k) for k in rng.choice(len(others), size=min(4, len(others)),
                                                      replace=False)] if others else []
        audio = mix_at_snr(audio, babble(audio.size, [others[k] for k in picks]), SNR_DB)
    elif noise != "clean":
        raise ValueError(f"unknown noise {noise!r}; valid: {', '.join(NOISES)}")
    if band == "8k":
        audio = band_limit(audio)
    elif band != "16k":
        raise ValueError(f"unknown band {band!r}; valid: {', '.join(BANDS)}")
    return audio


def evaluate(engine: Engine, rows: list[dict[str, Any]], *, bands: Sequence[str],
             noises: Sequence[str], bias_weight: float, phrase_bonus: float,
             strong_weight: float, denoise: Denoiser | None = None,
             context_cost: bool = False,
             progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Decode every row under every band and noise; return figures per set, voice, condition.

    ``natural-names`` rows are decoded twice, without and with the 200-phrase context
    (``name_recall`` / ``name_recall_context``), ``natural-names-tune`` rows likewise
    with their own list; the others without context. ``context_cost`` decodes the
    ``natural`` rows (sentences without names) with the held-out 200-phrase list too
    (``wer_context``): what a device's names cost requests that hold none.
    ``denoise`` enhances each conditioned utterance before recognition; its time is
    reported apart (``denoise_ms_p50``), not in ``compute_ms_p50``.
    """
    lists = {"natural-names": context_names(), "natural-names-tune": context_names(tune=True)}
    if context_cost:
        lists["natural"] = lists["natural-names"]
    groups: dict[tuple[str, str, str, str], dict[str, list[Any]]] = {}
    total = len(rows) * len(bands) * len(noises)
    done = 0
    for band in bands:
        for noise in noises:
            for row in rows:
                audio = condition(row, band, noise, rows)
                g = groups.setdefault((row["set"], row["voice"], band, noise),
                                      {"pairs": [], "ms": [], "audio_s": [], "hits": [],
                                       "ctx_pairs": [], "ctx_hits": [], "denoise_ms": []})
                if denoise is not None:
                    start = time.perf_counter()
                    audio = denoise(audio)
                    g["denoise_ms"].append((time.perf_counter() - start) * 1000)
                start = time.perf_counter()
                hyps = engine.transcribe(audio, nbest=1)
                elapsed = time.perf_counter() - start
                hyp = hyps[0].text if hyps else ""
                g["pairs"].append((row["text"], hyp))
                g["ms"].append(elapsed * 1000)
                g["audio_s"].append(audio.size / RATE)
                if "name" in row:
                    g["hits"].append(normalize(row["name"]) in normalize(hyp))
                if row["set"] in lists:
                    hyps = engine.transcribe(audio, nbest=1, phrases=lists[row["set"]],
                                             bias_weight=bias_weight,
                                             phrase_bonus=phrase_bonus,
                                             strong_weight=strong_weight)
                    hyp = hyps[0].text if hyps else ""
                    g["ctx_pairs"].append((row["text"], hyp))
                    if "name" in row:
                        g["ctx_hits"].append(normalize(row["name"]) in normalize(hyp))
                done += 1
                if progress is not None:
                    progress(done, total)
    out = []
    for (name, voice, band, noise), g in sorted(groups.items()):
        entry: dict[str, Any] = {
            "set": name, "voice": voice, "band": band, "noise": noise,
            "held_out": voice in HELD_OUT, "utterances": len(g["pairs"]),
            "wer": corpus_wer(g["pairs"]),
            "compute_ms_p50": round(float(np.percentile(g["ms"], 50)), 1),
            "compute_ms_p95": round(float(np.percentile(g["ms"], 95)), 1),
            "rtf": round(sum(g["ms"]) / 1000 / max(sum(g["audio_s"]), 1e-9), 4),
        }
        if g["denoise_ms"]:
            entry["denoise_ms_p50"] = round(float(np.percentile(g["denoise_ms"], 50)), 1)
            entry["denoise_ms_p95"] = round(float(np.percentile(g["denoise_ms"], 95)), 1)
        if g["hits"]:
            entry["name_recall"] = round(float(np.mean(g["hits"])), 4)
            entry["name_recall_context"] = round(float(np.mean(g["ctx_hits"])), 4)
        if g["ctx_pairs"]:
            entry["wer_context"] = corpus_wer(g["ctx_pairs"])
        out.append(entry)
    return {"groups": out, "summary": summarize(groups)}


def summarize(groups: dict[tuple[str, str, str, str], dict[str, list[Any]]]
              ) -> dict[str, Any]:
    """Pool the ``natural`` set per condition: tuning voices and the held-out voice apart
    (with the 200-phrase list too, ``..._wer_context``, where it was decoded so)."""
    summary: dict[str, Any] = {}
    conditions = sorted({(b, n) for (_, _, b, n) in groups})
    for band, noise in conditions:
        for label, keep in (("tuning_voices", False), ("held_out", True)):
            chosen = [g for (s, v, b, n), g in groups.items()
                      if s == "natural" and b == band and n == noise and (v in HELD_OUT) == keep]
            for key, suffix in (("pairs", ""), ("ctx_pairs", "_context")):
                pairs = [p for g in chosen for p in g[key]]
                if pairs:
                    summary[f"natural_{band}_{noise}_{label}_wer{suffix}"] = corpus_wer(pairs)
    return summary
