"""MASSIVE records: utterance text, intent, and slots as character spans and BIO word tags.

``annot_utt`` marks slots as ``[type : value]``; the plain utterance is the
annotation with the brackets removed.
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

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
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        row = json.loads(line)
        text, slots = parse_annotation(row["annot_utt"])
        out.append(Example(text, row["intent"], slots, row.get("scenario", "")))
    return out
