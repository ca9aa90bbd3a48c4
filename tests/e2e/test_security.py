"""The pipeline on a Kafka cluster secured with SASL_SSL, SCRAM users and ACLs.

The cluster (one node, its own CA, :mod:`infra.tls`) refuses what no ACL
allows. The worker and the skills run as ``worker`` (SCRAM-SHA-512), a device
as ``kitchen`` (SCRAM-SHA-256, allowed to write the audio and context topics
only), the test watches results as ``worker`` over PLAIN: every mechanism the
configuration offers, through every client the project creates. An
``intruder`` with valid credentials but no ACL, a wrong password and a
plaintext client are all refused.
"""

from __future__ import annotations

import asyncio
import secrets
import shutil
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
from streams import topics
from streams.client import DeviceClient, EventWatcher, is_outcome, read_wav
from streams.connection import Connection, Security
from streams.context import DeviceContext
from streams.schema import MessageType

pytestmark = pytest.mark.skipif(shutil.which("java") is None, reason="needs Java for Kafka")
PREFIX = "secure."
APP_ID = "vs-secure"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaCluster]:
    users = {name: secrets.token_urlsafe(12) for name in ("worker", "kitchen", "intruder")}
    with KafkaCluster(tmp_path_factory.mktemp("secure-kafka"), 1, users=users) as kafka:
        grant(kafka)
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
        *[allow("kitchen", ResourceType.TOPIC, spec.name(PREFIX), op,
                ResourcePatternType.LITERAL)
          for spec in (topics.AUDIO, topics.CONTEXT)
          for op in (AclOperation.WRITE, AclOperation.DESCRIBE)],
    ]
    for future in admin.create_acls(bindings).values():
        future.result(30)


def worker_env(kafka: KafkaCluster, tmp_path: Path) -> dict[str, str]:
    return env_with(VOICESTREAM_BROKER=kafka.url, VOICESTREAM_TOPIC_PREFIX=PREFIX,
                    VOICESTREAM_APP_ID=APP_ID, VOICESTREAM_DATA_DIR=str(tmp_path / "w"),
                    VOICESTREAM_SSL_CAFILE=str(kafka.cafile),
                    VOICESTREAM_SASL_MECHANISM="SCRAM-SHA-512",
                    VOICESTREAM_SASL_USERNAME="worker",
                    VOICESTREAM_SASL_PASSWORD=kafka.users["worker"])


async def test_a_device_is_served_over_sasl_ssl_with_acls(
        cluster: KafkaCluster, tmp_path: Path) -> None:
    worker = Process(["up", "--skills"], worker_env(cluster, tmp_path))
    try:
        worker.wait_ready(180)
        # No password in the worker's log.
        assert not any(cluster.users["worker"] in line for line in worker.stderr)
        device = cluster.connection("kitchen", "SCRAM-SHA-256")
        watcher = cluster.connection("worker", "PLAIN")
        async with EventWatcher(watcher, topic_prefix=PREFIX) as watch, \
                DeviceClient(device, "kitchen-1", topic_prefix=PREFIX) as dev:
            await dev.publish_context(DeviceContext.from_wire(
                {"device_id": "kitchen-1", **CONTEXTS["kitchen-1"]}))
            done = asyncio.Event()
            utt = await dev.stream(*read_wav(audio_path("light_on.wav")), realtime=False,
                                   done=done)
            outcomes = [m async for m in watch.events(utt, timeout_s=90, done=done)
                        if is_outcome(m)]
        assert [m.TYPE for m in outcomes] == [MessageType.DIRECTIVE], outcomes
    finally:
        worker.kill()
        print(*worker.stderr[-20:], sep="\n")


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
    assert await refused(cluster.connection("kitchen"), topics.DIRECTIVES.name(PREFIX))
    # A wrong password, and a client without TLS and SASL.
    wrong = Security(cafile=str(cluster.cafile), sasl_mechanism="SCRAM-SHA-512",
                     username="kitchen", password="not-it")
    assert await refused(Connection.parse(cluster.url, wrong), audio)
    assert await refused(Connection.parse(cluster.url), audio)
    # And the device's own write is accepted (the check above can fail).
    assert await refused(cluster.connection("kitchen"), audio) == ""
