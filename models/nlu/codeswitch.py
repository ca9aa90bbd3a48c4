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

Arabic is not English word for word (:func:`arabic_forms`, applied to a share
of the switched copies): two words of one slot that both became Arabic take
Arabic's order, the noun first ("next week" -> "الأسبوع القادم", not "القادم
الأسبوع"); the prepositions Arabic writes as part of the next word are joined
to it ("for", and "to" before a reminder's event, -> ل: "for tomorrow morning"
-> "لصباح غدا"), inside the slot, since a word cannot be cut; a time after "at"
is said with "الساعة" (the hour) and a weekday after "on" with "يوم" (day),
both inside the slot.

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


#: Verbs that make a following "on" a particle ("turn on the light", "put the radio
#: on"); elsewhere "on" is a preposition ("on friday", "on spotify", "what's on my
#: calendar"), which German, Arabic and Chinese say with other words (auf / على / 在,
#: not an / شغل / 打开). The glossary keys that sense ``on (prep)``.
_PARTICLE_VERBS = frozenset("turn turns turning turned switch switching put putting".split())


def sense(text: str, start: int, end: int) -> str:
    """The dictionary key of the word ``text[start:end]``: the word lower-cased, or
    ``on (prep)`` for an "on" that no particle verb among the three words before it
    governs."""
    key = text[start:end].casefold()
    if key != "on":
        return key
    before = [w.casefold() for w in _WORD.findall(text[:start])[-3:]]
    while before and before[-1] != "on":
        if before.pop() in _PARTICLE_VERBS:
            return key
    return "on (prep)"


def translatable(word: str, dictionaries: Dictionaries, key: str | None = None) -> list[str]:
    """The languages that have a translation of ``word`` (lower-cased; ``key``, a
    :func:`sense` of it, if given, with the plain word as the fallback), none for the
    words in :data:`KEEP` and for single letters (spelt-out abbreviations) but a, i."""
    word = word.casefold()
    if word in KEEP or (len(word) == 1 and word not in {"a", "i"}):
        return []
    return [lang for lang, table in dictionaries.items()
            if _translations(table, key or word, word)]


def _translations(table: Mapping[str, Sequence[str]], key: str, word: str) -> Sequence[str]:
    """``table``'s translations of the sense ``key``, else of the plain ``word`` (none:
    empty)."""
    return table.get(key) or table.get(word) or ()


def switch(example: Example, dictionaries: Dictionaries, rng: random.Random,
           ratio: float = 0.5, keep_slots: frozenset[str] = NAME_SLOTS,
           language: str | None = None) -> Switched:
    """Replace about ``ratio`` (0 to 1) of ``example``'s translatable words by a random
    translation into a random language of ``dictionaries`` (only ``language``, if
    given); return the new example with its slots moved onto their new text, and the
    replacements. Words in a slot of a type in ``keep_slots`` (default: the name
    slots) stay as they are."""
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(f"ratio must be within [0, 1], got {ratio}")
    text = example.text
    boundaries = {x for s in example.slots for x in (s.start, s.end)}
    kept = [s for s in example.slots if s.type in keep_slots]
    if language is not None:
        dictionaries = {language: dictionaries[language]}
    # Words that a slot boundary does not cut, with the languages that translate them.
    words: list[tuple[int, int, str, str, list[str]]] = []  # start, end, word, sense, languages
    for m in _WORD.finditer(text):
        if (any(m.start() < b < m.end() for b in boundaries)
                or any(s.start <= m.start() < s.end for s in kept)):
            continue
        key = sense(text, m.start(), m.end())
        if langs := translatable(m.group(), dictionaries, key):
            words.append((m.start(), m.end(), m.group().casefold(), key, langs))
    chosen = sorted(rng.sample(range(len(words)), round(ratio * len(words))))
    new: dict[int, tuple[int, str, str]] = {}  # old start -> (old end, translation, lang)
    for i in chosen:
        start, end, word, key, langs = words[i]
        lang = rng.choice(langs)
        choices = _translations(dictionaries[lang], key, word)
        new[start] = (end, rng.choice(list(choices)), lang)
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


#: Arabic words that come before their noun, as in English ("هذا الأسبوع", this week).
_AR_BEFORE_NOUN = frozenset("هذا هذه ذلك تلك هؤلاء أولئك كل بعض أي جميع".split())
_AR_WEEKDAYS = frozenset("""
الاثنين الثلاثاء الأربعاء الخميس الجمعة السبت الأحد اثنين ثلاثاء أربعاء خميس جمعة سبت أحد
""".split())
#: English prepositions Arabic writes joined to the next word: "for" always, "to"
#: before what a reminder is for ("remind me to call mum": "للاتصال بأمي"; "change it
#: to blue" is "إلى الأزرق", a word of its own).
_CLITICS = {"for": "ل"}
_CLITICS_BEFORE_EVENTS = {"for": "ل", "to": "ل"}
_EVENT_SLOTS = frozenset({"event_name"})
#: Slots whose two words are a noun and its modifier ("next week", "living room",
#: "heat index"), which Arabic orders noun first; a phrase such as a reminder's "call
#: mum" (verb, object) keeps its order.
_NOUN_SLOTS = frozenset("""
date timeofday place_name house_place weather_descriptor device_type music_genre color_type
food_type meal_type news_topic list_name transport_type business_type drink_type
general_frequency coffee_type movie_type alarm_type music_descriptor media_type game_type sport_type
""".split())


def _with_clitic(clitic: str, word: str) -> str:
    """``clitic`` joined to ``word``; ل before the article drops the article's alef (لل)."""
    if clitic == "ل" and word.startswith("ال"):
        return clitic + word[1:]
    return clitic + word


def arabic_forms(sw: Switched, rng: random.Random, rate: float = 0.5) -> Example:
    """``sw``'s example with Arabic's word order and joined prepositions in its slots
    (see the module's text), each change made with probability ``rate``; the slots move
    with their words. An example with no Arabic word comes back unchanged."""
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"rate must be within [0, 1], got {rate}")
    ex = sw.example
    text = ex.text
    arabic = {(r.new_start, r.new_end) for r in sw.replacements if r.language == "ar"}
    if not arabic or not rate:
        return ex
    edits: list[tuple[int, int, str]] = []  # (start, end, new text): one per changed slot
    for slot in ex.slots:
        words = [(slot.start + m.start(), slot.start + m.end())
                 for m in re.finditer(r"\S+", slot.value)]
        if not words:
            continue
        body = slot.value
        if (slot.type in _NOUN_SLOTS and len(words) == 2 and all(w in arabic for w in words)
                and text[words[0][0]:words[0][1]] not in _AR_BEFORE_NOUN
                and rng.random() < rate):
            (a0, a1), (b0, b1) = words
            body = f"{text[b0:b1]} {text[a0:a1]}"
        start = slot.start
        m = re.search(r"(?:^| )([A-Za-z]+) $", text[:slot.start])
        free = m is not None and not any(
            o.start < slot.start and o.end > m.start(1) for o in ex.slots if o is not slot)
        if m is not None and free and rng.random() < rate:
            key = m.group(1).casefold()
            clitics = _CLITICS_BEFORE_EVENTS if slot.type in _EVENT_SLOTS else _CLITICS
            if key in clitics and words[0] in arabic:
                head, sep, tail = body.partition(" ")
                body, start = _with_clitic(clitics[key], head) + sep + tail, m.start(1)
            elif key == "at" and slot.type == "time":
                body, start = "الساعة " + body, m.start(1)
            elif key == "on" and slot.type == "date" and body in _AR_WEEKDAYS:
                body, start = "يوم " + body, m.start(1)
        if (start, body) != (slot.start, slot.value):
            edits.append((start, slot.end, body))
    return _edited(ex, edits)


def _edited(ex: Example, edits: list[tuple[int, int, str]]) -> Example:
    """``ex`` with each ``(start, end, new)`` edit made (each ends where its slot
    does, none overlap); an edited slot spans its new text, the others shift."""
    if not edits:
        return ex
    edits = sorted(edits)
    out: list[str] = []
    pos = 0
    length = 0
    span: dict[int, tuple[int, int]] = {}  # old end of an edit -> its new span
    for a, b, new in edits:
        out.append(ex.text[pos:a])
        length += a - pos
        span[b] = (length, length + len(new))
        out.append(new)
        length += len(new)
        pos = b
    out.append(ex.text[pos:])
    text = "".join(out)

    def moved(p: int) -> int:
        return p + sum(len(new) - (b - a) for a, b, new in edits if b <= p)

    slots = []
    for s in ex.slots:
        start, end = span.get(s.end, (moved(s.start), moved(s.end)))
        slots.append(Slot(s.type, text[start:end], start, end))
    return dataclasses.replace(ex, text=text, slots=tuple(slots))


def codeswitch(example: Example, dictionaries: Dictionaries, rng: random.Random,
               ratio: float = 0.5, keep_slots: frozenset[str] = NAME_SLOTS,
               arabic: float = 0.0, one_language: bool = False) -> Example:
    """``example`` with about ``ratio`` of its translatable words in other languages
    (see :func:`switch`; ``one_language``: all of them in one, drawn per request),
    then Arabic's forms with probability ``arabic`` each (:func:`arabic_forms`)."""
    language = rng.choice(sorted(dictionaries)) if one_language else None
    sw = switch(example, dictionaries, rng, ratio, keep_slots, language)
    return arabic_forms(sw, rng, arabic) if arabic else sw.example


def augment(examples: Sequence[Example], dictionaries: Dictionaries, copies: int = 1,
            ratio: float = 0.5, seed: int = 0,
            keep_slots: frozenset[str] = NAME_SLOTS, arabic: float = 0.0,
            one_language: bool = False) -> list[Example]:
    """Return ``examples`` followed by ``copies`` code-switched copies of each (in the
    same order), drawn from ``random.Random(seed)``: the same seed gives the same set."""
    if copies < 0:
        raise ValueError(f"copies must be >= 0, got {copies}")
    rng = random.Random(seed)
    out = list(examples)
    for _ in range(copies):
        out.extend(codeswitch(e, dictionaries, rng, ratio, keep_slots, arabic, one_language)
                   for e in examples)
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
