"""Dictionary code-switching of English training requests (the CoSDA-ML idea).

Some of a request's words are replaced by a dictionary translation into a
target language chosen at random per word, keeping the intent and the slots:
every slot's span is recomputed so that it covers exactly its (possibly
translated) words. Numbers, times and punctuation stay as they are, and a word
that a slot boundary cuts is never replaced.

Chinese is written without spaces (xSID's and MASSIVE's zh text), so the space
between two words that both became Chinese is dropped, unless a slot begins or
ends there: the multilingual tokenizer segments a run of Chinese characters on
its own, and a piece that straddled a slot boundary would lose its tag.

Pure and torch-free: the training script calls :func:`augment` once per epoch.
"""

from __future__ import annotations

import dataclasses
import random
import re
from collections.abc import Mapping, Sequence

from models.nlu.massive import Example, Slot

#: A language code -> (English word -> translations, best first).
Dictionaries = Mapping[str, Mapping[str, Sequence[str]]]

_WORD = re.compile(r"[A-Za-z]+(?:'[A-Za-z]+)*")
#: Words that stay English: numbers, times of day, units of a time (MASSIVE spells
#: numbers out), which the slot values carry as they are in every language's data.
KEEP = frozenset("""
zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen
fifteen sixteen seventeen eighteen nineteen twenty thirty forty fifty sixty seventy eighty
ninety hundred thousand million billion first second third fourth fifth sixth seventh
eighth ninth tenth eleventh twelfth thirteenth fourteenth fifteenth sixteenth seventeenth
eighteenth nineteenth twentieth thirtieth half quarter am pm a.m p.m o'clock oclock
""".split())
#: Slots whose values are names or addresses: a dictionary translates "john" or
#: "queen" as words, which no speaker of the language would say for the name.
NAME_SLOTS = frozenset("""
person artist_name song_name business_name email_address radio_name audiobook_name
audiobook_author podcast_name app_name movie_name game_name playlist_name transport_name
music_album
""".split())
_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")


@dataclasses.dataclass(frozen=True, slots=True)
class Replacement:
    """One replaced word: its span in the old and in the new text, and the language."""

    old_start: int
    old_end: int
    new_start: int
    new_end: int
    language: str


@dataclasses.dataclass(frozen=True, slots=True)
class Switched:
    """A code-switched example and the replacements that made it."""

    example: Example
    replacements: tuple[Replacement, ...]


def translatable(word: str, dictionaries: Dictionaries) -> list[str]:
    """The languages that have a translation of ``word`` (lower-cased), none for the
    words in :data:`KEEP` and for single letters (spelt-out abbreviations) but a, i."""
    key = word.casefold()
    if key in KEEP or (len(key) == 1 and key not in {"a", "i"}):
        return []
    return [lang for lang, table in dictionaries.items() if table.get(key)]


def switch(example: Example, dictionaries: Dictionaries, rng: random.Random,
           ratio: float = 0.5, keep_slots: frozenset[str] = NAME_SLOTS) -> Switched:
    """Replace about ``ratio`` (0 to 1) of ``example``'s translatable words by a random
    translation into a random language of ``dictionaries``; return the new example
    with its slots moved onto their new text, and the replacements. Words in a slot of
    a type in ``keep_slots`` (default: the name slots) stay as they are."""
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(f"ratio must be within [0, 1], got {ratio}")
    text = example.text
    boundaries = {x for s in example.slots for x in (s.start, s.end)}
    kept = [s for s in example.slots if s.type in keep_slots]
    # Words that a slot boundary does not cut, with the languages that translate them.
    words = [(m.start(), m.end(), langs) for m in _WORD.finditer(text)
             if not any(m.start() < b < m.end() for b in boundaries)
             and not any(s.start <= m.start() < s.end for s in kept)
             and (langs := translatable(m.group(), dictionaries))]
    chosen = sorted(rng.sample(range(len(words)), round(ratio * len(words))))
    new: dict[int, tuple[int, str, str]] = {}  # old start -> (old end, translation, lang)
    for i in chosen:
        start, end, langs = words[i]
        lang = rng.choice(langs)
        new[start] = (end, rng.choice(list(dictionaries[lang][text[start:end].casefold()])),
                      lang)
    out: list[str] = []
    length = 0
    # where[p]: the new offset of old offset p, for every p that is not inside a
    # replaced word (slot boundaries never are).
    where: dict[int, int] = {}
    replacements: list[Replacement] = []
    last_zh_end = -1  # old end of the last replacement, if it was Chinese
    pos = 0
    while pos < len(text):
        where[pos] = length
        if pos in new:
            end, translation, lang = new[pos]
            gap_start = _gap_before(text, pos)
            if (_CJK.match(translation) and last_zh_end == gap_start and out
                    and not boundaries & set(range(gap_start, pos + 1))):
                # Drop the white space between two Chinese words of one stretch.
                dropped = pos - gap_start
                del out[-dropped:]
                length -= dropped
                for p in range(gap_start, pos + 1):
                    where[p] = length
            out.append(translation)
            replacements.append(Replacement(pos, end, length, length + len(translation), lang))
            length += len(translation)
            last_zh_end = end if _CJK.search(translation[-1]) else -1
            pos = end
            continue
        out.append(text[pos])
        length += 1
        pos += 1
    where[len(text)] = length
    new_text = "".join(out)
    slots = tuple(Slot(s.type, new_text[where[s.start]:where[s.end]], where[s.start],
                       where[s.end]) for s in example.slots)
    return Switched(dataclasses.replace(example, text=new_text, slots=slots),
                    tuple(replacements))


def _gap_before(text: str, pos: int) -> int:
    """The start of the white space that ends at ``pos`` (``pos`` itself if none)."""
    start = pos
    while start > 0 and text[start - 1].isspace():
        start -= 1
    return start


def codeswitch(example: Example, dictionaries: Dictionaries, rng: random.Random,
               ratio: float = 0.5, keep_slots: frozenset[str] = NAME_SLOTS) -> Example:
    """``example`` with about ``ratio`` of its translatable words in other languages
    (see :func:`switch`)."""
    return switch(example, dictionaries, rng, ratio, keep_slots).example


def augment(examples: Sequence[Example], dictionaries: Dictionaries, copies: int = 1,
            ratio: float = 0.5, seed: int = 0,
            keep_slots: frozenset[str] = NAME_SLOTS) -> list[Example]:
    """Return ``examples`` followed by ``copies`` code-switched copies of each (in the
    same order), drawn from ``random.Random(seed)``: the same seed gives the same set."""
    if copies < 0:
        raise ValueError(f"copies must be >= 0, got {copies}")
    rng = random.Random(seed)
    out = list(examples)
    for _ in range(copies):
        out.extend(codeswitch(e, dictionaries, rng, ratio, keep_slots) for e in examples)
    return out


@dataclasses.dataclass(frozen=True, slots=True)
class Coverage:
    """How much of a set's English a dictionary translates."""

    tokens: int
    tokens_translated: int
    words: int
    words_translated: int


def coverage(examples: Sequence[Example], table: Mapping[str, Sequence[str]]) -> Coverage:
    """Count the word tokens and distinct words of ``examples`` that ``table`` translates
    (numbers and times, :data:`KEEP`, count as untranslated)."""
    tokens = [m.group().casefold() for e in examples for m in _WORD.finditer(e.text)]
    ok = {w for w in set(tokens) if translatable(w, {"x": table})}
    return Coverage(len(tokens), sum(w in ok for w in tokens), len(set(tokens)), len(ok))
