"""Several workers and brokers failing while a fleet of devices streams.

:class:`Fleet` runs a group of ``voicestream up`` workers (one consumer group,
static membership ids ``w0``, ``w1``, ...) and the example skills as child
processes on a broker; :func:`run_scenario` publishes each device's context,
streams a burst (every device speaks ``rounds`` bundled commands in real
time, all at once), fails something mid-burst and records every outcome per
utterance (:class:`Outcome`). Scenarios:

- ``none``: nothing fails (the baseline);
- ``kill``: worker 0 is SIGKILLed ``KILL_AT_S`` into the burst;
- ``rolling``: each worker in turn gets SIGTERM and is started again while
  the devices keep streaming (a rolling restart);
- ``broker``: Kafka node 1 of 3 is SIGKILLed ``KILL_AT_S`` into the burst and
  restarted after it (needs the :class:`KafkaCluster`);
- ``saturate``: nothing fails; meant for more devices than the workers can
  decode at once (one worker, 30 devices), to see load shedding: every
  utterance must still get one outcome, a directive or ``overloaded``.

Used by ``benchmarks/bench_fleet.py`` (which prints the figures) and by the
tests (which assert on them).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import itertools
import os
import time
from pathlib import Path
from typing import Any

from infra.cluster import KafkaCluster
from infra.demo import CONTEXTS, audio_path
from infra.process import Process, env_with
from streams.client import DeviceClient, EventWatcher, is_outcome, read_wav
from streams.connection import Connection
from streams.context import DeviceContext
from streams.schema import MessageType

#: Commands the devices speak, in turn; each is answered by a running skill.
SPOKEN = ("light_on.wav", "alarm_paused.wav", "hunger_games.wav", "neato_off.wav",
          "temperature.wav")
KILL_AT_S = 4.0
#: Pause between a device's utterances after the burst, while a rolling restart goes on.
PAUSE_S = 5.0
#: How long to wait for the outcomes once every device has finished speaking.
SETTLE_S = 90.0


@dataclasses.dataclass
class Outcome:
    """What one scenario produced, per utterance."""

    scenario: str
    broker: str
    utterances: list[str] = dataclasses.field(default_factory=list)
    #: utterance id -> (arrival time, type, error code) of each outcome event.
    outcomes: dict[str, list[tuple[float, str, str]]] = dataclasses.field(
        default_factory=lambda: collections.defaultdict(list))
    moved_s: list[float] = dataclasses.field(default_factory=list)
    #: utterance id -> when its audio file had been sent (real time), s since the start.
    audio_end_s: dict[str, float] = dataclasses.field(default_factory=dict)
    #: Settings the workers ran with (``NAME=VALUE``), for the report.
    settings: str = ""

    def latencies(self) -> list[float]:
        """Seconds from the end of each decided utterance's audio to its first outcome,
        for directives and declines (errors such as ``overloaded`` come at once)."""
        out = []
        for utt in self.utterances:
            got = self.outcomes.get(utt, [])
            if got and got[0][1] != "error" and utt in self.audio_end_s:
                out.append(got[0][0] - self.audio_end_s[utt])
        return sorted(out)

    def row(self) -> dict[str, Any]:
        counts = [len(self.outcomes.get(u, [])) for u in self.utterances]
        directives = [sum(t == "directive" for _, t, _ in self.outcomes.get(u, []))
                      for u in self.utterances]
        codes = collections.Counter(c for u in self.utterances
                                    for _, t, c in self.outcomes.get(u, []) if t == "error")
        times = sorted(at for u in self.utterances for at, _, _ in self.outcomes.get(u, []))
        gaps = [b - a for a, b in itertools.pairwise(times)]
        return {"scenario": self.scenario, "broker": self.broker,
                "utterances": len(self.utterances),
                "exactly_one": sum(c == 1 for c in counts),
                "none": sum(c == 0 for c in counts), "several": sum(c > 1 for c in counts),
                "duplicate_directives": sum(max(d - 1, 0) for d in directives),
                "declined": sum(t == "declined" for u in self.utterances
                                for _, t, _ in self.outcomes.get(u, [])),
                "errors": dict(codes), "moved_s": [round(m, 1) for m in self.moved_s],
                "max_gap_s": round(max(gaps), 1) if gaps else None,
                "settings": self.settings,
                "decided_p50_s": _quantile(self.latencies(), 0.5),
                "decided_p95_s": _quantile(self.latencies(), 0.95)}


def _quantile(sorted_values: list[float], q: float) -> float | None:
    if not sorted_values:
        return None
    return round(sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))], 2)


class Fleet:
    """A group of worker processes sharing one app id and topic prefix."""

    def __init__(self, url: str, folder: Path, name: str, workers: int,
                 settings: dict[str, str] | None = None) -> None:
        self.url = url
        self.env = {"VOICESTREAM_BROKER": url,
                    "VOICESTREAM_APP_ID": f"fleet-{name}-{os.getpid()}",
                    "VOICESTREAM_TOPIC_PREFIX": f"fleet-{name}-{os.getpid()}.",
                    "VOICESTREAM_LOG_LEVEL": os.environ.get("FLEET_LOG_LEVEL", "info"),
                    **{f"VOICESTREAM_{k.upper()}": v for k, v in (settings or {}).items()}}
        self.prefix = self.env["VOICESTREAM_TOPIC_PREFIX"]
        self.folder = folder / name
        self.workers: list[Process | None] = [None] * workers
        self.retired: list[Process] = []
        self.skills: Process | None = None

    def start_worker(self, i: int) -> Process:
        env = env_with(**self.env, VOICESTREAM_DATA_DIR=str(self.folder / f"w{i}"),
                       VOICESTREAM_INSTANCE_ID=f"w{i}")
        proc = self.workers[i] = Process(["up"], env)
        return proc

    def start(self) -> None:
        for i in range(len(self.workers)):
            self.start_worker(i).wait_ready(180)
        self.skills = Process(["skills"], env_with(**self.env))
        self.skills.wait_ready(120)

    def alive(self) -> list[Process]:
        return [w for w in self.workers if w is not None and w.proc.poll() is None]

    def retire(self, i: int) -> Process:
        proc = self.workers[i]
        assert proc is not None
        self.retired.append(proc)
        self.workers[i] = None
        return proc

    def assigned_after(self, t_ms: int) -> float | None:
        """Seconds from ``t_ms`` to the last assignment a live worker logged after it."""
        times = [int(e["at_ms"]) for w in self.alive()  # type: ignore[call-overload]
                 for e in w.events("worker.assigned") if int(e["at_ms"]) > t_ms]  # type: ignore[call-overload]
        return (max(times) - t_ms) / 1000 if times else None

    def stop(self, logs_to: Path | None = None) -> None:
        procs = [p for p in [*self.retired, *self.workers, self.skills] if p is not None]
        for proc in procs:
            with contextlib.suppress(Exception):
                proc.stop(20)
            proc.kill()
        if logs_to is not None:
            logs_to.mkdir(parents=True, exist_ok=True)
            for n, proc in enumerate(procs):
                name = "skills" if proc is self.skills else f"worker{n}"
                (logs_to / f"{name}.log").write_text("\n".join(proc.stderr) + "\n")


async def watch_outcomes(watch: EventWatcher, result: Outcome, t0: float) -> None:
    """Record every outcome event of the scenario's utterances as it arrives."""
    async for topic, message in watch.messages():
        if isinstance(message, Exception) or not is_outcome(message, topic):
            continue
        utt = getattr(message, "utterance_id", "")
        wire = message.to_wire()
        code = str(wire.get("code", "")) if message.TYPE is MessageType.ERROR else ""
        result.outcomes[utt].append((time.monotonic() - t0, message.TYPE.value, code))


async def speak(conn: Connection, prefix: str, device: str, utterances: list[str],
                keep_going: asyncio.Event | None, result: Outcome, t0: float) -> None:
    """Stream commands from ``device`` in real time, one after another.

    With ``keep_going``, more follow while it is set, each after ``PAUSE_S`` (a
    household's speaker is mostly quiet; the burst before it is the peak).
    """
    stem = utterances[0].rsplit("-r", 1)[0]
    async with DeviceClient(conn, device, topic_prefix=prefix) as dev:
        n = 0
        while n < len(utterances) or (keep_going is not None and keep_going.is_set()):
            if n == len(utterances):
                await asyncio.sleep(PAUSE_S)
                utterances.append(f"{stem}-r{n}")
            pcm, rate = read_wav(audio_path(SPOKEN[(n + int(device[3:])) % len(SPOKEN)]))
            started = time.monotonic() - t0
            result.audio_end_s[utterances[n]] = started + len(pcm) / 2 / rate
            await dev.stream(pcm, rate, utterance_id=utterances[n], tail_ms=1200)
            n += 1


async def rolling_restart(fleet: Fleet, result: Outcome) -> None:
    """SIGTERM each worker in turn, wait for it to leave, start it again."""
    for i in range(len(fleet.workers)):
        await asyncio.sleep(3.0)
        old = fleet.retire(i)
        left = time.time()
        await asyncio.to_thread(old.stop, 60)
        moved = fleet.assigned_after(int(left * 1000))
        if moved is not None:
            result.moved_s.append(moved)
        await asyncio.to_thread(fleet.start_worker(i).wait_ready, 180)


async def run_scenario(scenario: str, fleet: Fleet, devices: int, rounds: int,
                       cluster: KafkaCluster | None) -> Outcome:
    conn = Connection.parse(fleet.url)
    result = Outcome(scenario, conn.kind)
    names = [f"dev{i:02d}" for i in range(devices)]
    for name in names:
        async with DeviceClient(conn, name, topic_prefix=fleet.prefix) as dev:
            await dev.publish_context(DeviceContext.from_wire(
                {"device_id": name, **CONTEXTS["kitchen-1"]}))
    plans = {n: [f"{scenario}-{n}-r{r}" for r in range(rounds)] for n in names}
    async with EventWatcher(conn, topic_prefix=fleet.prefix) as watch:
        t0 = time.monotonic()
        watcher = asyncio.create_task(watch_outcomes(watch, result, t0))
        keep_going = asyncio.Event() if scenario == "rolling" else None
        if keep_going is not None:
            keep_going.set()
        speakers = [asyncio.create_task(speak(conn, fleet.prefix, n, plans[n], keep_going,
                                              result, t0)) for n in names]
        if scenario == "kill":
            await asyncio.sleep(KILL_AT_S)
            killed = time.time()
            fleet.retire(0).kill()
            await asyncio.sleep(8.0)
            moved = fleet.assigned_after(int(killed * 1000))
            if moved is not None:
                result.moved_s.append(moved)
        elif scenario == "broker" and cluster is not None:
            await asyncio.sleep(KILL_AT_S)
            await asyncio.to_thread(cluster.kill, 1)
        elif scenario == "rolling":
            await rolling_restart(fleet, result)
            assert keep_going is not None
            keep_going.clear()
        await asyncio.gather(*speakers)
        result.utterances = [u for n in names for u in plans[n]]
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(SETTLE_S):
                while any(u not in result.outcomes for u in result.utterances):  # noqa: ASYNC110
                    await asyncio.sleep(0.2)
        await asyncio.sleep(3.0)  # a late duplicate would arrive by now
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
    if scenario == "broker" and cluster is not None:
        await asyncio.to_thread(cluster.restart, 1)
    return result
