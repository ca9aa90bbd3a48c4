"""Build the Faust application with every agent, for a given broker."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import time
from pathlib import Path
from typing import Any

import faust

from agents import arbiter as arbiter_agent
from agents import asr as asr_agent
from agents import context as context_agent
from agents import endpointer as endpointer_agent
from agents import interactions as interactions_agent
from agents import nlu as nlu_agent
from agents import replies as replies_agent
from agents.base import DeviceGate
from agents.ledger import Ledger
from agents.recovery import AudioLog
from agents.registry import DEFAULT_REGISTRY, Registry
from agents.rewriter import Rewriter, load_online, register_history, register_table
from infra import logs
from infra.config import BrokerProfile, Settings
from infra.transport import FETCH_WAIT_ATTR, IDEMPOTENT_ATTR
from models.asr import Engine, WhisperEngine, create
from models.nlu.inference import NluOnnx
from models.rewrite import Layer
from streams import topics

log = logs.get("voicestream.worker")
#: A draining worker waits for the utterances on its partitions changed this recently
#: and not decided; older ones were abandoned (their device went quiet).
DRAIN_HORIZON_S = 30.0


@dataclasses.dataclass
class Worker:
    """The app and the services a test or the CLI may want to look at."""

    app: faust.App
    endpointer: endpointer_agent.EndpointerService
    asr: asr_agent.AsrService
    contexts: Any
    nlu: nlu_agent.NluService
    arbiter: arbiter_agent.ArbiterService
    audio_log: AudioLog
    ledger: Ledger
    gate: DeviceGate
    replier: replies_agent.Replier | None = None
    rewriter: Rewriter | None = None
    interactions: interactions_agent.InteractionsService | None = None
    #: The audio partitions this worker owns now.
    owned: list[int] = dataclasses.field(default_factory=list)

    def busy(self) -> dict[str, int]:
        """Utterances each stage holds unfinished (a draining worker waits for them)."""
        return {
            "endpointer": self.endpointer.busy(),
            "asr": sum(bool(u.acks) for u in self.asr.utterances.values()),
            "nlu": sum(bool(u.acks) for u in self.nlu.utterances.values()),
            # Between stages (on the way over Kafka, held by no stage for a moment)
            # and at the arbiter: the ledger shows no decision yet. (The arbiter's
            # own gates are no measure: a superseded utterance's gate never opens.)
            "undecided": len(self.ledger.unfinished(self.owned, DRAIN_HORIZON_S)),
        }

    async def drain(self, timeout_s: float) -> dict[str, int]:
        """Take no new utterances; wait up to ``timeout_s`` for the held ones to finish.

        Returns what is still held at the end (empty counts: all finished). What
        is left is carried on by the partitions' next owner, as after a crash.
        """
        self.endpointer.drain()
        loop = asyncio.get_running_loop()
        started = loop.time()
        held = self.busy()
        log.info("worker.draining", **held)
        while any(held.values()) and loop.time() - started < timeout_s:
            await asyncio.sleep(0.05)
            held = self.busy()
        starts: dict[int, list[int]] = {}
        for partition, offset in sorted(self.endpointer.held):
            starts.setdefault(partition, []).append(offset)
        log.info("worker.drained", seconds=round(loop.time() - started, 2),
                 deferred=len(self.endpointer.held), deferred_starts=starts,
                 **{f"left_{k}": v for k, v in held.items()})
        return held


def asr_engine(settings: Settings) -> Engine:
    """The recognition engine the settings choose, as a worker runs it."""
    if settings.asr_engine == "pocketsphinx":
        return create("pocketsphinx", grammar=settings.asr_grammar or None)
    if settings.asr_engine == "moonshine":
        # English wideband audio; Whisper base the rest (other languages, and
        # narrowband audio unless asr_narrowband_model is empty) and, where
        # Moonshine is unsure, its second opinion: one model, made on first use.
        @functools.cache
        def whisper() -> WhisperEngine:
            return WhisperEngine(model=settings.asr_multilingual_model,
                                 word_times=settings.asr_word_times,
                                 threads=settings.asr_threads, narrowband_model="",
                                 multilingual_model=settings.asr_multilingual_model)

        return create("moonshine", threads=settings.asr_threads, others=whisper,
                      narrowband=bool(settings.asr_narrowband_model),
                      lm_weight=settings.asr_lm_weight,
                      phrase_lm_weight=settings.asr_moonshine_phrase_lm_weight,
                      second=(lambda: whisper().model) if settings.asr_second_opinion
                      else None)
    return create(settings.asr_engine, model=settings.asr_whisper_model,
                  word_times=settings.asr_word_times, threads=settings.asr_threads,
                  narrowband_model=settings.asr_narrowband_model,
                  multilingual_model=settings.asr_multilingual_model)


def build_app(settings: Settings, profile: BrokerProfile) -> Worker:
    """Create the Faust app with the context and end-pointing agents."""
    data_dir = Path(settings.data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    security = profile.connection.security
    credentials: Any = None
    if security.sasl_mechanism:
        credentials = faust.SASLCredentials(
            username=security.username, password=security.password,
            ssl_context=security.ssl_context(), mechanism=security.sasl_mechanism)
    elif security.cafile:
        credentials = faust.SSLCredentials(security.ssl_context())
    app = faust.App(
        settings.app_id,
        broker=[f"voicestream://{host}" for host in profile.hosts],
        store="vsrocksdb://" if settings.table_store == "rocksdb" else "memory://",
        datadir=str(data_dir),
        autodiscover=False,
        web_enabled=False,
        topic_partitions=settings.partitions,
        topic_replication_factor=profile.replication_factor,
        broker_session_timeout=profile.session_timeout_s,
        broker_heartbeat_interval=profile.heartbeat_interval_s,
        broker_request_timeout=max(30.0, profile.session_timeout_s + 5.0),
        broker_commit_interval=1.0,
        broker_credentials=credentials,
        # Static membership where the broker handles it (see BrokerProfile).
        consumer_group_instance_id=(settings.instance_id or None)
        if profile.static_membership else None,
        producer_acks=-1,
        producer_max_batch_size=profile.max_batch_bytes,
        producer_linger_ms=0,
        consumer_auto_offset_reset="earliest",
        table_standby_replicas=0,
        stream_wait_empty=False,
        worker_redirect_stdouts=False,
    )
    setattr(app, FETCH_WAIT_ATTR, profile.fetch_max_wait_ms)
    setattr(app, IDEMPOTENT_ATTR, not profile.connection.tansu)

    out = {
        spec.short: app.topic(settings.topic(spec.short), key_serializer="raw",
                              value_serializer="raw", partitions=settings.partitions)
        for spec in topics.ALL
    }

    async def send(short: str, key: bytes, value: bytes, partition: int | None = None) -> None:
        topic = out.get(short)
        if topic is None:  # a skill's directive topic, named in the registry
            topic = out[short] = app.topic(settings.topic(short), key_serializer="raw",
                                           value_serializer="raw",
                                           partitions=settings.partitions)
        # Wait for the broker's acknowledgement (acks=all): a stage acknowledges its
        # input only after its output is durable, or a crash in between loses it.
        delivered = await topic.send(key=key, value=value, partition=partition)
        await delivered

    audio_name = settings.topic(topics.AUDIO.short)
    # Global: every worker reads every entry, whichever partition wrote it.
    ledger = Ledger(app.GlobalTable("utterances", key_type=str, partitions=settings.partitions,
                                    default=None, use_partitioner=True))
    owned: list[int] = []

    @app.on_partitions_assigned.connect
    async def assigned(_app: Any, /, *args: Any, signal: Any, **_kwargs: Any) -> None:
        owned[:] = sorted(tp.partition for tp in args[0] if tp.topic == audio_name)
        log.info("worker.assigned", audio_partitions=owned, at_ms=int(time.time() * 1000))

    @app.timer(30.0)  # type: ignore[untyped-decorator]
    async def prune_ledger() -> None:
        ledger.prune(owned)

    # Device identity: whose records are whose (see streams.identity).
    gate = DeviceGate(settings.device_master_key())
    if not gate.signing:
        log.info("devices.trusted", detail="no device_keys_file: device ids are taken on trust")
    contexts = context_agent.register(app, settings, send, gate)
    # Reads an utterance's audio back when its partition moved here mid-utterance.
    audio_log = AudioLog(profile.connection, settings.topic(topics.AUDIO.short),
                         fetch_max_wait_ms=profile.fetch_max_wait_ms)
    service = endpointer_agent.register(app, settings, send, ledger=ledger,
                                        contexts=contexts, audio_log=audio_log, gate=gate)

    asr = asr_agent.register(app, settings, send, lambda: asr_engine(settings),
                             contexts=contexts,
                             ledger=ledger, audio_log=audio_log, gate=gate)
    # Query rewriting inside the NLU stage: the mined table, live from its topic, then
    # the online layers when a saved one is configured (a damaged one stops us here).
    layers: list[Layer] = [register_table(app, settings, profile.connection)]
    online = load_online(settings.rewrite_online_dir)
    if online is not None:
        layers.append(online)
        register_history(app, settings, profile.connection, online)
    rewriter = Rewriter(layers, min_score=settings.rewrite_min_score)
    nlu = nlu_agent.register(app, settings, send, NluOnnx, contexts=contexts, ledger=ledger,
                             rewriter=rewriter)
    registry = Registry.load(settings.skills_registry or DEFAULT_REGISTRY)
    arbiter = arbiter_agent.register(app, settings, send, registry, contexts=contexts,
                                     connection=profile.connection, ledger=ledger)
    replier = replies_agent.register(app, settings, send, gate) if gate.signing else None
    interactions = interactions_agent.register(app, settings, send, contexts=contexts,
                                               gate=gate, connection=profile.connection)
    return Worker(app, service, asr, contexts, nlu, arbiter, audio_log, ledger, gate, replier,
                  rewriter, interactions, owned)
