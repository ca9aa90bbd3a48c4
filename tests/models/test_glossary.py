"""The domain glossary that code-switching prefers to the general dictionaries."""

from __future__ import annotations

import random

from models.nlu.codeswitch import switch
from models.nlu.glossary import _TABLE, glossary, merged
from models.nlu.massive import Example, Slot


def test_every_line_has_english_and_three_languages() -> None:
    for line in _TABLE.strip().splitlines():
        fields = line.split("|")
        assert len(fields) == 4, line
        assert fields[0].strip() == fields[0].strip().lower() and fields[0].strip()
    table = glossary()
    assert set(table) == {"de", "ar", "zh"}
    assert table["de"]["alarm"][0] == "wecker" and table["zh"]["alarm"] == ["闹钟"]
    # Chinese entries are written without spaces, as the requests are.
    assert not any(" " in w for words in table["zh"].values() for w in words)


def test_the_glossary_replaces_the_dictionaries_senses_it_has() -> None:
    tables = {"de": {"alarm": ["alarm", "unruhe"], "house": ["haus"]}, "zh": {}}
    out = merged(tables)
    assert out["de"]["alarm"] == ["wecker", "alarm"]
    assert out["de"]["house"] == ["haus"]
    assert out["zh"]["alarm"] == ["闹钟"]
    assert "ar" not in out  # only the languages asked for
    assert tables["de"]["alarm"] == ["alarm", "unruhe"]  # the input is not changed


def test_code_switching_draws_the_domain_words() -> None:
    text = "set an alarm for seven am"
    ex = Example(text, "alarm_set", (Slot("time", "seven am", 17, 25),))
    tables = merged({"de": {}})
    seen = set()
    for seed in range(20):
        new = switch(ex, tables, random.Random(seed), ratio=1.0).example
        seen.update(new.text.split())
        (slot,) = new.slots
        assert new.text[slot.start:slot.end] == slot.value
    assert "wecker" in seen and "unruhe" not in seen
