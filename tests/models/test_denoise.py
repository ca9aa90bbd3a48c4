"""Speech-enhancement front ends: alignment, noise removed, bad audio, the eval option."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from infra import eval_natural as ev
from models.asr import Hypothesis
from models.denoise import NAMES, DenoiseError, Denoiser, create

RATE = 16000
_LOADED: dict[tuple[str, float | None], Denoiser] = {}


def _front(name: str, limit_db: float | None = None) -> Denoiser:
    """Return a front end, loaded once per test session; skip when its wheel is missing."""
    key = (name, limit_db)
    if key not in _LOADED:
        try:
            _LOADED[key] = create(name, limit_db)
        except DenoiseError as exc:
            if exc.code == "denoise-missing":
                pytest.skip(str(exc))
            raise
    return _LOADED[key]


def _voiced(seconds: float = 2.0) -> np.ndarray:
    """A speech-like signal: 140 Hz harmonics with a falling tilt, on and off at 3 Hz."""
    t = np.arange(int(RATE * seconds)) / RATE
    f0 = 140 * (1 + 0.1 * np.sin(2 * np.pi * 0.7 * t))
    phase = 2 * np.pi * np.cumsum(f0) / RATE
    x = sum(np.sin(k * phase) / k for k in range(1, 25))
    gate = (np.sin(2 * np.pi * 3 * t) > -0.2).astype(np.float64)
    return (0.15 * x * gate).astype(np.float32)


@pytest.fixture(scope="module")
def speech(tmp_path_factory: pytest.TempPathFactory) -> np.ndarray:
    """A spoken sentence (flite's ``awb``): what the models were trained to keep."""
    if not shutil.which("flite"):
        pytest.skip("flite not installed (setup.sh installs it)")
    cache: Path = tmp_path_factory.mktemp("speech")
    return ev.synthesize("turn off the lights in the hall at ten", "awb", cache=cache)


def _si_snr_db(clean: np.ndarray, other: np.ndarray) -> float:
    """Scale-invariant SNR of ``other`` against ``clean``: a gain is not counted as error."""
    ref, est = clean.astype(np.float64), other.astype(np.float64)
    target = np.dot(est, ref) / np.dot(ref, ref) * ref
    return float(10 * np.log10(np.sum(target**2) / np.sum((est - target) ** 2)))


@pytest.mark.parametrize("name", NAMES)
def test_output_keeps_length_and_timing(name: str, speech: np.ndarray) -> None:
    front = _front(name)
    clean = speech
    out = front(clean)
    assert out.dtype == np.float32 and out.shape == clean.shape
    lag = int(np.argmax(np.correlate(out, clean, "full"))) - (clean.size - 1)
    assert abs(lag) <= 1, f"{name} shifts the audio by {lag} samples"


@pytest.mark.parametrize("name", NAMES)
def test_noise_is_taken_out_of_noisy_speech(name: str, speech: np.ndarray) -> None:
    front = _front(name)
    noisy = ev.mix_at_snr(speech, ev.pink_noise(speech.size, np.random.default_rng(3)), 5.0)
    # DeepFilterNet's state carries over from call to call: the second call has heard
    # this noise (the others keep no state).
    front(noisy)
    out = front(noisy)
    assert _si_snr_db(speech, out) > _si_snr_db(speech, noisy) + 1.0


@pytest.mark.parametrize("name", NAMES)
def test_a_limit_keeps_more_of_the_noise(name: str) -> None:
    noise = 0.05 * ev.pink_noise(RATE * 2, np.random.default_rng(5))
    free = float(np.mean(_front(name)(noise)[RATE // 2:] ** 2))
    held = float(np.mean(_front(name, 3.0)(noise)[RATE // 2:] ** 2))
    assert held > free
    # At most about 3 dB taken off the noise, with a margin for the model's own gain.
    assert held > float(np.mean(noise[RATE // 2:] ** 2)) * 10 ** (-6 / 10)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("audio", [
    np.zeros(0, np.float32),
    np.zeros(7, np.float32),
    np.zeros(RATE, np.float32),
    np.sign(np.sin(np.linspace(0, 400, RATE))).astype(np.float32),  # clipped at full scale
    np.where(np.arange(RATE) % 50 == 0, np.nan, 0.1).astype(np.float32),  # NaN-damaged
], ids=["empty", "7-samples", "silence", "clipped", "nan"])
def test_bad_audio_gives_finite_audio_of_the_same_length(name: str, audio: np.ndarray) -> None:
    out = _front(name)(audio)
    assert out.shape == audio.shape and out.dtype == np.float32
    assert np.isfinite(out).all() and np.abs(out).max(initial=0) <= 1.0
    if audio.size and not np.any(audio):
        assert np.abs(out).max() < 1e-3  # silence stays silent


def test_unknown_front_end_or_limit_is_a_coded_error() -> None:
    with pytest.raises(DenoiseError, match="valid: deepfilter, nsnet2, speex") as exc:
        create("rnnoise")
    assert exc.value.code == "denoise-unknown"
    with pytest.raises(DenoiseError, match="outside"):
        create("speex", 0.0)


class _Recorder:
    """An engine that records the audio it is given and says "loud" or "quiet"."""

    name = "recorder"

    def __init__(self) -> None:
        self.heard: list[np.ndarray] = []

    def transcribe(self, audio: np.ndarray, *, phrases: Sequence[str] = (),
                   **_: Any) -> list[Hypothesis]:
        self.heard.append(audio)
        return [Hypothesis("loud" if np.abs(audio).max() > 0.01 else "quiet", 0.0)]


def test_eval_applies_the_front_end_and_times_it_apart() -> None:
    rows = [{"set": "natural", "voice": v, "text": "quiet", "audio": _voiced(1.0),
             "id": f"{i}"} for i, v in enumerate(("slt", "rms"))]
    engine = _Recorder()
    plain = ev.evaluate(engine, rows, bands=["16k"], noises=["clean"], bias_weight=0,
                        phrase_bonus=0, strong_weight=0)
    assert plain["summary"]["natural_16k_clean_held_out_wer"] == 1.0
    assert "denoise_ms_p50" not in plain["groups"][0]
    muted = ev.evaluate(engine, rows, bands=["16k"], noises=["clean"], bias_weight=0,
                        phrase_bonus=0, strong_weight=0, denoise=_Mute())
    assert muted["summary"]["natural_16k_clean_held_out_wer"] == 0.0
    assert all(g["denoise_ms_p50"] >= 0 for g in muted["groups"])


class _Mute:
    """A front end that takes everything out."""

    name = "mute"

    def __call__(self, audio: np.ndarray) -> np.ndarray:
        return np.zeros_like(audio)


def test_eval_asr_rejects_an_unknown_front_end() -> None:
    from click.testing import CliRunner

    from infra.cli import main

    result = CliRunner().invoke(main, ["eval", "asr", "--sets", "natural",
                                       "--denoise", "rnnoise"])
    assert result.exit_code == 2 and "rnnoise" in result.output
