"""The live rewrite stage: replace a request users are known to rephrase before it is interpreted.

Placement: inside the NLU service, just before interpretation (no extra Kafka
hop). For each revision the NLU stage asks :class:`Rewriter` about the top ASR
hypothesis; the first layer that proposes a confident rewrite (score at least
``rewrite_min_score``) wins, the rewritten text is the one hypothesis NLU
interprets, and a :class:`streams.rewrite.Rewrite` event goes out on the
interpretations topic just before that revision's interpretation, so the two
are in order on one partition. Revisions follow the NLU stage's revision
protocol: a rewrite is part of the revision's result, emitted with it, never
after its reset.

The mined table comes from the compacted ``rewrite-rules`` topic, read as a
Faust global table (:func:`register_table`): every worker holds the whole
table and a newly published rule reaches running workers without a restart.
:class:`TableLayer` is the lookup by :func:`streams.rewrite.form` over it. With
the table empty and no other layer, :attr:`Rewriter.active` is false and the
NLU stage skips rewriting altogether.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import faust
import structlog

from models.rewrite import Candidate, Layer
from streams import topics
from streams.codec import decode
from streams.rewrite import Interaction, RewriteRule, RewriteSource, form
from streams.schema import SerializationError
from streams.settings import Settings

log = structlog.get_logger("voicestream.rewriter")


class TableLayer:
    """The mined rules as a :class:`models.rewrite.Layer`, looked up in a live table.

    ``table`` maps a form (UTF-8 bytes) to a ``RewriteRule`` record as written on
    the rewrite-rules topic (JSON bytes): the Faust global table, or a plain dict
    in tests. A rule with an empty rewrite is a withdrawal; an undecodable
    record is skipped (logged once per form).
    """

    def __init__(self, table: Mapping[bytes, bytes | None]) -> None:
        self.table = table
        self._bad: set[bytes] = set()

    def __len__(self) -> int:
        return len(self.table)

    def rule(self, text: str) -> RewriteRule | None:
        """The live rule for ``text``'s form, if there is one."""
        key = form(text).encode()
        raw = self.table.get(key)
        if not raw:
            return None
        try:
            rule = decode(raw, topics.REWRITE_RULES.codec)
        except SerializationError as exc:
            if key not in self._bad and len(self._bad) < 1024:
                self._bad.add(key)
                log.warning("rewriter.bad_rule", code=exc.code, size_bytes=len(raw))
            return None
        if not isinstance(rule, RewriteRule) or not rule.rewrite:
            return None
        return rule

    def learn(self, interaction: Interaction) -> None:
        """Nothing: the table changes when a new one is mined and published."""

    def propose(self, user_id: str, utterance: str,
                context: Mapping[str, Any] | None = None) -> Candidate | None:
        """The mined rewrite of ``utterance``, if its form has one."""
        rule = self.rule(utterance)
        if rule is None:
            return None
        return Candidate(rule.rewrite, RewriteSource.PRECOMPUTED, rule.probability)


class Rewriter:
    """Ask layers in order for a rewrite of one request; the first confident one wins (pure).

    ``min_score``: the least score a candidate needs. A candidate whose form is
    the request's own is no rewrite and is passed over.
    """

    def __init__(self, layers: Sequence[Layer], *, min_score: float = 0.5) -> None:
        if not 0.0 <= min_score <= 1.0:
            raise ValueError(f"min_score must be in [0, 1], got {min_score}")
        self.layers = list(layers)
        self.min_score = min_score

    @property
    def active(self) -> bool:
        """Whether any layer could answer (a table layer with no rules cannot)."""
        return any(not hasattr(layer, "__len__") or len(layer) > 0  # type: ignore[arg-type]
                   for layer in self.layers)

    def rewrite(self, user_id: str, text: str,
                context: Mapping[str, Any] | None = None) -> Candidate | None:
        """The rewrite of ``text`` for ``user_id``, or None to interpret it as heard."""
        if not text.strip():
            return None
        own = form(text)
        for layer in self.layers:
            candidate = layer.propose(user_id, text, context)
            if candidate is None or candidate.score < self.min_score or \
                    not candidate.text.strip() or form(candidate.text) == own:
                continue
            return candidate
        return None

    def learn(self, interaction: Interaction) -> None:
        """Pass a finished interaction to every layer (online layers index successes)."""
        for layer in self.layers:
            layer.learn(interaction)


def register_table(app: faust.App, settings: Settings) -> TableLayer:
    """The rule table: a Faust global table whose changelog is the rewrite-rules topic."""
    rules = app.topic(settings.topic(topics.REWRITE_RULES.short), key_serializer="raw",
                      value_serializer="raw", partitions=settings.partitions)
    table = app.GlobalTable("rewrite-rules", key_serializer="raw", value_serializer="raw",
                            partitions=settings.partitions, default=None,
                            changelog_topic=rules)
    return TableLayer(table)
