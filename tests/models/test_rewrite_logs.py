"""The interaction-log reader: bad lines are skipped with file and line, good ones read."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from infra.inputs import InputFileError
from models.rewrite.logs import LogStats, read_interactions, write_interactions
from streams.rewrite import Interaction, Meaning, Outcome


def _record(ts: int, text: str) -> Interaction:
    return Interaction(session_id="s1", user_id="u1", device_id="d1", ts=ts, utterance=text,
                       interpretation=Meaning(intent="play_music", slots={"artist": "x"}),
                       outcome=Outcome.SUCCESS)


def test_bad_lines_are_reported_with_line_numbers_and_skipped(tmp_path: Path) -> None:
    good = json.dumps(_record(1, "play x").to_log())
    lines = [good, "{not json", "", json.dumps([1, 2]),
             json.dumps({"session_id": "s"}),  # fields missing
             json.dumps({**_record(2, "a").to_log(), "ts": "soon"}),  # wrong type
             json.dumps({**_record(3, "b").to_log(), "extra": 1})]  # unknown field: fine
    path = tmp_path / "log.jsonl"
    path.write_text("\n".join(lines) + "\n")
    stats = LogStats()
    got = list(read_interactions(path, stats))
    assert [r.utterance for r in got] == ["play x", "b"]
    assert stats.records == 2 and stats.skipped == 4
    assert [(b.line, b.code) for b in stats.bad] == [
        (2, "bad-json"), (4, "wrong-type"), (5, "missing-field"), (6, "wrong-type")]
    assert str(stats.bad[0]).startswith(f"{path}:2: bad-json")


def test_round_trip_through_write(tmp_path: Path) -> None:
    records = [_record(i, f"play song {i}") for i in range(5)]
    path = tmp_path / "out.jsonl"
    assert write_interactions(path, records) == 5
    assert list(read_interactions(path)) == records


def test_invalid_utf8_is_reported_not_raised(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    path.write_bytes(json.dumps(_record(1, "ok").to_log()).encode() + b"\n\xff\xfe\n")
    stats = LogStats()
    assert len(list(read_interactions(path, stats))) == 1
    assert stats.skipped == 1 and stats.bad[0].code == "not-utf8"


def test_missing_file_names_it(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match="no such file"):
        list(read_interactions(tmp_path / "nope.jsonl"))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.binary(max_size=60).filter(lambda b: b"\n" not in b), max_size=8))
def test_any_bytes_are_skipped_or_read_never_raised(tmp_path_factory: pytest.TempPathFactory,
                                                     lines: list[bytes]) -> None:
    path = tmp_path_factory.mktemp("fuzz") / "log.jsonl"
    good = json.dumps(_record(5, "ok").to_log()).encode()
    path.write_bytes(b"\n".join([*lines, good]) + b"\n")
    stats = LogStats()
    got = list(read_interactions(path, stats))
    assert got[-1].utterance == "ok"
    assert stats.records == len(got)
    assert stats.records + stats.skipped <= len(lines) + 1
