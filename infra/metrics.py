"""Prometheus metrics: stage latency histograms, resets, dead letters, errors."""

from __future__ import annotations

from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

REGISTRY = CollectorRegistry()

STAGE_LATENCY = Histogram(
    "voicestream_stage_latency_seconds",
    "Wall time from a stage's input arriving to its output being sent.",
    ["stage"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
    registry=REGISTRY,
)
ENDPOINTS = Counter(
    "voicestream_endpoints_total", "End-points emitted.", ["kind"], registry=REGISTRY
)
RESETS = Counter("voicestream_resets_total", "Resets emitted.", registry=REGISTRY)
PARTIALS = Counter("voicestream_partials_total",
                   "Partial transcripts sent while users spoke.", registry=REGISTRY)
PARTIALS_SHED = Counter("voicestream_partials_shed_total",
                        "Partial transcripts not decoded because the CPU pressure was high.",
                        registry=REGISTRY)
DEAD_LETTERS = Counter(
    "voicestream_dead_letters_total", "Messages sent to the dead-letter topic.",
    ["stage", "code"], registry=REGISTRY,
)
ERRORS = Counter(
    "voicestream_utterance_errors_total", "Utterances ended with an error event.",
    ["stage", "code"], registry=REGISTRY,
)
OPEN_UTTERANCES = Gauge(
    "voicestream_open_utterances", "Utterances a worker is tracking.", ["stage"],
    registry=REGISTRY,
)
RELEASES = Counter(
    "voicestream_arbiter_outcomes_total",
    "Arbiter outcomes: released directives, declines, decisions cancelled by a reset.",
    ["outcome"], registry=REGISTRY,
)
RECOVERED = Counter(
    "voicestream_recovered_utterances_total",
    "In-flight utterances carried on from their audio after their partition moved here.",
    ["stage"], registry=REGISTRY,
)
DUPLICATES = Counter(
    "voicestream_duplicates_suppressed_total",
    "Outcomes not published again because another worker had already published them.",
    ["stage"], registry=REGISTRY,
)
VAD_BATCH = Histogram(
    "voicestream_vad_batch_chunks", "Chunks per VAD inference call.",
    buckets=(1, 2, 4, 8, 16, 32, 64), registry=REGISTRY,
)

TURN_SILENCE = Histogram(
    "voicestream_turn_silence_ms", "Final silence the semantic end-pointer required.",
    buckets=(250, 300, 400, 500, 600, 700, 800), registry=REGISTRY,
)
CONTEXTS = Counter(
    "voicestream_contexts_total", "Device context snapshots and updates taken into the table.",
    registry=REGISTRY,
)
OVERLOADED = Counter(
    "voicestream_overloaded_total",
    "New utterances refused because a model's queue was full (outcome ``overloaded``).",
    ["stage"], registry=REGISTRY,
)
MODEL_QUEUE = Gauge(
    "voicestream_model_queue", "Inference jobs waiting or running, per model.", ["stage"],
    registry=REGISTRY,
)

INTERACTIONS = Counter(
    "voicestream_interactions_total", "Interaction records written, by outcome.", ["outcome"],
    registry=REGISTRY,
)
REWRITES = Counter(
    "voicestream_rewrites_total", "Revisions interpreted as rewritten, by source layer.",
    ["source"], registry=REGISTRY,
)


def serve(port: int, addr: str = "127.0.0.1") -> WSGIServer:
    """Serve ``/metrics`` on ``addr:port`` in a background thread; return the server.

    ``addr`` is the ``metrics_host`` setting: 127.0.0.1 answers this machine
    only, 0.0.0.0 every interface (a container's port must be reachable).
    """
    server, _thread = start_http_server(port, addr=addr, registry=REGISTRY)
    return server
