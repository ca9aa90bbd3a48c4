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

The mined table comes from the compacted ``rewrite-rules`` topic: every
worker reads the whole topic from its start and then follows it
(:func:`register_table`), so each holds the whole table and a newly published
rule (or withdrawal) reaches running workers without a restart.
:class:`RuleTable` is that table, :class:`TableLayer` the lookup by
:func:`streams.rewrite.form` over it. (A Faust global table with this topic as
its changelog was tried first: on the embedded broker the worker never finished
its table recovery, so the topic is read like the skills' heartbeats.) With the
table empty and no other layer, :attr:`Rewriter.active` is false and the NLU
stage skips rewriting altogether.

The online layers (:class:`models.rewrite.online.OnlineRewriter`) come second,
from the directory named by the ``rewrite_online_dir`` setting, loaded at start
(:func:`load_online`): the global index as saved, and a personal layer that
learns from the interaction records, so a user's successful rephrase after a
defect becomes their own fix for the next request. Every worker reads the whole
``interactions`` topic from its start (its retention, 30 days) and then follows
it (:func:`register_history`): what a user taught survives a restart, and serves
on whichever worker owns their device after a rebalance. :class:`OnlineLayer`
shares the layer between that reader (on the event loop) and the NLU stage (on
its model thread) without blocking the loop.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import faust
import structlog

from models.rewrite import Candidate, Layer
from streams import topics
from streams.codec import decode
from streams.connection import Connection
from streams.rewrite import Interaction, RewriteRule, RewriteSource, form
from streams.schema import SerializationError
from streams.settings import Settings

if TYPE_CHECKING:
    from models.rewrite.online import OnlineRewriter

log = structlog.get_logger("voicestream.rewriter")

#: Interaction records an :class:`OnlineLayer` holds before it learns them; past it the
#: oldest are dropped (counted in ``dropped``).
LESSON_LIMIT = 10_000


class RuleTable:
    """The live rule table: form -> :class:`RewriteRule`, the newest record per form.

    Fed the records of the rewrite-rules topic in order; a rule with an empty
    rewrite (or a record with no value) withdraws its form. An undecodable
    record is skipped and logged (its size, never its bytes).
    """

    def __init__(self) -> None:
        self.rules: dict[str, RewriteRule] = {}
        self.skipped = 0

    def __len__(self) -> int:
        return len(self.rules)

    def get(self, key: str) -> RewriteRule | None:
        """The rule for the form ``key``, if there is one."""
        return self.rules.get(key)

    def apply(self, key: bytes | None, raw: bytes | None) -> None:
        """Take one record of the topic (keyed by form)."""
        if not raw:
            if key:
                self.rules.pop(key.decode(errors="replace"), None)
            return
        try:
            rule = decode(raw, topics.REWRITE_RULES.codec)
        except SerializationError as exc:
            self.skipped += 1
            log.warning("rewriter.bad_rule", code=exc.code, size_bytes=len(raw))
            return
        if not isinstance(rule, RewriteRule):
            self.skipped += 1
            log.warning("rewriter.bad_rule", code="wrong-type", size_bytes=len(raw))
        elif rule.rewrite:
            self.rules[rule.form] = rule
        else:
            self.rules.pop(rule.form, None)


class TableLayer:
    """The mined rules as a :class:`models.rewrite.Layer`, looked up in a live table."""

    def __init__(self, table: RuleTable) -> None:
        self.table = table

    def __len__(self) -> int:
        return len(self.table)

    def learn(self, interaction: Interaction) -> None:
        """Nothing: the table changes when a new one is mined and published."""

    def propose(self, user_id: str, utterance: str,
                context: Mapping[str, Any] | None = None) -> Candidate | None:
        """The mined rewrite of ``utterance``, if its form has one."""
        rule = self.table.get(form(utterance))
        if rule is None:
            return None
        return Candidate(rule.rewrite, RewriteSource.PRECOMPUTED, rule.probability)


class OnlineLayer:
    """An online rewrite layer shared by two threads, a :class:`models.rewrite.Layer`.

    ``learn`` is called on the event loop (the interactions agent) and only
    queues the record (at most :data:`LESSON_LIMIT`); ``propose`` runs on the
    NLU stage's model thread, where the queued records are learned first (an
    embedding each) and then the request is looked up, under one lock. So the
    loop never waits for an embedding, and a lesson is in place before the next
    request is looked up.
    """

    def __init__(self, rewriter: OnlineRewriter, *, limit: int = LESSON_LIMIT) -> None:
        self.rewriter = rewriter
        self._lessons: deque[Interaction] = deque(maxlen=limit)
        self._lock = threading.Lock()
        self.learned = 0
        self.dropped = 0

    def learn(self, interaction: Interaction) -> None:
        """Queue ``interaction`` for the next :meth:`propose` (or :meth:`catch_up`)."""
        if len(self._lessons) == self._lessons.maxlen:
            self.dropped += 1
        self._lessons.append(interaction)

    def pending(self) -> int:
        """Records queued and not learned yet."""
        return len(self._lessons)

    def catch_up(self) -> int:
        """Learn the queued records now; return how many."""
        with self._lock:
            return self._catch_up()

    def _catch_up(self) -> int:
        done = 0
        while self._lessons:
            self.rewriter.learn(self._lessons.popleft())
            done += 1
        self.learned += done
        return done

    def propose(self, user_id: str, utterance: str,
                context: Mapping[str, Any] | None = None) -> Candidate | None:
        """Learn what is queued, then the online rewrite of ``utterance`` for ``user_id``."""
        with self._lock:
            self._catch_up()
            return self.rewriter.propose(user_id, utterance, context)


def load_online(directory: str, *, threads: int = 1) -> OnlineLayer | None:
    """The online layer saved in ``directory``; None when it is empty or there is no embedder.

    Without the embedder build the worker runs on the mined table alone (a
    warning says how to build it). A directory that is not a saved layer raises
    :class:`models.rewrite.online.OnlineStateError` (its code says what is wrong),
    so the worker stops at start rather than mid-stream.
    """
    if not directory:
        return None
    from models.rewrite.embedder import Embedder, EmbedderError
    from models.rewrite.online import OnlineRewriter

    try:
        embedder = Embedder(threads=threads)
    except EmbedderError as exc:
        log.warning("rewriter.online_off", code=exc.code,
                    detail="the mined table only; run `voicestream models build`")
        return None
    layer = OnlineLayer(OnlineRewriter.load(Path(directory), embedder, threads=threads))
    log.info("rewriter.online", global_forms=len(layer.rewriter.forms),
             users=len(layer.rewriter.users))
    return layer


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


def _follow(app: faust.App, settings: Settings, connection: Connection,
            spec: topics.TopicSpec, take: Callable[[list[Any], bool], Awaitable[None]]) -> None:
    """Have every worker read ``spec``'s topic from its start, then follow it.

    ``take(records, caught_up)`` gets each batch; ``caught_up`` turns true at the
    first empty batch (the topic's end as of then) and stays true. After a broker
    hiccup the topic is read again from its start.
    """

    @app.task  # type: ignore[untyped-decorator]
    async def follow() -> None:
        from streams.client import EventWatcher

        while True:
            try:
                async with EventWatcher(connection, specs=[spec],
                                        topic_prefix=settings.topic_prefix,
                                        from_beginning=True) as watch:
                    caught_up = False
                    while True:
                        records = await watch.records(timeout_ms=500)
                        caught_up = caught_up or not records
                        await take(records, caught_up)
            except asyncio.CancelledError:
                raise
            except Exception:  # a broker hiccup: log, wait, read it again
                log.exception("rewriter.reader_failed", topic=spec.short)
                await asyncio.sleep(1.0)


def register_table(app: faust.App, settings: Settings, connection: Connection) -> TableLayer:
    """The rule table, filled and kept current by a task that follows the rewrite-rules topic."""
    table = RuleTable()
    fresh: RuleTable | None = RuleTable()  # filled until the topic's end, then swapped in whole

    async def take(records: list[Any], caught_up: bool) -> None:
        nonlocal fresh
        if fresh is None:
            for record in records:
                table.apply(record.key, record.value)
            return
        for record in records:
            fresh.apply(record.key, record.value)
        if caught_up:
            table.rules, table.skipped = fresh.rules, fresh.skipped
            fresh = None
            log.info("rewriter.table", rules=len(table))

    _follow(app, settings, connection, topics.REWRITE_RULES, take)
    return TableLayer(table)


def register_history(app: faust.App, settings: Settings, connection: Connection,
                     layer: OnlineLayer) -> None:
    """Teach ``layer`` the interactions topic: its history at start, then each new record.

    Every partition, so every user: a worker that takes a device over after a
    rebalance or a restart knows its user's fixes. Records already learned are
    skipped when the topic is read again after a reconnection. The reader only
    queues records; while it is far ahead (history at start), it learns the
    queue off the loop before reading on, so nothing is dropped.
    """
    learned_to: dict[int, int] = {}  # partition -> the next offset to learn
    told = False

    async def take(records: list[Any], caught_up: bool) -> None:
        nonlocal told
        if caught_up and not told:
            told = True
            log.info("rewriter.history", read=sum(learned_to.values()), queued=layer.pending())
        for record in records:
            if record.offset < learned_to.get(record.partition, 0):
                continue  # learned before the reconnection
            learned_to[record.partition] = record.offset + 1
            interaction = _interaction(record.value)
            if interaction is not None:
                layer.learn(interaction)
                if layer.pending() > LESSON_LIMIT // 2:
                    await asyncio.get_running_loop().run_in_executor(None, layer.catch_up)

    _follow(app, settings, connection, topics.INTERACTIONS, take)


def _interaction(raw: bytes | None) -> Interaction | None:
    """One record of the interactions topic, or None (logged by size) if it is not one."""
    try:
        message = decode(raw or b"", topics.INTERACTIONS.codec)
    except SerializationError as exc:
        log.warning("rewriter.bad_interaction", code=exc.code, size_bytes=len(raw or b""))
        return None
    if not isinstance(message, Interaction):
        log.warning("rewriter.bad_interaction", code="wrong-type", size_bytes=len(raw or b""))
        return None
    return message
