"""Text normalisation for scoring recognition: casing, punctuation and numbers, explicitly.

Both reference and hypothesis go through :func:`normalize` before WER is
counted, so "Set a timer for 10 minutes." and "set a timer for ten minutes"
score as equal. Numbers become words (``10`` -> ``ten``, ``5:30`` -> ``five
thirty``, ``7:00`` -> ``seven``, ``3rd`` -> ``third``, ``2.5`` -> ``two point
five``, ``20%`` -> ``twenty percent``), and ``and`` inside a spelled number is
dropped (``six hundred and six`` = ``six hundred six``); ``&`` becomes
``and``; hyphens split words, except ``e-mail`` -> ``email``; other punctuation
is dropped and apostrophes are removed (``let's`` = ``lets``, ``Matthew's`` =
``Matthews``: typed references write them either way).

For scoring only (:func:`normalize`, not the NLU's :func:`words_form`), forms
that a reference and a recogniser write differently for the same words are
made one: spoken times (``five p. m.`` = ``5pm`` = ``5 pm`` = ``five pm``,
``7 o'clock`` = ``seven``, ``at 730`` = ``at seven thirty``), spelled letters
(``c. n. n.`` = ``C.N.N.`` = ``c n n`` = ``CNN``), ``vs``/``vs.``/``v.`` =
``versus``, currency (``$5`` = ``five dollars``, ``$1.50`` = ``one dollar fifty
cents``, ``one dollar`` = ``one dollars``; ``£``/``€`` as pounds and euros) and
ordinals (``1st`` = ``first``, done by :func:`words_form`); British spelling
becomes American (``favourite`` = ``favorite``), and :func:`scored_words` joins two
words that the other side writes as one (``audio book`` = ``audiobook``).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from typing import Any

_ONES = (
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
    "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen",
    "nineteen",
)
_TENS = ("", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety")
_ORDINAL = {"one": "first", "two": "second", "three": "third", "five": "fifth",
            "eight": "eighth", "nine": "ninth", "twelve": "twelfth"}


def number_words(n: int) -> str:
    """Spell out a non-negative integer below a billion."""
    if n < 0:
        return "minus " + number_words(-n)
    if n < 20:
        return _ONES[n]
    if n < 100:
        tens, ones = divmod(n, 10)
        return _TENS[tens] + (" " + _ONES[ones] if ones else "")
    if n < 1000:
        hundreds, rest = divmod(n, 100)
        return _ONES[hundreds] + " hundred" + (" " + number_words(rest) if rest else "")
    for size, name in ((1_000_000, "million"), (1000, "thousand")):
        if n >= size:
            high, rest = divmod(n, size)
            return number_words(high) + f" {name}" + (" " + number_words(rest) if rest else "")
    raise ValueError(n)  # unreachable for n < 1e9


def ordinal_words(n: int) -> str:
    """Spell out an ordinal: 3 -> third, 21 -> twenty first."""
    words = number_words(n).split()
    last = words[-1]
    if last in _ORDINAL:
        words[-1] = _ORDINAL[last]
    elif last.endswith("y"):
        words[-1] = last[:-1] + "ieth"
    else:
        words[-1] = last + "th"
    return " ".join(words)


def _time(m: re.Match[str]) -> str:
    hours, minutes = int(m.group(1)), int(m.group(2))
    if minutes == 0:
        return number_words(hours)
    if minutes < 10:
        return f"{number_words(hours)} oh {number_words(minutes)}"
    return f"{number_words(hours)} {number_words(minutes)}"


def _decimal(m: re.Match[str]) -> str:
    whole, frac = m.group(1), m.group(2)
    return number_words(int(whole)) + " point " + " ".join(_ONES[int(d)] for d in frac)


_NUMBER_AND = re.compile(r"\b(hundred|thousand|million) and (?=(?:{})\b)".format(
    "|".join(_ONES[1:] + _TENS[2:])))


def words_form(text: str) -> str:
    """Return ``text`` lowercased, without punctuation, with numbers as words.

    Apostrophes inside words stay (``what's``): this is the form the NLU model
    reads, as MASSIVE writes it. The old spellings ``to-day``, ``to-morrow`` and
    ``to-night`` (Moonshine writes them, having read old books) are one word.
    """
    t = text.lower().replace("&", " and ").replace("%", " percent ")
    t = re.sub(r"\bto-(day|morrow|night)\b", r"to\1", t)
    t = re.sub(r"\b(\d{1,2}):(\d{2})\b", _time, t)
    t = re.sub(r"\b(\d+)\.(\d+)\b", _decimal, t)
    t = re.sub(r"\b(\d+)(st|nd|rd|th)\b", lambda m: ordinal_words(int(m.group(1))), t)
    t = re.sub(r"(?<=\d),(?=\d{3}\b)", "", t)  # 1,000
    t = re.sub(r"\d+", lambda m: f" {number_words(int(m.group(0)))} "
               if len(m.group(0)) < 10 else m.group(0), t)
    t = re.sub(r"[-_/]", " ", t)
    t = re.sub(r"[^\w\s']", " ", t)
    t = re.sub(r"(?<!\w)'|'(?!\w)", " ", t)
    return " ".join(t.split())


_CURRENCY = {"$": ("dollar", "dollars", "cent", "cents"),
             "£": ("pound", "pounds", "penny", "pence"),
             "€": ("euro", "euros", "cent", "cents")}
#: Singular and plural name one unit: "one dollar" and "1 dollars" score alike.
_UNIT_PLURAL = {"dollar": "dollars", "cent": "cents", "pound": "pounds", "euro": "euros",
                "penny": "pence", "buck": "bucks"}


def _money(m: re.Match[str]) -> str:
    one, many, small_one, small_many = _CURRENCY[m.group(1)]
    whole, frac = int(m.group(2).replace(",", "")), m.group(3)
    words = f"{whole} {one if whole == 1 else many}"
    if frac and int(frac):
        words += f" {int(frac)} {small_one if int(frac) == 1 else small_many}"
    return f" {words} "


def _clock(m: re.Match[str]) -> str:
    hours, minutes = int(m.group(2)), int(m.group(3))
    if not (1 <= hours <= 12 and minutes < 60):
        return m.group(0)
    return f"{m.group(1)}{hours}:{minutes:02d}{m.group(4)}"


def _letters(m: re.Match[str]) -> str:
    return " " + re.sub(r"[\s.]", "", m.group(0)) + " "


def _spoken_forms(t: str) -> str:
    """Make one the forms of times, letters, currency and "versus" (lowercased text)."""
    t = re.sub(r"\b([ap])\s*\.\s*m\b\.?", r"\1m", t)  # p. m. / p.m. -> pm
    t = re.sub(r"\b(\d+)([ap]m)\b", r"\1 \2", t)  # 5pm -> 5 pm
    # "at 730", "730 pm": a clock time written without its colon.
    t = re.sub(r"(\bat )(\d{1,2})(\d{2})\b()", _clock, t)
    t = re.sub(r"()\b(\d{1,2})(\d{2})( [ap]m)\b", _clock, t)
    t = re.sub(r"\bo\s*'?\s*clock\b", " ", t)
    t = re.sub(r"\b(vs|v)\.(?=\s|$)|\bvs\b", "versus", t)
    t = re.sub(r"([$£€])\s?(\d[\d,]*)(?:\.(\d{2}))?\b", _money, t)
    # Dotted letters, spaced or not ("c. n. n.", "c.n.n."), then bare single-letter runs.
    t = re.sub(r"(?<![\w.])[a-z](?:\.\s*[a-z]\b)+\.?", _letters, t)
    t = re.sub(r"(?<![\w'])[a-z]\.(?=\s+[a-z]{2,}|$)", lambda m: m.group(0)[0], t)
    t = re.sub(r"(?<![\w'])(?:[b-hj-z]|[ai](?= [a-z]\b))(?: [a-z](?![\w']))+",
               lambda m: m.group(0).replace(" ", "") if len(set(m.group(0).split()) -
                                                            {"a", "i"}) else m.group(0), t)
    return t


#: British spellings -> American, for scoring (MASSIVE's references write both; a
#: recogniser writes one): the words of the assistant's domains and common ones.
_BRITISH_AMERICAN = """
favourite favorite favourites favorites colour color colours colors coloured colored
centre center centres centers theatre theater theatres theaters metre meter metres meters
kilometre kilometer kilometres kilometers litre liter litres liters neighbour neighbor
neighbours neighbors neighbourhood neighborhood behaviour behavior flavour flavor
humour humor honour honor labour labor harbour harbor rumour rumor organise organize
organised organized organising organizing realise realize realised realized recognise
recognize apologise apologize prioritise prioritize summarise summarize memorise memorize
analyse analyze cancelled canceled cancelling canceling travelled traveled travelling
traveling traveller traveler modelling modeling labelled labeled grey gray programme
program programmes programs catalogue catalog dialogue dialog defence defense licence
license offence offense cheque check tyre tire tyres tires jewellery jewelry pyjamas
pajamas aluminium aluminum mould mold plough plow cosy cozy moustache mustache
""".split()
_AMERICAN = dict(zip(_BRITISH_AMERICAN[::2], _BRITISH_AMERICAN[1::2], strict=True))


def normalize(text: str) -> str:
    """Return the form WER is counted on: :func:`words_form`, without apostrophes,
    ``e-mail`` as ``email``, no ``and`` inside spelled numbers, American spelling, and
    one form each for spoken times, spelled letters, currency and "versus" (see the
    module's docstring)."""
    t = re.sub(r"\be[- ]mail", "email", text.lower().replace("\u2019", "'"))
    t = words_form(_spoken_forms(t)).replace("'", "")
    t = _NUMBER_AND.sub(r"\1 ", t)
    return " ".join(_AMERICAN.get(w, _UNIT_PLURAL.get(w, w)) for w in t.split())


def _compounds(words: list[str], other: set[str]) -> list[str]:
    """``words`` with each pair of neighbours joined where the other side writes them as
    one word ("audio book" against "audiobook", "play list" against "playlist")."""
    out: list[str] = []
    i = 0
    while i < len(words):
        if i + 1 < len(words) and words[i] + words[i + 1] in other and \
                not {words[i], words[i + 1]} <= other:
            out.append(words[i] + words[i + 1])
            i += 2
        else:
            out.append(words[i])
            i += 1
    return out


def scored_words(ref: str, hyp: str) -> tuple[list[str], list[str]]:
    r"""The words WER compares: both sides :func:`normalize`\ d, and a compound that
    one side writes as one word and the other as two made one word on both."""
    return _joined(normalize(ref).split(), normalize(hyp).split())


def _joined(r: list[str], h: list[str]) -> tuple[list[str], list[str]]:
    return _compounds(r, set(h)), _compounds(h, set(r))


def edit_distance(ref: list[str], hyp: list[str]) -> int:
    """Return the word-level Levenshtein distance."""
    prev = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        cur = [i] + [0] * len(hyp)
        for j, h in enumerate(hyp, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (r != h))
        prev = cur
    return prev[-1]


def wer(pairs: list[tuple[str, str]]) -> float:
    r"""Return corpus WER of (reference, hypothesis) pairs: the edits between their
    :func:`scored_words` over the references' :func:`normalize`\ d words (0 for none)."""
    errors, words = _counted(pairs)
    return errors / max(words, 1)


def corpus_wer(pairs: list[tuple[str, str]]) -> float | None:
    """:func:`wer` rounded to 4 places, or None when the references have no words."""
    errors, words = _counted(pairs)
    return round(errors / words, 4) if words else None


def _counted(pairs: list[tuple[str, str]]) -> tuple[int, int]:
    """Edits and reference words over ``pairs``, each side normalised once."""
    errors = words = 0
    for ref, hyp in pairs:
        r, h = normalize(ref).split(), normalize(hyp).split()
        errors += edit_distance(*_joined(r, h))
        words += len(r)
    return errors, words


# -- what the understanding model reads, per language ---------------------------------------

_CLOCK_RUN = re.compile(r"\b(at|for|until|by|to)\s+(\d{1,2})([0-5]\d)\b")
#: Punctuation of any script (Unicode category P*), written as a class of what to keep:
#: word characters, white space, and the ``+`` that marks an Arabic clitic.
_NOT_WORD = re.compile(r"[^\w\s+]")
_SPACES = re.compile(r"\s+")


def english_nlu_form(text: str) -> str:
    """ASR text the way MASSIVE writes English (lower case, numbers as words, no
    punctuation); Whisper's ``730`` after "at"/"for" is a clock time."""
    return words_form(_CLOCK_RUN.sub(r"\1 \2:\3", text))


def plain_form(text: str) -> str:
    """Lower case, punctuation of any script dropped, one space between words (digits
    stay digits: spelling numbers out is language-specific). Lower case, not case
    folding: "heiß" stays "heiß" (folded "heiss" cost the multilingual NLU 3 points
    of intent accuracy on xSID de valid)."""
    return _SPACES.sub(" ", _NOT_WORD.sub(" ", text.lower())).strip()


@functools.cache
def _t2s() -> Any:
    """OpenCC's traditional-to-simplified converter (loaded by the first zh request)."""
    import opencc

    return opencc.OpenCC("t2s")


def chinese_form(text: str) -> str:
    """Chinese in simplified characters (Whisper writes traditional ones for some
    speakers), punctuation dropped."""
    return plain_form(str(_t2s().convert(text)))


def arabic_form(text: str, *, clitics: bool = False, letters: bool = True) -> str:
    """Arabic normalised (:func:`models.arabic.normalise`; ``letters=False`` keeps the
    alef, yaa and taa marbuta forms), punctuation dropped; with ``clitics``, clitics
    split off as ``+``-marked words (:func:`models.arabic.segment`, letters unified)."""
    from models import arabic

    return plain_form(arabic.segment(text) if clitics
                      else arabic.normalise(text, letters=letters))


def language_of(locale: str) -> str:
    """The language subtag of a BCP 47 locale, lower case: ``de-DE`` -> ``de``."""
    return locale.replace("_", "-").split("-", 1)[0].casefold()


def normalizer_for(locale: str, *, arabic_clitics: bool = False,
                   arabic_letters: bool = False) -> Callable[[str], str]:
    """Return the function that turns a recognised text in ``locale`` into what the
    understanding model reads: English as MASSIVE writes it, Arabic normalised (with
    ``arabic_clitics``, clitics split), Chinese in simplified characters, other
    languages lower case without punctuation. The NLU eval calls it to score a set
    with and without a language's normaliser."""
    language = language_of(locale)
    if language == "en":
        return english_nlu_form
    if language == "ar":
        return functools.partial(arabic_form, clitics=arabic_clitics, letters=arabic_letters)
    if language == "zh":
        return chinese_form
    return plain_form
