"""``voicestream demo``: the embedded broker, a worker, and bundled spoken commands.

Starts the embedded broker, a worker with every stage and the example skills,
publishes three devices' context, streams each bundled WAV in real time as a
device would and prints a live trace per utterance (end-points, resets,
transcript, interpretation, directive or decline, the skill's answer), then a
table of latencies: wall time from the moment the deciding audio was sent to
the moment each stage's final event arrived.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
import wave
from collections.abc import AsyncIterator
from importlib import resources
from pathlib import Path
from typing import Any

import click

from infra.config import Settings
from infra.runner import broker_for, running_skills, running_worker, warmed_up
from infra.trace import describe
from streams.client import (
    FRAME_MS,
    DeviceClient,
    EventWatcher,
    event_json,
    read_wav,
    stream_and_watch,
)
from streams.connection import Connection
from streams.context import DeviceContext

#: (file, device, what it shows)
COMMANDS = (
    ("light_on.wav", "kitchen-1", "smart home; the light's new state goes back into context"),
    ("turn_it_off.wav", "kitchen-1", "\"it\" is what is on: the light just switched on"),
    ("temperature.wav", "kitchen-1", "with the oven on, the temperature is the oven's"),
    ("temperature.wav", "hall-2", "same audio, no oven: weather, whose skill is not running"),
    ("hunger_games.wav", "lounge-tv", "a device with a screen: the film"),
    ("hunger_games.wav", "kitchen-1", "same audio, no screen: the audiobook"),
    ("alarm_paused.wav", "kitchen-1", "a 500 ms mid-sentence pause: reset, one directive"),
    ("neato_off.wav", "kitchen-1", "an appliance name from the device's context"),
    ("neato_off.wav", "hall-2", "same audio, no such name in context: a name it cannot place"),
    ("lights_8k.wav", "hall-2", "an 8 kHz device (resampled)"),
    ("licht_aus_de.wav", "kueche-de", "locale de-DE: Whisper base in German, the multilingual NLU"),
    ("ge_zh.wav", "chufang-zh", "locale zh-CN: \"播放一首歌\", play a song"),
    ("musiqa_ar.wav", "matbakh-ar", "locale ar-SA: \"شغل موسيقى\", play music"),
    ("silence.wav", "hall-2", "nobody speaks"),
)
#: Device context published before the commands.
CONTEXTS: dict[str, dict[str, Any]] = {
    "kitchen-1": {"device_type": "speaker", "location": "kitchen",
                  "states": {"oven": "on", "oven_temperature": "180", "kitchen light": "off"},
                  "appliances": ["Neato vacuum", "Dyson fan"], "local_time": "21:40"},
    "hall-2": {"device_type": "speaker", "location": "hall", "local_time": "21:40"},
    "lounge-tv": {"device_type": "tv", "has_screen": True, "location": "living room"},
    "kueche-de": {"device_type": "speaker", "location": "Küche", "locale": "de-DE"},
    "chufang-zh": {"device_type": "speaker", "location": "厨房", "locale": "zh-CN"},
    "matbakh-ar": {"device_type": "speaker", "location": "المطبخ", "locale": "ar-SA"},
}
#: The other languages' commands: (file, espeak-ng voice, text): "turn off the light",
#: "play a song", "play music".
LANGUAGE_COMMANDS = (
    ("licht_aus_de.wav", "de", "schalte das Licht aus"),
    ("ge_zh.wav", "cmn-latn-pinyin", "播放一首歌"),
    ("musiqa_ar.wav", "ar", "شغل موسيقى"),
)
AUDIO_DIR = "demo_audio"


@dataclasses.dataclass
class Row:
    """One utterance's summary."""

    name: str
    events: int = 0
    resets: int = 0
    outcome: str = ""
    answer: str = ""
    #: Stage -> ms from sending the deciding audio to the stage's final event arriving.
    stage_ms: dict[str, float] = dataclasses.field(default_factory=dict)
    held_ms: float | None = None


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
    write("light_on.wav", pad(trimmed("turn on the kitchen light")))
    write("turn_it_off.wav", pad(trimmed("turn it off")))
    write("temperature.wav", pad(trimmed("what's the temperature")))
    write("hunger_games.wav", pad(trimmed("play the hunger games")))
    pause = np.zeros(RATE // 2, np.float32)
    write("alarm_paused.wav",
          pad(np.concatenate([trimmed("wake me up"), pause, trimmed("at seven thirty")])))
    write("neato_off.wav", pad(trimmed("switch off the Neato vacuum")))
    # A rare artist our ASR mishears ("Play Heritage Sing."): the live rewriting example.
    write("arijit.wav", pad(trimmed("play arijit singh")))
    lights = pad(trimmed("turn off the lights in the hall"))
    write("lights_8k.wav", soxr.resample(lights, RATE, 8000).astype(np.float32), 8000)
    write("silence.wav", np.zeros(RATE * 6, np.float32))
    build_language_audio(out)


def build_language_audio(out: Path) -> None:
    """Synthesise :data:`LANGUAGE_COMMANDS` (espeak-ng: no natural German or Arabic voice
    ships in a package; see README, Other languages)."""
    import numpy as np

    from infra.eval_endpoint import RATE, speak, voiced_bounds

    for name, voice, text in LANGUAGE_COMMANDS:
        x = speak(text, voice, 150)
        a, b = voiced_bounds(x)
        z = np.zeros(RATE * 3 // 10, np.float32)
        with wave.open(str(out / name), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(RATE)
            w.writeframes((np.clip(np.concatenate([z, x[a:b], z]), -1, 1) * 32767)
                          .astype("<i2").tobytes())


#: Summary columns: the stage events whose latency the table shows.
STAGES = (("endpoint", "end-point"), ("transcript", "transcript"),
          ("interpretation", "interpret"), ("decision", "decision"))


def _stage(e: dict[str, Any]) -> str | None:
    if e["type"] in ("directive", "declined"):
        return "decision"
    if e["type"] in ("endpoint", "transcript", "interpretation") and e.get("kind") == "final":
        return str(e["type"])
    return None


async def run(settings: Settings, record_to: Path | None = None) -> list[Row]:
    """Run the demo; return one summary row per command. ``record_to`` keeps the traffic."""
    rows: list[Row] = []
    async with broker_for(settings) as profile, running_worker(settings, profile) as worker, \
            running_skills(settings, profile, ("smart-home", "timers", "media", "video")) \
            as skills, _recording(profile.connection, settings.topic_prefix, record_to):
        await warmed_up(worker, skills)
        click.echo(f"broker: {profile.url}  (embedded Tansu; worker and skills ready: "
                   "smart-home, timers, media, video; weather is registered, not running)\n")
        async with EventWatcher(profile.connection) as watch:
            for device, fields in CONTEXTS.items():
                async with DeviceClient(profile.connection, device) as dev:
                    await dev.publish_context(DeviceContext(device_id=device, **fields))
            for name, device, what in COMMANDS:
                row = Row(f"{device}: {name.removesuffix('.wav')}")
                click.echo(f"== {device}: {name}: {what}")
                pcm, rate = read_wav(audio_path(name))
                async with DeviceClient(profile.connection, device) as dev:
                    utt = f"demo-{len(rows)}-{int(time.time())}"
                    start = time.monotonic()
                    decided = 0.0
                    answers: list[tuple[float, dict[str, Any]]] = []
                    async for message in stream_and_watch(dev, watch, pcm, rate,
                                                          utterance_id=utt):
                        e = event_json(message)
                        now_ms = (time.monotonic() - start) * 1000
                        row.events += 1
                        row.resets += e["type"] == "reset"
                        if e["type"] == "skill-response":
                            # Topics are read independently: an answer can overtake
                            # the directive's record; it is printed after it.
                            answers.append((now_ms, e))
                            if decided:
                                _answers(answers, decided, row)
                            continue
                        # From sending the frame that completed the deciding audio.
                        late_ms = now_ms - max(e["t_ms"] - FRAME_MS, 0)
                        stage = _stage(e)
                        if stage is not None:
                            row.stage_ms[stage] = late_ms
                        if stage == "decision":
                            decided = now_ms
                            row.held_ms = e.get("held_ms")
                        row.outcome = (e["code"] if e["type"] == "error"
                                       else e["skill"] if e["type"] == "directive"
                                       else f"declined: {e['reason']}" if e["type"] == "declined"
                                       else row.outcome)
                        click.echo(f"  {e['t_ms'] / 1000:6.2f} s  {describe(e)}"
                                   f"   (+{late_ms:.0f} ms)")
                        if decided:
                            _answers(answers, decided, row)
                rows.append(row)
                click.echo()
    return rows


@contextlib.asynccontextmanager
async def _recording(bootstrap: Connection, prefix: str, out: Path | None
                     ) -> AsyncIterator[None]:
    """Record every input and output of the demo to ``out`` (if given) while it runs."""
    if out is None:
        yield
        return
    from infra.replay import record

    stop, started = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(record(bootstrap, out, prefix=prefix, stop=stop, started=started))
    await started.wait()
    try:
        yield
        await asyncio.sleep(1.0)  # the last answers land in the recording
    finally:
        stop.set()
        await task


def _answers(answers: list[tuple[float, dict[str, Any]]], decided_ms: float, row: Row) -> None:
    """Print the skill answers received so far, timed from the directive's arrival."""
    for at_ms, e in answers:
        if e["status"] != "accepted":
            row.answer = e.get("text", "")
        click.echo(f"  {'':>8}  {describe(e)}   (+{max(at_ms - decided_ms, 0):.0f} ms after "
                   "the directive)")
    answers.clear()


def summary(rows: list[Row]) -> str:
    """Return the closing table: per utterance, each stage's latency after the audio."""
    head = " ".join(f"{label:>10}" for _, label in STAGES)
    lines = ["latency after the deciding audio was sent (final revision), ms",
             f"{'utterance':<28} {'resets':>6} {head} {'held':>6}  outcome"]
    for r in rows:
        cells = " ".join(f"{r.stage_ms[k]:>10.0f}" if k in r.stage_ms else f"{'-':>10}"
                         for k, _ in STAGES)
        held = f"{r.held_ms:>6.0f}" if r.held_ms is not None else f"{'-':>6}"
        answer = f" \"{r.answer}\"" if r.answer else ""
        lines.append(f"{r.name:<28} {r.resets:>6} {cells} {held}  {r.outcome}{answer}")
    return "\n".join(lines)
