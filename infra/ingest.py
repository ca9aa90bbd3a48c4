"""How many audio frames per second one worker ingests: ``voicestream bench --ingest``.

The devices' frames are written to the audio topic *before* the worker starts
(a backlog of ``devices x utterances`` utterances of 20 ms frames, produced
as fast as the broker takes them), so that the producer does not share the
CPU with the worker while it is measured. The worker then reads the backlog
as fast as it can: the slope of frames finished against time is the rate it
sustains before it falls behind, and over 50 frames/s per device it is how
many devices streaming in real time one worker keeps up with.

The audio is quiet noise with no speech in it, shorter than the no-speech
timeout: every frame is decoded, checked and put through the VAD, and each
utterance ends with its ``no-speech`` error when its stop arrives, so no
stage after end-pointing has work (end-pointing only). Finished means that
error reached the errors topic; each utterance is counted at its error's
arrival, and the rate is fitted over the middle 80 % of arrivals, which leaves
out the worker's start and the last stragglers.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from infra.bench import broker_running, proc_usage
from infra.demo import CONTEXTS
from infra.fleet import Fleet
from infra.profiling import Sampler, bottleneck
from infra.runner import ensure_topics
from streams.client import FRAME_MS, DeviceClient, EventWatcher
from streams.connection import Connection
from streams.context import DeviceContext
from streams.control import ErrorEvent
from streams.settings import Settings

RATE_HZ = 16000
#: Audio per utterance: under the 5 s no-speech timeout, so the VAD reads every frame.
AUDIO_S = 4.0
#: Noise level of the audio (int16 standard deviation: about -60 dBFS).
NOISE_STD = 30.0
#: How long to wait for the worker to finish the backlog.
DRAIN_TIMEOUT_S = 600.0


def quiet_noise(seconds: float, seed: int) -> bytes:
    """``seconds`` of low Gaussian noise as 16 kHz 16-bit PCM."""
    rng = np.random.default_rng(seed)
    samples = rng.normal(0.0, NOISE_STD, int(seconds * RATE_HZ))
    return np.clip(samples, -32768, 32767).astype("<i2").tobytes()


def frames_per_utterance(seconds: float = AUDIO_S, frame_ms: int = FRAME_MS) -> int:
    """Audio frames one utterance sends (start and stop not counted)."""
    return -(-int(seconds * 1000) // frame_ms)


def fitted_rate(arrivals_s: list[float], frames_each: int) -> float | None:
    """Frames per second: the slope of frames finished against time over the middle
    80 % of the utterances' arrivals (None for fewer than 5 arrivals)."""
    times = sorted(arrivals_s)
    if len(times) < 5:
        return None
    lo, hi = int(len(times) * 0.1), max(int(len(times) * 0.9), int(len(times) * 0.1) + 2)
    t = np.asarray(times[lo:hi])
    done = np.arange(lo + 1, lo + 1 + len(t)) * frames_each
    if float(t[-1] - t[0]) <= 0:
        return None
    slope = float(np.polyfit(t, done, 1)[0])
    return round(slope, 1)


async def _backlog(conn: Connection, prefix: str, devices: list[str], utterances: int,
                   pcm: bytes, frame_ms: int) -> float:
    """Write every device's utterances to the audio topic; return seconds taken."""
    async def one(name: str) -> None:
        async with DeviceClient(conn, name, topic_prefix=prefix) as dev:
            await dev.publish_context(DeviceContext.from_wire(
                {"device_id": name, **CONTEXTS["kitchen-1"]}))
            for k in range(utterances):
                await dev.stream(pcm, RATE_HZ, utterance_id=f"{name}-{k:04d}",
                                 realtime=False, tail_ms=0, frame_ms=frame_ms)

    started = time.monotonic()
    await asyncio.gather(*(one(name) for name in devices))
    return time.monotonic() - started


async def _drain(conn: Connection, prefix: str, fleet: Fleet, expected: set[str],
                 sampler_at: Path | None
                 ) -> tuple[dict[str, float], dict[str, str], float, float, dict[str, Any]]:
    """Start the worker; time each expected utterance's error from the worker's start.

    Returns (arrival second per utterance, error code per utterance, seconds from
    the worker's start to ``ready``, its CPU seconds at ``ready``, its py-spy
    profile from ``ready`` to the last arrival when ``sampler_at`` is given).
    """

    arrivals: dict[str, float] = {}
    codes: dict[str, str] = {}
    async with EventWatcher(conn, topic_prefix=prefix) as watch:
        t0 = time.monotonic()
        worker = fleet.start_worker(0)
        await asyncio.to_thread(worker.wait_ready, 180)
        ready_s = time.monotonic() - t0
        ready_cpu_s = proc_usage(worker.proc.pid)[0]
        sampler = (Sampler(worker.proc.pid, DRAIN_TIMEOUT_S, sampler_at)
                   if sampler_at is not None else None)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(DRAIN_TIMEOUT_S):
                async for _topic, message in watch.messages():
                    if not isinstance(message, ErrorEvent):
                        continue
                    utt = message.utterance_id
                    if utt in expected and utt not in arrivals:
                        arrivals[utt] = time.monotonic() - t0
                        codes[utt] = message.code
                        if len(arrivals) == len(expected):
                            break
        profile = sampler.finish() if sampler is not None else {}
    return arrivals, codes, ready_s, ready_cpu_s, profile


async def measure(*, url: str, devices: int, utterances: int, logs: Path,
                  frame_ms: int = FRAME_MS, profile: bool = False) -> dict[str, Any]:
    """Produce the backlog on ``url``, let one worker read it, return the figures."""
    async with broker_running(url) as url:
        conn = Connection.parse(url)
        with tempfile.TemporaryDirectory(prefix="vs-ingest-") as tmp:
            fleet = Fleet(url, Path(tmp), "ingest", 1)
            settings = Settings.from_env(fleet.env)
            await ensure_topics(settings, settings.broker_profile())
            names = [f"ingest{i:03d}" for i in range(devices)]
            expected = {f"{n}-{k:04d}" for n in names for k in range(utterances)}
            produce_s = await _backlog(conn, fleet.prefix, names, utterances,
                                       quiet_noise(AUDIO_S, seed=1), frame_ms)
            try:
                arrivals, codes, ready_s, ready_cpu_s, prof = await _drain(
                    conn, fleet.prefix, fleet, expected,
                    logs / "profile-worker0.raw" if profile else None)
                worker = fleet.workers[0]
                cpu_s, rss = proc_usage(worker.proc.pid) if worker is not None else (0.0, 0.0)
            finally:
                await asyncio.to_thread(fleet.stop, logs)
    each = frames_per_utterance(AUDIO_S, frame_ms)
    rate = fitted_rate(list(arrivals.values()), each)
    span = (max(arrivals.values()) - min(arrivals.values())) if len(arrivals) > 1 else 0.0
    last = max(arrivals.values(), default=0.0)
    return {
        "broker": conn.kind, "devices": devices, "utterances": len(expected),
        "frame_ms": frame_ms, "frames": len(expected) * each, "frames_per_utterance": each,
        "audio_s_per_utterance": AUDIO_S,
        "backlog_produce_s": round(produce_s, 1),
        "produce_frames_per_s": round(len(expected) * each / produce_s, 1),
        "worker_ready_s": round(ready_s, 1),
        "finished": len(arrivals), "missing": len(expected) - len(arrivals),
        "codes": {c: sum(1 for v in codes.values() if v == c) for c in sorted(set(codes.values()))},
        "drain_s": round(span, 1),
        "frames_per_s": rate,
        "audio_s_per_s": round(rate * frame_ms / 1000, 1) if rate else None,
        "worker_cpu_s": round(cpu_s, 1), "worker_peak_rss_mib": round(rss),
        **({"profile": prof, "bottleneck": bottleneck(prof)} if profile else {}),
        # CPU the worker used from ready to the last arrival, per second (cores busy).
        "worker_cores_after_ready": (round((cpu_s - ready_cpu_s) / (last - ready_s), 2)
                                     if last > ready_s else None),
    }
