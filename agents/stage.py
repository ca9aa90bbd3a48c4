"""Per-utterance bookkeeping that the ASR and NLU services share.

Both follow the revision protocol for many utterances at once and hold, per
utterance, the tasks of its revisions in flight, the Kafka acknowledgements
of its input (given once the utterance is finished here, so that a worker
taking the partition over receives it again) and when it was last seen.
:class:`UtteranceStage` keeps them: the open utterances, the recently closed
ids (their late records are ignored), the model's bounded queue, idle expiry,
and the in-band forwarding of an earlier stage's error.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Generic, Protocol, TypeVar

from agents.base import ModelQueue, Origin, Publisher, RecentIds, SendFn
from agents.ledger import Ledger
from agents.revisions import Action, Cancel, Decode, Emit
from infra import metrics
from streams import topics
from streams.control import ErrorEvent
from streams.settings import Settings

#: Closed utterance ids a stage remembers.
CLOSED_MEMORY = 4096


class Tracked(Protocol):
    """What a stage keeps per utterance, at the least."""

    device_id: str
    utterance_id: str
    tasks: dict[int, asyncio.Task[None]]
    acks: list[Callable[[], object]]
    last_seen: float


U = TypeVar("U", bound=Tracked)


class UtteranceStage(Generic[U]):
    """The open utterances of one stage and what it does with them as a whole.

    ``output`` is the topic the stage writes; ``queue_limit`` bounds its
    model's queue (:class:`agents.base.ModelQueue`).
    """

    def __init__(self, stage: str, output: topics.TopicSpec, settings: Settings,
                 send: SendFn, ledger: Ledger | None, queue_limit: int) -> None:
        self.stage = stage
        self.output = output
        self.settings = settings
        self.pub = Publisher(stage, send)
        self.ledger = ledger if ledger is not None else Ledger()
        #: utterance id -> its state here (a device may have several: the last one's
        #: events can still be on their way when the next one starts).
        self.utterances: dict[str, U] = {}
        self._closed = RecentIds(CLOSED_MEMORY)
        self.queue = ModelQueue(stage, queue_limit)

    async def _apply(self, utt: U, actions: list[Action]) -> None:
        """Carry out what the revision protocol says: start, cancel or emit a revision."""
        for action in actions:
            if isinstance(action, Decode):
                utt.tasks[action.revision] = asyncio.create_task(self._work(utt, action))
            elif isinstance(action, Cancel):
                task = utt.tasks.pop(action.revision, None)
                if task is not None:
                    task.cancel()
            else:
                await self._emit(utt, action)

    async def _work(self, utt: U, action: Decode) -> None:
        """The stage's work on one revision (it reports its result to the tracker)."""
        raise NotImplementedError

    async def _emit(self, utt: U, action: Emit) -> None:
        """Publish a revision's result."""
        raise NotImplementedError

    def _held(self, device_id: str, utterance_id: str) -> U | None:
        utt = self.utterances.get(utterance_id)
        return utt if utt is not None and utt.device_id == device_id else None

    async def pass_error(self, origin: Origin, error: ErrorEvent,
                         ack: Callable[[], object]) -> None:
        """An earlier stage ended the utterance: drop its work here and pass the error
        on in band (once, whatever re-deliveries bring), so that the arbiter records
        it as the utterance's outcome."""
        if not self.ledger.finished(error.utterance_id, error.device_id, self.stage):
            await self.pub.emit(self.output, error.device_id, error, partition=origin.partition)
            self.ledger.finish(error.utterance_id, error.device_id, self.stage,
                               origin.partition, failed=True)
        utt = self._held(error.device_id, error.utterance_id)
        if utt is not None:
            utt.acks.append(ack)
            self._drop(utt)
        else:
            self._closed.add(error.utterance_id)
            ack()

    def _drop(self, utt: U, *, closed: bool = True) -> None:
        """Cancel an utterance's work, forget it, release its held acknowledgements.

        ``closed``: remember its id, so that its later records are ignored (not on
        idle expiry: a slow upstream stage may still send them).
        """
        for task in utt.tasks.values():
            task.cancel()
        utt.tasks.clear()
        if self.utterances.get(utt.utterance_id) is utt:
            del self.utterances[utt.utterance_id]
        if closed:
            self._closed.add(utt.utterance_id)
        for ack in utt.acks:
            ack()
        utt.acks.clear()
        metrics.OPEN_UTTERANCES.labels(self.stage).set(len(self.utterances))

    def expire(self, now: float | None = None) -> None:
        """Forget utterances idle for ``utterance_idle_timeout_s`` with nothing in flight.

        Not closed: an upstream stage that is slow under load may still send the
        utterance's next event, which is then handled afresh, not ignored.
        """
        now = time.monotonic() if now is None else now
        for utt in list(self.utterances.values()):
            if now - utt.last_seen > self.settings.utterance_idle_timeout_s and not utt.tasks:
                self._drop(utt, closed=False)

    def close(self) -> None:
        """Cancel pending work and release the model's thread."""
        for utt in self.utterances.values():
            for task in utt.tasks.values():
                task.cancel()
        self.queue.shutdown()
