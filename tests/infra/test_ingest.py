"""`voicestream bench --ingest`: frames one worker ingests, every utterance accounted for."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import numpy as np
import pytest

from infra import ingest
from tests.conftest import VOICESTREAM, env_with


def test_quiet_noise_is_long_enough_and_quiet() -> None:
    pcm = ingest.quiet_noise(0.5, seed=3)
    samples = np.frombuffer(pcm, dtype="<i2")
    assert samples.size == 8000
    assert 10 < samples.std() < 60  # about -60 dBFS: no speech for the VAD
    assert ingest.frames_per_utterance(4.0) == 200
    assert ingest.frames_per_utterance(4.0, 100) == 40
    assert ingest.frames_per_utterance(0.05, 20) == 3  # a partial last frame counts


def test_the_rate_is_the_slope_of_frames_finished_over_the_middle_arrivals() -> None:
    # 10 utterances of 200 frames, one every 0.1 s after a slow start and a straggler.
    arrivals = [5.0] + [6.0 + 0.1 * k for k in range(8)] + [30.0]
    assert ingest.fitted_rate(arrivals, 200) == pytest.approx(2000.0, rel=1e-6)
    assert ingest.fitted_rate(arrivals[:4], 200) is None


@pytest.mark.broker
def test_one_worker_reads_a_backlog_and_every_utterance_ends(tmp_path: Path,
                                                             broker_url: str) -> None:
    figures = asyncio.run(ingest.measure(url=broker_url, devices=2, utterances=3,
                                         logs=tmp_path / "logs", profile=True))
    assert figures["utterances"] == 6 and figures["frames"] == 6 * 200
    assert figures["finished"] == 6 and figures["missing"] == 0
    # No speech in the audio: each utterance ends at its stop, none superseded.
    assert figures["codes"] == {"no-speech": 6}
    assert figures["frames_per_s"] > 0 and figures["audio_s_per_s"] > 0
    assert figures["worker_cpu_s"] > 0
    scope = Path("/proc/sys/kernel/yama/ptrace_scope")
    if "error" in figures["profile"]:
        # Only where ptrace is restricted may py-spy fail to attach; the bench says why.
        assert scope.exists() and scope.read_text().strip() != "0", figures["profile"]
    else:
        assert figures["profile"]["samples"] > 0
        assert figures["bottleneck"].startswith(("event loop", "VAD thread", "ASR thread",
                                                 "NLU thread", "other"))


def test_the_cli_refuses_a_frame_size_the_wire_does_not_take(tmp_path: Path) -> None:
    run = subprocess.run([*VOICESTREAM, "bench", "--ingest", "2", "--frame-ms", "300",
                          "--out", str(tmp_path)], capture_output=True, text=True,
                         timeout=120, env=env_with())
    assert run.returncode == 2 and "--frame-ms" in run.stderr
    assert not (tmp_path / "ingest.json").exists()
