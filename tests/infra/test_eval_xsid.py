# ruff: noqa: RUF001 -- Arabic and Chinese test texts, not look-alikes
"""xSID CoNLL reading, its mapping onto MASSIVE labels, and the evaluation's arithmetic."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from infra.cli import main
from infra.eval_nlu import score_xsid
from infra.inputs import InputFileError
from infra.xsid import (
    INTENTS,
    MASSIVE_CLASS,
    SLOTS,
    XSID_CLASS,
    load_xsid,
    normalised,
    to_classes,
)
from models.nlu.massive import Slot
from models.textnorm import normalizer_for

XSID = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "xsid"

WEATHER = """# id = 1
# text = Regnet es morgen um 7 Uhr in Köln?
# text-en = Will it rain tomorrow at 7 in Cologne?
# intent = weather/find
1\tRegnet\tweather/find\tB-weather/attribute
2\tes\tweather/find\tO
3\tmorgen\tweather/find\tB-datetime
4\tum\tweather/find\tI-datetime
5\t7\tweather/find\tI-datetime
6\tUhr\tweather/find\tI-datetime
7\tin\tweather/find\tO
8\tKöln\tweather/find\tB-location
9\t?\tweather/find\tO
"""

ZH_ALARM = """# id = 2
# text = 取消明天的闹钟
# intent = alarm/cancel_alarm
1\t取消\talarm/cancel_alarm\tO
2\t明天\talarm/cancel_alarm\tB-datetime
3\t的\talarm/cancel_alarm\tO
4\t闹钟\talarm/cancel_alarm\tO
"""

RATE = """# id = 3
# text = rate this book 5 stars
# intent = RateBook
1\trate\tRateBook\tO
2\tthis\tRateBook\tB-object_select
3\tbook\tRateBook\tB-object_type
4\t5\tRateBook\tB-rating_value
5\tstars\tRateBook\tB-rating_unit
"""


def write(tmp_path: Path, *blocks: str) -> Path:
    path = tmp_path / "xx.valid.conll"
    path.write_text("\n".join(blocks), encoding="utf-8")
    return path


def test_slots_are_character_spans_of_the_text_with_their_values(tmp_path: Path) -> None:
    weather, alarm, rate = load_xsid(write(tmp_path, WEATHER, ZH_ALARM, RATE))
    assert (weather.id, weather.intent, weather.line) == ("1", "weather/find", 1)
    assert [(s.type, s.value) for s in weather.slots] == [
        ("weather/attribute", "Regnet"), ("datetime", "morgen um 7 Uhr"), ("location", "Köln")]
    assert all(weather.text[s.start:s.end] == s.value for s in weather.slots)
    # Chinese has no spaces: the tokens are found in the text one after another.
    assert alarm.slots == (Slot("datetime", "明天", 2, 4),)
    assert rate.line == WEATHER.count("\n") + ZH_ALARM.count("\n") + 3  # after two blanks
    assert len(rate.slots) == 4


def test_an_empty_token_tagged_o_is_a_space_and_is_skipped(tmp_path: Path) -> None:
    block = ("# text = Time 的 照片\n# intent = SearchCreativeWork\n"
             "1\tTime\tSearchCreativeWork\tB-object_name\n2\t\tSearchCreativeWork\tO\n"
             "3\t的\tSearchCreativeWork\tO\n4\t照片\tSearchCreativeWork\tB-object_type\n")
    (ex,) = load_xsid(write(tmp_path, block))
    assert [s.value for s in ex.slots] == ["Time", "照片"]


@pytest.mark.parametrize(("bad", "line", "problem"), [
    ("1\tRegnet\tweather/find", 5, "4 tab-separated columns"),
    ("2\tRegnet\tweather/find\tO", 5, "token position '2', expected 1"),
    ("1\tRegnet\tweather/find\tX-weather", 5, "slot tag 'X-weather'"),
    ("1\tRegnet\tweather/find\tI-datetime", 5, "continues no datetime slot"),
    ("1\tSchnee\tweather/find\tO", 5, "token 'Schnee' is not in the text"),
    ("1\tRegnet\talarm/set_alarm\tO", 5, "differs from the utterance's"),
    ("1\t\tweather/find\tB-datetime", 5, "empty token tagged B-datetime"),
])
def test_a_bad_token_line_is_reported_with_its_line_number(
        tmp_path: Path, bad: str, line: int, problem: str) -> None:
    block = WEATHER.split("1\tRegnet")[0] + bad + "\n"
    path = write(tmp_path, ZH_ALARM.replace("# id = 2", "# id = 0"), block)
    with pytest.raises(InputFileError) as err:
        load_xsid(path)
    assert err.value.line == ZH_ALARM.count("\n") + 1 + line
    assert problem in err.value.problem
    assert f"{path}:{err.value.line}" in str(err.value)


@pytest.mark.parametrize(("text", "problem"), [
    ("# id = 9\n# intent = PlayMusic\n1\tplay\tPlayMusic\tO\n", "'# text = ...'"),
    ("# id = 9\n# text = play\n1\tplay\tPlayMusic\tO\n", "'# intent = ...'"),
    ("# id = 9\n# text = play\n# intent = PlayMusic\n", "without token lines"),
    ("# text = play\n# intent = PlayMusic\n1\tplay\tPlayMusic\tO\n# id = 9\n",
     "comment line after the tokens"),
])
def test_a_bad_block_is_reported_where_it_is(tmp_path: Path, text: str, problem: str) -> None:
    path = write(tmp_path, WEATHER, text)
    with pytest.raises(InputFileError) as err:
        load_xsid(path)
    assert problem in err.value.problem
    assert err.value.line is not None and err.value.line > WEATHER.count("\n")


def test_an_empty_file_is_a_coded_error(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match="no utterances"):
        load_xsid(write(tmp_path, "\n\n"))


def test_the_mapping_is_one_class_per_type_and_names_real_massive_labels() -> None:
    labels = json.loads((Path(__file__).resolve().parents[2] / "models" / "nlu" / "model"
                         / "labels.json").read_text())
    types = {t.partition("-")[2] for t in labels["tags"] if t != "O"}
    assert set(INTENTS.values()) <= set(labels["intents"])
    assert set(MASSIVE_CLASS) <= types
    assert len(XSID_CLASS) == sum(len(c.xsid) for c in SLOTS)
    assert len(MASSIVE_CLASS) == sum(len(c.massive) for c in SLOTS)


def test_touching_slots_of_one_class_join_into_one_span() -> None:
    text = "wake me tomorrow at seven every day in berlin"
    slots = [Slot("date", "tomorrow", 8, 16), Slot("time", "at seven", 17, 25),
             Slot("general_frequency", "every day", 26, 35),
             Slot("place_name", "berlin", 39, 45), Slot("alarm_type", "wake", 0, 4)]
    assert to_classes(text, slots, MASSIVE_CLASS) == [
        Slot("datetime", "tomorrow at seven", 8, 25), Slot("frequency", "every day", 26, 35),
        Slot("location", "berlin", 39, 45)]


def test_scores_count_the_mapped_part_only(tmp_path: Path) -> None:
    examples = load_xsid(write(tmp_path, WEATHER, ZH_ALARM, RATE))
    predicted = [
        # Right intent; "morgen" + "um 7 Uhr" join into the gold datetime; weather right;
        # the location missed and a spurious music genre (a mapped class) added.
        ("weather_query", [Slot("weather_descriptor", "Regnet", 0, 6),
                           Slot("date", "morgen", 10, 16), Slot("time", "um 7 Uhr", 17, 25),
                           Slot("music_genre", "es", 7, 9)]),
        # Wrong intent, right slot; a slot of an unmapped MASSIVE type is ignored.
        ("alarm_query", [Slot("date", "明天", 2, 4), Slot("alarm_type", "闹钟", 5, 7)]),
        # An unmapped xSID intent: neither its intent nor its slots count.
        ("play_music", [Slot("artist_name", "rate", 0, 4)]),
    ]
    report = score_xsid(examples, predicted)
    assert report["utterances"] == 3
    assert report["mapped_utterances"] == 2
    assert report["intent_accuracy"] == 0.5
    # gold 4 slots (weather, datetime, location, datetime); tp 3, fp 1, fn 1.
    assert report["gold_slots_mapped"] == 4
    assert report["slot_f1"] == round(2 * 3 / (2 * 3 + 1 + 1), 4)
    assert report["unmapped_intents"] == {"RateBook": 1}
    assert report["intent_accuracy_by_intent"] == {"alarm/cancel_alarm": 0.0,
                                                   "weather/find": 1.0}


EN_WEATHER = """# id = 4
# text = will it rain tomorrow in Paris
# intent = weather/find
1\twill\tweather/find\tO
2\tit\tweather/find\tO
3\train\tweather/find\tB-weather/attribute
4\ttomorrow\tweather/find\tB-datetime
5\tin\tweather/find\tO
6\tParis\tweather/find\tB-location
"""


def test_eval_nlu_reads_an_xsid_file_with_the_bundled_model(tmp_path: Path) -> None:
    path = write(tmp_path, EN_WEATHER, RATE)
    result = CliRunner().invoke(main, ["eval", "nlu", "--data", str(path), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output.strip().splitlines()[-1])
    assert (report["utterances"], report["mapped_utterances"]) == (2, 1)
    assert report["intent_accuracy"] == 1.0
    assert report["unmapped_intents"] == {"RateBook": 1}


def test_eval_nlu_names_the_bad_line_of_an_xsid_file(tmp_path: Path) -> None:
    path = write(tmp_path, WEATHER.replace("I-datetime", "I-date", 1))
    result = CliRunner().invoke(main, ["eval", "nlu", "--data", str(path)])
    assert result.exit_code != 0
    assert f"{path}:8" in result.output
    assert "continues no date slot" in result.output


@pytest.mark.skipif(not XSID.is_dir(), reason="needs the xSID valid sets in ../shared/data")
@pytest.mark.parametrize("lang", ["en", "de", "ar", "zh"])
def test_the_shared_valid_sets_read_whole(lang: str) -> None:
    examples = load_xsid(XSID / f"{lang}.valid.conll")
    assert len(examples) == 300
    assert sum(ex.intent in INTENTS for ex in examples) == 195
    assert all(ex.text[s.start:s.end] == s.value for ex in examples for s in ex.slots)


AR_WEATHER = """# id = 4
# text = هل ستُمطر غداً في الرياض ؟
# intent = weather/find
1\tهل\tweather/find\tO
2\tستُمطر\tweather/find\tB-weather/attribute
3\tغداً\tweather/find\tB-datetime
4\tفي\tweather/find\tO
5\tالرياض\tweather/find\tB-location
6\t؟\tweather/find\tO
"""


@pytest.mark.parametrize("clitics", [False, True])
def test_normalising_keeps_every_gold_slot_on_its_words(tmp_path: Path, clitics: bool) -> None:
    weather, alarm, ar = load_xsid(write(tmp_path, WEATHER, ZH_ALARM, AR_WEATHER))
    de = normalised(weather, normalizer_for("de"))
    assert de.text == "regnet es morgen um 7 uhr in köln"
    assert [(s.type, de.text[s.start:s.end]) for s in de.slots] == [
        ("weather/attribute", "regnet"), ("datetime", "morgen um 7 uhr"), ("location", "köln")]
    assert all(s.value == de.text[s.start:s.end] for s in de.slots)
    # Chinese: no spaces appear where the text had none.
    zh = normalised(alarm, normalizer_for("zh"))
    assert zh.text == "取消明天的闹钟" and zh.slots == (Slot("datetime", "明天", 2, 4),)
    # Arabic: diacritics and the Arabic question mark go; with clitics, "الرياض" splits.
    arn = normalised(ar, normalizer_for("ar", arabic_clitics=clitics))
    assert "\u064f" not in arn.text and "؟" not in arn.text and "?" not in arn.text
    place = next(s for s in arn.slots if s.type == "location")
    assert arn.text[place.start:place.end] == ("ال+ رياض" if clitics else "الرياض")
    assert [s.type for s in arn.slots] == ["weather/attribute", "datetime", "location"]


def test_eval_nlu_applies_the_files_language_normaliser(tmp_path: Path) -> None:
    path = tmp_path / "de.valid.conll"
    path.write_text(WEATHER, encoding="utf-8")
    reports = {}
    for normaliser in ("locale", "none"):
        result = CliRunner().invoke(main, ["eval", "nlu", "--data", str(path), "--json",
                                           "--normaliser", normaliser])
        assert result.exit_code == 0, result.output
        reports[normaliser] = json.loads(result.output.strip().splitlines()[-1])
    assert reports["locale"]["normaliser"] == "locale"
    assert reports["none"]["normaliser"] == "none"
    assert reports["locale"]["gold_slots_mapped"] == reports["none"]["gold_slots_mapped"] == 3


def test_a_boundary_that_punctuation_and_a_space_mark_keeps_its_space(tmp_path: Path) -> None:
    block = """# id = 5
# text = Wecker für 17 Uhr, um mich zu erinnern
# intent = alarm/set_alarm
1\tWecker\talarm/set_alarm\tO
2\tfür\talarm/set_alarm\tO
3\t17\talarm/set_alarm\tB-datetime
4\tUhr\talarm/set_alarm\tI-datetime
5\t,\talarm/set_alarm\tO
6\tum\talarm/set_alarm\tO
7\tmich\talarm/set_alarm\tO
8\tzu\talarm/set_alarm\tO
9\terinnern\talarm/set_alarm\tO
"""
    (ex,) = load_xsid(write(tmp_path, block))
    de = normalised(ex, normalizer_for("de"))
    assert de.text == "wecker für 17 uhr um mich zu erinnern"
    (slot,) = de.slots
    assert de.text[slot.start:slot.end] == "17 uhr"


def test_eval_nlu_takes_a_bundled_model_by_name_and_refuses_an_unknown_one(
        tmp_path: Path) -> None:
    path = write(tmp_path, EN_WEATHER)
    result = CliRunner().invoke(main, ["eval", "nlu", "--data", str(path), "--json",
                                       "--model", "multilingual"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output.strip().splitlines()[-1])
    assert report["mapped_utterances"] == 1 and report["intent_accuracy"] == 1.0
    bad = CliRunner().invoke(main, ["eval", "nlu", "--data", str(path),
                                    "--model", str(tmp_path / "nowhere")])
    assert bad.exit_code != 0 and "not one of the bundled models" in bad.output
