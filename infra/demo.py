"""``voicestream demo``: the embedded broker, a worker, and bundled spoken commands.

Streams each bundled WAV in real time as a device would and prints a live
trace per utterance, then a table of decision latencies: wall time from the
moment the deciding audio was sent to the moment the event arrived.
"""

from __future__ import annotations

import dataclasses
import time
import wave
from importlib import resources
from pathlib import Path
from typing import Any

import click

from infra.config import Settings
from infra.runner import broker_for, running_worker
from streams.client import (
    FRAME_MS,
    DeviceClient,
    EventWatcher,
    event_json,
    read_wav,
    stream_and_watch,
)

#: (file, device, what it shows)
COMMANDS = (
    ("timer.wav", "kitchen-1", "a command spoken in one go"),
    ("timer_paused.wav", "kitchen-1", "the same command with a 400 ms mid-sentence pause"),
    ("lights_8k.wav", "hall-2", "an 8 kHz device (resampled)"),
    ("silence.wav", "hall-2", "nobody speaks"),
)
AUDIO_DIR = "demo_audio"


@dataclasses.dataclass
class Row:
    """One utterance's summary."""

    name: str
    events: int = 0
    resets: int = 0
    outcome: str = ""
    latencies_ms: list[float] = dataclasses.field(default_factory=list)


def audio_path(name: str) -> Path:
    """Return the bundled WAV ``name``."""
    return Path(str(resources.files("infra").joinpath(AUDIO_DIR, name)))


def build_audio(out: Path) -> None:
    """Synthesise the bundled commands with espeak-ng (run once; the WAVs are committed)."""
    import numpy as np
    import soxr

    from infra.eval_endpoint import RATE, speak, voiced_bounds

    def trimmed(text: str) -> Any:
        x = speak(text, "en-us", 165)
        a, b = voiced_bounds(x)
        return x[a:b]

    def pad(x: Any) -> Any:
        z = np.zeros(RATE * 3 // 10, np.float32)
        return np.concatenate([z, x, z])

    def write(name: str, x: Any, rate: int = RATE) -> None:
        with wave.open(str(out / name), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(rate)
            w.writeframes((np.clip(x, -1, 1) * 32767).astype("<i2").tobytes())

    out.mkdir(parents=True, exist_ok=True)
    write("timer.wav", pad(trimmed("set a timer for ten minutes")))
    pause = np.zeros(RATE * 4 // 10, np.float32)
    write("timer_paused.wav",
          pad(np.concatenate([trimmed("set a timer"), pause, trimmed("for ten minutes")])))
    lights = pad(trimmed("turn off the lights in the hall"))
    write("lights_8k.wav", soxr.resample(lights, RATE, 8000).astype(np.float32), 8000)
    write("silence.wav", np.zeros(RATE * 6, np.float32))


def _describe(e: dict[str, Any]) -> str:
    if e["type"] == "endpoint":
        return (f"{e['kind']} end-point, revision {e['revision']}: "
                f"speech ended at {e['at_ms'] / 1000:.2f} s")
    if e["type"] == "reset":
        return f"reset of revision {e['cancelled_revision']} ({e['reason']})"
    if e["type"] == "error":
        return f"error {e['code']}: {e['message']}"
    if e["type"] == "transcript":
        best = e["nbest"][0]["text"] if e["nbest"] else ""
        return (f"{e['kind']} transcript, revision {e['revision']}: \"{best}\" "
                f"({len(e['nbest'])}-best, {e['compute_ms']:.0f} ms compute)")
    return str(e["type"])


async def run(settings: Settings) -> list[Row]:
    """Run the demo; return one summary row per command."""
    rows: list[Row] = []
    async with broker_for(settings) as profile, running_worker(settings, profile):
        click.echo(f"broker: {profile.url}  (embedded Tansu; worker ready)\n")
        async with EventWatcher(profile.bootstrap) as watch:
            for name, device, what in COMMANDS:
                row = Row(name)
                click.echo(f"== {device}: {name}: {what}")
                pcm, rate = read_wav(audio_path(name))
                async with DeviceClient(profile.bootstrap, device) as dev:
                    utt = f"demo-{len(rows)}-{int(time.time())}"
                    start = time.monotonic()
                    async for message in stream_and_watch(dev, watch, pcm, rate,
                                                          utterance_id=utt):
                        e = event_json(message)
                        # From sending the frame that completed the deciding audio.
                        sent_ms = max(e["t_ms"] - FRAME_MS, 0)
                        late_ms = (time.monotonic() - start) * 1000 - sent_ms
                        row.events += 1
                        row.resets += e["type"] == "reset"
                        row.latencies_ms.append(late_ms)
                        row.outcome = (e["code"] if e["type"] == "error"
                                       else f"{e.get('kind', e['type'])} r{e['revision']}")
                        click.echo(f"  {e['t_ms'] / 1000:6.2f} s  {_describe(e)}"
                                   f"   (+{late_ms:.0f} ms)")
                rows.append(row)
                click.echo()
    return rows


def summary(rows: list[Row]) -> str:
    """Return the closing table."""
    lines = [f"{'utterance':<18} {'events':>6} {'resets':>6}  {'outcome':<12} "
             f"{'latency p50':>11} {'max':>7}"]
    for r in rows:
        lat = sorted(r.latencies_ms)
        p50 = f"{lat[len(lat) // 2]:.0f} ms" if lat else "-"
        mx = f"{lat[-1]:.0f} ms" if lat else "-"
        lines.append(f"{r.name:<18} {r.events:>6} {r.resets:>6}  {r.outcome:<12} "
                     f"{p50:>11} {mx:>7}")
    return "\n".join(lines)
