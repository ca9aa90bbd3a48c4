"""The pipeline on a Kafka cluster secured with SASL_SSL, SCRAM users and ACLs.

The cluster (one node, its own CA, :mod:`infra.tls`) refuses what no ACL
allows. The worker and the skills run as ``worker`` (SCRAM-SHA-512); the
fleet's devices share the principal ``devices`` (SCRAM-SHA-256, allowed to
write the audio and context topics and to read ``replies``); the test
watches the pipeline as ``worker`` over PLAIN: every mechanism the
configuration offers, through every client the project creates. An
``intruder`` with valid credentials but no ACL, a wrong password and a
plaintext client are all refused.

The worker has the fleet's device master key: every device signs with its
own key (:mod:`streams.identity`), so a device of the fleet, with the
fleet's credentials, still cannot speak for another device or read its
results.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import shutil
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from infra.cluster import ADMIN, KafkaCluster
from infra.config import Settings
from infra.demo import CONTEXTS, audio_path
from infra.process import Process, env_with
from infra.runner import ensure_topics
from streams import identity, topics
from streams.client import DeviceClient, EventWatcher, is_outcome, read_wav
from streams.codec import encode
from streams.connection import Connection, Security
from streams.context import DeviceContext
from streams.control import DeadLetter
from streams.schema import MessageType

pytestmark = pytest.mark.skipif(shutil.which("java") is None, reason="needs Java for Kafka")
PREFIX = "secure."
APP_ID = "vs-secure"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaCluster]:
    users = {name: secrets.token_urlsafe(12) for name in ("worker", "devices", "intruder")}
    folder = tmp_path_factory.mktemp("secure-kafka")
    with KafkaCluster(folder, 1, users=users) as kafka:
        grant(kafka)
        identity.new_master_key(master_file(kafka))
        # The worker's admin client creates the topics, as `voicestream up` would.
        settings = Settings.from_env(worker_env(kafka, tmp_path_factory.mktemp("topics")))
        asyncio.run(ensure_topics(settings, settings.broker_profile()))
        yield kafka


def grant(kafka: KafkaCluster) -> None:
    """ACLs: the worker owns the pipeline's topics and groups; the device writes its input."""
    from confluent_kafka.admin import (
        AclBinding,
        AclOperation,
        AclPermissionType,
        AdminClient,
        ResourcePatternType,
        ResourceType,
    )

    admin = AdminClient({
        "bootstrap.servers": ",".join(kafka.bootstrap), "security.protocol": "SASL_SSL",
        "sasl.mechanisms": "SCRAM-SHA-512", "sasl.username": ADMIN,
        "sasl.password": kafka.users[ADMIN], "ssl.ca.location": str(kafka.cafile)})

    def allow(user: str, kind: ResourceType, name: str, op: AclOperation,
              pattern: ResourcePatternType = ResourcePatternType.PREFIXED) -> AclBinding:
        return AclBinding(kind, name, pattern, f"User:{user}", "*", op,
                          AclPermissionType.ALLOW)

    bindings = [
        allow("worker", ResourceType.TOPIC, PREFIX, AclOperation.ALL),
        allow("worker", ResourceType.TOPIC, APP_ID, AclOperation.ALL),  # table changelogs
        allow("worker", ResourceType.GROUP, "*", AclOperation.ALL, ResourcePatternType.LITERAL),
        allow("worker", ResourceType.BROKER, "kafka-cluster", AclOperation.DESCRIBE,
              ResourcePatternType.LITERAL),
        *[allow("devices", ResourceType.TOPIC, spec.name(PREFIX), op,
                ResourcePatternType.LITERAL)
          for spec in (topics.AUDIO, topics.CONTEXT)
          for op in (AclOperation.WRITE, AclOperation.DESCRIBE)],
        *[allow("devices", ResourceType.TOPIC, topics.REPLIES.name(PREFIX), op,
                ResourcePatternType.LITERAL)
          for op in (AclOperation.READ, AclOperation.DESCRIBE)],
    ]
    for future in admin.create_acls(bindings).values():
        future.result(30)


def master_file(kafka: KafkaCluster) -> Path:
    return kafka.cafile.parent / "devices.key"


def device_key(kafka: KafkaCluster, device: str) -> bytes:
    """What ``voicestream devices key DEVICE`` installs on the device."""
    return identity.device_key(identity.read_master_key(master_file(kafka)), device)


def worker_env(kafka: KafkaCluster, tmp_path: Path) -> dict[str, str]:
    return env_with(VOICESTREAM_BROKER=kafka.url, VOICESTREAM_TOPIC_PREFIX=PREFIX,
                    VOICESTREAM_DEVICE_KEYS_FILE=str(master_file(kafka)),
                    VOICESTREAM_APP_ID=APP_ID, VOICESTREAM_DATA_DIR=str(tmp_path / "w"),
                    VOICESTREAM_SSL_CAFILE=str(kafka.cafile),
                    VOICESTREAM_SASL_MECHANISM="SCRAM-SHA-512",
                    VOICESTREAM_SASL_USERNAME="worker",
                    VOICESTREAM_SASL_PASSWORD=kafka.users["worker"])


async def test_a_device_is_served_and_cannot_be_impersonated_or_overheard(
        cluster: KafkaCluster, tmp_path: Path) -> None:
    worker = Process(["up", "--skills"], worker_env(cluster, tmp_path))
    try:
        worker.wait_ready(180)
        # No password in the worker's log.
        assert not any(cluster.users["worker"] in line for line in worker.stderr)
        fleet = cluster.connection("devices", "SCRAM-SHA-256")
        pipeline = cluster.connection("worker", "PLAIN")
        victim, thief = device_key(cluster, "kitchen-1"), device_key(cluster, "hall-1")
        pcm, rate = read_wav(audio_path("light_on.wav"))
        attempts = Counter[str]()
        async with EventWatcher(pipeline, topic_prefix=PREFIX,
                                specs=(topics.DEAD_LETTERS, topics.ENDPOINTS,
                                       topics.DIRECTIVES)) as ops:
            # 1. hall-1, a device of the fleet with the fleet's credentials, speaks for
            # kitchen-1: a context under its own key, then under the victim's key
            # signed with its own, then audio unsigned and signed with its own key.
            grammar = DeviceContext.from_wire(
                {"device_id": "kitchen-1", **CONTEXTS["kitchen-1"], "grammar": ["two"]})
            async with DeviceClient(fleet, "hall-1", topic_prefix=PREFIX, key=thief) as dev:
                await dev._producer.send_and_wait(
                    topics.CONTEXT.name(PREFIX), encode(grammar, topics.CONTEXT.codec),
                    key=b"hall-1", headers=[(identity.HEADER, identity.sign(
                        thief, "context", b"hall-1", encode(grammar, topics.CONTEXT.codec)))])
                attempts["device-mismatch"] += 1
            forged = []
            for key in (thief, None):
                async with DeviceClient(fleet, "kitchen-1", topic_prefix=PREFIX,
                                        key=key) as dev:
                    await dev.publish_context(grammar)
                    attempts["device-unauthenticated"] += 1
                    utt = f"forged-{uuid.uuid4().hex[:8]}"
                    await dev.stream(pcm, rate, utterance_id=utt, realtime=False, tail_ms=0)
                    forged.append(utt)
                    # Its start, every frame and its stop.
                    attempts["device-unauthenticated"] += -(-len(pcm) // (rate // 50 * 2)) + 2
            seen = await until_dead_letters(ops, sum(attempts.values()))
            refusals = Counter(m.code for m in seen if isinstance(m, DeadLetter))
            assert refusals == attempts, (refusals, attempts)

            # 2. kitchen-1 itself is served, its context untouched by the attempts.
            async with EventWatcher(fleet, topic_prefix=PREFIX,
                                    device=("kitchen-1", victim)) as mine, \
                    EventWatcher(fleet, topic_prefix=PREFIX,
                                 device=("hall-1", thief)) as theirs, \
                    DeviceClient(fleet, "kitchen-1", topic_prefix=PREFIX, key=victim) as dev:
                await dev.publish_context(DeviceContext.from_wire(
                    {"device_id": "kitchen-1", **CONTEXTS["kitchen-1"]}))
                done = asyncio.Event()
                utt = await dev.stream(pcm, rate, realtime=False, done=done)
                events = [m async for m in mine.events(utt, timeout_s=90, done=done)]
                outcomes = [m for m in events if is_outcome(m)]
                assert [m.TYPE for m in outcomes] == [MessageType.DIRECTIVE], outcomes
                assert outcomes[0].skill == "smart-home"  # type: ignore[attr-defined]
                assert MessageType.TRANSCRIPT in {m.TYPE for m in events}

                # 3. hall-1 reads the replies topic: kitchen-1's records are there, and
                # none opens with hall-1's key (each opens with kitchen-1's).
                await theirs._consumer.seek_to_beginning()
                records = [r for r in await theirs.records(timeout_ms=3000)
                           if r.key == b"kitchen-1"]
                assert records
                overheard = 0
                for r in records:
                    assert identity.open_reply(victim, "kitchen-1", r.value or b"")
                    with contextlib.suppress(identity.InvalidTag):
                        identity.open_reply(thief, "hall-1", r.value or b"")
                        overheard += 1
                    with contextlib.suppress(identity.InvalidTag):
                        identity.open_reply(thief, "kitchen-1", r.value or b"")
                        overheard += 1
                assert overheard == 0
            # Nothing of the forged utterances went past the end-pointer: no end-point,
            # no decision (the genuine one's came after them, so they would be here).
            seen += [m async for _, m in ops._drain()]
            assert not [m for m in seen if getattr(m, "utterance_id", "") in forged
                        and not isinstance(m, DeadLetter)]
            # Nor may a device read the pipeline's own topics.
            transcripts = topics.TRANSCRIPTS.name(PREFIX)
            assert await readable(fleet, transcripts) == 0
            assert await readable(pipeline, transcripts) > 0  # the check above can fail
            print(f"impersonation: {sum(refusals.values())} of {sum(attempts.values())} "
                  f"forged records refused ({dict(refusals)}); cross-device reading: "
                  f"{2 * len(records)} of {2 * len(records)} reply openings refused, "
                  f"pipeline topics closed to devices")
    finally:
        worker.kill()
        print(*worker.stderr[-20:], sep="\n")


async def until_dead_letters(ops: EventWatcher, want: int, timeout_s: float = 60.0
                             ) -> list[object]:
    """What ``ops`` reads until ``want`` dead letters arrived (or the time is up)."""
    seen: list[object] = []
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout_s):
            async for _topic, message in ops.messages():
                seen.append(message)
                if sum(isinstance(m, DeadLetter) for m in seen) >= want:
                    break
    return seen


async def readable(conn: Connection, topic: str) -> int:
    """How many of ``topic``'s records ``conn`` can fetch (aiokafka logs a refusal)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(**conn.client(request_timeout_ms=8000))
    fetched = 0
    try:
        async with asyncio.timeout(30):
            await consumer.start()
            tps = [TopicPartition(topic, p) for p in range(4)]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            for _ in range(3):
                batches = await consumer.getmany(*tps, timeout_ms=1000)
                fetched += sum(len(records) for records in batches.values())
    except (KafkaError, TimeoutError, OSError):
        pass
    finally:
        await consumer.stop()
    return fetched


async def refused(conn: Connection, topic: str) -> str:
    """Try to write one record; return the error's name ('' if it was accepted)."""
    producer = AIOKafkaProducer(**conn.producer(request_timeout_ms=8000))
    try:
        async with asyncio.timeout(30):
            await producer.start()
            await producer.send_and_wait(topic, b"x", key=b"kitchen-1")
    except (KafkaError, TimeoutError, OSError) as exc:
        return type(exc).__name__
    finally:
        await producer.stop()
    return ""


async def test_what_no_acl_allows_is_refused(cluster: KafkaCluster) -> None:
    audio = topics.AUDIO.name(PREFIX)
    # Valid credentials, no ACL on the topic.
    assert await refused(cluster.connection("intruder"), audio)
    # The device may write its input, not the pipeline's output.
    assert await refused(cluster.connection("devices"), topics.DIRECTIVES.name(PREFIX))
    # A wrong password, and a client without TLS and SASL.
    wrong = Security(cafile=str(cluster.cafile), sasl_mechanism="SCRAM-SHA-512",
                     username="devices", password="not-it")
    assert await refused(Connection.parse(cluster.url, wrong), audio)
    assert await refused(Connection.parse(cluster.url), audio)
    # And the device's own write is accepted (the check above can fail).
    assert await refused(cluster.connection("devices"), audio) == ""
