"""Record live traffic, replay it with --check: it passes, and fails readably after a change."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer

from infra.replay import load, record
from streams import identity, topics
from streams.client import DeviceClient, EventWatcher, read_wav
from streams.schema import MessageType
from tests.conftest import VOICESTREAM, connection, env_with

pytestmark = pytest.mark.broker


@pytest.fixture(scope="module")
def recording(stack: str, speech: dict[str, Path],
              tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("rec") / "session.jsonl"
    bootstrap = connection(stack)

    async def run() -> None:
        stop, started = asyncio.Event(), asyncio.Event()
        task = asyncio.create_task(record(bootstrap, out, stop=stop, started=started))
        await started.wait()
        async with EventWatcher(bootstrap) as watch:
            for name, device in (("paused", "rec-1"), ("whole", "rec-2"), ("silent", "rec-3")):
                async with DeviceClient(bootstrap, device) as dev:
                    done = asyncio.Event()
                    utt = await dev.stream(*read_wav(speech[name]), realtime=False, done=done)
                    _ = [m async for m in watch.events(utt, timeout_s=30)]
        producer = AIOKafkaProducer(**bootstrap.producer())
        await producer.start()
        await producer.send_and_wait(topics.AUDIO.name(topics.DEFAULT_PREFIX), b"\xc1junk",
                                     key=b"rec-4")
        await producer.stop()
        await asyncio.sleep(1.0)  # let the dead letter land in the recording
        stop.set()
        await task

    asyncio.run(run())
    return out


def replay(path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*VOICESTREAM, "replay", str(path), "--check", "--speed", "4"],
                          capture_output=True, text=True, timeout=180, env=env_with(**env))


def test_recording_holds_inputs_and_outputs(recording: Path) -> None:
    inputs, outputs = load(recording)
    assert {r["topic"] for r in inputs} == {"audio"}
    assert {r["topic"] for r in outputs} == {"endpoints", "transcripts", "interpretations",
                                             "directives", "deadletter"}
    assert sum(r["topic"] == "endpoints" for r in outputs) == 4 + 2 + 1
    # Two transcripts each for two utterances, and the reset forwarded in band; the
    # cancelled revision's transcript is there when its decode beat the reset (CI saw
    # both orders). Partial transcripts come when the recogniser was idle: how many is
    # timing.
    transcripts = [r["message"] for r in outputs if r["topic"] == "transcripts"
                   and r["message"].TYPE is not MessageType.PARTIAL]
    cancelled = {(m.utterance_id, m.cancelled_revision) for m in transcripts
                 if m.TYPE is MessageType.RESET}
    kept = [m for m in transcripts if m.TYPE is MessageType.TRANSCRIPT
            and (m.utterance_id, m.revision) not in cancelled]
    assert (len(kept), len(cancelled)) == (2 + 2, 1)
    # The silent utterance's coded error, forwarded in band from the end-pointer.
    errors = [m for m in transcripts if m.TYPE is MessageType.ERROR]
    assert [m.device_id for m in errors] == ["rec-3"]
    # The rest: at most the cancelled revision's own transcript, and nothing else.
    rest = [m for m in transcripts if m not in kept and m.TYPE not in
            (MessageType.RESET, MessageType.ERROR)]
    assert all(m.TYPE is MessageType.TRANSCRIPT and (m.utterance_id, m.revision) in cancelled
               for m in rest)
    assert len(rest) <= 1


def test_replay_check_passes_on_unchanged_code(recording: Path) -> None:
    run = replay(recording)
    assert run.returncode == 0, run.stdout + run.stderr[-3000:]
    assert "outputs match" in run.stdout


def test_replay_check_fails_with_a_diff_after_a_threshold_change(recording: Path) -> None:
    run = replay(recording, VOICESTREAM_ENDPOINTER__FINAL_SILENCE_MS="1200")
    assert run.returncode == 1
    assert "outputs differ" in run.stderr
    diff = run.stdout
    assert "--- recorded: utterance" in diff and "+++ replayed: utterance" in diff
    changed = [line for line in diff.splitlines() if line.startswith(("-{", "+{"))]
    assert changed and all('"t_ms"' in line for line in changed)


def test_partial_utterances_at_the_edges_are_left_out(recording: Path, tmp_path: Path) -> None:
    full_inputs, full_outputs = load(recording)
    first = next(r for r in full_inputs if r["message"] is not None
                 and r["message"].TYPE.value == "utterance-start")
    victim = first["message"].utterance_id
    # A recording that began just after that utterance's start message.
    lines = recording.read_text().splitlines()
    cut = tmp_path / "cut.jsonl"
    cut.write_text("\n".join(x for x in lines if not (
        f'"offset": {first["offset"]},' in x and '"topic": "audio"' in x
        and f'"partition": {first["partition"]},' in x)) + "\n")
    inputs, outputs = load(cut)
    utts = {getattr(r["message"], "utterance_id", None) for r in inputs + outputs}
    assert victim not in utts
    kept = {getattr(r["message"], "utterance_id", None) for r in full_inputs + full_outputs}
    assert utts == kept - {victim}


def test_transcripts_of_reset_revisions_are_not_compared() -> None:
    from infra.replay import _group

    events = [
        {"type": "endpoint", "utterance_id": "u", "kind": "speculative", "revision": 0},
        {"type": "transcript", "utterance_id": "u", "kind": "speculative", "revision": 0},
        {"type": "reset", "utterance_id": "u", "cancelled_revision": 0},
        {"type": "transcript", "utterance_id": "u", "kind": "final", "revision": 1},
    ]
    lines = _group(events)["utterance u"]
    assert len(lines) == 3 and all('"revision": 0, "type": "transcript"' not in x
                                   for x in lines)


@pytest.mark.parametrize("signing", [False, True], ids=["trusted", "signed"])
def test_recorded_demo_session_replays_unchanged(signing: bool, tmp_path: Path) -> None:
    """The bundled demo session (``voicestream demo --record tests/data/demo_session.jsonl``)
    replays on a fresh embedded broker, worker and skills with the same pipeline outputs.

    ``signed``: the worker requires device signatures (and seals replies); the
    replay signs each re-tagged input as its device with the master key.
    """
    env: dict[str, str] = {}
    if signing:
        identity.new_master_key(tmp_path / "master.key")
        env["VOICESTREAM_DEVICE_KEYS_FILE"] = str(tmp_path / "master.key")
    session = Path(__file__).resolve().parents[1] / "data" / "demo_session.jsonl"
    inputs, outputs = load(session)
    assert {r["topic"] for r in inputs} == {"audio", "context"}
    kinds = {r["message"].TYPE.value for r in outputs}
    assert {"directive", "declined", "reset", "interpretation"} <= kinds
    run = subprocess.run([*VOICESTREAM, "replay", str(session), "--check"],
                         capture_output=True, text=True, timeout=300, env=env_with(**env))
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert "outputs match" in run.stdout
