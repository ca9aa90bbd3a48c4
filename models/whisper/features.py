"""Whisper's log-mel features in numpy: 25 ms Hann windows every 10 ms, 80 Slaney mels."""

from __future__ import annotations

import functools

import numpy as np
import numpy.typing as npt

SAMPLE_RATE_HZ = 16000
N_FFT = 400
HOP = 160
N_MELS = 80
#: Frames in Whisper's fixed 30 s window.
FULL_FRAMES = 3000

Float32Array = npt.NDArray[np.float32]


def _hz_to_mel(f: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    f_sp, min_log_hz, logstep = 200.0 / 3, 1000.0, np.log(6.4) / 27.0
    mel = f / f_sp
    log_part = min_log_hz / f_sp + np.log(np.maximum(f, 1e-10) / min_log_hz) / logstep
    return np.where(f >= min_log_hz, log_part, mel)


def _mel_to_hz(m: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    f_sp, min_log_hz, logstep = 200.0 / 3, 1000.0, np.log(6.4) / 27.0
    min_log_mel = min_log_hz / f_sp
    return np.where(m >= min_log_mel, min_log_hz * np.exp(logstep * (m - min_log_mel)), f_sp * m)


@functools.cache
def mel_filters() -> Float32Array:
    """Return the ``[80, 201]`` Slaney-normalised triangular mel filterbank."""
    fft_hz = np.linspace(0, SAMPLE_RATE_HZ / 2, 1 + N_FFT // 2)
    mels = np.linspace(_hz_to_mel(np.array(0.0)), _hz_to_mel(np.array(SAMPLE_RATE_HZ / 2)),
                       N_MELS + 2)
    hz = _mel_to_hz(mels)
    ramps = hz[:, None] - fft_hz[None, :]
    fdiff = np.diff(hz)
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    weights *= (2.0 / (hz[2:] - hz[:-2]))[:, None]
    return weights.astype(np.float32)


@functools.cache
def _window() -> npt.NDArray[np.float64]:
    n = np.arange(N_FFT)
    return 0.5 - 0.5 * np.cos(2 * np.pi * n / N_FFT)  # periodic Hann


def log_mel(audio: Float32Array, *, frames: int | None = None) -> Float32Array:
    """Return ``[80, frames]`` log-mel features of 16 kHz audio in [-1, 1].

    ``frames`` pads (with silence) or cuts to that many frames; ``None`` keeps
    the audio's own length rounded up to an even count, as the trimmed encoder wants.
    """
    audio = np.asarray(audio, dtype=np.float32)
    own = audio.size // HOP
    target = frames if frames is not None else own + (own % 2)
    need = target * HOP
    if audio.size < need:
        audio = np.concatenate([audio, np.zeros(need - audio.size, np.float32)])
    else:
        audio = audio[:need]
    padded = np.pad(audio.astype(np.float64), N_FFT // 2, mode="reflect")
    idx = np.arange(N_FFT)[None, :] + HOP * np.arange(target + 1)[:, None]
    spec = np.fft.rfft(padded[idx] * _window(), axis=1)
    power = (np.abs(spec[:-1]) ** 2).T  # drop the last frame, as Whisper does
    mel = mel_filters().astype(np.float64) @ power
    log = np.log10(np.maximum(mel, 1e-10))
    log = np.maximum(log, log.max() - 8.0)
    out: Float32Array = ((log + 4.0) / 4.0).astype(np.float32)
    return out
