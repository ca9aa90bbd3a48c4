"""The revision protocol every stage after the end-pointer follows (pure, no I/O).

A stage receives, per utterance, decisions for revision ``r`` (speculative, then
final; the end-pointer's end-points for ASR, the transcripts for NLU) and
``Reset(r)``. It starts its work on the speculative decision, reuses the
result when the final confirms ``r``, and drops ``r`` on its reset.
:class:`RevisionTracker` says what to do; the agent does it.
"""

from __future__ import annotations

import dataclasses
from typing import Generic, Protocol, TypeVar

from streams.endpoint import EndpointKind, Reset

R = TypeVar("R")


class Decision(Protocol):
    """What a speculative or final decision for a revision carries."""

    @property
    def kind(self) -> EndpointKind: ...
    @property
    def revision(self) -> int: ...
    @property
    def at_ms(self) -> int: ...
    @property
    def t_ms(self) -> int: ...


@dataclasses.dataclass(frozen=True, slots=True)
class Decode:
    """Decode ``revision`` from audio up to ``at_ms``."""

    revision: int
    at_ms: int
    t_ms: int


@dataclasses.dataclass(frozen=True, slots=True)
class Emit:
    """Publish the transcript of ``revision`` as ``kind``."""

    revision: int
    kind: EndpointKind
    t_ms: int


@dataclasses.dataclass(frozen=True, slots=True)
class Cancel:
    """Drop any work for ``revision``."""

    revision: int


Action = Decode | Emit | Cancel


class RevisionTracker(Generic[R]):
    """Which revision to decode, emit or drop, given end-pointer events and results.

    Pure and synchronous. Guarantees: nothing is emitted for a revision after
    its reset; a final transcript is emitted only after the speculative one of
    the same revision; each revision is decoded at most once.
    """

    def __init__(self) -> None:
        self.cancelled: set[int] = set()
        self.results: dict[int, R] = {}
        self.decoding: set[int] = set()
        self.final_waiting: dict[int, int] = {}
        self.done = False

    def on_endpoint(self, ep: Decision) -> list[Action]:
        """React to a speculative or final end-point."""
        r = ep.revision
        if self.done or r in self.cancelled:
            return []
        if ep.kind is EndpointKind.SPECULATIVE:
            if r in self.decoding or r in self.results:
                return []
            self.decoding.add(r)
            return [Decode(r, ep.at_ms, ep.t_ms)]
        if r in self.results:
            self.done = True
            return [Emit(r, EndpointKind.FINAL, ep.t_ms)]
        self.final_waiting[r] = ep.t_ms
        if r not in self.decoding:  # a final without a speculative: decode now
            self.decoding.add(r)
            return [Decode(r, ep.at_ms, ep.t_ms)]
        return []

    def on_reset(self, reset: Reset) -> list[Action]:
        """Cancel the revision the reset names."""
        r = reset.cancelled_revision
        self.cancelled.add(r)
        self.decoding.discard(r)
        self.results.pop(r, None)
        return [Cancel(r)]

    def on_result(self, revision: int, result: R, t_ms: int) -> list[Action]:
        """Take a finished decode; return what to emit (nothing if it was cancelled)."""
        self.decoding.discard(revision)
        if revision in self.cancelled or self.done:
            return []
        self.results[revision] = result
        out: list[Action] = [Emit(revision, EndpointKind.SPECULATIVE, t_ms)]
        if revision in self.final_waiting:
            self.done = True
            out.append(Emit(revision, EndpointKind.FINAL, self.final_waiting[revision]))
        return out
