"""End-pointer output: speculative and final end-points, and resets.

Per utterance the end-pointer emits, for revision ``r`` starting at 0:
``Endpoint(speculative, r)``, then either ``Endpoint(final, r)`` confirming it
or ``Reset(cancelled_revision=r)`` followed by ``Endpoint(speculative, r+1)``
and so on. Every final is preceded by a speculative of the same revision.
``t_ms`` is the audio-clock position (ms since the utterance's first frame)
at which the decision was made, so it does not depend on wall-clock pacing.
"""

from __future__ import annotations

import dataclasses
from enum import StrEnum
from typing import Any, ClassVar

from streams.schema import Message, MessageType, require


class EndpointKind(StrEnum):
    """Which end-pointer made the decision."""

    SPECULATIVE = "speculative"
    FINAL = "final"


class ResetReason(StrEnum):
    """Why a speculative revision was cancelled."""

    SPEECH_RESUMED = "speech-resumed"


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Endpoint(Message):
    """End of speech at ``at_ms`` (audio ms) for ``revision``, decided at ``t_ms``."""

    TYPE: ClassVar[MessageType] = MessageType.ENDPOINT

    device_id: str
    utterance_id: str
    kind: EndpointKind
    revision: int
    at_ms: int
    t_ms: int
    #: Why a final was forced: "" for trailing silence, else e.g. "max-length".
    forced: str = ""

    def __post_init__(self) -> None:
        require(self.revision >= 0, "revision must be >= 0")
        require(0 <= self.at_ms <= self.t_ms, "need 0 <= at_ms <= t_ms")


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Reset(Message):
    """The speculative end-point of ``cancelled_revision`` was premature: drop its work."""

    TYPE: ClassVar[MessageType] = MessageType.RESET

    device_id: str
    utterance_id: str
    cancelled_revision: int
    reason: ResetReason
    t_ms: int

    @property
    def revision(self) -> int:
        """The revision the event is about: the cancelled one, as on every event.

        The revision that replaces it is ``cancelled_revision + 1``.
        """
        return self.cancelled_revision

    def to_wire(self) -> dict[str, Any]:
        """The wire form, with ``revision`` beside ``cancelled_revision`` (equal)."""
        return {**Message.to_wire(self), "revision": self.cancelled_revision}

    def __post_init__(self) -> None:
        require(self.cancelled_revision >= 0, "cancelled_revision must be >= 0")
