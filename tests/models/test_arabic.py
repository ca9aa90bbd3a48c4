# ruff: noqa: RUF001 -- Arabic letters are the subject of these tests, not look-alikes
"""The Arabic normaliser and clitic segmentation: examples and properties."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from models.arabic import PROTECTED, normalise, segment, split_word
from models.textnorm import normalizer_for

# Arabic letters, marks, tatweel, digits of both kinds, punctuation, Latin and spaces.
ARABIC_TEXT = st.text(alphabet=st.one_of(
    st.characters(min_codepoint=0x0600, max_codepoint=0x06FF),
    st.sampled_from(list("abc XYZ 019.,!?\t\n"))), max_size=60)

#: What the normalised text never holds.
GONE = set("\u064b\u064c\u064d\u064e\u064f\u0650\u0651\u0652\u0670\u0640"
           "أإآٱىة٠١٢٣٤٥٦٧٨٩۰۱۲۳۴۵۶۷۸۹")


@pytest.mark.parametrize(("text", "expected"), [
    ("شَغِّلِ الضَّوْءَ", "شغل الضوء"),  # tashkeel
    ("الســـلام", "السلام"),  # tatweel
    ("أحمد إلى آخر ٱلكتاب", "احمد الي اخر الكتاب"),  # alef forms, alef maqsura
    ("الساعة السابعة", "الساعه السابعه"),  # taa marbuta
    ("٧:٣٠ و ۱۲", "7:30 و 12"),  # Eastern Arabic and Persian digits
    ("كيف الطقس؟", "كيف الطقس?"),
    ("turn   on", "turn on"),
])
def test_normalise_examples(text: str, expected: str) -> None:
    assert normalise(text) == expected


@pytest.mark.parametrize(("word", "parts"), [
    ("والبيت", ["و+", "ال+", "بيت"]),  # w+ al+
    ("فالولد", ["ف+", "ال+", "ولد"]),  # f+ al+
    ("بالمطبخ", ["ب+", "ال+", "مطبخ"]),  # b+ al+
    ("للبيت", ["ل+", "ال+", "بيت"]),  # l+ al+, alef dropped
    ("كالبحر", ["ك+", "ال+", "بحر"]),  # k+ al+
    ("سيارتها", ["سيارت", "+ها"]),  # pronoun suffix
    ("وكتابهم", ["و+", "كتاب", "+هم"]),
    ("بيتنا", ["بيت", "+نا"]),  # a protected stem still sheds its pronoun
    ("وقت", ["وقت"]),  # too short to lose a letter
    ("فيلم", ["فيلم"]),  # protected: f is a root letter
    ("كيف", ["كيف"]),
    ("اليوم", ["اليوم"]),  # protected: "today" as one word
    ("فضلك", ["فضل", "+ك"]),  # "من فضلك": please
    ("ارني", ["ارني"]),  # show me: too short to lose "ني", and never a bare "ي" instead
    ("hello", ["hello"]),
])
def test_split_word_examples(word: str, parts: list[str]) -> None:
    assert split_word(word) == parts


def test_segment_a_command() -> None:
    assert segment("وشغّل الضوء في المطبخ") == "و+ شغل ال+ ضوء في ال+ مطبخ"


@given(ARABIC_TEXT)
def test_normalise_is_idempotent_and_removes_every_variant(text: str) -> None:
    once = normalise(text)
    assert normalise(once) == once
    assert not GONE & set(once)
    assert len(once) <= len(text)


@given(st.text(alphabet=st.characters(max_codepoint=0x024F), max_size=60))
def test_normalise_leaves_latin_text_alone_but_for_spaces(text: str) -> None:
    assert normalise(text) == " ".join(text.split())


@given(ARABIC_TEXT)
def test_segment_only_splits_words(text: str) -> None:
    out = segment(text)
    assert segment(normalise(text)).replace("+", "").split() == out.replace("+", "").split()
    # Taking the markers and the spaces out gives back the normalised letters.
    assert out.replace("+", "").replace(" ", "") == normalise(text).replace(" ", "")


@given(st.sampled_from(sorted(PROTECTED)))
def test_protected_words_stay_whole(word: str) -> None:
    assert normalise(word) == word  # listed as normalise writes them
    assert segment(word) == word


def test_the_ar_normaliser_drops_punctuation_and_splits_clitics_on_request() -> None:
    assert normalizer_for("ar-SA")("شغّل الضوء، من فضلك!") == "شغل الضوء من فضلك"
    assert normalizer_for("ar-EG", arabic_clitics=True)("بالمطبخ") == "ب+ ال+ مطبخ"
