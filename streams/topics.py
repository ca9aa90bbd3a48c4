"""Topic registry: names, partitioning, compaction and codec of every topic.

Every topic is keyed by device id, so a device's audio, context and results
stay on one partition each, in order.
"""

from __future__ import annotations

import dataclasses
from enum import StrEnum

from streams.codec import Codec
from streams.schema import MessageType


class Role(StrEnum):
    """What a topic is to the pipeline; ``record`` captures inputs and outputs."""

    INPUT = "input"
    OUTPUT = "output"
    INTERNAL = "internal"


@dataclasses.dataclass(frozen=True, slots=True)
class TopicSpec:
    """One topic: its short name, codec, role and which message types it carries."""

    short: str
    codec: Codec
    role: Role
    kinds: frozenset[MessageType]
    compacted: bool = False
    doc: str = ""

    def name(self, prefix: str) -> str:
        """Return the full topic name under ``prefix``."""
        return f"{prefix}{self.short}"


AUDIO = TopicSpec(
    "audio",
    Codec.MSGPACK,
    Role.INPUT,
    frozenset(
        {MessageType.UTTERANCE_START, MessageType.AUDIO_FRAME, MessageType.UTTERANCE_STOP}
    ),
    doc="device audio: utterance start, frames, stop",
)
CONTEXT = TopicSpec(
    "context",
    Codec.JSON,
    Role.INPUT,
    frozenset({MessageType.DEVICE_CONTEXT}),
    compacted=True,
    doc="device context snapshots; compacted, newest per device wins",
)
FEEDBACK = TopicSpec(
    "feedback",
    Codec.JSON,
    Role.INPUT,
    frozenset(),
    doc="user feedback and rephrases, for the rewrite stage",
)
ENDPOINTS = TopicSpec(
    "endpoints",
    Codec.JSON,
    Role.OUTPUT,
    frozenset({MessageType.ENDPOINT, MessageType.RESET, MessageType.ERROR}),
    doc="end-pointer decisions, resets and utterance errors",
)
TRANSCRIPTS = TopicSpec(
    "transcripts",
    Codec.JSON,
    Role.OUTPUT,
    frozenset({MessageType.TRANSCRIPT, MessageType.ERROR}),
    doc="n-best transcripts per end-pointed revision, and recognition errors",
)
DEAD_LETTERS = TopicSpec(
    "deadletter",
    Codec.JSON,
    Role.OUTPUT,
    frozenset({MessageType.DEAD_LETTER}),
    doc="input a stage could not process, with its origin",
)

ALL: tuple[TopicSpec, ...] = (AUDIO, CONTEXT, FEEDBACK, ENDPOINTS, TRANSCRIPTS, DEAD_LETTERS)
DEFAULT_PREFIX = "voicestream."


def by_short(short: str) -> TopicSpec:
    """Return the spec named ``short``, listing the valid names if it is unknown."""
    for spec in ALL:
        if spec.short == short:
            return spec
    raise KeyError(f"unknown topic {short!r}; valid: {', '.join(s.short for s in ALL)}")
