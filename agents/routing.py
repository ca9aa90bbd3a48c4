"""Routing: which skill acts on an utterance, and when its decision is released.

Two pure cores (no I/O; times are passed in):

* :class:`Arbiter` picks the skill for an utterance's interpretations in the
  device's context, or declines with a reason, explaining near-ties.
* :class:`Gate` holds a decision made on a speculative revision until the
  final end-point confirms that revision, releases it at once then, and drops
  it on the revision's reset. A directive is only ever released on a *final*
  interpretation, which exists only for a revision the final end-pointer
  confirmed, so nothing from a cancelled branch reaches a skill, whenever the
  reset arrives.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from agents.registry import Registry, SkillSpec
from streams.directive import Declined, DeclineReason, Directive
from streams.nlu import Hypothesis

#: Two interpretations closer than this in score are a near-tie.
NEAR_TIE = 0.1


def capabilities(ctx: Mapping[str, Any] | None) -> frozenset[str]:
    """What the device can do, from its context (a device without context has a speaker)."""
    ctx = ctx or {}
    caps = set()
    if ctx.get("has_screen"):
        caps.add("screen")
    if ctx.get("has_speaker", True):
        caps.add("speaker")
    return frozenset(caps)


@dataclasses.dataclass(frozen=True, slots=True)
class Choice:
    """A skill chosen for an interpretation, or why none was."""

    hypothesis: Hypothesis | None
    skill: SkillSpec | None
    reason: DeclineReason | None
    explanation: str


def _tie_order(pair: tuple[SkillSpec | None, Hypothesis]) -> tuple[int, float, str]:
    """Near-tie order: a routable skill first, higher priority, higher score, intent name."""
    skill, hyp = pair
    return (-(skill.priority if skill else -(10**9)), -hyp.score, hyp.intent)


class Arbiter:
    """Choose a skill for ranked interpretations (pure).

    For the best interpretation: skills that handle its intent, then those the
    device can serve, then those whose ``min_confidence`` the score reaches;
    among them the highest priority, then the name. When the runner-up
    interpretation is within :data:`NEAR_TIE` and would go to another skill,
    the tie is broken by skill priority, then score, then intent name, and the
    event says so.
    """

    def __init__(self, registry: Registry) -> None:
        self.registry = registry

    def _route(self, hyp: Hypothesis, caps: frozenset[str], language: str = "en"
               ) -> tuple[SkillSpec | None, DeclineReason | None, str]:
        handlers = self.registry.handling(hyp.intent)
        if not handlers:
            return None, DeclineReason.OUT_OF_DOMAIN, f"no skill handles {hyp.intent}"
        speaking = [s for s in handlers if s.serves(language)]
        if not speaking:
            serve = ", ".join(f"{s.name} serves {'+'.join(s.languages)}" for s in handlers)
            return None, DeclineReason.NO_CAPABLE_SKILL, \
                f"{hyp.intent} in {language!r}: {serve}"
        handlers = speaking
        capable = [s for s in handlers if s.requires <= caps]
        if not capable:
            needs = ", ".join(f"{s.name} needs {'+'.join(sorted(s.requires - caps))}"
                              for s in handlers)
            return None, DeclineReason.NO_CAPABLE_SKILL, f"{hyp.intent}: {needs}"
        confident = [s for s in capable if hyp.score >= s.min_confidence]
        if not confident:
            s = capable[0]
            return None, DeclineReason.LOW_CONFIDENCE, \
                f"{hyp.intent} scored {hyp.score:.2f} < {s.name}'s minimum {s.min_confidence:.2f}"
        skill = confident[0]
        others = [s.name for s in confident[1:]]
        why = f"{hyp.intent} -> {skill.name} (priority {skill.priority})"
        if others:
            why += f" over {', '.join(others)}"
        return skill, None, why

    def choose(self, hyps: Sequence[Hypothesis], ctx: Mapping[str, Any] | None,
               language: str = "en") -> Choice:
        """Pick the skill for the ranked ``hyps`` in context ``ctx``, among the skills that
        serve ``language`` (the request's, from its locale)."""
        if not hyps:
            return Choice(None, None, DeclineReason.NOT_UNDERSTOOD, "no interpretation")
        caps = capabilities(ctx)
        best = hyps[0]
        skill, reason, why = self._route(best, caps, language)
        if len(hyps) > 1 and best.score - hyps[1].score < NEAR_TIE and \
                hyps[1].intent != best.intent:
            second = hyps[1]
            skill2, _, why2 = self._route(second, caps, language)
            if skill2 is not None and (skill is None or skill2.name != skill.name):
                order = sorted([(skill, best), (skill2, second)], key=_tie_order)
                if skill is None or order[0][0] is skill2:
                    return Choice(second, skill2, None,
                                  f"near-tie {best.intent} {best.score:.2f} vs {second.intent} "
                                  f"{second.score:.2f}: chose {skill2.name} "
                                  f"({'no skill for the first' if skill is None else 'priority'})"
                                  f"; {why2}")
                why = (f"near-tie {best.intent} {best.score:.2f} vs {second.intent} "
                       f"{second.score:.2f}: kept {skill.name}; {why}")
        return Choice(best, skill, reason, why)


@dataclasses.dataclass(slots=True)
class _Held:
    decision: Directive | Declined
    decided_at: float


@dataclasses.dataclass(slots=True)
class Gate:
    """Release gating for one utterance (pure; times are passed in).

    ``hold`` keeps the decision for a speculative revision; ``confirm`` releases
    the decision for the final revision (held or new); ``cancel`` drops a
    revision at its reset. At most one decision is released per utterance.
    """

    held: dict[int, _Held] = dataclasses.field(default_factory=dict)
    cancelled: set[int] = dataclasses.field(default_factory=set)
    released: bool = False
    #: Decisions thrown away because their revision was reset.
    dropped: int = 0

    def hold(self, revision: int, decision: Directive | Declined, now: float) -> None:
        """Keep the decision made on the speculative interpretation of ``revision``."""
        if revision not in self.cancelled and not self.released:
            self.held[revision] = _Held(decision, now)

    def wants(self, revision: int) -> bool:
        """Whether a decision for ``revision`` could still be released."""
        return not self.released and revision not in self.cancelled

    def confirm(self, revision: int, now: float) -> tuple[Directive | Declined, float] | None:
        """Release the held decision for ``revision``: (decision, ms it was held)."""
        if not self.wants(revision):
            return None
        held = self.held.pop(revision, None)
        if held is None:
            return None
        self.released = True
        self.held.clear()
        return held.decision, (now - held.decided_at) * 1000

    def end(self) -> None:
        """End the utterance without a decision (an earlier stage's error is its outcome)."""
        self.released = True
        self.held.clear()

    def cancel(self, revision: int) -> None:
        """Drop ``revision`` (its reset arrived)."""
        self.cancelled.add(revision)
        if self.held.pop(revision, None) is not None:
            self.dropped += 1
