"""Slot values a skill can use: numbers, clock times, durations."""

from __future__ import annotations

import pytest

from models.nlu.values import normalise, parse_number, resolve_clock


@pytest.mark.parametrize(("text", "value"), [
    ("ten minutes", "PT10M"), ("an hour and a half", "PT1H30M"), ("two hours", "PT2H"),
    ("half an hour", "PT30M"), ("90 seconds", "PT1M30S"), ("twenty five minutes", "PT25M"),
    ("seven am", "07:00"), ("seven thirty pm", "19:30"), ("noon", "12:00"),
    ("midnight", "00:00"), ("6:45 a.m.", "06:45"), ("six in the evening", "18:00"),
    ("seven thirty p m", "19:30"), ("tomorrow", "tomorrow"),
])
def test_time_slots(text: str, value: str) -> None:
    assert normalise("time", text) == value


def test_hour_without_am_pm_is_the_next_one_after_the_local_time() -> None:
    assert normalise("time", "seven", local_time="22:30") == "07:00"
    assert normalise("time", "seven", local_time="08:10") == "19:00"
    assert normalise("time", "half past six", local_time="12:00") == "18:30"
    assert normalise("time", "quarter to eight", local_time="05:00") == "07:45"
    assert normalise("time", "seven") == "07:00"  # no local time: as said
    assert resolve_clock(14, 0, "09:00") == (14, 0)


@pytest.mark.parametrize(("text", "value"), [
    ("twenty five", 25), ("one hundred and five", 105), ("two thousand twenty", 2020),
    ("a hundred", 100), ("42", 42), ("fifty percent", 50),
])
def test_numbers(text: str, value: int) -> None:
    assert parse_number(text) == value


def test_number_slots_and_untouched_types() -> None:
    assert normalise("change_amount", "twenty percent") == "20"
    assert normalise("change_amount", "a lot") == "a lot"
    assert normalise("song_name", "seven nation army") == "seven nation army"
