"""8 kHz devices: narrowband audio is told apart and decoded by the narrowband model."""

from __future__ import annotations

import numpy as np
import pytest
import soxr

from agents.endpointing import FrameAssembler
from infra.demo import audio_path
from infra.eval_endpoint import read_pcm
from models.asr import WhisperEngine, is_narrowband
from models.textnorm import normalize
from streams.audio import AudioFrame


def _through_assembler(name: str) -> np.ndarray:
    """Read a demo WAV the way the ASR agent does: frames resampled to 16 kHz as they come."""
    pcm, rate = read_pcm(audio_path(name))
    assembler = FrameAssembler(rate)
    step = rate // 50 * 2
    out: list[np.ndarray] = []
    for seq, i in enumerate(range(0, len(pcm), step)):
        frame = AudioFrame(device_id="d", utterance_id="u", seq=seq, pcm=pcm[i:i + step],
                           sample_rate_hz=rate, audio_ms=seq * 20)
        samples, problems = assembler.push(frame)
        assert not problems
        out.extend(samples)
    samples, _ = assembler.flush()
    out.extend(samples)
    return np.concatenate(out).astype(np.float32)


def test_narrowband_is_told_apart_from_wideband_and_silence() -> None:
    rng = np.random.default_rng(3)
    wide = rng.standard_normal(16000).astype(np.float32) * 0.1
    narrow = soxr.resample(soxr.resample(wide, 16000, 8000), 8000, 16000).astype(np.float32)
    assert not is_narrowband(wide)
    assert is_narrowband(narrow)
    assert not is_narrowband(np.zeros(16000, np.float32))


def test_demo_8k_command_decodes_to_the_right_words() -> None:
    audio = _through_assembler("lights_8k.wav")
    assert is_narrowband(audio)
    engine = WhisperEngine(narrowband_model="base")
    hyps = engine.transcribe(audio, nbest=1)
    assert normalize(hyps[0].text) == "turn off the lights in the hall"


@pytest.mark.parametrize("name", ["light_on.wav", "turn_it_off.wav"])
def test_wideband_commands_keep_the_default_model(name: str) -> None:
    pcm, _ = read_pcm(audio_path(name))
    audio = np.frombuffer(pcm, "<i2").astype(np.float32) / 32768
    engine = WhisperEngine(narrowband_model="base")
    assert engine.model_for(audio) is engine.model


def test_missing_narrowband_model_falls_back_to_the_main_model() -> None:
    audio = _through_assembler("lights_8k.wav")
    engine = WhisperEngine(narrowband_model="no-such-model")
    assert engine.model_for(audio) is engine.model
    hyps = engine.transcribe(audio, nbest=1)
    assert hyps and hyps[0].text  # tiny.en's words, whatever they are: no crash
