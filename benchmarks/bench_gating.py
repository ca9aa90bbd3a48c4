"""What release gating costs and what it saves, in one run, side by side.

Streams spoken MASSIVE dev requests (the end-pointing evaluation set: most
have a 100-800 ms mid-sentence pause) in real time from several devices at
once through the embedded broker, a worker and the example skills. Per
utterance it records when each event arrived. Then it compares:

* **gated** (what runs): a directive is released when the final end-point
  confirms its revision; the cost is the wait from the speculative decision
  to the release (``held_ms``, and the wall time between the two events);
* **immediate** (what gating prevents): the decision made on the first
  speculative interpretation would have been released at once; the benefit is
  every such decision whose revision was then reset (an action on a request
  the user had not finished) or that differs from the final decision.

Run: python benchmarks/bench_gating.py [--utterances 40] [--devices 4]
(builds the set with ``voicestream eval endpoint`` first if it is missing).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from infra import logs
from infra.config import Settings
from infra.eval_endpoint import build
from infra.runner import broker_for, running_skills, running_worker, warmed_up
from streams.client import DeviceClient, EventWatcher, event_json, read_wav, stream_and_watch

DATA = Path(".voicestream/eval-endpoint")


@dataclasses.dataclass
class Trace:
    """Arrival times (monotonic s) of one utterance's events, with the events."""

    events: list[tuple[float, dict[str, Any]]] = dataclasses.field(default_factory=list)

    def first(self, type_: str, kind: str | None = None) -> tuple[float, dict[str, Any]] | None:
        return next(((t, e) for t, e in self.events if e["type"] == type_
                     and (kind is None or e.get("kind") == kind)), None)


async def run(wavs: list[Path], devices: int) -> list[Trace]:
    settings = dataclasses.replace(Settings(data_dir=".voicestream/bench"), log_level="error")
    traces: list[Trace] = []
    async with broker_for(settings) as profile, running_worker(settings, profile) as worker, \
            running_skills(settings, profile) as skills:
        await warmed_up(worker, skills)

        async def device(k: int) -> None:
            async with DeviceClient(profile.connection, f"gate-{k}") as dev, \
                    EventWatcher(profile.connection) as watch:
                for i in range(k, len(wavs), devices):
                    trace = Trace()
                    pcm, rate = read_wav(wavs[i])
                    async for m in stream_and_watch(dev, watch, pcm, rate,
                                                    utterance_id=f"gate-{i}-{time.time_ns()}"):
                        trace.events.append((time.monotonic(), event_json(m)))
                    traces.append(trace)

        await asyncio.gather(*(device(k) for k in range(devices)))
    return traces


def _decision(e: dict[str, Any]) -> tuple[str, str]:
    return (e.get("skill") or f"declined:{e.get('reason')}", e.get("intent", ""))


def report(traces: list[Trace]) -> dict[str, Any]:
    held, waits = [], []
    wrong_cancelled = wrong_changed = with_reset = decided = 0
    for tr in traces:
        final = tr.first("directive") or tr.first("declined")
        if final is None:
            continue
        decided += 1
        resets = {e["cancelled_revision"] for _, e in tr.events if e["type"] == "reset"}
        with_reset += bool(resets)
        if final[1]["type"] == "directive":
            held.append(final[1]["held_ms"])
        released = final[1]["revision"]
        spec = next(((t, e) for t, e in tr.events if e["type"] == "interpretation"
                     and e["kind"] == "speculative" and e["revision"] == released), None)
        if spec is not None:
            waits.append((final[0] - spec[0]) * 1000)
        first_spec = tr.first("interpretation", "speculative")
        if first_spec is None:
            continue
        first = first_spec[1]
        if first["revision"] in resets:
            wrong_cancelled += 1  # immediate release would have acted on an unfinished request
        elif first["revision"] == released and first["interpretations"] and \
                first["interpretations"][0]["intent"] != final[1].get("intent"):
            wrong_changed += 1

    def pct(x: list[float], q: float) -> float | None:
        return round(float(np.percentile(x, q)), 1) if x else None

    return {
        "utterances": len(traces), "decided": decided, "with_reset": with_reset,
        "gated": {"held_ms_p50": pct(held, 50), "held_ms_p95": pct(held, 95),
                  "speculative_to_release_ms_p50": pct(waits, 50),
                  "speculative_to_release_ms_p95": pct(waits, 95),
                  "actions_on_cancelled_revisions": 0},
        "immediate": {"extra_latency_ms": 0,
                      "actions_on_cancelled_revisions": wrong_cancelled,
                      "share_of_decided": round(wrong_cancelled / max(decided, 1), 3),
                      "first_decision_differs_from_final": wrong_changed},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--utterances", type=int, default=40)
    parser.add_argument("--devices", type=int, default=4)
    args = parser.parse_args()
    if not (DATA / "labels.jsonl").exists():
        build(DATA, Path("../shared/data"))
    logs.configure("console", "error")
    traces = asyncio.run(run(sorted(DATA.glob("*.wav"))[:args.utterances], args.devices))
    print(json.dumps(report(traces), indent=2))


if __name__ == "__main__":
    main()
