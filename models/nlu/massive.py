"""MASSIVE records: utterance text, intent, and slots as character spans and BIO word tags.

``annot_utt`` marks slots as ``[type : value]``; the plain utterance is the
annotation with the brackets removed.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from streams.files import InputFileError, read_jsonl

_SLOT = re.compile(r"\[\s*([^\]:]+?)\s*:\s*([^\]]*?)\s*\]")


@dataclasses.dataclass(frozen=True, slots=True)
class Slot:
    """A slot: its type, value and character span in the utterance."""

    type: str
    value: str
    start: int
    end: int


@dataclasses.dataclass(frozen=True, slots=True)
class Example:
    """One labelled utterance."""

    text: str
    intent: str
    slots: tuple[Slot, ...]
    scenario: str = ""


def parse_annotation(annot: str) -> tuple[str, tuple[Slot, ...]]:
    """Return the plain text and the slots of a MASSIVE ``annot_utt``."""
    text_parts: list[str] = []
    slots: list[Slot] = []
    pos = 0
    length = 0
    for m in _SLOT.finditer(annot):
        before = annot[pos:m.start()]
        text_parts.append(before)
        length += len(before)
        value = m.group(2)
        slots.append(Slot(m.group(1), value, length, length + len(value)))
        text_parts.append(value)
        length += len(value)
        pos = m.end()
    text_parts.append(annot[pos:])
    return "".join(text_parts), tuple(slots)


def load(path: Path) -> list[Example]:
    """Read a MASSIVE-format JSON-lines file."""
    out = []
    rows = read_jsonl(path, ("annot_utt", "intent"), "a MASSIVE record (annot_utt, intent)")
    for number, row in enumerate(rows, 1):
        if not isinstance(row["annot_utt"], str) or not isinstance(row["intent"], str):
            raise InputFileError(f"{path}: record {number}: annot_utt and intent must be text")
        text, slots = parse_annotation(row["annot_utt"])
        out.append(Example(text, row["intent"], slots, str(row.get("scenario", ""))))
    return out
