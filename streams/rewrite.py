"""Rewriting's wire: user feedback, interaction records, rewrite rules and rewrite events.

Devices publish :class:`Feedback` on the feedback topic (a barge-in, an
explicit yes or no, "that's not what I said"). Every finished utterance
becomes one :class:`Interaction` on the interactions topic: what was heard,
how it was understood, and whether it served the user. Interaction logs, from
this topic or from elsewhere, are the one input of every rewrite tool; their
export format is one JSON object per line (:meth:`Interaction.to_log`).

Mined rewrites are published as :class:`RewriteRule` records on a compacted
topic keyed by the source's :func:`form`, so the latest table is what a
worker holds. The rewrite stage emits a :class:`Rewrite` event for each
revision it rewrites, before the interpretations of that revision.
"""

from __future__ import annotations

import dataclasses
import re
import unicodedata
from enum import StrEnum
from typing import Any, ClassVar

from streams.endpoint import EndpointKind
from streams.schema import Message, MessageType, SerializationError, require


class FeedbackKind(StrEnum):
    """What the user told us about an utterance, explicitly or not."""

    BARGE_IN = "barge-in"  # interrupted the response
    CONFIRM = "confirm"  # an explicit yes / thanks
    REJECT = "reject"  # an explicit no / stop
    MISHEARD = "misheard"  # "that's not what I said"
    REPEAT = "repeat"  # said it again within seconds (devices or the stage may tell)
    ABANDON = "abandon"  # gave up: no further request in the session


class Outcome(StrEnum):
    """Whether an interaction served the user."""

    SUCCESS = "success"
    DEFECT = "defect"


class RewriteSource(StrEnum):
    """Which layer proposed a rewrite."""

    PRECOMPUTED = "precomputed"
    ONLINE_GLOBAL = "online-global"
    ONLINE_PERSONAL = "online-personal"


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Feedback(Message):
    """A signal about one utterance, from the device (or a skill acting for it)."""

    TYPE: ClassVar[MessageType] = MessageType.FEEDBACK

    device_id: str
    utterance_id: str
    kind: FeedbackKind
    #: Device wall-clock time of the signal, ms since epoch.
    t_ms: int


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Meaning:
    """An interpretation reduced to what decides success: the intent and slot values."""

    intent: str = ""
    slots: dict[str, str] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Interaction(Message):
    """One finished utterance: what was heard, what it was taken to mean, how it went.

    ``truth`` is present only in evaluation logs: the interpretation the user
    intended. ``signals`` are :class:`FeedbackKind` values or free-form tags
    from other systems' logs (kept as strings so foreign logs can be mined).
    """

    TYPE: ClassVar[MessageType] = MessageType.INTERACTION

    session_id: str
    user_id: str
    device_id: str
    utterance_id: str = ""
    #: When the utterance ended, ms since epoch.
    ts: int
    #: The final ASR text (after any rewrite: the text that was interpreted).
    utterance: str
    interpretation: Meaning = dataclasses.field(default_factory=Meaning)
    outcome: Outcome
    signals: tuple[str, ...] = ()
    #: The text as heard before a rewrite, when one was applied.
    original: str = ""
    truth: Meaning | None = None

    def __post_init__(self) -> None:
        require(self.ts >= 0, "ts must be >= 0")

    def to_log(self) -> dict[str, Any]:
        """The export form: the wire form without ``type``, ``v`` and empty optional fields."""
        out = self.to_wire()
        del out["type"], out["v"]
        for optional in ("utterance_id", "original", "truth"):
            if not out[optional]:
                del out[optional]
        return out

    @classmethod
    def from_log(cls, data: Any) -> Interaction:
        """Read one exported line's object; :class:`SerializationError` if it is not one."""
        if not isinstance(data, dict):
            raise SerializationError("wrong-type", "an interaction is a JSON object")
        return cls.from_wire(data)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class RewriteRule(Message):
    """A mined rewrite: requests of ``form`` are better served as ``rewrite``.

    Keyed by ``form`` on a compacted topic; a record with an empty ``rewrite``
    withdraws the rule.
    """

    TYPE: ClassVar[MessageType] = MessageType.REWRITE_RULE

    form: str
    rewrite: str
    #: P(success through ``rewrite`` | ``form``) from the absorbing chain.
    probability: float
    #: How many sessions' chains started from ``form``.
    support: int
    mined_at_ms: int = 0


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Rewrite(Message):
    """The rewrite stage replaced what was heard in ``revision`` with ``rewrite``."""

    TYPE: ClassVar[MessageType] = MessageType.REWRITE

    device_id: str
    utterance_id: str
    kind: EndpointKind
    revision: int
    original: str
    rewrite: str
    source: RewriteSource
    score: float
    #: Audio-clock ms of the decision: the revision's transcript's ``t_ms``.
    t_ms: int = 0

    def __post_init__(self) -> None:
        require(self.revision >= 0, "revision must be >= 0")


_NOT_WORD = re.compile(r"[^\w' ]+")
_SPACES = re.compile(r"\s+")


def form(text: str) -> str:
    """The normalised form rewrites are keyed by: case, accents' width, punctuation and spacing
    folded, so "Play  Despacito!" and "play despacito" are one request."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    return _SPACES.sub(" ", _NOT_WORD.sub(" ", folded)).strip()
