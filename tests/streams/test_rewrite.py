"""Rewriting's wire: the interaction log format and the normalised form."""

from __future__ import annotations

import pytest

from streams.codec import Codec, decode, encode
from streams.endpoint import EndpointKind
from streams.rewrite import Interaction, Meaning, Outcome, Rewrite, RewriteSource, form
from streams.schema import SerializationError


def test_form_folds_case_punctuation_and_spacing() -> None:
    assert form("Play  Despacito!") == "play despacito"
    assert form("what's the WEATHER, today?") == "what's the weather today"
    assert form("\uff30\uff2c\uff21\uff39 jazz") == "play jazz"  # full-width letters (NFKC)
    assert form("  ") == ""


def test_interaction_log_line_has_exactly_the_export_keys() -> None:
    record = Interaction(session_id="s1", user_id="u1", device_id="kitchen-1", ts=1700000000000,
                         utterance="play despacito",
                         interpretation=Meaning(intent="play_music",
                                                slots={"song_name": "despacito"}),
                         outcome=Outcome.SUCCESS, signals=("confirm",))
    line = record.to_log()
    assert set(line) == {"session_id", "user_id", "device_id", "ts", "utterance",
                         "interpretation", "outcome", "signals"}
    assert line["interpretation"] == {"intent": "play_music", "slots": {"song_name": "despacito"}}
    assert Interaction.from_log(line) == record


def test_interaction_with_truth_round_trips_and_bad_lines_raise_coded_errors() -> None:
    line = {"session_id": "s", "user_id": "u", "device_id": "d", "ts": 5, "utterance": "x",
            "interpretation": {"intent": "a", "slots": {}}, "outcome": "defect", "signals": [],
            "truth": {"intent": "b", "slots": {"place_name": "wilkerson"}}}
    record = Interaction.from_log(line)
    assert record.truth == Meaning(intent="b", slots={"place_name": "wilkerson"})
    assert record.to_log() == line
    with pytest.raises(SerializationError) as bad_outcome:
        Interaction.from_log({**line, "outcome": "great"})
    assert bad_outcome.value.code == "invalid-value"
    with pytest.raises(SerializationError) as missing:
        Interaction.from_log({k: v for k, v in line.items() if k != "ts"})
    assert missing.value.code == "missing-field"
    with pytest.raises(SerializationError):
        Interaction.from_log(["not", "an", "object"])


def test_rewrite_event_goes_through_the_json_codec() -> None:
    event = Rewrite(device_id="d", utterance_id="u", kind=EndpointKind.FINAL, revision=1,
                    original="play the fox", rewrite="play what does the fox say",
                    source=RewriteSource.PRECOMPUTED, score=0.8)
    assert decode(encode(event, Codec.JSON), Codec.JSON) == event
