"""Run a worker (and, when no broker is configured, the embedded broker) in-process."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import signal
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from infra import logs
from infra.app import Worker, build_app
from infra.broker import EmbeddedBroker
from infra.config import BrokerProfile, Settings
from streams import topics

log = logs.get("voicestream.runner")


def skill_topics(settings: Settings) -> list[str]:
    """The registry's per-skill directive topics (short names)."""
    from agents.registry import DEFAULT_REGISTRY, Registry

    registry = Registry.load(settings.skills_registry or DEFAULT_REGISTRY)
    return [s.topic for s in registry.skills]


async def resolve(profile: BrokerProfile) -> BrokerProfile:
    """Fill in the replication factor left open (0): min(3, brokers in the cluster)."""
    if profile.replication_factor:
        return profile
    admin = AIOKafkaAdminClient(**profile.connection.client())
    await admin.start()
    try:
        brokers = len((await admin.describe_cluster())["brokers"])
    finally:
        await admin.close()
    return dataclasses.replace(profile, replication_factor=max(1, min(3, brokers)))


def topic_configs(profile: BrokerProfile, spec: topics.TopicSpec) -> dict[str, str]:
    """Per-topic settings of the topics voicestream creates: compaction and retention."""
    configs = {"min.insync.replicas": str(profile.min_insync_replicas),
               "cleanup.policy": spec.cleanup_policy}
    if spec.retention_ms is not None:
        configs["retention.ms"] = str(spec.retention_ms)
    return configs


async def ensure_topics(settings: Settings, profile: BrokerProfile) -> None:
    """Create every registry topic that does not exist yet."""
    profile = await resolve(profile)
    admin = AIOKafkaAdminClient(**profile.connection.client())
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = [
            NewTopic(settings.topic(spec.short), settings.partitions,
                     profile.replication_factor,
                     topic_configs=topic_configs(profile, spec))
            for spec in topics.ALL if settings.topic(spec.short) not in existing
        ]
        wanted += [NewTopic(settings.topic(short), settings.partitions,
                            profile.replication_factor,
                            topic_configs=topic_configs(profile, topics.SKILL_DIRECTIVES))
                   for short in skill_topics(settings)
                   if settings.topic(short) not in existing]
        for topic in wanted:
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics([topic])
    finally:
        await admin.close()


async def ensure_changelogs(worker: Worker, profile: BrokerProfile,
                            timeout_s: float = 30.0) -> None:
    """Create the worker's table changelog topics now, before its consumer joins.

    Faust creates them as it starts, but a group leader whose metadata does not
    show one yet leaves it out of the assignment ("Ignoring missing topic"), and
    a worker started at that moment got no partitions at all (twice in about 75
    starts on Kafka). Made here, and waited for until every partition has a
    leader, they are in the metadata the consumer first reads.
    """
    profile = await resolve(profile)
    admin = AIOKafkaAdminClient(**profile.connection.client())
    await admin.start()
    try:
        wanted = {t.changelog_topic.get_topic_name(): t.changelog_topic.partitions or
                  t.partitions for t in worker.app.tables.values()}
        existing = set(await admin.list_topics())
        configs = {"cleanup.policy": "compact",
                   "min.insync.replicas": str(profile.min_insync_replicas)}
        for name, partitions in wanted.items():
            if name not in existing:
                with contextlib.suppress(TopicAlreadyExistsError):
                    await admin.create_topics([NewTopic(name, partitions,
                                                        profile.replication_factor,
                                                        topic_configs=configs)])
        async with asyncio.timeout(timeout_s):
            while True:
                described = await admin.describe_topics(list(wanted))
                led = {d["topic"] for d in described if not d["error_code"] and
                       len(d["partitions"]) == wanted[d["topic"]] and
                       all(p["leader"] >= 0 for p in d["partitions"])}
                if led == set(wanted):
                    return
                await asyncio.sleep(0.2)
    finally:
        await admin.close()


@contextlib.asynccontextmanager
async def broker_for(settings: Settings, *, port: int = 0) -> AsyncIterator[BrokerProfile]:
    """Yield the configured broker's profile, or start an embedded one and yield its."""
    if settings.broker:
        yield settings.broker_profile()
        return
    broker = EmbeddedBroker(port)
    await broker.start()
    try:
        yield settings.broker_profile(broker.url, embedded=True)
    finally:
        broker.stop()


async def wait_ready(worker: Worker, timeout_s: float = 60.0) -> None:
    """Wait until the worker owns partitions and has recovered its tables."""
    app = worker.app
    async with asyncio.timeout(timeout_s):
        while True:
            assigned = app.consumer.assignment() if app.consumer else set()
            recovery = app.tables.recovery  # type: ignore[attr-defined]
            if assigned and not app.rebalancing and recovery.completed.is_set():
                return
            await asyncio.sleep(0.05)


def describe(worker: Worker) -> dict[str, object]:
    """Return what a worker runs with: table sizes and the consumer's effective settings."""
    app = worker.app
    thread = getattr(app.consumer, "_thread", None)
    consumer = getattr(thread, "_consumer", None)
    fetcher = getattr(consumer, "_fetcher", None)
    coordinator = getattr(consumer, "_coordinator", None)
    return {
        "tables": {name: len(table) for name, table in app.tables.items()},
        "fetch_max_wait_ms": getattr(fetcher, "_fetch_max_wait_ms", None),
        "session_timeout_ms": getattr(coordinator, "_session_timeout_ms", None),
        "group_instance_id": getattr(coordinator, "_group_instance_id", None),
        "partitions": len(app.consumer.assignment()),
    }


@contextlib.asynccontextmanager
async def running_worker(settings: Settings, profile: BrokerProfile) -> AsyncIterator[Worker]:
    """Start a worker on ``profile``'s broker, wait until it is ready, stop it on exit."""
    profile = await resolve(profile)
    await ensure_topics(settings, profile)
    worker = build_app(settings, profile)
    await ensure_changelogs(worker, profile)
    await worker.app.start()
    try:
        await wait_ready(worker)
        log.info("worker.ready", broker=profile.url, **describe(worker))
        yield worker
    finally:
        with contextlib.suppress(asyncio.CancelledError):
            await worker.app.stop()
        # Where the next owner of each audio partition starts reading: what this
        # worker committed last (below any start it left unacknowledged).
        audio = settings.topic("audio")
        committed = getattr(worker.app.consumer, "_committed_offset", {})
        log.info("worker.left", committed={
            tp.partition: offset for tp, offset in committed.items() if tp.topic == audio})
        worker.endpointer.close()
        worker.asr.close()
        await worker.audio_log.close()
        worker.nlu.close()


async def warmed_up(worker: Worker, skills: Sequence[Any] = (), timeout_s: float = 60.0
                    ) -> None:
    """Wait until the models are loaded and the arbiter hears every running skill.

    A worker takes traffic before this, but its first decode then pays for
    loading the models; demos and replays wait so that their timing is the
    pipeline's own.
    """
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout_s):
            while not (worker.asr.loaded and worker.nlu.loaded  # noqa: ASYNC110 -- polls
                       and all(worker.arbiter.live(s.name) for s in skills)):  # three owners
                await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def running_skills(settings: Settings, profile: BrokerProfile,
                         only: tuple[str, ...] = ()) -> AsyncIterator[list[Any]]:
    """Run the example skills (all, or those in ``only``) until exit; yield them once ready."""
    from agents.skills import build

    await ensure_topics(settings, profile)
    skills = build(profile.connection, topic_prefix=settings.topic_prefix, only=only)
    stop = asyncio.Event()
    tasks = [asyncio.create_task(s.run(stop)) for s in skills]
    try:
        async with asyncio.timeout(60):
            for skill, task in zip(skills, tasks, strict=True):
                ready = asyncio.create_task(skill.ready.wait())
                await asyncio.wait({ready, task}, return_when=asyncio.FIRST_COMPLETED)
                if task.done():
                    ready.cancel()
                    task.result()  # raises what stopped it
        log.info("skills.ready", skills=[s.name for s in skills])
        yield skills
    finally:
        stop.set()
        with contextlib.suppress(asyncio.CancelledError, TimeoutError):
            async with asyncio.timeout(10):
                await asyncio.gather(*tasks, return_exceptions=True)


async def serve(settings: Settings, on_ready: Callable[[BrokerProfile], None], *,
                embedded_port: int = 0, skills: bool = False) -> None:
    """Run broker (if needed), worker and, with ``skills``, the example skills until a signal."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with contextlib.AsyncExitStack() as stack:
        profile = await stack.enter_async_context(broker_for(settings, port=embedded_port))
        worker = await stack.enter_async_context(running_worker(settings, profile))
        if skills:
            await stack.enter_async_context(running_skills(settings, profile))
        on_ready(profile)
        await stop.wait()
        if settings.drain_timeout_s > 0:
            # A second signal stops at once; what is then held moves with its partition.
            drained = asyncio.create_task(worker.drain(settings.drain_timeout_s))
            stop.clear()
            stopped = asyncio.create_task(stop.wait())
            await asyncio.wait({drained, stopped}, return_when=asyncio.FIRST_COMPLETED)
            drained.cancel()
            stopped.cancel()
    log.info("worker.stopped")
