"""`voicestream context`, `listen` and the Subscriber helper against the running stack."""

from __future__ import annotations

import asyncio
import json
import subprocess
import threading
import time
from pathlib import Path

import pytest

from streams import topics
from streams.client import EventWatcher, Subscriber
from streams.connection import Connection
from streams.context import DeviceContext
from tests.conftest import VOICESTREAM, Process, connection, env_with, send

pytestmark = pytest.mark.broker


def bootstrap_of(url: str) -> Connection:
    return connection(url)


async def test_context_command_publishes_a_device_context(stack: str, tmp_path: Path) -> None:
    async with EventWatcher(bootstrap_of(stack), specs=[topics.CONTEXT]) as watch:
        args = [*VOICESTREAM, "context", "--device", "oven-room", "--set", "has_screen=true",
                "--set", "states.oven=on", "--set", "contacts=Ada Lovelace, Bob",
                "--broker", stack]
        run = await asyncio.to_thread(subprocess.run, args, capture_output=True, text=True,
                                      timeout=60, env=env_with())
        assert run.returncode == 0, run.stderr
        async with asyncio.timeout(20):
            async for _topic, message in watch.messages():
                if isinstance(message, DeviceContext) and message.device_id == "oven-room":
                    break
    assert message.has_screen is True and message.states == {"oven": "on"}
    assert message.contacts == ("Ada Lovelace", "Bob")


def test_context_command_rejects_bad_input(stack: str) -> None:
    run = subprocess.run([*VOICESTREAM, "context", "--device", "d", "--set", "nonsense",
                          "--broker", stack], capture_output=True, text=True, timeout=60,
                         env=env_with())
    assert run.returncode == 2 and "KEY=VALUE" in run.stderr


def test_listen_prints_events_as_json(stack: str, speech: dict[str, Path]) -> None:
    listener = Process(["listen", "--json", "--broker", stack], env_with())
    try:
        deadline = time.monotonic() + 30
        while not any(x.startswith("listening to") for x in listener.stderr):
            assert time.monotonic() < deadline, listener.stderr
            threading.Event().wait(0.05)
        code, events = send(stack, speech["whole"], "listened-1", "--fast")
        assert code == 0
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            seen = [json.loads(x) for x in listener.lines if x.startswith("{")]
            mine = [e for e in seen if e.get("device_id") == "listened-1"]
            if len(mine) >= len(events):
                break
            threading.Event().wait(0.1)
        # The same events; topics are read independently, so compare them unordered.
        def kinds(es: list[dict[str, object]]) -> list[tuple[str, str]]:
            return sorted((str(e["type"]), str(e.get("kind", ""))) for e in es)

        assert kinds(mine) == kinds(events)
    finally:
        listener.kill()


async def test_subscriber_resumes_after_its_last_commit(stack: str,
                                                        speech: dict[str, Path]) -> None:
    code, events = send(stack, speech["whole"], "sub-1", "--fast")
    assert code == 0
    utt = events[0]["utterance_id"]
    seen: list[str] = []
    async with Subscriber(bootstrap_of(stack), "test-skill", [topics.ENDPOINTS]) as sub:
        async with asyncio.timeout(30):
            async for d in sub:
                if getattr(d.message, "utterance_id", None) == utt:
                    seen.append(d.message.kind.value)  # type: ignore[union-attr]
                    if len(seen) == 1:
                        await sub.commit(d)  # handled the speculative only, then "crash"
                        break
    async with Subscriber(bootstrap_of(stack), "test-skill", [topics.ENDPOINTS]) as sub:
        async with asyncio.timeout(30):
            async for d in sub:
                if getattr(d.message, "utterance_id", None) == utt:
                    seen.append(d.message.kind.value)  # type: ignore[union-attr]
                    break
    assert seen == ["speculative", "final"]
