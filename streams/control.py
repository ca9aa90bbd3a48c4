"""Errors and dead letters.

``ErrorEvent`` ends an utterance with a coded reason and goes on the stage's
output topic, so whoever waits for the utterance learns of it.
``DeadLetter`` says that input could not be processed at all, with where it
came from, to the dead-letter topic. Neither carries payload content: a dead
letter describes the payload by its size and a digest, never by its bytes
(a context holds contacts, a transcript what was said).
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import ClassVar

from streams.schema import Message, MessageType

#: Hex digits of a payload's SHA-256 kept in its dead letter.
DIGEST_HEX_DIGITS = 16


def payload_digest(raw: bytes) -> str:
    """Return the first :data:`DIGEST_HEX_DIGITS` hex digits of ``raw``'s SHA-256.

    Enough to tell whether two dead letters are about the same bytes (a
    device resending one bad record), not to read them.
    """
    return hashlib.sha256(raw).hexdigest()[:DIGEST_HEX_DIGITS]


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
    """Input a stage rejected, with its origin (topic, partition, offset).

    ``message`` names codes, ids, field paths and sizes, never a value read
    from the payload. Earlier writers also sent ``excerpt_hex`` (the
    payload's first bytes); readers ignore it like any unknown field.
    """

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
    #: Size of the rejected payload, bytes; 0 when it had none, or where the
    #: stage refused what it decoded (a duplicate start) rather than the bytes.
    size_bytes: int = 0
    #: :func:`payload_digest` of the rejected payload; empty where ``size_bytes`` is 0.
    digest: str = ""
