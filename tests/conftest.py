"""Shared fixtures: spoken test audio, and a running stack on each broker kind.

Tests that take ``stack`` (or ``broker_kind``) run once per broker: the
embedded Tansu broker and a 3-node Apache Kafka cluster (KRaft, started once
per session by :class:`infra.cluster.KafkaCluster`). ``VOICESTREAM_TEST_BROKERS``
(default ``tansu,kafka``) narrows the list, e.g. to ``tansu`` on a machine
without Java and Maven.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
import pytest

from infra.cluster import KafkaCluster
from infra.eval_endpoint import RATE, speak, voiced_bounds
from infra.process import VOICESTREAM, Process, env_with
from streams import jsonschema as schemas
from streams.connection import Connection

BROKERS = [b for b in os.environ.get("VOICESTREAM_TEST_BROKERS", "tansu,kafka").split(",") if b]
_unique = iter(range(1, 1_000_000))


def connection(url: str) -> Connection:
    """The SDK connection for a URL a ``voicestream`` command printed."""
    return Connection.parse(url)


def isolated(tmp_path: Path, url: str = "") -> dict[str, str]:
    """Environment of a worker of its own: a fresh group and topic prefix on a shared broker."""
    n = next(_unique)
    env = {"VOICESTREAM_DATA_DIR": str(tmp_path / f"w{n}"),
           "VOICESTREAM_APP_ID": f"vs-test-{os.getpid()}-{n}",
           "VOICESTREAM_TOPIC_PREFIX": f"t{os.getpid()}x{n}."}
    if url:
        env["VOICESTREAM_BROKER"] = url
    return env


def write_wav(path: Path, x: np.ndarray, rate: int = RATE) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((np.clip(x, -1, 1) * 32767).astype("<i2").tobytes())
    return path


def _trim(x: np.ndarray) -> np.ndarray:
    a, b = voiced_bounds(x)
    return x[a:b]


def _pad(x: np.ndarray, lead_ms: int = 300, tail_ms: int = 300) -> np.ndarray:
    z = lambda ms: np.zeros(ms * RATE // 1000, np.float32)  # noqa: E731
    return np.concatenate([z(lead_ms), x, z(tail_ms)])


@pytest.fixture(scope="session")
def speech(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """WAVs of one command: whole, with a 400 ms mid-sentence pause, silent, 8 kHz, long."""
    d = tmp_path_factory.mktemp("speech")
    first = _trim(speak("set a timer", "en-us", 160))
    second = _trim(speak("for ten minutes", "en-us", 160))
    whole = _trim(speak("set a timer for ten minutes", "en-us", 160))
    pause = np.zeros(400 * RATE // 1000, np.float32)
    import soxr

    out = {
        "whole": write_wav(d / "whole.wav", _pad(whole)),
        "paused": write_wav(d / "paused.wav", _pad(np.concatenate([first, pause, second]))),
        "silent": write_wav(d / "silent.wav", np.zeros(7 * RATE, np.float32)),
        "whole_8k": write_wav(d / "whole_8k.wav",
                              soxr.resample(_pad(whole), RATE, 8000).astype(np.float32), 8000),
        "long": write_wav(d / "long.wav", _pad(np.concatenate([whole, pause] * 4 + [whole]))),
        "call": write_wav(d / "call.wav", _pad(_trim(speak("call Siobhan Kowalczyk", "en-gb",
                                                           160)))),
    }
    return out


@pytest.fixture(scope="session")
def kafka_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaCluster]:
    """A 3-node Apache Kafka cluster on loopback for the whole session."""
    cluster = KafkaCluster(tmp_path_factory.mktemp("kafka"), 3)
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session", params=BROKERS)
def broker_kind(request: pytest.FixtureRequest) -> str:
    """``tansu`` or ``kafka``: the broker the test runs on."""
    return str(request.param)


@pytest.fixture
def broker_url(broker_kind: str, request: pytest.FixtureRequest,
               tmp_path: Path) -> Iterator[str]:
    """A broker of the test's own kind: a fresh Tansu, or the session's Kafka cluster."""
    if broker_kind == "kafka":
        cluster: KafkaCluster = request.getfixturevalue("kafka_cluster")
        yield cluster.url
        return
    proc = Process(["broker"], env_with())
    try:
        yield proc.wait_ready()
    finally:
        proc.kill()


@pytest.fixture(scope="session")
def stack(broker_kind: str, request: pytest.FixtureRequest,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``voicestream up --skills`` (worker and example skills); yields the broker URL.

    On Tansu the command starts its embedded broker; on Kafka it joins the
    session's cluster.
    """
    data = tmp_path_factory.mktemp(f"stack-{broker_kind}")
    env = {"VOICESTREAM_DATA_DIR": str(data)}
    if broker_kind == "kafka":
        cluster: KafkaCluster = request.getfixturevalue("kafka_cluster")
        env["VOICESTREAM_BROKER"] = cluster.url
    proc = Process(["up", "--skills"], env_with(**env))
    try:
        yield proc.wait_ready()
    finally:
        code = proc.stop()
        proc.kill()
        assert code == 0, "\n".join(proc.stderr[-20:])


def send(broker: str, wav: Path, device: str, *extra: str,
         timeout_s: float = 60) -> tuple[int, list[dict[str, object]]]:
    """Run ``voicestream send --json``; return its exit status and events."""
    run = subprocess.run(
        [*VOICESTREAM, "send", str(wav), "--device", device, "--broker", broker, "--json",
         *extra], capture_output=True, text=True, timeout=timeout_s, env=env_with())
    events = [json.loads(line) for line in run.stdout.splitlines() if line.startswith("{")]
    for event in events:  # every event a device sees is what the contract's schema says
        jsonschema.validate(event, event_schema(event["type"]))
    return run.returncode, events


@functools.cache
def event_schema(message_type: str) -> dict[str, Any]:
    return schemas.load(message_type)
