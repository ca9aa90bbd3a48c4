"""Soak: a moderate steady load for a long time; memory and latency must stay flat.

One worker and the example skills on a broker (the embedded Tansu unless
``--broker``); ``--devices`` devices each speak a bundled command (in real
time), pause ``--pause`` seconds and speak again, for ``--minutes``. Every
``--window`` minutes it prints the window's utterances, how many got exactly
one outcome, none (lost) or several, p50/p95 seconds from the end of a decided
utterance's audio to its outcome, and the worker's RSS; at the end the change
of RSS and p95 from the first window to the last (the goal: within 10 %),
and the total lost.

Run: python -m benchmarks.bench_soak [--minutes 30] [--window 5] [--devices 6]
     [--pause 4] [--broker URL] [--logs DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import tempfile
import time
from pathlib import Path

from benchmarks.bench_context_memory import rss_mib
from infra import logs
from infra.demo import CONTEXTS, audio_path
from infra.fleet import SPOKEN, Fleet, Outcome, _quantile, watch_outcomes
from infra.process import Process, env_with
from streams.client import DeviceClient, EventWatcher, read_wav
from streams.connection import Connection
from streams.context import DeviceContext


async def device(conn: Connection, prefix: str, name: str, result: Outcome, t0: float,
                 until: float, pause_s: float) -> None:
    async with DeviceClient(conn, name, topic_prefix=prefix) as dev:
        await dev.publish_context(DeviceContext.from_wire(
            {"device_id": name, **CONTEXTS["kitchen-1"]}))
        n = 0
        while time.monotonic() < until:
            utt = f"{name}-{n}"
            pcm, rate = read_wav(audio_path(SPOKEN[(n + int(name[4:])) % len(SPOKEN)]))
            result.utterances.append(utt)
            result.audio_end_s[utt] = time.monotonic() - t0 + len(pcm) / 2 / rate
            await dev.stream(pcm, rate, utterance_id=utt, tail_ms=1200)
            n += 1
            await asyncio.sleep(pause_s)


def window_row(result: Outcome, lo: float, hi: float, rss: float) -> dict[str, float | int]:
    utts = [u for u in result.utterances if lo <= result.audio_end_s[u] < hi]
    counts = [len(result.outcomes.get(u, [])) for u in utts]
    lat = sorted(result.outcomes[u][0][0] - result.audio_end_s[u] for u in utts
                 if result.outcomes.get(u) and result.outcomes[u][0][1] != "error")
    return {"from_min": round(lo / 60, 1), "utterances": len(utts),
            "exactly_one": sum(c == 1 for c in counts), "none": sum(c == 0 for c in counts),
            "several": sum(c > 1 for c in counts), "p50_s": _quantile(lat, 0.5) or 0.0,
            "p95_s": _quantile(lat, 0.95) or 0.0, "rss_mib": round(rss)}


async def soak(fleet: Fleet, args: argparse.Namespace) -> tuple[Outcome, list[float]]:
    conn = Connection.parse(fleet.url)
    result = Outcome("soak", conn.kind)
    worker = fleet.alive()[0]
    rss: list[float] = []
    async with EventWatcher(conn, topic_prefix=fleet.prefix) as watch:
        t0 = time.monotonic()
        until = t0 + args.minutes * 60
        watcher = asyncio.create_task(watch_outcomes(watch, result, t0))
        devices = [asyncio.create_task(device(conn, fleet.prefix, f"soak{i:02d}", result, t0,
                                              until, args.pause))
                   for i in range(args.devices)]
        for w in range(1, round(args.minutes / args.window) + 1):
            await asyncio.sleep(max(0.0, t0 + w * args.window * 60 - time.monotonic()))
            rss.append(rss_mib(worker.proc.pid))
            print(f"window {w}: {len(result.utterances)} utterances so far, "
                  f"worker RSS {rss[-1]:.0f} MiB", flush=True)
        await asyncio.gather(*devices)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(60):
                while any(u not in result.outcomes for u in result.utterances):  # noqa: ASYNC110
                    await asyncio.sleep(0.5)
        await asyncio.sleep(3.0)
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
    return result, rss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--window", type=float, default=5.0)
    parser.add_argument("--devices", type=int, default=6)
    parser.add_argument("--pause", type=float, default=4.0)
    parser.add_argument("--broker", default="")
    parser.add_argument("--logs", default="", help="write the worker's and skills' logs here")
    parser.add_argument("--log-level", default="warning")
    args = parser.parse_args()
    logs.configure("console", "error")
    procs: list[Process] = []
    with tempfile.TemporaryDirectory(prefix="vs-soak-") as tmp:
        url = args.broker
        if not url:
            broker = Process(["broker"], env_with())
            procs.append(broker)
            url = broker.wait_ready(60)
        fleet = Fleet(url, Path(tmp), "soak", 1, {"log_level": args.log_level})
        try:
            fleet.start()
            result, rss = asyncio.run(soak(fleet, args))
        finally:
            fleet.stop(Path(args.logs) if args.logs else None)
            for proc in procs:
                proc.kill()
    span = args.window * 60
    rows = [window_row(result, i * span, (i + 1) * span, r) for i, r in enumerate(rss)]
    head = list(rows[0])
    print(" | ".join(head))
    for row in rows:
        print(" | ".join(str(row[h]) for h in head))
    first, last = rows[0], rows[-1]
    lost = sum(1 for u in result.utterances if not result.outcomes.get(u))
    several = sum(1 for u in result.utterances if len(result.outcomes.get(u, [])) > 1)
    print(f"{result.broker}: {len(result.utterances)} utterances, lost {lost}, several "
          f"outcomes {several}; RSS {first['rss_mib']} -> {last['rss_mib']} MiB "
          f"({(float(last['rss_mib']) / float(first['rss_mib']) - 1) * 100:+.1f} %), "
          f"p95 {first['p95_s']} -> {last['p95_s']} s "
          f"({(float(last['p95_s']) / max(float(first['p95_s']), 1e-9) - 1) * 100:+.1f} %)")


if __name__ == "__main__":
    main()
