"""The spoken-commands table's arithmetic: WER and CER after the locale's normaliser."""

from __future__ import annotations

from infra.eval_languages import COMMANDS, Row, summary


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

