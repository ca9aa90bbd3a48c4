"""Topic registry: names, partitioning, compaction, retention and codec of every topic.

Every topic but two is keyed by device id, so a device's audio, context and
results stay on one partition each, in order. The two are compacted journals
where the latest record per key is what counts: the skills' heartbeats (keyed
``<skill>/<instance>``) and the skills' responses (keyed by directive id).
Compacted topics whose keys keep coming (heartbeats, responses) also expire
after their retention; the context topic keeps each device's newest snapshot.
"""

from __future__ import annotations

import dataclasses
from enum import StrEnum

from streams.codec import Codec
from streams.schema import MessageType

DAY_MS = 24 * 3600 * 1000


class Role(StrEnum):
    """What a topic is to the pipeline; ``record`` captures inputs and outputs."""

    INPUT = "input"
    OUTPUT = "output"
    INTERNAL = "internal"


@dataclasses.dataclass(frozen=True, slots=True)
class TopicSpec:
    """One topic: its short name, codec, role and which message types it carries."""

    short: str
    codec: Codec
    role: Role
    kinds: frozenset[MessageType]
    compacted: bool = False
    #: How long records are kept, ms (None: kept; only for a compacted topic).
    retention_ms: int | None = 7 * DAY_MS
    doc: str = ""

    @property
    def cleanup_policy(self) -> str:
        """Kafka's ``cleanup.policy`` for the topic."""
        if self.compacted:
            return "compact,delete" if self.retention_ms is not None else "compact"
        return "delete"

    def name(self, prefix: str) -> str:
        """Return the full topic name under ``prefix``."""
        return f"{prefix}{self.short}"


AUDIO = TopicSpec(
    "audio",
    Codec.MSGPACK,
    Role.INPUT,
    frozenset(
        {MessageType.UTTERANCE_START, MessageType.AUDIO_FRAME, MessageType.UTTERANCE_STOP}
    ),
    retention_ms=DAY_MS,
    doc="device audio: utterance start, frames, stop",
)
CONTEXT = TopicSpec(
    "context",
    Codec.JSON,
    Role.INPUT,
    frozenset({MessageType.DEVICE_CONTEXT}),
    compacted=True,
    retention_ms=None,
    doc="device context snapshots; compacted, newest per device wins",
)
CONTEXT_UPDATES = TopicSpec(
    "context-updates",
    Codec.JSON,
    Role.OUTPUT,
    frozenset({MessageType.CONTEXT_UPDATE}),
    doc="partial context changes skills publish, merged into the context table",
)
FEEDBACK = TopicSpec(
    "feedback",
    Codec.JSON,
    Role.INPUT,
    frozenset({MessageType.FEEDBACK}),
    retention_ms=30 * DAY_MS,
    doc="user feedback (barge-ins, yes/no, misheard), joined into interactions",
)
INTERACTIONS = TopicSpec(
    "interactions",
    Codec.JSON,
    Role.OUTPUT,
    frozenset({MessageType.INTERACTION}),
    retention_ms=30 * DAY_MS,
    doc="one record per finished utterance (heard, meant, outcome): what rewrites are mined from",
)
REWRITE_RULES = TopicSpec(
    "rewrite-rules",
    Codec.JSON,
    Role.INTERNAL,
    frozenset({MessageType.REWRITE_RULE}),
    compacted=True,
    retention_ms=None,
    doc="mined rewrites keyed by the request's normalised form; the latest table wins",
)
ENDPOINTS = TopicSpec(
    "endpoints",
    Codec.JSON,
    Role.OUTPUT,
    frozenset({MessageType.ENDPOINT, MessageType.RESET, MessageType.ERROR}),
    doc="end-pointer decisions, resets and utterance errors",
)
TRANSCRIPTS = TopicSpec(
    "transcripts",
    Codec.JSON,
    Role.OUTPUT,
    frozenset({MessageType.TRANSCRIPT, MessageType.PARTIAL, MessageType.RESET,
               MessageType.ERROR}),
    doc="n-best transcripts per end-pointed revision, partial transcripts while the user "
        "speaks, forwarded resets, recognition errors",
)
INTERPRETATIONS = TopicSpec(
    "interpretations",
    Codec.JSON,
    Role.OUTPUT,
    frozenset({MessageType.INTERPRETATION, MessageType.REWRITE, MessageType.RESET,
               MessageType.ERROR}),
    doc="ranked interpretations per transcribed revision, the rewrite of a revision just "
        "before its interpretation, forwarded resets, NLU errors",
)
DIRECTIVES = TopicSpec(
    "directives",
    Codec.JSON,
    Role.OUTPUT,
    frozenset({MessageType.DIRECTIVE, MessageType.DECLINED, MessageType.ERROR}),
    doc="the arbiter's decision per utterance: a released directive or a decline",
)
RESPONSES = TopicSpec(
    "responses",
    Codec.JSON,
    Role.OUTPUT,
    frozenset({MessageType.SKILL_RESPONSE}),
    compacted=True,
    doc="skills' answers to directives (accepted, then done or failed), keyed by directive "
        "id: compacted to each directive's last status, the skills' journal",
)
SKILLS = TopicSpec(
    "skills",
    Codec.JSON,
    Role.INTERNAL,
    frozenset({MessageType.SKILL_STATUS}),
    compacted=True,
    retention_ms=DAY_MS,
    doc="skill heartbeats, keyed by <skill>/<instance>: compacted to each instance's last",
)
DEAD_LETTERS = TopicSpec(
    "deadletter",
    Codec.JSON,
    Role.OUTPUT,
    frozenset({MessageType.DEAD_LETTER}),
    doc="input a stage could not process, with its origin",
)

REPLIES = TopicSpec(
    "replies",
    Codec.JSON,
    Role.INTERNAL,  # sealed: nothing a recording could compare
    frozenset({MessageType.ENDPOINT, MessageType.RESET, MessageType.TRANSCRIPT,
               MessageType.PARTIAL, MessageType.INTERPRETATION, MessageType.REWRITE,
               MessageType.DIRECTIVE, MessageType.DECLINED, MessageType.SKILL_RESPONSE,
               MessageType.ERROR}),
    retention_ms=DAY_MS,
    doc="each device's results, sealed for it (streams.identity), where devices sign",
)

ALL: tuple[TopicSpec, ...] = (AUDIO, CONTEXT, CONTEXT_UPDATES, FEEDBACK, INTERACTIONS,
                              REWRITE_RULES, ENDPOINTS, TRANSCRIPTS, INTERPRETATIONS,
                              DIRECTIVES, RESPONSES, SKILLS, DEAD_LETTERS, REPLIES)
#: Per-skill directive topics are named ``<prefix>skill.<name>``; they carry directives only.
SKILL_TOPIC_PREFIX = "skill."
SKILL_DIRECTIVES = TopicSpec(
    "skill.*",
    Codec.JSON,
    Role.OUTPUT,
    frozenset({MessageType.DIRECTIVE}),
    doc="one topic per skill (from the registry): the directives it must carry out",
)
DEFAULT_PREFIX = "voicestream."
#: Prefix a replay of recorded traffic writes under by default: never the live topics.
REPLAY_PREFIX = "replay."


def by_short(short: str) -> TopicSpec:
    """Return the spec named ``short``, listing the valid names if it is unknown."""
    for spec in ALL:
        if spec.short == short:
            return spec
    raise KeyError(f"unknown topic {short!r}; valid: {', '.join(s.short for s in ALL)}")
