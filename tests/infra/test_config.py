"""Configuration is checked when built; logs never carry audio or names."""

from __future__ import annotations

import json
import logging
import urllib.request
from collections.abc import Iterator

import pytest
import structlog

from infra import logs, metrics
from infra.broker import free_port
from infra.config import BrokerProfile, ConfigError, Settings, env_layer


def test_unknown_option_lists_valid_ones() -> None:
    with pytest.raises(ConfigError) as info:
        Settings.from_mapping({"partitons": 3})
    assert "partitons" in str(info.value)
    assert "partitions" in str(info.value) and "endpointer.final_silence_ms" in str(info.value)


def test_environment_and_nested_endpointer_options() -> None:
    s = Settings.from_env({"VOICESTREAM_PARTITIONS": "8",
                           "VOICESTREAM_ENDPOINTER__FINAL_SILENCE_MS": "900",
                           "VOICESTREAM_REQUIRE_KNOWN_DEVICES": "yes",
                           "VOICESTREAM_VAD_MODEL": "/ignored/here",
                           "VOICESTREAM_MODEL_DIR": "/ignored/too", "OTHER": "x"})
    assert s.partitions == 8 and s.endpointer.final_silence_ms == 900
    assert s.require_known_devices is True


@pytest.mark.parametrize("data", [
    {"partitions": 0},
    {"partitions": "many"},
    {"log_format": "xml"},
    {"broker": "http://localhost:9092"},
    {"broker": "kafka://"},
    {"endpointer": {"speculative_silence_ms": 900, "final_silence_ms": 800}},
    {"endpointer": {"loudness": 3}},
    {"asr_phrase_bonus": -1},
    {"asr_strong_weight": 25},
    {"asr_moonshine_bias_weight": -1},
    {"asr_moonshine_phrase_bonus": 101},
    {"asr_moonshine_strong_weight": 21},
    {"asr_lm_weight": -0.5},
    {"asr_lm_weight": 6},
    {"asr_moonshine_phrase_lm_weight": -1},
    {"asr_moonshine_phrase_lm_weight": 21},
])
def test_bad_values_fail_when_built(data: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        Settings.from_mapping(data)


def test_broker_profiles_differ_by_kind() -> None:
    kafka = BrokerProfile.parse("kafka://k1:9092,k2:9092", replication_factor=3)
    assert kafka.hosts == ("k1:9092", "k2:9092") and not kafka.embedded
    assert kafka.fetch_max_wait_ms == 500 and kafka.max_batch_bytes == 16384
    assert kafka.replication_factor == 3
    tansu = BrokerProfile.parse("tansu://127.0.0.1:9092")
    assert tansu.embedded and tansu.fetch_max_wait_ms == 20 and tansu.max_batch_bytes == 1
    assert tansu.session_timeout_s <= 3.0
    assert tansu.url == "kafka://127.0.0.1:9092"
    # Tansu 0.6.0 keeps rebalancing two static members: workers join it as dynamic ones.
    assert kafka.static_membership and not tansu.static_membership


@pytest.fixture
def logging_restored() -> Iterator[None]:
    """Put structlog's and the root logger's configuration back afterwards: ``configure``
    binds them to the stream stderr is during the test, which capsys closes after it."""
    config = structlog.get_config()
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        yield
    finally:
        structlog.configure(**config)
        root.handlers[:] = handlers
        root.setLevel(level)


@pytest.mark.usefixtures("logging_restored")
def test_logs_are_json_with_ids_bound_and_names_redacted(
        capsys: pytest.CaptureFixture[str]) -> None:
    logs.configure("json", "info")
    structlog.contextvars.bind_contextvars(utterance_id="u-42")
    try:
        logs.get("t", device_id="d-1").info("context", contacts=["Ada Lovelace"],
                                            pcm=b"\x01\x02")
    finally:
        structlog.contextvars.clear_contextvars()
    line = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert line["utterance_id"] == "u-42" and line["device_id"] == "d-1"
    assert line["contacts"] == "[redacted]" and line["pcm"] == "[redacted]"
    assert "Ada" not in json.dumps(line)


def test_metrics_endpoint_serves_prometheus_text() -> None:
    port = free_port()
    metrics.serve(port)
    metrics.RESETS.inc()
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    assert "voicestream_resets_total" in body
    assert "voicestream_stage_latency_seconds" in body


def test_later_layers_win_and_unset_options_keep_their_defaults() -> None:
    file_layer = {"partitions": 5, "app_id": "from-file", "endpointer": {"final_silence_ms": 700}}
    env = env_layer({"VOICESTREAM_PARTITIONS": "6", "VOICESTREAM_ENDPOINTER__FINAL_SILENCE_MS":
                     "900", "VOICESTREAM_MODEL_DIR": "/models", "HOME": "/root"})
    assert env == {"partitions": "6", "endpointer.final_silence_ms": "900"}
    settings = Settings.from_layers(file_layer, env, {"partitions": 7})
    assert settings.partitions == 7  # flag over environment over file
    assert settings.endpointer.final_silence_ms == 900  # environment over file
    assert settings.app_id == "from-file"  # file over default
    assert settings.topic_prefix == "voicestream."  # default


@pytest.mark.parametrize("data", [{"partitions": [1]}, {"partitions": True},
                                  {"require_known_devices": 1}, {"broker": 9092},
                                  {"asr_bias_weight": "heavy"}, {"metrics_host": "a b"}])
def test_a_value_of_the_wrong_type_fails_naming_the_option(data: dict[str, object]) -> None:
    with pytest.raises(ConfigError, match=next(iter(data))):
        Settings.from_mapping(data)


def test_a_layer_is_checked_alone_for_names_and_types_not_for_pairs() -> None:
    # A file may hold the SASL user and leave the password to the environment.
    Settings.check_names({"sasl_mechanism": "PLAIN", "sasl_username": "u"})
    with pytest.raises(ConfigError, match="unknown option"):
        Settings.check_names({"metrics_hots": "0.0.0.0"})


def test_metrics_serve_binds_the_address_given() -> None:
    port = free_port()
    server = metrics.serve(port, "127.0.0.2")
    try:
        assert server.server_address[:2] == ("127.0.0.2", port)
        body = urllib.request.urlopen(f"http://127.0.0.2:{port}/metrics", timeout=5).read()
        assert b"voicestream_resets_total" in body
    finally:
        server.shutdown()
        server.server_close()
