"""The logging safety net: forbidden keys hidden at any depth, tracebacks without messages."""

from __future__ import annotations

import json
import logging
import sys

import pytest
import structlog

from infra import logs
from streams.schema import SerializationError

SECRET = "Zebulon Quarrington"


def render(capsys: pytest.CaptureFixture[str], **fields: object) -> dict[str, object]:
    logs.configure("json", "info")
    try:
        logs.get("t").info("event", **fields)
    finally:
        structlog.reset_defaults()
    line: dict[str, object] = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    return line


@pytest.mark.parametrize("key", ["text", "transcript", "nbest", "slots", "utterance",
                                 "hypotheses", "words", "phrases", "grammar", "states"])
def test_transcript_like_keys_are_redacted(key: str, capsys: pytest.CaptureFixture[str]
                                           ) -> None:
    line = render(capsys, **{key: [SECRET]}, code="c-1")
    assert line[key] == logs.MARKER and line["code"] == "c-1"


def test_nested_values_are_redacted_and_counts_kept(capsys: pytest.CaptureFixture[str]) -> None:
    line = render(capsys, message={"nbest": [{"text": SECRET}], "device_id": "d1"},
                  contacts=3, events=[{"slots": {"person": SECRET}}])
    assert SECRET not in json.dumps(line)
    assert line["message"] == {"nbest": logs.MARKER, "device_id": "d1"}
    assert line["contacts"] == 3  # a count is not a name


def raise_chained() -> None:
    try:
        {}[SECRET]
    except KeyError as exc:
        raise SerializationError("invalid-value", f"no {SECRET}") from exc


def test_tracebacks_keep_types_codes_and_frames_not_messages(
        capsys: pytest.CaptureFixture[str]) -> None:
    logs.configure("json", "info")
    try:
        try:
            raise_chained()
        except SerializationError:
            logs.get("t").exception("record.failed", offset=7)
    finally:
        structlog.reset_defaults()
    line = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    text = line["exception"]
    assert "Quarrington" not in text
    assert "builtins.KeyError: [redacted]" in text
    assert "streams.schema.SerializationError (invalid-value): [redacted]" in text
    assert "direct cause" in text and "raise_chained" in text
    assert text.index("KeyError") < text.index("SerializationError")


def test_stdlib_tracebacks_leave_messages_out() -> None:
    formatter = logs._Formatter("%(message)s")
    try:
        raise ValueError(SECRET)
    except ValueError:
        record = logging.LogRecord("faust", logging.ERROR, __file__, 1, "agent crashed",
                                   None, exc_info=sys.exc_info())
    out = formatter.format(record)
    assert "agent crashed" in out and "builtins.ValueError: [redacted]" in out
    assert SECRET not in out


class Writes:
    """A stream that keeps each write call apart."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def write(self, text: str) -> int:
        self.calls.append(text)
        return len(text)

    def flush(self) -> None:
        pass


def test_each_line_is_written_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    # Another thread (Faust's consumer logs through stdlib) writes to the same
    # stream: a line written in two parts had its line land in between.
    stream = Writes()
    monkeypatch.setattr(sys, "stderr", stream)
    logs.configure("json", "info")
    try:
        logs.get("t").info("event", n=1)
    finally:
        structlog.reset_defaults()
    [line] = stream.calls
    assert line.endswith("\n") and json.loads(line)["n"] == 1
