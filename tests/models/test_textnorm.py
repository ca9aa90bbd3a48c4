"""Scoring normalisation: each rule, and WER on top of it."""

from __future__ import annotations

import pytest

from models.textnorm import edit_distance, normalize, number_words, ordinal_words, wer


@pytest.mark.parametrize(("raw", "norm"), [
    ("Set a timer for 10 minutes.", "set a timer for ten minutes"),
    ("Wake me at 5:30", "wake me at five thirty"),
    ("Wake me at 7:00 AM!", "wake me at seven am"),
    ("at 9:05", "at nine oh five"),
    ("the 3rd of May", "the third of may"),
    ("the 21st", "the twenty first"),
    ("set it to 2.5", "set it to two point five"),
    ("dim to 20%", "dim to twenty percent"),
    ("1,250 steps", "one thousand two hundred fifty steps"),
    ("rock & roll", "rock and roll"),
    ("What's the well-known song?", "whats the well known song"),
    ("Let\u2019s play Matthew's list", "lets play matthews list"),
    ("send an e-mail, then an E mail", "send an email then an email"),
    ("six hundred and sixty six", "six hundred sixty six"),
    ("a thousand and one nights", "a thousand one nights"),
    ("a hundred and fifty", "a hundred fifty"),
    ("salt and pepper, 106", "salt and pepper one hundred six"),
    ("'quoted' words", "quoted words"),
    ("  Many   spaces ", "many spaces"),
    ("", ""),
])
def test_normalize(raw: str, norm: str) -> None:
    assert normalize(raw) == norm


def test_number_words() -> None:
    assert number_words(0) == "zero"
    assert number_words(105) == "one hundred five"
    assert number_words(2_000_019) == "two million nineteen"
    assert ordinal_words(12) == "twelfth" and ordinal_words(40) == "fortieth"


def test_wer_counts_substitutions_insertions_deletions() -> None:
    assert edit_distance(["a", "b", "c"], ["a", "x", "c", "d"]) == 2
    assert wer([("Set a timer for 10 minutes.", "set a timer for ten minutes")]) == 0.0
    assert wer([("call ada now", "call eda")]) == pytest.approx(2 / 3)
