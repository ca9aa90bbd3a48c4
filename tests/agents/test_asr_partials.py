"""Partial transcripts: sent while the user speaks, only on an idle thread, never after
their revision's speculative transcript."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from agents.asr import AsrService
from agents.base import CpuPressure
from infra.config import Settings
from models.asr import Float32Array, Hypothesis
from streams.asr import Partial, Transcript
from streams.audio import AudioFrame, UtteranceStart
from streams.codec import Codec, encode
from tests.agents.test_asr import SPEC, ScriptedEngine, Sent, endpoint_event, ep, origin, reset

#: A 440 Hz tone at about -20 dBFS: speech to the level gate.
TONE = (0.1 * np.sin(2 * np.pi * 440 * np.arange(320) / 16000) * 32767).astype("<i2").tobytes()
QUIET = bytes(640)


class PartialScripted(ScriptedEngine):
    """A scripted engine with partials; ``hold`` keeps a partial running until set."""

    def __init__(self) -> None:
        super().__init__()
        self.partial_calls: list[int] = []
        self.hold: threading.Event | None = None
        self.started = threading.Event()
        self.stopped = 0

    def partial(self, audio: Float32Array, *, phrases: Sequence[str] = (),
                bias_weight: float = 0.0, language: str = "en",
                stop: Callable[[], bool] | None = None) -> Hypothesis | None:
        self.partial_calls.append(audio.size)
        self.started.set()
        if self.hold is not None:
            # Like the decoder's steps: ask ``stop`` until released.
            while not self.hold.wait(0.005):
                if stop is not None and stop():
                    self.stopped += 1
                    return None
        return Hypothesis(f"so far {audio.size}", -0.2)


async def start(svc: AsrService, utt: str = "u") -> None:
    await svc.on_audio(origin(), encode(UtteranceStart(device_id="d", utterance_id=utt,
                                                       sample_rate_hz=16000), Codec.MSGPACK))


async def frames(svc: AsrService, pcm: bytes, seconds: float, *, utt: str = "u",
                 first_seq: int = 0) -> int:
    """Send ``seconds`` of 20 ms frames, letting partial decodes run as a worker would;
    return the next sequence number."""
    seq = first_seq
    for seq in range(first_seq, first_seq + int(seconds * 50)):
        await svc.on_audio(origin(), encode(AudioFrame(
            device_id="d", utterance_id=utt, seq=seq, pcm=pcm, sample_rate_hz=16000,
            audio_ms=seq * 20), Codec.MSGPACK))
        await partials_done(svc)
    return seq + 1


async def partials_done(svc: AsrService) -> None:
    for utt in list(svc.utterances.values()):
        task = utt.tasks.get(-1)
        if task is not None:
            await asyncio.gather(task, return_exceptions=True)


def partials(sent: Sent) -> list[Partial]:
    return [m for m in sent.messages if isinstance(m, Partial)]


def service(engine: ScriptedEngine, pressure: float | None = None,
            **settings: object) -> tuple[AsrService, Sent]:
    sent = Sent()
    svc = AsrService(Settings(**settings), sent, lambda: engine,  # type: ignore[arg-type]
                     pressure=lambda: pressure)
    svc.engine()  # loaded, as after the worker's warm-up
    return svc, sent


async def test_a_partial_every_half_second_of_speech_and_none_for_silence() -> None:
    engine = PartialScripted()
    svc, sent = service(engine)
    await start(svc)
    seq = await frames(svc, QUIET, 1.0)
    assert partials(sent) == []  # a second of silence: nothing to say
    await frames(svc, TONE, 1.6, first_seq=seq)
    got = partials(sent)
    assert [p.seq for p in got] == [0, 1, 2]
    assert {p.revision for p in got} == {0}
    # Each covers the audio so far: 1 s of silence then 0.5, 1.0, 1.5 s of speech.
    assert [p.t_ms for p in got] == [1500, 2000, 2500]
    assert got[0].text == "so far 24000" and got[0].engine == "scripted"
    assert engine.calls == []  # no end-point yet: nothing but partials decoded


async def test_partials_stop_at_the_end_point_and_resume_with_the_next_revision() -> None:
    engine = PartialScripted()
    svc, sent = service(engine)
    await start(svc)
    seq = await frames(svc, TONE, 1.0)
    await endpoint_event(svc, ep(SPEC, 0, at=1000, t=1300))
    await asyncio.gather(*svc.utterances["u"].tasks.values())
    seq = await frames(svc, TONE, 1.0, first_seq=seq)  # the user goes on speaking
    assert [p.revision for p in partials(sent)] == [0, 0]
    await endpoint_event(svc, reset(0))
    await frames(svc, TONE, 1.0, first_seq=seq)
    revisions = [(type(m).__name__, m.revision) for m in sent.messages
                 if isinstance(m, Partial | Transcript)]
    assert revisions == [("Partial", 0), ("Partial", 0), ("Transcript", 0),
                         ("Partial", 1), ("Partial", 1)]


async def test_a_partial_running_when_its_revision_is_end_pointed_is_dropped() -> None:
    engine = PartialScripted()
    engine.hold = threading.Event()
    svc, sent = service(engine)
    await start(svc)
    await frames(svc, TONE, 0.48)
    await svc.on_audio(origin(), encode(AudioFrame(
        device_id="d", utterance_id="u", seq=24, pcm=TONE, sample_rate_hz=16000,
        audio_ms=480), Codec.MSGPACK))
    partial = svc.utterances["u"].tasks[-1]
    assert await asyncio.to_thread(engine.started.wait, 5)  # running on the model's thread
    await endpoint_event(svc, ep(SPEC, 0, at=300, t=500))
    await asyncio.wait_for(asyncio.gather(partial, *svc.utterances["u"].tasks.values()), 5)
    assert engine.stopped == 1  # asked to stop between steps, not run to its end
    assert partials(sent) == []
    assert [(type(m).__name__, m.revision) for m in sent.messages] == [("Transcript", 0)]


async def test_a_partial_gives_way_to_another_utterances_end_point() -> None:
    engine = PartialScripted()
    engine.hold = threading.Event()
    svc, sent = service(engine)
    await start(svc, "talking")
    await start(svc, "done")
    await frames(svc, QUIET, 0.6, utt="done")
    await frames(svc, TONE, 0.48, utt="talking")
    await svc.on_audio(origin(), encode(AudioFrame(
        device_id="d", utterance_id="talking", seq=24, pcm=TONE, sample_rate_hz=16000,
        audio_ms=480), Codec.MSGPACK))
    assert await asyncio.to_thread(engine.started.wait, 5)
    # Another utterance's end-point queues a decode: the partial stops for it.
    await endpoint_event(svc, ep(SPEC, 0, at=300, t=300, utt="done"))
    await asyncio.wait_for(asyncio.gather(*svc.utterances["talking"].tasks.values(),
                                          *svc.utterances["done"].tasks.values()), 5)
    assert engine.stopped == 1
    assert [(type(m).__name__, m.utterance_id) for m in sent.messages] == \
        [("Transcript", "done")]


async def test_no_partial_starts_while_the_thread_is_busy() -> None:
    engine = PartialScripted()
    svc, sent = service(engine)
    await start(svc)
    svc.queue.pending = 1  # another utterance's decode is running
    await frames(svc, TONE, 1.0)
    assert engine.partial_calls == [] and partials(sent) == []
    svc.queue.pending = 0
    await frames(svc, TONE, 0.02, first_seq=50)  # the next frame finds it idle
    assert len(partials(sent)) == 1 and partials(sent)[0].t_ms == 1020


async def test_partials_off_and_engines_without_them_send_none() -> None:
    engine = PartialScripted()
    svc, sent = service(engine, asr_partial_ms=0)
    await start(svc)
    await frames(svc, TONE, 1.5)
    assert partials(sent) == [] and engine.partial_calls == []
    plain = ScriptedEngine()  # no partial method: PocketSphinx is such an engine
    svc, sent = service(plain)
    await start(svc)
    await frames(svc, TONE, 1.5)
    assert partials(sent) == []


async def test_partials_are_shed_while_the_cpu_is_under_pressure() -> None:
    engine = PartialScripted()
    svc, sent = service(engine, pressure=35.0)  # the default limit is 25 %
    await start(svc)
    await frames(svc, TONE, 1.5)
    assert partials(sent) == [] and engine.partial_calls == []
    assert svc.partials_shed == 3  # one per half second of speech
    svc.pressure = lambda: 4.0
    await frames(svc, TONE, 0.5, first_seq=75)
    assert [p.t_ms for p in partials(sent)] == [2000]
    svc, sent = service(engine, pressure=35.0, asr_partial_max_cpu_pressure=100.0)
    await start(svc)
    await frames(svc, TONE, 0.5)
    assert len(partials(sent)) == 1  # 100 %: never shed


def test_cpu_pressure_is_read_from_the_kernels_pressure_file(tmp_path: Path) -> None:
    psi = tmp_path / "cpu.pressure"
    psi.write_text("some avg10=12.50 avg60=3.00 avg300=1.00 total=123\n"
                   "full avg10=0.00 avg60=0.00 avg300=0.00 total=0\n")
    now = [0.0]
    pressure = CpuPressure((tmp_path / "missing", psi), clock=lambda: now[0])
    assert pressure() == 12.5
    psi.write_text("some avg10=0.40 avg60=3.00 avg300=1.00 total=124\n")
    assert pressure() == 12.5  # read at most once a second
    now[0] = 1.5
    assert pressure() == 0.4
    psi.write_text("garbage\n")
    now[0] = 3.0
    assert pressure() is None
    assert CpuPressure((tmp_path / "missing",))() is None  # no PSI: no guard
