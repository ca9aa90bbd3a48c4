"""A ``voicestream`` CLI command run as a child process, for tests and benchmarks.

Its stdout and stderr are read by threads so that the child never blocks on a
full pipe; callers wait for the ``ready`` line, read the JSON log events it
wrote, stop it with SIGTERM or kill it with SIGKILL.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

VOICESTREAM = [sys.executable, "-m", "infra.cli"]


def env_with(**values: str) -> dict[str, str]:
    """This process's environment without a broker, with JSON logs and ``values``."""
    env = dict(os.environ)
    env.pop("VOICESTREAM_BROKER", None)
    env.update({"VOICESTREAM_LOG_FORMAT": "json", **values})
    return env


class Process:
    """A voicestream CLI process whose stdout lines we can wait for."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(VOICESTREAM + args, env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        self.stderr: list[str] = []
        self._ready = threading.Event()
        threading.Thread(target=self._read_out, daemon=True).start()
        threading.Thread(target=self._read_err, daemon=True).start()

    def _read_out(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))
            if line.strip() == "ready":
                self._ready.set()
        self._ready.set()

    def _read_err(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.stderr.append(line.rstrip("\n"))

    def wait_ready(self, timeout_s: float = 90.0) -> str:
        """Wait for 'ready'; return the broker URL printed before it ('' if none was)."""
        if not self._ready.wait(timeout_s) or "ready" not in self.lines:
            self.kill()
            raise RuntimeError("not ready:\n" + "\n".join(self.lines + self.stderr[-30:]))
        return next((x.split(" ", 1)[1] for x in self.lines if x.startswith("broker: ")), "")

    def events(self, event: str) -> list[dict[str, object]]:
        """Return the JSON log lines written so far whose event is ``event``."""
        out = []
        for line in list(self.stderr):
            if line.startswith("{"):
                data = json.loads(line)
                if data.get("event") == event:
                    out.append(data)
        return out

    def log_events(self, event: str, timeout_s: float = 10.0) -> list[dict[str, object]]:
        """Return this process's JSON log lines whose event is ``event``, waiting for one."""
        deadline = time.monotonic() + timeout_s
        while True:
            out = self.events(event)
            if out or time.monotonic() > deadline:
                return out
            threading.Event().wait(0.05)

    def terminate(self) -> None:
        """Send SIGTERM without waiting."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    def stop(self, timeout_s: float = 30.0) -> int:
        """SIGTERM, then wait for the exit status."""
        self.terminate()
        return self.proc.wait(timeout_s)

    def kill(self) -> None:
        """SIGKILL (if still running) and reap."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
