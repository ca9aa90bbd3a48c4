"""Decision latency on the embedded broker: Faust's 1500 ms fetch wait against ours.

For each fetch wait, starts Tansu and a worker, streams the bundled commands in
real time and measures, per event, the wall time from sending the frame that
completed the deciding audio to receiving the event. Prints both side by side.

Run: python benchmarks/bench_latency.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import time

import numpy as np

from infra import logs
from infra.config import Settings
from infra.demo import COMMANDS, audio_path
from infra.runner import broker_for, running_worker
from streams.client import FRAME_MS, DeviceClient, EventWatcher, read_wav, stream_and_watch


async def measure(fetch_wait_ms: int, rounds: int) -> list[float]:
    """Return every event's latency in ms with the worker's fetch wait set to ``fetch_wait_ms``."""
    settings = Settings(fetch_max_wait_ms=fetch_wait_ms, data_dir=".voicestream/bench")
    settings = dataclasses.replace(settings, log_level="error")
    out: list[float] = []
    async with broker_for(settings) as profile, running_worker(settings, profile), \
            EventWatcher(profile.connection) as watch:
        for r in range(rounds):
            for i, (name, device, _) in enumerate(COMMANDS[:3]):
                pcm, rate = read_wav(audio_path(name))
                async with DeviceClient(profile.connection, device) as dev:
                    utt = f"bench-{fetch_wait_ms}-{r}-{i}"
                    start = time.monotonic()
                    async for m in stream_and_watch(dev, watch, pcm, rate, utterance_id=utt):
                        if m.TYPE.value != "endpoint":
                            continue  # end-pointer decisions: transcripts add decode time
                        t_ms = m.to_wire()["t_ms"]
                        sent = start + max(t_ms - FRAME_MS, 0) / 1000
                        out.append((time.monotonic() - sent) * 1000)
    return out


def main() -> None:
    """Print p50/p95/max latency per fetch wait."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3, help="passes over the commands")
    args = parser.parse_args()
    logs.configure("console", "error")
    print(f"{'worker fetch wait':>18} {'events':>6} {'p50 ms':>7} {'p95 ms':>7} {'max ms':>7}")
    for wait in (20, 1500):
        lat = asyncio.run(measure(wait, args.rounds))
        p50, p95 = np.percentile(lat, [50, 95])
        print(f"{wait:>15} ms {len(lat):>6} {p50:7.0f} {p95:7.0f} {max(lat):7.0f}")


if __name__ == "__main__":
    main()
