"""Device SDK: stream audio and publish context; watch an utterance's events.

Needs only aiokafka and msgpack (numpy for numpy input). A device sends
``UtteranceStart``, 20 ms ``AudioFrame``s, then ``UtteranceStop``, keyed by its
device id. Like a real microphone it keeps sending (silence) after the
recording ends until the final end-point arrives or ``tail_ms`` runs out.

Where the fleet signs (:mod:`streams.identity`), a device is given its key:
``DeviceClient(..., key=k)`` signs everything it sends, and
``EventWatcher(..., device=(device_id, k))`` reads the device's sealed
replies instead of the pipeline's topics.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
import uuid
import wave
from collections.abc import AsyncGenerator, AsyncIterator, Iterable
from pathlib import Path
from types import TracebackType
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition

from streams import identity, topics
from streams.audio import MAX_FRAME_MS, AudioFrame, UtteranceStart, UtteranceStop
from streams.codec import decode, encode
from streams.connection import BrokerTarget, Connection
from streams.context import DeviceContext
from streams.rewrite import Feedback, FeedbackKind
from streams.schema import Message, MessageType, SerializationError

FRAME_MS = 20
#: Output topics whose events ``send`` reports, in pipeline order.
OUTPUT_TOPICS = (topics.ENDPOINTS, topics.TRANSCRIPTS, topics.INTERPRETATIONS,
                 topics.DIRECTIVES, topics.RESPONSES)
#: How long ``events`` waits after a directive for the skill's answer, s.
RESPONSE_WAIT_S = 3.0


def read_wav(path: str | Path) -> tuple[bytes, int]:
    """Return (16-bit mono PCM, sample rate) from a WAV file; stereo is mixed down.

    Raises ``ValueError`` whose message starts with ``path`` for a file that is
    missing, unreadable, not a WAV file or not 16-bit PCM.
    """
    try:
        with wave.open(str(path), "rb") as w:
            if w.getsampwidth() != 2:
                raise ValueError(f"{path}: need 16-bit PCM, got {8 * w.getsampwidth()}-bit")
            rate, channels = w.getframerate(), w.getnchannels()
            pcm = w.readframes(w.getnframes())
    except (wave.Error, EOFError) as exc:
        raise ValueError(f"{path}: not a PCM WAV file ({exc or 'truncated'})") from None
    except OSError as exc:
        raise ValueError(f"{path}: {exc.strerror or type(exc).__name__}") from None
    if rate <= 0 or len(pcm) % (2 * channels):
        raise ValueError(f"{path}: truncated or inconsistent WAV ({channels} channels, "
                         f"{rate} Hz, {len(pcm)} bytes)")
    if channels > 1:
        import numpy as np

        mixed = np.frombuffer(pcm, "<i2").reshape(-1, channels).mean(axis=1)
        pcm = mixed.astype("<i2").tobytes()
    return pcm, rate


def event_json(message: Message) -> dict[str, Any]:
    """Return the CLI's JSON form of an output event (``type``, ``revision``, ``t_ms``...)."""
    data = message.to_wire()
    if message.TYPE is MessageType.SKILL_RESPONSE:
        data["revision"] = int(data["directive_id"].rsplit("/", 1)[-1])
    return data


#: The kinds of an utterance's outcome: exactly one of them per utterance, on the
#: directives topic (an error is forwarded there in band by every later stage).
OUTCOMES = frozenset({MessageType.DIRECTIVE, MessageType.DECLINED, MessageType.ERROR})


def is_outcome(message: Message, topic: str | None = None) -> bool:
    """Return whether ``message`` is an utterance's outcome.

    ``topic``: where it was read, a short name (``directives``) or a full one;
    an error is the outcome only on the directives topic (or a device's
    replies), its other copies are the stages forwarding it. Without
    ``topic`` (events already filtered by :meth:`EventWatcher.events`) the
    kind alone decides.
    """
    if message.TYPE not in OUTCOMES:
        return False
    return topic is None or topic.endswith((topics.DIRECTIVES.short, topics.REPLIES.short))


def is_answer(message: Message) -> bool:
    """Return whether ``message`` is a skill's final answer to a directive."""
    return message.TYPE is MessageType.SKILL_RESPONSE and \
        message.to_wire()["status"] != "accepted"


class DeviceClient:
    """A device's connection: publish context, stream utterances, watch results."""

    def __init__(self, bootstrap: BrokerTarget, device_id: str, *,
                 topic_prefix: str = topics.DEFAULT_PREFIX, key: bytes | None = None,
                 **producer_kwargs: Any) -> None:
        self.connection = Connection.of(bootstrap)
        self.device_id = device_id
        self.prefix = topic_prefix
        self._key = device_id.encode()
        #: The device's own key (``voicestream devices key``): sign what is sent.
        self._signing_key = key
        self._producer = AIOKafkaProducer(**self.connection.producer(linger_ms=0,
                                                                     **producer_kwargs))

    async def __aenter__(self) -> DeviceClient:
        await self._producer.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self._producer.stop()

    async def _send(self, spec: topics.TopicSpec, message: Message) -> None:
        value = encode(message, spec.codec)
        headers = None
        if self._signing_key is not None:
            headers = [(identity.HEADER,
                        identity.sign(self._signing_key, spec.short, self._key, value))]
        await self._producer.send(spec.name(self.prefix), value, key=self._key,
                                  headers=headers)

    async def publish_context(self, context: DeviceContext) -> None:
        """Publish a context snapshot for this device and wait until it is written."""
        await self._send(topics.CONTEXT, context)
        await self._producer.flush()

    async def feedback(self, utterance_id: str, kind: FeedbackKind | str, *,
                       t_ms: int | None = None) -> Feedback:
        """Tell the pipeline what the user made of ``utterance_id`` and wait until it is written.

        ``kind``: a :class:`FeedbackKind` (``misheard``, ``reject``, ``barge-in``,
        ``confirm``...); ``t_ms``: when, device wall clock in ms [default: now].
        Signed like audio and context where the device has a key. Raises
        ``ValueError`` for an unknown kind.
        """
        message = Feedback(device_id=self.device_id, utterance_id=utterance_id,
                           kind=FeedbackKind(kind),
                           t_ms=int(time.time() * 1000) if t_ms is None else t_ms)
        await self._send(topics.FEEDBACK, message)
        await self._producer.flush()
        return message

    async def stream(self, pcm: bytes | Any, sample_rate_hz: int, *,
                     utterance_id: str | None = None, realtime: bool = True,
                     tail_ms: int = 2000, done: asyncio.Event | None = None,
                     frame_ms: int = FRAME_MS) -> str:
        """Stream one utterance of 16-bit mono PCM (bytes or an int16 numpy array).

        Frames hold ``frame_ms`` of audio (20 by default; the wire takes up to
        ``MAX_FRAME_MS``: fewer, larger records cost a worker less per second of
        audio, and add up to that much latency). ``realtime`` paces them at
        ``frame_ms``; otherwise they go as fast as the producer takes them. After
        the audio, up to ``tail_ms`` of silence follows, cut short when ``done`` is
        set (e.g. by a watcher seeing the final end-point).
        Returns the utterance id.
        """
        if not isinstance(pcm, bytes | bytearray):
            pcm = pcm.astype("<i2").tobytes()
        utt = utterance_id or uuid.uuid4().hex[:16]
        if not 0 < frame_ms <= MAX_FRAME_MS:
            raise ValueError(f"frame_ms must be in 1..{MAX_FRAME_MS}")
        step = sample_rate_hz * frame_ms // 1000 * 2
        await self._send(topics.AUDIO, UtteranceStart(
            device_id=self.device_id, utterance_id=utt, sample_rate_hz=sample_rate_hz,
            started_at_ms=int(time.time() * 1000)))
        frames = [bytes(pcm[i:i + step]) for i in range(0, len(pcm), step)]
        silence = bytes(step)
        frames += [silence] * (tail_ms // frame_ms)
        start = time.monotonic()
        seq = 0
        for seq, chunk in enumerate(frames):
            if done is not None and done.is_set():
                break
            if realtime:
                delay = start + seq * frame_ms / 1000 - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            elif seq % 50 == 0:
                await asyncio.sleep(0)  # let a watcher see results between bursts
            await self._send(topics.AUDIO, AudioFrame(
                device_id=self.device_id, utterance_id=utt, seq=seq, pcm=chunk,
                sample_rate_hz=sample_rate_hz, audio_ms=seq * frame_ms))
        await self._send(topics.AUDIO, UtteranceStop(
            device_id=self.device_id, utterance_id=utt, last_seq=seq))
        await self._producer.flush()
        return utt

    async def stream_wav(self, path: str | Path, **kwargs: Any) -> str:
        """Stream a WAV file as one utterance; see :meth:`stream`."""
        pcm, rate = read_wav(path)
        return await self.stream(pcm, rate, **kwargs)


class EventWatcher:
    """Reads output topics from their current end, so nothing produced later is missed.

    Enter it before streaming; then iterate :meth:`events` for one utterance.
    """

    def __init__(self, bootstrap: BrokerTarget, *,
                 specs: Iterable[topics.TopicSpec] = OUTPUT_TOPICS,
                 topic_prefix: str = topics.DEFAULT_PREFIX, fetch_max_wait_ms: int = 20,
                 from_beginning: bool = False, device: tuple[str, bytes] | None = None
                 ) -> None:
        #: ``(device_id, key)``: read that device's sealed replies only.
        self._device = device
        if device is not None:
            specs = (topics.REPLIES,)
        self._names = [s.name(topic_prefix) for s in specs]
        # Later stages forward resets and errors in band; report one copy of each:
        # the end-pointer's reset and the outcome on the directives topic (the
        # replies topic carries those only).
        self._first_copy = {
            MessageType.RESET: (topics.REPLIES if device else topics.ENDPOINTS).name(topic_prefix),
            MessageType.ERROR: (topics.REPLIES if device else topics.DIRECTIVES).name(topic_prefix),
        }
        #: Records keyed by this device that did not open with its key.
        self.unopened = 0
        self._codecs = {s.name(topic_prefix): s.codec for s in specs}
        self._from_beginning = from_beginning
        self._consumer = AIOKafkaConsumer(**Connection.of(bootstrap).client(
            enable_auto_commit=False, fetch_max_wait_ms=fetch_max_wait_ms,
            auto_offset_reset="earliest"))

    async def __aenter__(self) -> EventWatcher:
        await self._consumer.start()
        tps: list[TopicPartition] = []
        for name in self._names:
            for _ in range(100):
                parts = self._consumer.partitions_for_topic(name)
                if parts:
                    break
                await self._consumer._client.force_metadata_update()
                await asyncio.sleep(0.1)
            else:
                raise RuntimeError(f"topic {name} does not exist; is a worker running?")
            tps += [TopicPartition(name, p) for p in sorted(parts)]
        self._consumer.assign(tps)
        if self._from_beginning:
            await self._consumer.seek_to_beginning(*tps)
        else:
            await self._consumer.seek_to_end(*tps)
            for tp in tps:
                await self._consumer.position(tp)  # resolve the end offset now
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self._consumer.stop()

    async def records(self, timeout_ms: int = 100) -> list[ConsumerRecord[bytes, bytes]]:
        """Return the raw records that arrived within ``timeout_ms`` (empty if none)."""
        batches = await self._consumer.getmany(timeout_ms=timeout_ms)
        return [r for records in batches.values() for r in records]

    def _decode(self, record: ConsumerRecord[bytes, bytes]
                ) -> Message | SerializationError | None:
        """The record's message, its decoding error, or None if it is another device's."""
        value = record.value or b""
        if self._device is not None:
            device_id, key = self._device
            if record.key != device_id.encode():
                return None
            try:
                value = identity.open_reply(key, device_id, value)
            except identity.InvalidTag:
                self.unopened += 1
                return None
        try:
            return decode(value, self._codecs[record.topic])
        except SerializationError as exc:
            return exc

    async def messages(self) -> AsyncIterator[tuple[str, Message | SerializationError]]:
        """Yield (topic, message) for every record; undecodable ones as the error."""
        async for record in self._consumer:
            message = self._decode(record)
            if message is not None:
                yield record.topic, message

    async def _drain(self, timeout_s: float = 2.0
                     ) -> AsyncIterator[tuple[str, Message | SerializationError]]:
        """Yield what is already on the topics: up to their end offsets as of now.

        A stage's output is written before the next stage can act on it, so
        once an outcome arrives everything that caused it is below these ends,
        even if the topics are fetched in another order.
        """
        tps = list(self._consumer.assignment())
        ends = await self._consumer.end_offsets(tps)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                while [tp for tp in tps if await self._consumer.position(tp) < ends[tp]]:
                    for r in await self.records(timeout_ms=50):
                        message = self._decode(r)
                        if message is not None:
                            yield r.topic, message

    async def outcome(self, utterance_id: str, *, timeout_s: float = 30.0,
                      done: asyncio.Event | None = None) -> Message:
        """Return the utterance's one outcome: a directive, a decline or an error.

        Raises ``TimeoutError`` when none arrives within ``timeout_s``.
        """
        async with contextlib.aclosing(self.events(utterance_id, timeout_s=timeout_s,
                                                   done=done)) as events:
            async for message in events:
                if is_outcome(message):
                    return message
        raise TimeoutError(f"no outcome for {utterance_id}")

    async def events(self, utterance_id: str, *, timeout_s: float = 30.0,
                     done: asyncio.Event | None = None) -> AsyncGenerator[Message, None]:
        """Yield the utterance's events until its outcome (and a directive's answer).

        After a directive, the skill's answer is awaited for ``RESPONSE_WAIT_S``.
        Raises ``TimeoutError`` when no outcome arrives within ``timeout_s``.
        """
        def mine(topic: str, message: Message | SerializationError) -> bool:
            return not isinstance(message, SerializationError) and \
                getattr(message, "utterance_id", None) == utterance_id and \
                self._first_copy.get(message.TYPE, topic) == topic

        deadline = asyncio.get_running_loop().time() + timeout_s
        awaiting_answer = False
        try:
            async with asyncio.timeout_at(deadline) as scope:
                async for topic, message in self.messages():
                    if not mine(topic, message):
                        continue
                    assert not isinstance(message, SerializationError)
                    yield message
                    if awaiting_answer and is_answer(message):
                        break
                    if is_outcome(message):
                        if done is not None:
                            done.set()
                        if message.TYPE is not MessageType.DIRECTIVE:
                            break
                        # Give the skill a moment to answer; its silence is not an error.
                        awaiting_answer = True
                        scope.reschedule(asyncio.get_running_loop().time() + RESPONSE_WAIT_S)
        except TimeoutError:
            if not awaiting_answer:
                raise
        async for topic, message in self._drain():
            if mine(topic, message):
                assert not isinstance(message, SerializationError)
                yield message



@dataclasses.dataclass(frozen=True, slots=True)
class Delivery:
    """One record given to a subscriber: where it came from and what it decoded to."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    #: The message, or the ``SerializationError`` that says why it did not decode.
    message: Message | SerializationError


class Subscriber:
    """Consumer-group helper for downstream consumers (skills, sinks).

    Members of one ``group_id`` share the topics' partitions. Iterate to get
    :class:`Delivery` objects; call :meth:`commit` once a delivery is handled, so
    that a consumer restarted after a crash resumes after the last handled one.
    """

    def __init__(self, bootstrap: BrokerTarget, group_id: str,
                 specs: Iterable[topics.TopicSpec], *,
                 topic_prefix: str = topics.DEFAULT_PREFIX, fetch_max_wait_ms: int = 20,
                 session_timeout_ms: int = 10000) -> None:
        self._codecs = {s.name(topic_prefix): s.codec for s in specs}
        self._consumer = AIOKafkaConsumer(*self._codecs, **Connection.of(bootstrap).client(
            group_id=group_id, enable_auto_commit=False, auto_offset_reset="earliest",
            fetch_max_wait_ms=fetch_max_wait_ms, session_timeout_ms=session_timeout_ms,
            heartbeat_interval_ms=max(session_timeout_ms // 6, 100)))

    async def __aenter__(self) -> Subscriber:
        await self._consumer.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self._consumer.stop()

    async def __aiter__(self) -> AsyncIterator[Delivery]:
        async for record in self._consumer:
            message: Message | SerializationError
            try:
                message = decode(record.value or b"", self._codecs[record.topic])
            except SerializationError as exc:
                message = exc
            yield Delivery(record.topic, record.partition, record.offset, record.key, message)

    async def commit(self, delivery: Delivery) -> None:
        """Mark ``delivery`` and everything before it on its partition as handled."""
        tp = TopicPartition(delivery.topic, delivery.partition)
        await self._consumer.commit({tp: delivery.offset + 1})


async def stream_and_watch(device: DeviceClient, watch: EventWatcher, pcm: bytes | Any,
                           sample_rate_hz: int, *, utterance_id: str, realtime: bool = True,
                           timeout_s: float = 30.0) -> AsyncIterator[Message]:
    """Stream one utterance and yield its events until its outcome.

    The microphone's trailing silence stops as soon as the outcome arrives.
    Raises ``TimeoutError`` when none arrives within ``timeout_s``.
    """
    done = asyncio.Event()
    task = asyncio.create_task(device.stream(pcm, sample_rate_hz, utterance_id=utterance_id,
                                             realtime=realtime, done=done))
    try:
        async for message in watch.events(utterance_id, timeout_s=timeout_s, done=done):
            yield message
    finally:
        done.set()
        await task
