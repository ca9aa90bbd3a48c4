"""What every stage's agent shares: decoding input and publishing output.

Bad input never stops a worker: a payload that does not decode becomes a
``DeadLetter`` on the dead-letter topic with its topic, partition and offset,
its size and digest (never its bytes), and a log line; the agent goes on with
the next message.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

from infra import logs, metrics
from streams import identity, topics
from streams.audio import valid_id
from streams.codec import encode, from_dict, loads
from streams.control import DeadLetter, ErrorEvent, payload_digest
from streams.schema import Message, SerializationError

T = TypeVar("T")


class Once(Generic[T]):
    """A model loaded on first use; a load error of type ``errors`` sticks and is re-raised.

    Thread-safe: two threads asking at once load it once.
    """

    def __init__(self, factory: Callable[[], T],
                 errors: type[Exception] | tuple[type[Exception], ...] = Exception) -> None:
        self._factory = factory
        self._errors = errors
        self._lock = threading.Lock()
        self.value: T | None = None
        self.error: Exception | None = None

    @property
    def loaded(self) -> bool:
        """Whether it loaded or failed to (neither will change)."""
        return self.value is not None or self.error is not None

    def get(self) -> T:
        """Return the value, loading it now if needed."""
        if self.value is not None:
            return self.value
        with self._lock:
            if self.value is None:
                if self.error is not None:
                    raise self.error
                try:
                    self.value = self._factory()
                except self._errors as exc:
                    self.error = exc
                    raise
            return self.value


class Overloaded(Exception):
    """A model's queue is full: a new utterance is refused with code ``overloaded``."""

    code = "overloaded"


class Skipped(Exception):
    """A queued job found, when its turn came, that its result is no longer wanted."""


class ModelQueue:
    """A bounded queue in front of one model's inference thread.

    Jobs run one at a time on the thread, in order. The work of an utterance
    admitted before always goes in, so that the utterances a worker took on
    keep their latency; the first job of a new utterance is refused with
    :class:`Overloaded` while ``limit`` jobs are waiting or running. A job is
    handed a check to call first: a revision cancelled while it waited is
    skipped before any inference (:class:`Skipped`).
    """

    def __init__(self, stage: str, limit: int) -> None:
        self.stage = stage
        self.limit = limit
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=stage)
        #: Jobs submitted and not yet finished (waiting or running).
        self.pending = 0
        self.refused = 0
        self._admitted = RecentIds(4096)

    async def run(self, utterance_id: str, job: Callable[[], T],
                  wanted: Callable[[], bool] = lambda: True) -> T:
        """Run ``job`` on the model's thread for ``utterance_id``; see the class."""
        if utterance_id not in self._admitted:
            if self.pending >= self.limit:
                self.refused += 1
                metrics.OVERLOADED.labels(self.stage).inc()
                raise Overloaded(f"{self.pending} {self.stage} jobs queued, limit {self.limit}")
            self._admitted.add(utterance_id)

        def guarded() -> T:
            if not wanted():
                raise Skipped
            return job()

        loop = asyncio.get_running_loop()
        future = self.executor.submit(guarded)
        self._count(+1)
        # Counted down when the job really ends (or is cancelled unstarted), not when
        # its awaiting task is cancelled: a running job still occupies the thread.
        future.add_done_callback(lambda _: self._done_soon(loop))
        return await asyncio.wrap_future(future)

    def _done_soon(self, loop: asyncio.AbstractEventLoop) -> None:
        with contextlib.suppress(RuntimeError):  # the loop closed: nobody counts any more
            loop.call_soon_threadsafe(self._count, -1)

    def _count(self, step: int) -> None:
        self.pending += step
        metrics.MODEL_QUEUE.labels(self.stage).set(self.pending)

    def shutdown(self) -> None:
        """Drop queued jobs and release the thread."""
        self.executor.shutdown(wait=False, cancel_futures=True)


#: Where Linux reports CPU pressure: the container's own (cgroup v2), else the host's.
PRESSURE_FILES = (Path("/sys/fs/cgroup/cpu.pressure"), Path("/proc/pressure/cpu"))


class CpuPressure:
    """The share of the last 10 s in which some runnable task waited for a CPU, in %.

    Linux's pressure-stall information (``some avg10``): the signal that the
    box has no CPU to spare, whatever else is running on it. Read at most once
    a second; None where the kernel does not report it.
    """

    def __init__(self, files: tuple[Path, ...] = PRESSURE_FILES,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._file = next((f for f in files if f.is_file()), None)
        self._clock = clock
        self._read_at = -1e9
        self._value: float | None = None

    def __call__(self) -> float | None:
        now = self._clock()
        if self._file is None or now - self._read_at < 1.0:
            return self._value
        self._read_at = now
        try:
            first = self._file.read_text().splitlines()[0].split()
            self._value = float(dict(f.split("=", 1) for f in first[1:])["avg10"])
        except (OSError, IndexError, KeyError, ValueError):
            self._value = None
        return self._value


class RecentIds:
    """The last ``size`` ids seen (utterances a stage has finished with)."""

    def __init__(self, size: int = 4096) -> None:
        self._ids: OrderedDict[str, None] = OrderedDict()
        self._size = size

    def add(self, key: str) -> None:
        """Remember ``key``, forgetting the oldest beyond the size."""
        self._ids[key] = None
        while len(self._ids) > self._size:
            self._ids.popitem(last=False)

    def __contains__(self, key: object) -> bool:
        return key in self._ids


class SendFn(Protocol):
    """Sends ``value`` with ``key`` to the topic with the given short name.

    ``partition`` pins the record to a partition: every stage writes its output
    to the partition its input came from, so that one device's records stay
    on one partition number whatever partitioner the device's client used.
    """

    def __call__(self, short: str, key: bytes, value: bytes,
                 partition: int | None = None) -> Awaitable[Any]: ...


@dataclasses.dataclass(frozen=True, slots=True)
class Origin:
    """Where an input message came from."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    #: The record's ``vs-sig`` header (:mod:`streams.identity`), if it had one.
    signature: bytes | None = None


class Publisher:
    """Encodes messages for their topic and sends them; counts errors and dead letters."""

    def __init__(self, stage: str, send: SendFn) -> None:
        self.stage = stage
        self._send = send
        self.log = logs.get(f"voicestream.{stage}", stage=stage)

    async def emit(self, spec: topics.TopicSpec, key: str, message: Message, *,
                   partition: int | None = None) -> None:
        """Send ``message`` to the topic ``spec`` keyed by device id ``key``.

        ``partition``: the partition of the input this answers (see :class:`SendFn`).
        """
        await self._send(spec.short, key.encode(), encode(message, spec.codec), partition)
        if isinstance(message, ErrorEvent) and message.stage == self.stage:
            # Counted and logged where it is raised, not again by each stage passing it on.
            metrics.ERRORS.labels(message.stage, message.code).inc()
            self.log.warning("utterance.error", device_id=message.device_id,
                             utterance_id=message.utterance_id, code=message.code,
                             detail=message.message)
        elif isinstance(message, ErrorEvent):
            self.log.debug("utterance.error_forwarded", device_id=message.device_id,
                           utterance_id=message.utterance_id, code=message.code,
                           raised_by=message.stage)

    async def dead_letter(self, origin: Origin, code: str, message: str, *,
                          raw: bytes | None = None, device_id: str = "",
                          utterance_id: str = "") -> None:
        """Publish a dead letter for the input at ``origin`` and log it.

        ``message`` must name codes, ids, field paths and sizes only; ``raw``,
        the payload, is described by its size and digest, never copied.
        """
        # The record key is the sender's word: kept only when it reads as an id.
        key = (origin.key or b"").decode(errors="replace")
        key = key if valid_id(key) else ""
        letter = DeadLetter(
            stage=self.stage, code=code, message=message, topic=origin.topic,
            partition=origin.partition, offset=origin.offset, key=key,
            device_id=device_id, utterance_id=utterance_id,
            size_bytes=len(raw) if raw else 0, digest=payload_digest(raw) if raw else "",
        )
        metrics.DEAD_LETTERS.labels(self.stage, code).inc()
        self.log.warning("dead_letter", code=code, detail=message, topic=origin.topic,
                         partition=origin.partition, offset=origin.offset,
                         device_id=device_id or key, utterance_id=utterance_id,
                         size_bytes=letter.size_bytes, digest=letter.digest)
        await self._send(topics.DEAD_LETTERS.short, key.encode() or b"-",
                         encode(letter, topics.DEAD_LETTERS.codec), origin.partition)

    async def decode(self, spec: topics.TopicSpec, origin: Origin,
                     raw: bytes | None) -> Message | None:
        """Decode ``raw`` from ``spec``'s topic; dead-letter it and return None if bad."""
        data: dict[str, Any] = {}
        try:
            if raw is None:
                raise SerializationError("empty-payload", "message has no value")
            data = loads(raw, spec.codec)
            message = from_dict(data)
            if message.TYPE not in spec.kinds:
                raise SerializationError(
                    "wrong-topic", f"{message.TYPE.value} does not belong on {spec.short}"
                )
        except SerializationError as exc:
            # Name the device and utterance when the payload parsed far enough to
            # say, and only with what reads as an id (not a name or a sentence).
            ids = {k: v for k in ("device_id", "utterance_id")
                   if isinstance(v := data.get(k), str) and valid_id(v)}
            await self.dead_letter(origin, exc.code, exc.message, raw=raw, **ids)
            return None
        return message


#: Dead-letter code of a record whose handling raised (a bug, not the sender's fault).
INTERNAL_ERROR = "internal-error"


async def isolated(pub: Publisher, origin: Origin, work: Awaitable[object], *,
                   on_failure: Callable[[], object] | None = None) -> bool:
    """Await one record's handling; if it raises, that record alone fails.

    The record gets an ``internal-error`` dead letter (its origin and the
    exception's type, never its bytes) and the exception a log line;
    ``on_failure`` runs (e.g. to acknowledge the record). The agent goes on
    with the next record: no other device's record is touched. Returns
    whether the handling succeeded.
    """
    try:
        await work
        return True
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        pub.log.exception("record.failed", topic=origin.topic, partition=origin.partition,
                          offset=origin.offset, error=type(exc).__name__)
        if on_failure is not None:
            on_failure()
        try:
            await pub.dead_letter(origin, INTERNAL_ERROR,
                                  f"{pub.stage} failed on this record ({type(exc).__name__})")
        except asyncio.CancelledError:
            raise
        except Exception:  # the broker is down: the log line above is all we can do
            pub.log.exception("dead_letter.failed", offset=origin.offset)
        return False


#: Device keys a gate keeps derived (beyond it, the least recently derived go).
_KEY_CACHE = 100_000


class DeviceGate:
    """Admits a device's record only where it speaks for the device it names.

    The record key must be the payload's device id (``device-mismatch``);
    with a master key, the record must carry that device's signature
    (``device-unauthenticated``). See :mod:`streams.identity`.
    """

    def __init__(self, master: bytes | None) -> None:
        self._master = master
        # Derived once per device: every audio frame is checked, by two stages.
        self._keys: OrderedDict[str, bytes] = OrderedDict()

    @property
    def signing(self) -> bool:
        """Whether devices must sign (a master key is configured)."""
        return self._master is not None

    def key(self, device_id: str) -> bytes:
        """The device's key; only where :attr:`signing`."""
        assert self._master is not None
        key = self._keys.get(device_id)
        if key is None:
            key = self._keys[device_id] = identity.device_key(self._master, device_id)
            if len(self._keys) > _KEY_CACHE:
                self._keys.popitem(last=False)
        return key

    def refusal(self, spec: topics.TopicSpec, origin: Origin, raw: bytes,
                device_id: str) -> tuple[str, str] | None:
        """``(code, why)`` if the record must be refused, else None."""
        if origin.key != device_id.encode():
            return ("device-mismatch",
                    "the record's key names another device than its payload")
        if self._master is None:
            return None
        if origin.signature is None:
            return "device-unauthenticated", f"no {identity.HEADER} header"
        if not identity.verify(self.key(device_id), spec.short, origin.key, raw,
                               origin.signature):
            return ("device-unauthenticated",
                    "the signature is not the device's for this record")
        return None

    async def admit(self, pub: Publisher, spec: topics.TopicSpec, origin: Origin, raw: bytes,
                    message: Any) -> bool:
        """Whether to take ``message``; a refused one is dead-lettered, without its bytes."""
        refusal = self.refusal(spec, origin, raw, message.device_id)
        if refusal is None:
            return True
        code, why = refusal
        # Not the payload's device id: it is the one being claimed, maybe falsely.
        await pub.dead_letter(origin, code, why, raw=raw,
                              utterance_id=getattr(message, "utterance_id", ""))
        return False
