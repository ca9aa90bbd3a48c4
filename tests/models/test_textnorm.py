"""Scoring normalisation: each rule, and WER on top of it."""

from __future__ import annotations

import pytest

from models.textnorm import (
    corpus_wer,
    edit_distance,
    english_nlu_form,
    normalize,
    normalizer_for,
    number_words,
    ordinal_words,
    scored_words,
    wer,
)


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


@pytest.mark.parametrize(("forms", "norm"), [
    (("five p. m.", "5pm", "5 pm", "five pm", "5 P.M.", "five p.m."), "five pm"),
    (("wake me at 7:30 a. m.", "wake me at 730am", "Wake me at 7:30 AM",
      "wake me at seven thirty am"), "wake me at seven thirty am"),
    (("at 730", "at 7:30", "at seven thirty"), "at seven thirty"),
    (("seven o'clock", "7 o'clock", "7:00", "seven oclock"), "seven"),
    (("c. n. n.", "CNN", "C.N.N.", "c n n", "c.n.n"), "cnn"),
    (("play b b c radio", "play BBC radio", "play b. b. c. radio"), "play bbc radio"),
    (("Arsenal versus Chelsea", "Arsenal vs Chelsea", "arsenal vs. chelsea",
      "Arsenal v. Chelsea"), "arsenal versus chelsea"),
    (("the first of May", "the 1st of May"), "the first of may"),
    (("the twenty second", "the 22nd"), "the twenty second"),
    (("five dollars", "$5", "$ 5", "$5.00"), "five dollars"),
    (("one dollar fifty cents", "$1.50", "1 dollar 50 cents"), "one dollars fifty cents"),
    (("twenty pounds", "£20"), "twenty pounds"),
    (("1,200 dollars", "$1,200"), "one thousand two hundred dollars"),
    (("play my favourite colour", "play my favorite color"), "play my favorite color"),
    (("the meeting is cancelled", "the meeting is canceled"), "the meeting is canceled"),
])
def test_normalize_makes_spoken_and_written_forms_one(forms: tuple[str, ...],
                                                      norm: str) -> None:
    assert {normalize(f) for f in forms} == {norm}


@pytest.mark.parametrize(("raw", "norm"), [
    ("i am a robot", "i am a robot"),  # "a" and "i" as words are not letters
    ("a man and a dog", "a man and a dog"),
    ("is it 1130 steps", "is it one thousand one hundred thirty steps"),  # not a time
    ("at 1275", "at one thousand two hundred seventy five"),  # no such clock time
    ("vitamin c", "vitamin c"),
])
def test_normalize_leaves_ordinary_words(raw: str, norm: str) -> None:
    assert normalize(raw) == norm


def test_old_hyphenated_days_are_one_word_for_the_nlu_too() -> None:
    # Moonshine writes "to-morrow"; the NLU's date slot needs "tomorrow".
    assert english_nlu_form("Will it rain to-morrow? And to-night, to-day?") == \
        "will it rain tomorrow and tonight today"
    assert english_nlu_form("go to-do list") == "go to do list"


def test_compounds_written_apart_on_one_side_are_one_word() -> None:
    assert scored_words("play my audio book", "play my audiobook") == \
        (["play", "my", "audiobook"], ["play", "my", "audiobook"])
    assert scored_words("add it to the playlist", "add it to the play list")[1] == \
        ["add", "it", "to", "the", "playlist"]
    # Two words the other side also has stay two ("a way" is not "away" here).
    assert scored_words("go away a way", "go a way away")[1] == ["go", "a", "way", "away"]
    # The denominator is the reference's words as written: one edit in four.
    assert wer([("read my audio book", "red my audiobook")]) == pytest.approx(1 / 4)
    assert wer([("pause", "pose")]) == 1.0


def test_corpus_wer_rounds_and_is_none_without_reference_words() -> None:
    assert corpus_wer([("set a timer", "set the timer")]) == 0.3333
    assert corpus_wer([("", "anything"), ("...", "")]) is None


def test_wer_counts_no_error_for_scoring_forms() -> None:
    assert wer([("Play the news on CNN at 5 pm", "play the news on c. n. n. at five p. m.")]) \
        == 0.0


@pytest.mark.parametrize(("locale", "text", "expected"), [
    ("en-US", "Set a timer for 10 minutes!", "set a timer for ten minutes"),
    ("de-DE", "Schalte das Licht in der Küche ein!", "schalte das licht in der küche ein"),
    ("de-DE", "Weck mich um 7 Uhr.", "weck mich um 7 uhr"),  # no English number words
    ("zh-CN", "打開廚房的燈。", "打开厨房的灯"),  # traditional -> simplified
    # Marks, digits and punctuation; the letter forms stay (nlu_arabic_letters is off).
    ("ar-SA", "شغّل الضوءَ في المطبخِ، الساعة ٧؟", "شغل الضوء في المطبخ الساعة 7"),  # noqa: RUF001
    ("fr-FR", "Allume la lumière !", "allume la lumière"),
    ("de-DE", "Wie heiß wird es?", "wie heiß wird es"),  # lower case, not case folding
])
def test_each_locale_has_its_normaliser(locale: str, text: str, expected: str) -> None:
    assert normalizer_for(locale)(text) == expected


def test_arabic_letter_forms_are_unified_on_request() -> None:
    text = "أين مدينةُ الإسكندرية؟"
    assert normalizer_for("ar-SA", arabic_letters=True)(text) == "اين مدينه الاسكندريه"
    assert normalizer_for("ar-SA")(text) == "أين مدينة الإسكندرية"
