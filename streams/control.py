"""Errors and dead letters.

``ErrorEvent`` ends an utterance with a coded reason and goes on the stage's
output topic, so whoever waits for the utterance learns of it.
``DeadLetter`` carries input that could not be processed at all, with where
it came from, to the dead-letter topic.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from streams.schema import Message, MessageType

#: Bytes of an undecodable payload kept in its dead letter, for diagnosis.
DEAD_LETTER_EXCERPT_BYTES = 256


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ErrorEvent(Message):
    """An utterance ended with an error; ``code`` is kebab-case, e.g. ``no-speech``."""

    TYPE: ClassVar[MessageType] = MessageType.ERROR

    device_id: str
    utterance_id: str
    stage: str
    code: str
    message: str
    revision: int = 0
    t_ms: int = 0


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class DeadLetter(Message):
    """Input a stage rejected, with its origin (topic, partition, offset)."""

    TYPE: ClassVar[MessageType] = MessageType.DEAD_LETTER

    stage: str
    code: str
    message: str
    topic: str
    partition: int
    offset: int
    key: str = ""
    device_id: str = ""
    utterance_id: str = ""
    #: First bytes of the rejected payload, hex; empty for audio topics.
    excerpt_hex: str = ""
