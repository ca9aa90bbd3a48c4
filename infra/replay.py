"""Record topic traffic to a file, and replay its inputs to check the outputs.

A recording is JSON lines: a header, then one line per record with its
topic's short name, role, partition, offset, broker timestamp, key and value
(base64). ``replay`` republishes the input records with their original
relative timing (divided by ``speed``), with utterance ids tagged so that
they are new to any worker, collects the outputs, and compares them per
utterance with the recorded ones after removing volatile fields. Causal
order is kept whatever the machine's speed: an utterance starts only after
the outcomes and skill answers recorded before its start have come back.

A replay writes under its own topic prefix (:data:`REPLAY_PREFIX` unless
told otherwise), read by a worker started under that prefix: recorded
devices' audio and context never land in the topics live workers and
devices use, unless the caller explicitly allows it.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import dataclasses
import difflib
import json
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer

from infra.inputs import InputFileError, check_fields, read_text
from streams import identity, topics
from streams.client import EventWatcher, is_outcome
from streams.codec import decode, dumps, loads
from streams.connection import BrokerTarget, Connection
from streams.schema import Message, MessageType, SerializationError

FORMAT = "voicestream-recording"
FORMAT_VERSION = 1
#: Fields that differ between runs for reasons other than behaviour. A dead
#: letter's size and digest describe a payload the replay re-tagged (and
#: ``excerpt_hex`` is in recordings made before dead letters lost it).
VOLATILE = frozenset({"offset", "partition", "topic", "started_at_ms", "updated_at_ms",
                      "directive_id", "excerpt_hex", "size_bytes", "digest", "key",
                      "compute_ms", "held_ms"})
#: Outputs a replay compares: the pipeline's. What skills publish (answers, context
#: updates) is recorded but not compared; during a replay the skills run live. Nor
#: are interaction records: they are the rewriter's learning log, whose sessions,
#: times and feedback windows follow the replay's wall clock, and what they say of
#: an utterance (words, interpretation) is compared on its own topics already.
COMPARED = tuple(s for s in topics.ALL if s.role is topics.Role.OUTPUT
                 and s not in (topics.RESPONSES, topics.CONTEXT_UPDATES, topics.INTERACTIONS))
TAG_SEP = "@r"  # "@" is valid in ids and unlikely in a device's own
REPLAY_PREFIX = topics.REPLAY_PREFIX
#: Short names of the pipeline's topics (a registry adds its skills' topics).
SHORTS = tuple(spec.short for spec in topics.ALL)


class RecordingError(InputFileError):
    """The recording file is not one voicestream can read; names the file and the line."""


#: What each recorded record holds, and its type.
RECORD_FIELDS = {"topic": str, "role": str, "partition": int, "offset": int, "ts_ms": int,
                 "key": str, "value": str}


def _row(path: Path, line: int, text: str) -> dict[str, Any]:
    """Return one recorded record, checked; raise ``RecordingError`` naming its line."""
    try:
        row = check_fields(path, json.loads(text), RECORD_FIELDS, line=line,
                           what="a recorded record (a JSON object)")
    except json.JSONDecodeError as exc:
        raise RecordingError(path, f"not valid JSON: {exc.msg}", line=line) from None
    except InputFileError as exc:
        raise RecordingError(path, exc.problem, line=line) from None
    try:
        topics.by_short(row["topic"])
    except KeyError:
        raise RecordingError(path, f"unknown topic {row['topic']!r}", line=line) from None
    if row["role"] not in {topics.Role.INPUT.value, topics.Role.OUTPUT.value}:
        raise RecordingError(path, f"role must be input or output, got {row['role']!r}",
                             line=line)
    try:
        row["raw"] = base64.b64decode(row["value"], validate=True)
    except binascii.Error:
        raise RecordingError(path, "value is not base64", line=line) from None
    return row


class LiveTopicsError(ValueError):
    """A replay would write into topics that live devices and workers use."""


def live_collisions(prefix: str, live_prefix: str,
                    shorts: Iterable[str] = SHORTS) -> list[str]:
    """Return the topic names a replay under ``prefix`` shares with the live ones.

    ``shorts``: the short names in play, the registry's skill topics included
    (``skill.<name>``). Empty when the two prefixes name disjoint topics.
    """
    shorts = list(shorts)
    ours = {f"{prefix}{s}" for s in shorts}
    return sorted(ours & {f"{live_prefix}{s}" for s in shorts})


def check_prefix(prefix: str, live_prefix: str, *, into_live: bool = False,
                 shorts: Iterable[str] = SHORTS) -> None:
    """Raise ``LiveTopicsError`` if a replay under ``prefix`` would write into live topics.

    ``into_live`` allows it (a broker of one's own, whose "live" topics are a test's).
    """
    shared = live_collisions(prefix, live_prefix, shorts)
    if shared and not into_live:
        raise LiveTopicsError(
            f"replaying under {prefix!r} would write into live topics "
            f"({', '.join(shared[:3])}{', ...' if len(shared) > 3 else ''}); choose another "
            f"prefix (default {REPLAY_PREFIX!r}), or allow it explicitly")


async def record(bootstrap: BrokerTarget, out: Path, *, prefix: str = topics.DEFAULT_PREFIX,
                 stop: asyncio.Event, started: asyncio.Event | None = None,
                 on_record: Callable[[int], None] | None = None) -> int:
    """Append every input and output record to ``out`` until ``stop`` is set; return the count."""
    specs = [s for s in topics.ALL if s.role is not topics.Role.INTERNAL]
    count = 0
    async with EventWatcher(bootstrap, specs=specs, topic_prefix=prefix) as watch:
        if started is not None:
            started.set()
        with out.open("w") as fh:
            fh.write(json.dumps({"format": FORMAT, "version": FORMAT_VERSION,
                                 "prefix": prefix, "created_at": time.time()}) + "\n")
            while not stop.is_set():
                for r in await watch.records(timeout_ms=100):
                    short = r.topic.removeprefix(prefix)
                    fh.write(json.dumps({
                        "topic": short, "role": topics.by_short(short).role.value,
                        "partition": r.partition, "offset": r.offset,
                        "ts_ms": r.timestamp,
                        "key": (r.key or b"").decode(errors="replace"),
                        "value": base64.b64encode(r.value or b"").decode(),
                    }) + "\n")
                    count += 1
                fh.flush()
                if on_record is not None:
                    on_record(count)
    return count


def load(path: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Return (inputs, outputs) of a recording's complete utterances, in recorded order.

    A recording usually starts or stops in the middle of some utterance; the
    records of an utterance whose start or outcome was not recorded are left
    out, so a replay compares only what it can reproduce.
    """
    try:
        lines = read_text(path).splitlines()
    except InputFileError as exc:
        raise RecordingError(path, exc.problem) from None
    if not lines:
        raise RecordingError(path, "empty")
    try:
        header = json.loads(lines[0])
    except json.JSONDecodeError:
        header = None
    if not isinstance(header, dict) or header.get("format") != FORMAT \
            or header.get("version") != FORMAT_VERSION:
        raise RecordingError(path, f"not a {FORMAT} v{FORMAT_VERSION} file (its first line "
                                   "is not the recording's header)", line=1)
    rows = [_row(path, i, x) for i, x in enumerate(lines[1:], start=2) if x.strip()]
    started: set[str] = set()
    ended: set[str] = set()
    for row in rows:
        row["message"] = _decode_or_none(row)
        message = row["message"]
        if message is None:
            continue
        utt = message.to_wire().get("utterance_id")
        if message.TYPE is MessageType.UTTERANCE_START:
            started.add(utt)
        elif row["role"] == "output" and is_outcome(message, row["topic"]):
            ended.add(utt)
    complete = started & ended

    def keep(row: dict[str, Any]) -> bool:
        message = row["message"]
        utt = message.to_wire().get("utterance_id") if message is not None else ""
        return not utt or utt in complete

    rows = [r for r in rows if keep(r)]
    _mark_prerequisites(rows)
    inputs = sorted((r for r in rows if r["role"] == "input"),
                    key=lambda r: (r["ts_ms"], r["topic"], r["partition"], r["offset"]))
    compared = {s.short for s in COMPARED}
    outputs = [r for r in rows if r["role"] == "output" and r["topic"] in compared]
    return inputs, outputs


def _mark_prerequisites(rows: list[dict[str, Any]]) -> None:
    """Give each utterance start the outcomes (and skill answers) recorded before it.

    The next utterance of a device can depend on what the last one did (a
    skill changed the device's state), so a replay sends a start only once
    those outcomes and answers are back, however slow the replaying machine.
    """
    done: set[str] = set()
    answered: set[str] = set()
    for row in sorted(rows, key=lambda r: r["ts_ms"]):
        message = row["message"]
        if message is None:
            continue
        data = message.to_wire()
        if message.TYPE is MessageType.UTTERANCE_START:
            row["after"], row["after_answers"] = set(done), set(answered)
        elif row["role"] == "output" and is_outcome(message, row["topic"]):
            done.add(data["utterance_id"])
        elif message.TYPE is MessageType.SKILL_RESPONSE and data["status"] != "accepted":
            answered.add(data["utterance_id"])


def _decode_or_none(row: dict[str, Any]) -> Message | None:
    try:
        return decode(row["raw"], topics.by_short(row["topic"]).codec)
    except SerializationError:
        return None


def _retag(raw: bytes, spec: topics.TopicSpec, tag: str) -> bytes:
    """Append ``tag`` to the utterance id of a decodable message; leave others as they are."""
    try:
        data = loads(raw, spec.codec)
    except SerializationError:
        return raw
    if isinstance(data.get("utterance_id"), str):
        data["utterance_id"] += tag
        return dumps(data, spec.codec)
    return raw


def normalise(message: Message | dict[str, Any]) -> dict[str, Any]:
    """Return the comparable form of an output: volatile fields gone, replay tags stripped."""
    data = message.to_wire() if isinstance(message, Message) else dict(message)
    for key in VOLATILE & data.keys():
        del data[key]
    if isinstance(data.get("utterance_id"), str):
        data["utterance_id"] = data["utterance_id"].split(TAG_SEP)[0]
    return data


def _group(events: list[dict[str, Any]]) -> dict[str, list[str]]:
    """Group comparable events per utterance (dead letters per device).

    A cancelled revision's transcript or interpretation exists only if its
    work beat the reset, which depends on timing, so those of reset revisions
    are not compared. Each stage's topic is ordered, but how the topics
    interleave is timing too: a group is compared as a sorted list. An error is
    forwarded in band by every later stage on its own topic, and the arbiter
    decides on the first copy: whether a later stage's copy is written before
    the worker stops is timing, so identical error copies compare as one.
    Partial transcripts are not compared: they are sent only when the
    recogniser is idle.
    """
    cancelled = {(e["utterance_id"], e["cancelled_revision"]) for e in events
                 if e["type"] == MessageType.RESET.value}
    groups: dict[str, list[str]] = defaultdict(list)
    timing_dependent = {MessageType.TRANSCRIPT.value, MessageType.INTERPRETATION.value}
    for e in events:
        if e["type"] in timing_dependent and (e["utterance_id"], e["revision"]) in cancelled:
            continue
        if e["type"] == MessageType.PARTIAL.value:
            continue  # sent only when the recogniser is idle: how many is timing
        name = (f"dead letters of {e.get('device_id') or '?'}"
                if e["type"] == MessageType.DEAD_LETTER.value
                else f"utterance {e.get('utterance_id')}")
        line = json.dumps(e, sort_keys=True)
        if e["type"] == MessageType.ERROR.value and line in groups[name]:
            continue  # another stage's in-band copy
        groups[name].append(line)
    for lines in groups.values():
        lines.sort()
    return groups


@dataclasses.dataclass
class ReplayResult:
    """What a replay saw: expected and actual outputs per utterance, and their diff."""

    expected: dict[str, list[str]]
    actual: dict[str, list[str]]
    inputs: int

    @property
    def diff(self) -> str:
        """Return a unified diff per group that differs; empty when all match."""
        parts = []
        for name in sorted(self.expected.keys() | self.actual.keys()):
            exp, act = self.expected.get(name, []), self.actual.get(name, [])
            if exp != act:
                parts.append("\n".join(difflib.unified_diff(
                    exp, act, f"recorded: {name}", f"replayed: {name}", lineterm="")))
        return "\n".join(parts)

    @property
    def ok(self) -> bool:
        """Return whether replayed outputs equal the recorded ones."""
        return not self.diff


async def replay(path: Path, bootstrap: BrokerTarget, *, prefix: str = REPLAY_PREFIX,
                 live_prefix: str = topics.DEFAULT_PREFIX, into_live: bool = False,
                 speed: float = 1.0, timeout_s: float = 30.0,
                 device_master_key: bytes | None = None) -> ReplayResult:
    """Republish a recording's inputs under ``prefix``, collect the outputs and compare them.

    A worker must be running under ``prefix``. Raises ``LiveTopicsError``
    before sending anything when ``prefix`` names topics of ``live_prefix``,
    unless ``into_live``. Inputs are re-tagged (a new utterance id each),
    which breaks the devices' signatures; against workers that require them,
    pass the target's ``device_master_key`` and each input is signed again
    as its device.
    """
    if speed <= 0:
        raise ValueError("speed must be positive")
    check_prefix(prefix, live_prefix, into_live=into_live)
    inputs, outputs = load(path)
    expected_msgs: list[dict[str, Any]] = []
    for row in outputs:
        if row["message"] is None:
            raise RecordingError(path, f"recorded output at {row['topic']}:{row['offset']} "
                                       "does not decode")
        expected_msgs.append(normalise(row["message"]))
    expected = _group(expected_msgs)
    outcome_types = {MessageType.ERROR.value, MessageType.DIRECTIVE.value,
                     MessageType.DECLINED.value}
    want_outcomes = {e["utterance_id"] for e in expected_msgs if e["type"] in outcome_types}
    want_letters = sum(1 for e in expected_msgs if e["type"] == MessageType.DEAD_LETTER.value)
    tag = f"{TAG_SEP}{uuid.uuid4().hex[:6]}"
    specs = [*COMPARED, topics.RESPONSES]
    actual_msgs: list[dict[str, Any]] = []
    seen_outcomes: set[str] = set()
    answered: set[str] = set()
    progress = asyncio.Event()
    async with EventWatcher(bootstrap, specs=specs, topic_prefix=prefix) as watch:
        producer = AIOKafkaProducer(**Connection.of(bootstrap).producer(linger_ms=0))
        await producer.start()

        async def prerequisites(row: dict[str, Any]) -> None:
            outcomes = row.get("after", set()) & want_outcomes
            answers = row.get("after_answers", set())
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout_s):
                    while not (outcomes <= seen_outcomes and answers <= answered):
                        progress.clear()
                        await progress.wait()

        async def publish() -> None:
            t0 = time.monotonic()
            first = inputs[0]["ts_ms"] if inputs else 0
            for row in inputs:
                if "after" in row:
                    waited = time.monotonic()
                    await prerequisites(row)
                    waited = time.monotonic() - waited
                    t0 += waited  # keep the rest's relative timing
                    if scope:
                        scope[0].reschedule((scope[0].when() or 0.0) + waited)
                delay = t0 + (row["ts_ms"] - first) / 1000 / speed - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                spec = topics.by_short(row["topic"])
                key, value = row["key"].encode(), _retag(row["raw"], spec, tag)
                headers = None
                if device_master_key is not None:
                    signing = identity.device_key(device_master_key, row["key"])
                    headers = [(identity.HEADER,
                                identity.sign(signing, spec.short, key, value))]
                await producer.send(spec.name(prefix), value, key=key, headers=headers)
            await producer.flush()

        scope: list[asyncio.Timeout] = []
        sender = asyncio.create_task(publish())
        try:
            letters = 0
            async with asyncio.timeout(timeout_s + _span_s(inputs) / speed) as deadline:
                scope.append(deadline)
                async for topic, message in watch.messages():
                    if isinstance(message, SerializationError):
                        continue
                    data = normalise(message)
                    if TAG_SEP not in message.to_wire().get("utterance_id", TAG_SEP) and \
                            message.TYPE is not MessageType.DEAD_LETTER:
                        continue  # someone else's traffic
                    progress.set()
                    if message.TYPE is MessageType.SKILL_RESPONSE:
                        if data["status"] != "accepted":
                            answered.add(data["utterance_id"])
                        continue  # watched for pacing, not compared
                    actual_msgs.append(data)
                    letters += message.TYPE is MessageType.DEAD_LETTER
                    if is_outcome(message, topic):
                        seen_outcomes.add(data["utterance_id"])
                    if want_outcomes <= seen_outcomes and letters >= want_letters \
                            and sender.done():
                        break
        except TimeoutError:
            pass  # the diff shows what is missing
        finally:
            scope.clear()  # the deadline is over: a sender still waiting must not move it
            await sender
            await producer.stop()
    return ReplayResult(expected, _group(actual_msgs), len(inputs))


def _span_s(inputs: list[dict[str, Any]]) -> float:
    return (inputs[-1]["ts_ms"] - inputs[0]["ts_ms"]) / 1000 if inputs else 0.0

