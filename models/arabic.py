# ruff: noqa: RUF002 -- Arabic letters are this module's subject, not look-alikes
"""Arabic text as the understanding model reads it: one spelling per word, clitics apart.

:func:`normalise` makes the spellings a recogniser or a typist may choose for
one word the same: short vowels and other marks (tashkeel) and the tatweel are
dropped, the alef forms ``أ إ آ ٱ`` become ``ا``, alef maqsura ``ى`` becomes
``ي``, taa marbuta ``ة`` becomes ``ه``, Eastern Arabic (``٠``-``٩``) and
Persian (``۰``-``۹``) digits become ASCII ones, and Arabic punctuation its
ASCII counterpart. Text in other scripts passes through (runs of white space
become one space).

:func:`segment` splits the clitics Arabic writes onto a word: the
conjunctions ``و`` (w+) and ``ف`` (f+), the prepositions ``ب`` (b+), ``ل``
(l+) and ``ك`` (k+), the article ``ال`` (al+; ``لل`` is l+ al+ with the alef
dropped) and the pronoun suffixes (``ها هم هن هما كم كن كما نا ني ك ه ي``).
It is rule-based: a clitic comes off only when at least
:data:`MIN_STEM` letters stay, and words whose first or last letters merely
look like clitics (``في``, ``وقت``, ``فيلم``, ``بيت``, ``كيف``, ...) are
protected. Each clitic stays a word of its own, marked with ``+`` on the side
it attaches (``والبيت`` -> ``و+ ال+ بيت``). No dictionary or library: pyarabic
is GPL, and camel-tools' morphological analyser needs a database download.
"""

from __future__ import annotations

import re

#: Marks written over or under letters: short vowels, tanween, shadda, sukun, the
#: dagger alef, hamza marks and the Quranic annotation signs.
_MARKS = re.compile("[\u0610-\u061a\u064b-\u065f\u0670\u06d6-\u06dc\u06df-\u06e8\u06ea-\u06ed]")
_TATWEEL = "\u0640"
#: The letter forms :func:`normalise` unifies (``letters=True``).
_LETTERS = {
    "\u0623": "\u0627", "\u0625": "\u0627", "\u0622": "\u0627", "\u0671": "\u0627",  # alef forms
    "\u0649": "\u064a",  # alef maqsura -> yaa
    "\u0629": "\u0647",  # taa marbuta -> haa
}
_MARKS_DIGITS = str.maketrans({
    **{chr(0x0660 + d): str(d) for d in range(10)},  # Eastern Arabic digits
    **{chr(0x06F0 + d): str(d) for d in range(10)},  # Persian digits
    "\u060c": ",", "\u061b": ";", "\u061f": "?", "\u066a": "%", "\u066b": ".", "\u066c": ",",
    _TATWEEL: "",
})
_TABLE = {**_MARKS_DIGITS, **str.maketrans(_LETTERS)}
_SPACE = re.compile(r"\s+")

#: Letters a stem keeps at least when a clitic comes off it.
MIN_STEM = 3
_CONJUNCTIONS = ("\u0648", "\u0641")  # w, f
_PREPOSITIONS = ("\u0628", "\u0644", "\u0643")  # b, l, k
_ARTICLE = "\u0627\u0644"  # al
#: Pronoun suffixes, longest first (after :func:`normalise`'s alef forms).
_SUFFIXES = ("\u0647\u0645\u0627", "\u0643\u0645\u0627", "\u0647\u0627", "\u0647\u0645",
             "\u0647\u0646", "\u0643\u0645", "\u0643\u0646", "\u0646\u0627", "\u0646\u064a",
             "\u0643", "\u0647", "\u064a")
#: Common words whose first or last letters look like a clitic but belong to the word
#: (kept in the normalised spelling: taa marbuta as haa, alef forms as bare alef).
_PROTECTED_WORDS = """
في فيه فيها فيلم فيديو فوق فقط فرن فتح فصل فندق وقت ولد وين وزن وضع وصل واحد وراء
بيت بين بعد بعض بدون بحث برد بارد بطيء بلد بنك باب بكره بكرا ليس لون ليل ليله لعبه لماذا
لكن لحم لغه لمبه كل كم كيف كان كانت كتاب كلمه كبير كهرباء كمان كاس كوب مكيف مطبخ مطعم
الان الذي التي الى الي على علي هذا هذه هذي ذلك تلك هنا هناك انا انت انتم نحن هو هي هم
اغنيه اغاني موسيقي موسيقى اخبار طقس ساعه صباح مساء يوم اليوم غدا امس منبه ضوء نور
شغل اطفئ اطفي افتح اغلق ارفع اخفض ضبط اضبط ذكرني ايقظني ابحث اتصل ارسل
فضل برنامج برامج بارد باردا برودة حوالي تلفزيون ساخن ساخنا لالتقاط ثماني ولايه متنزه ساعطي
"""


def normalise(text: str, *, letters: bool = True) -> str:
    """Return ``text`` with one spelling per Arabic word (see the module doc).

    ``letters=False`` keeps the alef, yaa and taa marbuta forms (marks, tatweel,
    digits and punctuation are still normalised): the multilingual NLU's
    vocabulary is in standard spelling, and unifying them cost it 5 points of
    intent accuracy on xSID ar valid (README, Other languages).
    """
    return _SPACE.sub(" ", _MARKS.sub("", text).translate(
        _TABLE if letters else _MARKS_DIGITS)).strip()


PROTECTED = frozenset(normalise(_PROTECTED_WORDS).split())


def _light(word: str) -> str:
    """Marks, tatweel and alef forms only: taa marbuta stays told apart from a suffix haa."""
    return _MARKS.sub("", word).replace(_TATWEEL, "").translate(
        {0x0623: 0x0627, 0x0625: 0x0627, 0x0622: 0x0627, 0x0671: 0x0627})


def _arabic(word: str) -> bool:
    return bool(word) and all("\u0621" <= c <= "\u064a" for c in word)


def _protected(word: str) -> bool:
    """Whether ``word``, or ``word`` less a pronoun suffix, is a protected word."""
    return normalise(word) in PROTECTED or any(
        word.endswith(s) and normalise(word[: -len(s)]) in PROTECTED for s in _SUFFIXES)


def split_word(word: str) -> list[str]:
    """Return ``word``'s proclitics (``و+``), stem and suffix (``+ها``), in order.

    ``word`` should have had its marks and alef forms removed (:func:`segment`
    does that); a word that is not all Arabic letters comes back whole.
    """
    if not _arabic(word) or normalise(word) in PROTECTED:
        return [word]
    for suffix in _SUFFIXES:  # a protected word with a pronoun: "بيتنا" -> بيت +نا
        if word.endswith(suffix) and normalise(word[: -len(suffix)]) in PROTECTED:
            return [word[: -len(suffix)], "+" + suffix]
    front: list[str] = []
    stem = word
    if stem[0] in _CONJUNCTIONS and len(stem) - 1 >= MIN_STEM:
        front.append(stem[0] + "+")
        stem = stem[1:]
    if not _protected(stem):
        if stem.startswith("\u0644\u0644") and len(stem) - 2 >= MIN_STEM - 1:
            # li + al- with the article's alef dropped: "للبيت" -> l+ al+ بيت
            front += ["\u0644+", _ARTICLE + "+"]
            stem = stem[2:]
        elif stem[0] in _PREPOSITIONS:
            rest = stem[1:]
            # Before the article a preposition is sure; before other words, b/l/k are
            # also common first root letters, so one more letter must stay.
            if (rest.startswith(_ARTICLE) and len(rest) - 2 >= MIN_STEM - 1) or \
                    len(rest) >= MIN_STEM + 1:
                front.append(stem[0] + "+")
                stem = rest
    if stem.startswith(_ARTICLE) and len(stem) - 2 >= MIN_STEM - 1 and not _protected(stem):
        front.append(_ARTICLE + "+")
        stem = stem[2:]
    back: list[str] = []
    # A word with the article takes no pronoun; a stem that is itself a word keeps its end.
    if (not front or front[-1] != _ARTICLE + "+") and normalise(stem) not in PROTECTED:
        # The longest suffix the word ends with decides: "ارني" (show me) is too short
        # to lose "ني", and must not lose a bare "ي" instead.
        suffix = next((x for x in _SUFFIXES if stem.endswith(x)), "")
        if suffix and len(stem) - len(suffix) >= MIN_STEM:
            back.append("+" + suffix)
            stem = stem[: -len(suffix)]
    return [*front, stem, *back]


def segment(text: str) -> str:
    """Return ``text`` with its clitics as separate, ``+``-marked words, then normalised."""
    words = [part for w in _light(text).split() for part in split_word(w)]
    return normalise(" ".join(words))
