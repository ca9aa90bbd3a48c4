"""ASR through the CLI contract: n-best transcripts, and names recovered from device context."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.conftest import VOICESTREAM, env_with, send

pytestmark = pytest.mark.broker


def transcripts(events: list[dict[str, object]]) -> list[dict[str, object]]:
    return [e for e in events if e["type"] == "transcript"]


def best(event: dict[str, object]) -> str:
    nbest = event["nbest"]
    assert isinstance(nbest, list) and nbest
    return str(nbest[0]["text"])


def test_spoken_command_gives_an_nbest_transcript(stack: str,
                                                  speech: dict[str, Path]) -> None:
    code, events = send(stack, speech["whole"], "asr-1", "--fast")
    assert code == 0
    spec, final = transcripts(events)
    assert (spec["kind"], final["kind"]) == ("speculative", "final")
    assert spec["revision"] == final["revision"] == 0
    assert spec["nbest"] == final["nbest"]  # the final reuses the speculative decode
    nbest = final["nbest"]
    assert isinstance(nbest, list) and 1 < len(nbest) <= 5
    assert all({"text", "score"} <= set(h) for h in nbest)
    assert "timer" in best(final).lower()
    # Then the arbiter's decision, exactly one (topics interleave, so not always last).
    assert sum(e["type"] in ("directive", "declined") for e in events) == 1


def test_paused_command_is_transcribed_once_for_the_confirmed_revision(
        stack: str, speech: dict[str, Path]) -> None:
    code, events = send(stack, speech["paused"], "asr-2")  # real time: revision 0 decodes
    assert code == 0
    assert [e["revision"] for e in events if e["type"] == "reset"] == [0]
    # Revision 0 may have a speculative transcript (its decode can cross the reset in
    # flight) but never a final one; revision 1 gets exactly one of each.
    kinds = [(e["kind"], e["revision"]) for e in transcripts(events)]
    assert ("final", 0) not in kinds
    assert [k for k in kinds if k[1] == 1] == [("speculative", 1), ("final", 1)]
    assert "ten minutes" in best(transcripts(events)[-1]).lower().replace("10", "ten")


def test_contact_name_is_recognised_only_with_context(stack: str,
                                                      speech: dict[str, Path]) -> None:
    run = subprocess.run(
        [*VOICESTREAM, "context", "--device", "asr-ctx", "--broker", stack,
         "--set", "contacts=Siobhan Kowalczyk,Ada Lovelace"],
        capture_output=True, text=True, timeout=60, env=env_with())
    assert run.returncode == 0, run.stderr
    _, with_context = send(stack, speech["call"], "asr-ctx")
    _, without = send(stack, speech["call"], "asr-no-ctx")
    biased = transcripts(with_context)[-1]
    assert "Siobhan Kowalczyk" in best(biased)
    assert biased["biased_phrases"] == 2
    assert "Kowalczyk" not in best(transcripts(without)[-1])


@pytest.mark.parametrize("kind", ["clipped", "very_long", "whole_8k", "silent"])
def test_bad_audio_gives_a_transcript_or_a_coded_error(
        stack: str, speech: dict[str, Path], tmp_path: Path, kind: str) -> None:
    import numpy as np

    from streams.client import read_wav
    from tests.conftest import write_wav

    pcm, rate = read_wav(speech["whole"])
    x = np.frombuffer(pcm, "<i2").astype(np.float32) / 32768
    if kind == "clipped":
        wav = write_wav(tmp_path / "clipped.wav", np.clip(x * 30, -1, 1), rate)
    elif kind == "very_long":
        wav = write_wav(tmp_path / "long.wav", np.concatenate([x] * 10), rate)
    else:
        wav = speech[kind]
    code, events = send(stack, wav, f"bad-audio-{kind}", "--fast")
    errors = [e for e in events if e["type"] == "error"]
    if errors:
        assert code == 1 and [e["code"] for e in errors] in (["no-speech"], ["asr-no-speech"])
    else:
        finals = [e for e in transcripts(events) if e["kind"] == "final"]
        assert code == 0 and len(finals) == 1
        assert sum(e["type"] in ("directive", "declined") for e in events) == 1
    if kind == "very_long":
        final = next(e for e in events if e["type"] == "endpoint" and e["kind"] == "final")
        assert final["forced"] == "max-length"
    if kind == "silent":
        assert errors
