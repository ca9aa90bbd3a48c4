"""Understanding output: ranked interpretations per transcribed revision.

Per utterance and revision the NLU stage emits ``Interpretations(speculative, r)``
after the speculative transcript, then ``Interpretations(final, r)`` when the
final transcript confirms ``r`` (same content, so the arbiter can release what
it decided early). A ``Reset`` is forwarded in order on the same topic, and
nothing for the cancelled revision follows it.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from streams.endpoint import EndpointKind
from streams.schema import Message, MessageType, require


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class SlotValue:
    """A slot: its type, the words as heard, their character span, and a normalised value.

    ``start``/``end`` index the hypothesis ``text``; ``-1`` marks a value that
    came from device context rather than from the words. ``value`` is the
    normalised form a skill can use (``"07:00"``, ``"25"``, ``"PT10M"``);
    it equals ``text`` where no normalisation applies.
    """

    type: str
    text: str
    value: str
    start: int = -1
    end: int = -1


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Hypothesis:
    """One interpretation: intent, slots, combined score and where it came from."""

    intent: str
    score: float
    slots: tuple[SlotValue, ...] = ()
    #: The ASR hypothesis interpreted, and its rank in the n-best (0 is best).
    text: str = ""
    asr_rank: int = 0
    #: P(hypothesis | audio) over the n-best and P(intent | text) from the model.
    asr_prob: float = 1.0
    nlu_prob: float = 1.0
    #: Device-context facts that changed this interpretation, e.g. ``"states.oven=on"``.
    context: tuple[str, ...] = ()

    def slot(self, type_: str) -> SlotValue | None:
        """Return the first slot of ``type_``, if any."""
        return next((s for s in self.slots if s.type == type_), None)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Interpretations(Message):
    """The ranked interpretations of ``revision``, best first; scores sum to at most 1."""

    TYPE: ClassVar[MessageType] = MessageType.INTERPRETATION

    device_id: str
    utterance_id: str
    kind: EndpointKind
    revision: int
    t_ms: int
    locale: str = "en-US"
    interpretations: tuple[Hypothesis, ...] = ()
    #: Every context fact consulted for this revision (a superset of each hypothesis's).
    context_used: tuple[str, ...] = ()
    compute_ms: float = 0.0

    def __post_init__(self) -> None:
        require(self.revision >= 0, "revision must be >= 0")

    @property
    def best(self) -> Hypothesis | None:
        """The top interpretation, if any."""
        return self.interpretations[0] if self.interpretations else None
