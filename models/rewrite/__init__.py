"""Query rewriting: rewrites mined offline (absorbing Markov chains) and found online (retrieval).

Every layer answers the same question through :class:`Layer`: given who asks,
what was heard and the device's context, is there a better request to
interpret instead? The rewrite stage and ``voicestream eval rewrite`` ask the
layers in order and take the first confident answer.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, Protocol

from streams.rewrite import Interaction, RewriteSource


@dataclasses.dataclass(frozen=True, slots=True)
class Candidate:
    """A proposed rewrite of one request, its source layer and its calibrated score in [0, 1]."""

    text: str
    source: RewriteSource
    score: float


class Layer(Protocol):
    """One source of rewrites."""

    def learn(self, interaction: Interaction) -> None:
        """Take one finished interaction into account (online layers index successes)."""

    def propose(self, user_id: str, utterance: str,
                context: Mapping[str, Any] | None = None) -> Candidate | None:
        """The rewrite of ``utterance`` for ``user_id``, or None to leave it alone."""
