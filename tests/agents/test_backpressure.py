"""Backpressure: bounded model queues, ``overloaded`` for new utterances, skipped stale work."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from agents.asr import AsrService
from agents.base import ModelQueue, Once, Overloaded, Skipped
from infra.config import Settings
from models.asr import Float32Array, Hypothesis
from streams.control import ErrorEvent
from streams.endpoint import Reset, ResetReason
from tests.agents.test_asr import FINAL, SPEC, Sent, endpoint_event, ep, feed_audio, reset


class HeldEngine:
    """An engine that decodes only when the test lets it, one call at a time."""

    name = "held"

    def __init__(self) -> None:
        self.go = threading.Semaphore(0)
        self.calls: list[int] = []

    def transcribe(self, audio: Float32Array, **_: Any) -> list[Hypothesis]:
        assert self.go.acquire(timeout=10), "the test never let the decode run"
        self.calls.append(audio.size)
        return [Hypothesis("turn on the light", -0.1)]


def transcripts(sent: Sent) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for m in sent.messages:
        label = m.code if isinstance(m, ErrorEvent) else \
            "reset" if isinstance(m, Reset) else m.kind.value
        out.setdefault(m.utterance_id, []).append(label)
    return out


async def until(condition: Any, timeout_s: float = 5.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not condition():  # noqa: ASYNC110  (state that threads change)
            await asyncio.sleep(0.01)


async def test_past_the_queue_limit_new_utterances_are_refused_and_old_ones_finish() -> None:
    sent, engine = Sent(), HeldEngine()
    loaded_on: list[str] = []

    def factory() -> HeldEngine:
        loaded_on.append(threading.current_thread().name)
        return engine

    svc = AsrService(Settings(asr_queue_limit=2), sent, factory)
    for utt in ("a", "b", "c"):
        await feed_audio(svc, 1.5, utt=utt)
    for utt in ("a", "b", "c"):
        await endpoint_event(svc, ep(SPEC, 0, utt=utt))
    await until(lambda: svc.queue.pending == 2 and "c" not in svc.utterances)
    # c came third with two jobs queued: refused at once, with its outcome's code.
    assert transcripts(sent) == {"c": ["overloaded"]}
    # a, already taken on, goes ahead past the limit: its speech resumed, revision 1.
    await endpoint_event(svc, Reset(device_id="d", utterance_id="a", cancelled_revision=0,
                                    reason=ResetReason.SPEECH_RESUMED, t_ms=1100))
    await endpoint_event(svc, ep(SPEC, 1, at=1200, t=1400, utt="a"))
    await until(lambda: svc.queue.pending == 3)
    assert svc.queue.pending == 3 and svc.queue.refused == 1
    for _ in range(3):
        engine.go.release()
    for utt, rev in (("b", 0), ("a", 1)):
        await until(lambda u=utt: "speculative" in transcripts(sent).get(u, ()))  # type: ignore[misc]
        await endpoint_event(svc, ep(FINAL, rev, at=1000 + 200 * rev, t=1800, utt=utt))
    await until(lambda: svc.queue.pending == 0)
    got = transcripts(sent)
    assert got == {"a": ["reset", "speculative", "final"], "b": ["speculative", "final"],
                   "c": ["overloaded"]}
    assert [m.revision for m in sent.messages if m.utterance_id == "a"] == [0, 1, 1]
    assert svc.queue.refused == 1
    # The model loaded once, on the model's thread, not on the event loop.
    assert len(loaded_on) == 1 and loaded_on[0].startswith("asr")
    svc.close()


async def test_a_revision_reset_while_queued_is_never_decoded() -> None:
    sent, engine = Sent(), HeldEngine()
    svc = AsrService(Settings(), sent, lambda: engine)
    await feed_audio(svc, 2.0, utt="x")
    await feed_audio(svc, 2.0, utt="u")
    await endpoint_event(svc, ep(SPEC, 0, utt="x"))  # occupies the model's thread
    await until(lambda: svc.queue.pending == 1)
    await endpoint_event(svc, ep(SPEC, 0, utt="u"))
    await until(lambda: svc.queue.pending == 2)
    await endpoint_event(svc, reset(0))  # u's revision 0 is cancelled while it waits
    engine.go.release()  # x decodes
    await endpoint_event(svc, ep(SPEC, 1, at=1500, t=1700))
    engine.go.release()  # the next decode is u's revision 1, not the cancelled 0
    await until(lambda: svc.queue.pending == 0)
    assert len(engine.calls) == 2
    assert [m.revision for m in sent.messages if m.utterance_id == "u"] == [0, 1]  # reset, rev 1
    svc.close()


async def test_model_queue_counts_a_running_job_until_it_really_ends() -> None:
    queue = ModelQueue("test", limit=1)
    started, release = threading.Event(), threading.Event()

    def job() -> int:
        started.set()
        release.wait(5)
        return 7

    task = asyncio.create_task(queue.run("u1", job))
    await asyncio.to_thread(started.wait, 5)
    task.cancel()  # the awaiting task goes; the thread is still busy
    with pytest.raises(asyncio.CancelledError):
        await task
    with pytest.raises(Overloaded):
        await queue.run("u2", lambda: 1)
    release.set()
    await until(lambda: queue.pending == 0)
    assert await queue.run("u2", lambda: 2) == 2
    with pytest.raises(Skipped):
        await queue.run("u2", lambda: 3, wanted=lambda: False)
    queue.shutdown()


def test_once_loads_once_under_concurrent_first_use() -> None:
    calls: list[int] = []
    gate = threading.Barrier(4)

    def slow() -> object:
        calls.append(1)
        return object()

    once = Once(slow)
    values: list[object] = []

    def use() -> None:
        gate.wait(5)
        values.append(once.get())

    threads = [threading.Thread(target=use) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(5)
    assert len(calls) == 1 and len({id(v) for v in values}) == 1
