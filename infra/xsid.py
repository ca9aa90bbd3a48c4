"""xSID validation sets in CoNLL form, and how their labels map onto MASSIVE's.

A file is blocks separated by blank lines. Each block has comment lines
(``# id = 1``, ``# text = ...``, ``# text-en = ...``, ``# intent = ...``, and in
the English file ``# slots: ...``) and then one line per token, four tab-separated
columns: position, token, intent, BIO slot tag (``B-datetime``, ``I-datetime``, ``O``).

xSID has 16 intents from Snips and Facebook's task-oriented set, MASSIVE 60 of its
own; :data:`INTENTS` and :data:`SLOTS` say which correspond. Slots are compared by
*class*: one row of :data:`SLOTS` may hold several xSID and several MASSIVE
types (xSID's ``datetime`` is MASSIVE's ``date``, ``time`` and ``timeofday``).
"""

from __future__ import annotations

import dataclasses
import itertools
import re
from collections.abc import Callable
from pathlib import Path

from infra.inputs import InputFileError, read_text
from models.nlu.massive import Slot

#: xSID intent -> the MASSIVE intent that asks for the same thing. Not here:
#: ``AddToPlaylist``, ``BookRestaurant``, ``RateBook``, ``SearchCreativeWork``,
#: ``SearchScreeningEvent``, ``alarm/modify_alarm`` and ``alarm/snooze_alarm``
#: (MASSIVE has no intent for them; MASSIVE files reminders under calendar).
INTENTS: dict[str, str] = {
    "weather/find": "weather_query",
    "alarm/set_alarm": "alarm_set",
    "alarm/cancel_alarm": "alarm_remove",
    "alarm/show_alarms": "alarm_query",
    "reminder/set_reminder": "calendar_set",
    "reminder/cancel_reminder": "calendar_remove",
    "reminder/show_reminders": "calendar_query",
    "PlayMusic": "play_music",
}


@dataclasses.dataclass(frozen=True, slots=True)
class SlotClass:
    """Slot types of both inventories that name the same thing, compared as ``name``."""

    name: str
    xsid: tuple[str, ...]
    massive: tuple[str, ...]


#: The slot classes compared; an xSID type in none of them is unmapped.
SLOTS: tuple[SlotClass, ...] = (
    SlotClass("datetime", ("datetime",), ("date", "time", "timeofday")),
    SlotClass("frequency", ("recurring_datetime",), ("general_frequency",)),
    SlotClass("location", ("location",), ("place_name",)),
    SlotClass("weather", ("weather/attribute", "condition_description",
                          "condition_temperature"), ("weather_descriptor",)),
    SlotClass("todo", ("reminder/todo",), ("event_name",)),
    SlotClass("artist", ("artist",), ("artist_name",)),
    SlotClass("playlist", ("playlist",), ("playlist_name",)),
    SlotClass("album", ("album",), ("music_album",)),
    SlotClass("genre", ("genre",), ("music_genre",)),
    SlotClass("track", ("track",), ("song_name",)),
    SlotClass("service", ("service",), ("app_name",)),
)

#: xSID slot type -> class name, and MASSIVE slot type -> class name.
XSID_CLASS: dict[str, str] = {t: c.name for c in SLOTS for t in c.xsid}
MASSIVE_CLASS: dict[str, str] = {t: c.name for c in SLOTS for t in c.massive}

_TAG = re.compile(r"O|[BI]-\S+")
#: The non-word characters (punctuation, white space) at the start and end of a stretch.
_EDGE = re.compile(r"[\W_]*")
_TAIL = re.compile(r"[\W_]*$")


@dataclasses.dataclass(frozen=True, slots=True)
class XsidExample:
    """One xSID utterance: slots are character spans of ``text`` with xSID types."""

    id: str
    text: str
    intent: str
    slots: tuple[Slot, ...]
    #: 1-based line of the file where the utterance's block starts.
    line: int


@dataclasses.dataclass
class _Block:
    line: int
    comments: dict[str, str] = dataclasses.field(default_factory=dict)
    #: (line number, token, intent column, tag).
    tokens: list[tuple[int, str, str, str]] = dataclasses.field(default_factory=list)


def _blocks(path: Path, text: str) -> list[_Block]:
    blocks: list[_Block] = []
    cur: _Block | None = None
    for number, raw in enumerate(text.splitlines(), start=1):
        row = raw.rstrip("\r\n")
        if not row.strip():
            cur = None
            continue
        if cur is None:
            cur = _Block(number)
            blocks.append(cur)
        if row.startswith("#"):
            if cur.tokens:
                raise InputFileError(path, "a comment line after the tokens of an utterance",
                                     line=number)
            key, sep, value = row[1:].partition("=")
            if sep:
                cur.comments[key.strip()] = value.strip()
            continue
        cols = row.split("\t")
        if len(cols) != 4:
            raise InputFileError(path, f"a token line needs 4 tab-separated columns "
                                       f"(position, token, intent, tag), found {len(cols)}",
                                 line=number)
        position, token, intent, tag = cols
        if not position.isdigit() or int(position) != len(cur.tokens) + 1:
            raise InputFileError(path, f"token position {position!r}, expected "
                                       f"{len(cur.tokens) + 1}", line=number)
        if not _TAG.fullmatch(tag):
            raise InputFileError(path, f"slot tag {tag!r} is not O, B-type or I-type",
                                 line=number)
        if not token and tag != "O":
            raise InputFileError(path, f"empty token tagged {tag}", line=number)
        cur.tokens.append((number, token, intent, tag))
    return blocks


def _example(path: Path, block: _Block) -> XsidExample:
    for key in ("text", "intent"):
        if not block.comments.get(key):
            raise InputFileError(path, f"utterance without a '# {key} = ...' line",
                                 line=block.line)
    if not block.tokens:
        raise InputFileError(path, "utterance without token lines", line=block.line)
    text, intent = block.comments["text"], block.comments["intent"]
    slots: list[Slot] = []
    cur_type, cur_start, cur_end = "", -1, -1
    pos = 0
    for number, token, token_intent, tag in block.tokens:
        if token_intent != intent:
            raise InputFileError(path, f"token intent {token_intent!r} differs from the "
                                       f"utterance's {intent!r}", line=number)
        if not token:
            # zh.valid.conll line 3019: an empty token tagged O, a space of the text.
            continue
        start = text.find(token, pos)
        if start < 0:
            raise InputFileError(path, f"token {token!r} is not in the text after "
                                       f"character {pos}", line=number)
        end = pos = start + len(token)
        kind, _, typ = tag.partition("-")
        if kind == "I":
            if typ != cur_type:
                raise InputFileError(path, f"{tag} continues no {typ} slot", line=number)
            cur_end = end
            continue
        if cur_type:
            slots.append(Slot(cur_type, text[cur_start:cur_end], cur_start, cur_end))
        cur_type, cur_start, cur_end = (typ, start, end) if kind == "B" else ("", -1, -1)
    if cur_type:
        slots.append(Slot(cur_type, text[cur_start:cur_end], cur_start, cur_end))
    return XsidExample(block.comments.get("id", ""), text, intent, tuple(slots), block.line)


def load_xsid(path: str | Path) -> list[XsidExample]:
    """Read an xSID CoNLL file; raise ``InputFileError`` naming the bad line."""
    path = Path(path)
    examples = [_example(path, b) for b in _blocks(path, read_text(path))]
    if not examples:
        raise InputFileError(path, "no utterances: expected xSID CoNLL blocks")
    return examples


def normalised(ex: XsidExample, normalise: Callable[[str], str]) -> XsidExample:
    """``ex`` as the understanding model reads it: ``normalise`` (the locale's
    normaliser, :func:`models.textnorm.normalizer_for`) applied to each slot and to
    each stretch between slots on its own, so the gold spans stay exact. A boundary
    the text marks with white space keeps one space; one it does not (Chinese,
    punctuation) stays closed. A slot the normaliser empties (punctuation only) is
    dropped."""
    cuts = sorted({0, len(ex.text), *(x for s in ex.slots for x in (s.start, s.end))})
    starts = {s.start: s for s in ex.slots}
    out = ""
    slots: list[Slot] = []
    gap = ""  # what the normaliser dropped since the last kept text ("Uhr, um": ", ")
    for a, b in itertools.pairwise(cuts):
        part = ex.text[a:b]
        new = normalise(part).strip()
        if not new:
            gap += part
            continue
        lead = _EDGE.match(part)
        if out and any(c.isspace() for c in gap + (lead.group() if lead else "")):
            out += " "
        trail = _TAIL.search(part)
        gap = trail.group() if trail else ""
        slot = starts.get(a)
        if slot is not None and slot.end == b:
            slots.append(Slot(slot.type, new, len(out), len(out) + len(new)))
        out += new
    return dataclasses.replace(ex, text=out, slots=tuple(slots))


def to_classes(text: str, slots: tuple[Slot, ...] | list[Slot],
               classes: dict[str, str]) -> list[Slot]:
    """Rename ``slots`` to their class (``classes``: type -> class), drop the unmapped,
    and join slots of one class that only white space separates.

    Joining is what lets MASSIVE's ``[date : tomorrow] [time : at seven]`` match
    xSID's one ``datetime`` span.
    """
    out: list[Slot] = []
    for s in sorted(slots, key=lambda s: s.start):
        name = classes.get(s.type)
        if name is None:
            continue
        if out and out[-1].type == name and not text[out[-1].end:s.start].strip():
            prev = out.pop()
            out.append(Slot(name, text[prev.start:s.end], prev.start, s.end))
        else:
            out.append(Slot(name, s.value, s.start, s.end))
    return out
