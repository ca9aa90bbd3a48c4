"""Arbitration output and the skill contract.

For each utterance the arbiter emits exactly one of ``Directive`` or
``Declined``, for the revision the final end-point confirmed. A directive goes
to the chosen skill's own topic and, as a record, to the directives topic.
``directive_id`` is ``<utterance_id>/<revision>``: stable under redelivery, so a
skill acts on it at most once (the skill SDK checks). Skills answer with
``SkillResponse`` (``accepted`` before acting, then ``done`` or ``failed``),
announce themselves with ``SkillStatus`` heartbeats, and change device state
with ``ContextUpdate``.
"""

from __future__ import annotations

import dataclasses
from enum import StrEnum
from typing import ClassVar

from streams.nlu import SlotValue
from streams.rewrite import Outcome
from streams.schema import Message, MessageType, require


def directive_id(utterance_id: str, revision: int) -> str:
    """The stable id of the directive for ``revision`` of ``utterance_id``."""
    return f"{utterance_id}/{revision}"


class DeclineReason(StrEnum):
    """Why no skill was asked to act."""

    OUT_OF_DOMAIN = "out-of-domain"
    LOW_CONFIDENCE = "low-confidence"
    NO_CAPABLE_SKILL = "no-capable-skill"
    SKILL_UNAVAILABLE = "skill-unavailable"
    NOT_UNDERSTOOD = "not-understood"


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Directive(Message):
    """Ask ``skill`` to carry out ``intent`` with ``slots`` for ``device_id``."""

    TYPE: ClassVar[MessageType] = MessageType.DIRECTIVE

    directive_id: str
    device_id: str
    utterance_id: str
    revision: int
    skill: str
    intent: str
    slots: tuple[SlotValue, ...] = ()
    text: str = ""
    score: float = 0.0
    #: Why this skill: the candidates weighed and how a near-tie was broken.
    explanation: str = ""
    context: tuple[str, ...] = ()
    #: The device's appliance states when the decision was made (no names or contacts).
    states: dict[str, str] = dataclasses.field(default_factory=dict)
    t_ms: int = 0
    #: How long the decision waited for the final end-point, ms (0 if decided on the final).
    held_ms: float = 0.0
    #: The device's locale: the language the request was made in (and to answer in).
    locale: str = "en-US"

    def __post_init__(self) -> None:
        require(self.directive_id == directive_id(self.utterance_id, self.revision),
                "directive_id must be <utterance_id>/<revision>")

    def slot(self, type_: str) -> SlotValue | None:
        """Return the first slot of ``type_``, if any."""
        return next((s for s in self.slots if s.type == type_), None)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Declined(Message):
    """No skill acts on this utterance, for ``reason``."""

    TYPE: ClassVar[MessageType] = MessageType.DECLINED

    device_id: str
    utterance_id: str
    revision: int
    reason: DeclineReason
    detail: str = ""
    intent: str = ""
    score: float = 0.0
    t_ms: int = 0


class ResponseStatus(StrEnum):
    """Where a skill is with a directive."""

    ACCEPTED = "accepted"
    DONE = "done"
    FAILED = "failed"
    #: The skill stopped after accepting and before finishing; it will not retry.
    INTERRUPTED = "interrupted"


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class SkillResponse(Message):
    """A skill's answer to ``directive_id``: text to say, and its status."""

    TYPE: ClassVar[MessageType] = MessageType.SKILL_RESPONSE

    directive_id: str
    device_id: str
    utterance_id: str
    skill: str
    status: ResponseStatus
    text: str = ""
    at_ms: int = 0
    #: The skill's own verdict on the request (``SkillContext.mark``): ``success``,
    #: ``defect`` (it could not serve what the user meant), or null for none.
    outcome: Outcome | None = None


class SkillState(StrEnum):
    """A skill instance's liveness."""

    UP = "up"
    DOWN = "down"


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class SkillStatus(Message):
    """Heartbeat of a skill instance; ``at_ms`` is its wall clock, ms since epoch."""

    TYPE: ClassVar[MessageType] = MessageType.SKILL_STATUS

    skill: str
    instance: str
    state: SkillState
    at_ms: int

    def __post_init__(self) -> None:
        require(bool(self.skill), "skill must not be empty")


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ContextUpdate(Message):
    """A change to part of a device's context, merged into the context table.

    ``states`` entries replace the device's entries (an empty value removes
    one); ``playing``, when given, replaces what is playing; ``history`` items
    are appended to the recent-activity list.
    """

    TYPE: ClassVar[MessageType] = MessageType.CONTEXT_UPDATE

    device_id: str
    states: dict[str, str] = dataclasses.field(default_factory=dict)
    playing: dict[str, str] | None = None
    history: tuple[str, ...] = ()
    source: str = ""
