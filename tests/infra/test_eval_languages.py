"""The spoken-commands table's arithmetic: WER and CER after the locale's normaliser."""

from __future__ import annotations

from infra.eval_languages import COMMANDS, EXPECTED, Row, summary


def test_errors_are_counted_after_the_locale_s_normaliser() -> None:
    rows = [
        # Case and punctuation are not errors; one word of four is.
        Row("de-DE", "de", "spiel etwas Jazz bitte", "Spiel etwas Jatz, bitte!",
            "spiel et was jazz bitte"),
        # Traditional characters are the same characters; 灯 -> 等 is one of six.
        Row("zh-CN", "zh", "打开厨房的灯", "打開廚房的等", "da kai"),
        Row("ar-SA", "ar", "الساعة السابعة", "الساعه السابعة", "as saa"),
    ]
    table = summary(rows)
    assert table["de-DE"]["wer"] == 0.25 and table["de-DE"]["cer"] == round(1 / 19, 3)
    # "spiel et was jazz bitte": "etwas" -> "et was" is a substitution and an insertion.
    assert table["de-DE"]["wer_en_token"] == 0.5 and table["de-DE"]["cer_en_token"] == 0.0
    assert table["zh-CN"]["cer"] == round(1 / 6, 3)
    assert table["ar-SA"]["wer"] == 0.0 and table["ar-SA"]["cer"] == 0.0  # taa marbuta = haa
    assert set(table) == set(COMMANDS)


def test_each_language_has_commands_and_a_voice() -> None:
    assert {locale.split("-")[0] for locale in COMMANDS} == {"de", "ar", "zh"}
    assert all(voice and len(commands) >= 3 for voice, commands in COMMANDS.values())



def test_intents_are_scored_on_the_commands_that_have_one() -> None:
    rows = [
        Row("de-DE", "de", "a", "a", "a", "iot_hue_lighton", "iot_hue_lighton",
            "iot_hue_lighton"),
        Row("de-DE", "de", "b", "b", "b", "weather_query", "general_quirky", "weather_query"),
        Row("de-DE", "de", "c", "c", "c", "alarm_set", "alarm_set", None),  # not scored
    ]
    table = summary(rows)
    assert table["de-DE"]["intent_written"] == 1.0
    assert table["de-DE"]["intent_heard"] == 0.5
    assert "ar-SA" not in table  # no rows, nothing to score


def test_every_command_has_its_expected_intent() -> None:
    assert all(len(commands) == len(EXPECTED) for _, commands in COMMANDS.values())
