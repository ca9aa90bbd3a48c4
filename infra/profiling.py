"""Where a worker's time goes under load: py-spy samples, summarised by area.

``voicestream bench --profile`` samples each worker process with py-spy
(``py-spy record --format raw``: one line per distinct stack with its sample
count, every thread) while the load runs, and :func:`summarise` turns the
samples into shares: per *area* (model inference in onnxruntime, the Kafka
client and Faust, our message decoding, the stages' own code, the event
loop waiting on its sockets), per thread role, and the functions that hold
the most samples themselves. The summary goes into ``bench.json`` and the
report, so that a saturated run names what saturated it.
"""

from __future__ import annotations

import collections
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

#: Samples per second py-spy takes.
RATE_HZ = 50
#: Areas, first match wins: (name, substrings of a frame's file path or function).
AREAS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("waiting (event loop select)", ("selectors.py",)),
    ("model inference (onnxruntime)", ("onnxruntime",)),
    ("message decoding (streams.codec / schema)", ("streams/codec.py", "streams/schema.py",
                                                   "msgpack", "orjson")),
    ("Kafka client (aiokafka)", ("aiokafka",)),
    ("Faust streams and agents", ("faust/", "mode/")),
    ("stages (agents/, models/)", ("agents/", "models/")),
)


class Sampler:
    """A py-spy process recording one pid for ``seconds``, started at once."""

    def __init__(self, pid: int, seconds: float, out: Path) -> None:
        self.out = out
        self.error = ""
        self.proc: subprocess.Popen[bytes] | None = None
        self.started = time.monotonic()
        self.limit_s = max(1, round(seconds))
        # Installed beside this interpreter (a virtualenv's bin/), or on PATH.
        beside = Path(sys.executable).parent / "py-spy"
        exe = str(beside) if beside.exists() else shutil.which("py-spy")
        if exe is None:
            self.error = "py-spy is not installed (pip install py-spy==0.4.3)"
            return
        out.parent.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [exe, "record", "-p", str(pid), "-d", str(self.limit_s), "-r",
             str(RATE_HZ), "-f", "raw", "-o", str(out), "--nonblocking"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def finish(self, timeout_s: float = 60.0) -> dict[str, Any]:
        """Stop py-spy (it writes what it has on SIGINT); return :func:`summarise` of its
        samples, or why there are none."""
        wall_s = min(time.monotonic() - self.started, self.limit_s)
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGINT)
            try:
                _, err = self.proc.communicate(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                _, err = self.proc.communicate()
            if self.proc.returncode != 0 and not self.out.exists():
                lines = err.decode(errors="replace").strip().splitlines()
                self.error = lines[-1] if lines else f"py-spy exited {self.proc.returncode}"
        if self.error or not self.out.exists():
            return {"error": self.error or "py-spy wrote nothing"}
        return summarise(self.out.read_text().splitlines(), wall_s)


def _frame_area(frame: str) -> str | None:
    for area, marks in AREAS:
        if any(m in frame for m in marks):
            return area
    return None


#: Executor threads by the model their stack runs, first match wins.
_EXECUTORS = (("ASR thread (Whisper)", ("models/whisper/", "models/asr.py")),
              ("VAD thread (end-pointer)", ("models/vad.py",)),
              ("NLU thread", ("models/nlu/", "agents/nlu.py")))


def _thread_role(frames: list[str]) -> str:
    joined = ";".join(frames)
    if "concurrent/futures/thread.py" in joined:
        return next((role for role, marks in _EXECUTORS if any(m in joined for m in marks)),
                    "other executor threads")
    if "run_forever" in joined or "run_until_complete" in joined:
        return "event loop (main thread)"
    return "other threads"


def summarise(lines: list[str], wall_s: float | None = None, top: int = 8) -> dict[str, Any]:
    """Shares of the samples in py-spy raw lines (``frame;frame;... count``).

    A sample counts for the area of its innermost frame that has one (so time in
    onnxruntime called by a stage counts as inference); ``top_self`` is the
    innermost frames themselves. With ``wall_s`` (how long py-spy sampled),
    ``busy`` gives each thread role's busy share of that time (1.0: one thread
    always running; the event loop waiting in ``select`` does not count) and
    ``role_areas`` where each role spent its samples.
    """
    total = 0
    areas: collections.Counter[str] = collections.Counter()
    roles: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    by_role: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    working: collections.Counter[str] = collections.Counter()
    for line in lines:
        stack, _, count = line.rstrip().rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = stack.split(";")
        total += n
        area = next((a for a in map(_frame_area, reversed(frames)) if a is not None), "other")
        role = _thread_role(frames)
        areas[area] += n
        roles[role] += n
        by_role[role][area] += n
        if not area.startswith("waiting"):
            working[role] += n
        own[frames[-1]] += n
    if not total:
        return {"samples": 0}

    def shares(counter: collections.Counter[str], k: int | None = None) -> dict[str, float]:
        whole = sum(counter.values())
        return {name: round(n / whole, 3) for name, n in counter.most_common(k)}

    out: dict[str, Any] = {
        "samples": total, "seconds_sampled": round(total / RATE_HZ, 1),
        "areas": shares(areas), "threads": shares(roles), "top_self": shares(own, top),
        "role_areas": {role: shares(c) for role, c in by_role.items()}}
    if wall_s:
        out["wall_s"] = round(wall_s, 1)
        out["busy"] = {role: round(n / RATE_HZ / wall_s, 2)
                       for role, n in working.most_common()}
    return out


def bottleneck(profile: dict[str, Any]) -> str | None:
    """What limits the worker, in words: its busiest thread role with how busy it was,
    and that role's busiest area that is not waiting, e.g. ``"event loop (main thread)
    busy 97 %, most in Faust streams and agents (31 %)"``; None without samples."""
    if not profile.get("samples"):
        return None
    busy: dict[str, float] = profile.get("busy") or profile["threads"]
    role = max(busy, key=busy.__getitem__)
    inside = {a: v for a, v in profile["role_areas"].get(role, {}).items()
              if not a.startswith("waiting")}
    head = f"{role} busy {busy[role]:.0%}" if "busy" in profile else role
    if not inside:
        return head
    area = max(inside, key=inside.__getitem__)
    return f"{head}, most in {area} ({inside[area]:.0%})"
