"""Recognition output: a ranked n-best list per end-pointed revision.

Per utterance and revision the ASR stage emits ``Transcript(speculative, r)``
once the speculative end-point's audio is decoded, then, when the final
end-point confirms ``r``, ``Transcript(final, r)`` with the same n-best. After
``Reset(r)`` nothing more is emitted for ``r``; the next revision is decoded
from its own speculative end-point.

While the user is still speaking, ``Partial(r)`` events give the words heard so
far (every ~0.5 s of new speech, when the recogniser has time for them). They
are hints for a display or a turn-taking model, never acted on: they come
before the speculative transcript of their revision and never after it, and
no later stage turns them into an interpretation.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from streams.endpoint import EndpointKind
from streams.schema import Message, MessageType, require


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class WordTime:
    """A word and when it was said, ms from the start of the utterance's audio."""

    word: str
    start_ms: int
    end_ms: int


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class NBest:
    """One hypothesis: its text and score (higher is better, engine's own scale), and
    its words' times where the engine knows them (Whisper: the best hypothesis)."""

    text: str
    score: float
    words: tuple[WordTime, ...] = ()


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Transcript(Message):
    """The n-best for ``revision``, best first, from audio up to ``at_ms``."""

    TYPE: ClassVar[MessageType] = MessageType.TRANSCRIPT

    device_id: str
    utterance_id: str
    kind: EndpointKind
    revision: int
    at_ms: int
    #: The end-point decision this transcript answers, audio ms.
    t_ms: int
    engine: str
    nbest: tuple[NBest, ...] = ()
    #: Context phrases the search was biased toward (counted, never listed).
    biased_phrases: int = 0
    #: Wall time spent decoding, ms.
    compute_ms: float = 0.0
    #: The device's locale and the language the recogniser was told (Whisper's
    #: language token: ``de`` for ``de-DE``).
    locale: str = "en-US"
    language: str = "en"

    def __post_init__(self) -> None:
        require(self.revision >= 0, "revision must be >= 0")


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Partial(Message):
    """The words heard so far in ``revision``, in its first ``t_ms`` of audio: a hint."""

    TYPE: ClassVar[MessageType] = MessageType.PARTIAL

    device_id: str
    utterance_id: str
    #: The revision the next end-point will carry (resets so far).
    revision: int
    t_ms: int
    text: str
    #: Counts this utterance's partials from 0; a gap means one was not sent.
    seq: int = 0
    engine: str = ""
    compute_ms: float = 0.0
    locale: str = "en-US"
    language: str = "en"

    def __post_init__(self) -> None:
        require(self.revision >= 0, "revision must be >= 0")
        require(self.t_ms >= 0, "t_ms must be >= 0")
