"""The CLI contract end to end on the embedded broker: `voicestream send --json`."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import send

pytestmark = pytest.mark.broker


def shape(events: list[dict[str, object]]) -> list[tuple[object, ...]]:
    """The end-pointer's events (endpoints, resets, errors) in order."""
    out = []
    for e in events:
        if e["type"] not in ("endpoint", "reset", "error") or \
                e.get("stage", "endpointer") != "endpointer":
            continue
        if e["type"] == "endpoint":
            out.append(("endpoint", e["kind"], e["revision"]))
        elif e["type"] == "reset":
            out.append(("reset", e["cancelled_revision"]))
        else:
            out.append((e["type"], e.get("code")))
    return out


def test_pause_yields_speculative_reset_speculative_final(
        stack: str, speech: dict[str, Path]) -> None:
    code, events = send(stack, speech["paused"], "kitchen-1", "--fast")
    assert code == 0
    assert shape(events) == [
        ("endpoint", "speculative", 0), ("reset", 0),
        ("endpoint", "speculative", 1), ("endpoint", "final", 1),
    ]
    utt = {e["utterance_id"] for e in events}
    assert len(utt) == 1
    for e in events:  # a skill's answer is not an audio-clock decision: no t_ms
        keys = {"type", "utterance_id", "revision"} | ({"t_ms"} if e["type"] != "skill-response"
                                                        else set())
        assert keys <= e.keys()
    ep = [e for e in events if e["type"] in ("endpoint", "reset")]
    assert ep[1]["reason"] == "speech-resumed"
    # The final confirms the revision opened by the reset and ends after the pause.
    assert ep[3]["at_ms"] > ep[0]["at_ms"] + 400


def test_no_pause_yields_speculative_then_final(stack: str, speech: dict[str, Path]) -> None:
    code, events = send(stack, speech["whole"], "kitchen-2", "--fast")
    assert code == 0, events
    assert shape(events) == [("endpoint", "speculative", 0), ("endpoint", "final", 0)]
    spec, final = (e for e in events if e["type"] == "endpoint")
    assert final["t_ms"] - spec["t_ms"] >= 200  # type: ignore[operator]


def test_silence_yields_no_speech(stack: str, speech: dict[str, Path]) -> None:
    code, events = send(stack, speech["silent"], "kitchen-3", "--fast")
    assert code == 1
    assert shape(events) == [("error", "no-speech")]


def test_decision_times_do_not_depend_on_pacing(stack: str, speech: dict[str, Path]) -> None:
    _, fast = send(stack, speech["whole"], "hall-1", "--fast")
    _, real = send(stack, speech["whole"], "hall-1")
    # Across stages the interleaving depends on pacing; per stage the events do not.
    for kind in ("endpoint", "transcript"):
        assert [(e["kind"], e["t_ms"], e["at_ms"]) for e in fast if e["type"] == kind] == \
            [(e["kind"], e["t_ms"], e["at_ms"]) for e in real if e["type"] == kind]


def test_8khz_audio_is_resampled(stack: str, speech: dict[str, Path]) -> None:
    _, native = send(stack, speech["whole"], "attic-1", "--fast")
    code, low = send(stack, speech["whole_8k"], "attic-2", "--fast")
    assert code == 0
    assert shape(low) == shape(native)
    final = next(e for e in low if e["type"] == "endpoint" and e["kind"] == "final")
    native_final = next(e for e in native if e["type"] == "endpoint" and e["kind"] == "final")
    assert abs(final["at_ms"] - native_final["at_ms"]) <= 64  # type: ignore[operator]
