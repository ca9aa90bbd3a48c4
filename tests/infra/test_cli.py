"""The CLI in-process, without a broker: settings precedence, the metrics address, bad files."""

from __future__ import annotations

import json
import os
import socket
import urllib.request
import wave
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from infra import metrics, runner
from infra.broker import free_port
from infra.cli import main
from infra.config import Settings
from infra.replay import FORMAT, FORMAT_VERSION


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [n for n in os.environ if n.startswith("VOICESTREAM_")]:
        monkeypatch.delenv(name)


class FakeProfile:
    native_url = "kafka://127.0.0.1:1"


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Settings]]:
    """Replace the worker by one that records its settings and reports ready at once."""
    seen: list[Settings] = []
    servers: list[Any] = []
    real_serve = metrics.serve

    async def fake_serve(settings: Settings, ready: Callable[[Any], None],
                         **_kw: Any) -> None:
        seen.append(settings)
        ready(FakeProfile())

    def keep(port: int, addr: str = "127.0.0.1") -> Any:
        server = real_serve(port, addr)
        servers.append(server)
        return server

    monkeypatch.setattr(runner, "serve", fake_serve)
    monkeypatch.setattr(metrics, "serve", keep)
    yield seen
    for server in servers:
        server.shutdown()
        server.server_close()


def run(args: list[str], env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(main, args, env=env)


def test_flags_beat_environment_beat_file_beat_defaults(
        tmp_path: Path, served: list[Settings]) -> None:
    config = tmp_path / "settings.json"
    config.write_text(json.dumps({"metrics_port": 0, "log_level": "warning",
                                  "partitions": 5, "topic_prefix": "file."}))
    env = {"VOICESTREAM_LOG_LEVEL": "error", "VOICESTREAM_PARTITIONS": "6"}
    # Defaults only.
    assert run(["up"]).exit_code == 0
    # The file over the defaults; then the environment over the file; then flags over both.
    assert run(["--config", str(config), "up"]).exit_code == 0
    assert run(["--config", str(config), "up"], env).exit_code == 0
    result = run(["--config", str(config), "--log-level", "debug", "up"], env)
    assert result.exit_code == 0, result.output
    defaults, file_only, file_env, all_four = served
    assert (defaults.log_level, defaults.partitions, defaults.topic_prefix) == \
        ("info", 4, "voicestream.")
    assert (file_only.log_level, file_only.partitions, file_only.topic_prefix) == \
        ("warning", 5, "file.")
    assert (file_env.log_level, file_env.partitions, file_env.topic_prefix) == \
        ("error", 6, "file.")
    assert (all_four.log_level, all_four.partitions, all_four.topic_prefix) == \
        ("debug", 6, "file.")


def test_a_command_flag_beats_the_environment_and_the_file(
        tmp_path: Path, served: list[Settings]) -> None:
    config = tmp_path / "settings.json"
    config.write_text(json.dumps({"metrics_host": "127.0.0.3"}))
    env = {"VOICESTREAM_METRICS_HOST": "127.0.0.4"}
    assert run(["--config", str(config), "up"], env).exit_code == 0
    port = free_port()
    result = run(["--config", str(config), "up", "--metrics-host", "127.0.0.2",
                  "--metrics-port", str(port)], env)
    assert result.exit_code == 0, result.output
    assert [s.metrics_host for s in served] == ["127.0.0.4", "127.0.0.2"]
    assert served[1].metrics_port == port


def test_help_states_the_precedence() -> None:
    text = " ".join(run(["--help"]).output.split())
    assert "command-line flags, then VOICESTREAM_* variables, then this file, then the " \
           "defaults" in text


def _reachable(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(2)
        return s.connect_ex((host, port)) == 0


def test_metrics_bind_where_told(served: list[Settings]) -> None:
    # 127.0.0.2 is loopback too, but a server bound to it does not answer on 127.0.0.1.
    port = free_port()
    result = run(["up", "--metrics-port", str(port), "--metrics-host", "127.0.0.2"])
    assert result.exit_code == 0, result.output
    body = urllib.request.urlopen(f"http://127.0.0.2:{port}/metrics", timeout=5).read()
    assert b"voicestream_resets_total" in body
    assert not _reachable("127.0.0.1", port)
    # Every interface (as in the container): reachable on each loopback address.
    port = free_port()
    result = run(["up", "--metrics-port", str(port)], {"VOICESTREAM_METRICS_HOST": "0.0.0.0"})
    assert result.exit_code == 0, result.output
    assert _reachable("127.0.0.1", port) and _reachable("127.0.0.2", port)


def test_the_default_metrics_host_is_loopback(served: list[Settings]) -> None:
    port = free_port()
    assert run(["up", "--metrics-port", str(port)]).exit_code == 0
    assert served[0].metrics_host == "127.0.0.1"
    assert _reachable("127.0.0.1", port) and not _reachable("127.0.0.2", port)


def test_a_bad_metrics_host_is_refused() -> None:
    result = run(["up", "--metrics-host", "not a host"])
    assert result.exit_code == 2 and "metrics_host" in result.stderr


# --- bad input files ------------------------------------------------------------------

def _wav(path: Path, *, width: int = 2, frames: bytes = b"\0\0" * 1600) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(width)
        w.setframerate(16000)
        w.writeframes(frames)


def _files(root: Path) -> None:
    """Every bad file the cases below use, and the good ones beside them."""
    (root / "not-json.json").write_text('{"log_level": "info",\n  oops}\n')
    (root / "list.json").write_text("[1, 2]\n")
    (root / "unknown.json").write_text('{"brokr": "kafka://h:1"}\n')
    (root / "wrong-type.json").write_text('{"partitions": "four"}\n')
    (root / "out-of-range.json").write_text('{"partitions": 0}\n')
    (root / "binary.json").write_bytes(b"\xff\xfe\x00garbage")
    (root / "bad-context.json").write_text('{"has_screen": "maybe"}\n')
    (root / "bad.key").write_text("not hex at all\n")
    (root / "short.key").write_text("abcd\n")
    (root / "text.wav").write_text("this is not audio\n")
    (root / "riff-only.wav").write_bytes(b"RIFF\x24\x00\x00\x00WAVE")
    _wav(root / "8bit.wav", width=1, frames=b"\x80" * 1600)
    _wav(root / "good.wav")
    (root / "nlu.jsonl").write_text(
        '{"annot_utt": "wake me up at [time : seven]", "intent": "alarm_set"}\n'
        '{"annot_utt": "play jazz", "intent": \n')
    (root / "nlu-missing.jsonl").write_text(
        '{"annot_utt": "play jazz", "intent": "play_music"}\n\n{"annot_utt": "stop"}\n')
    (root / "nlu-array.jsonl").write_text('["play jazz", "play_music"]\n')
    (root / "nlu-empty.jsonl").write_text("\n\n")
    (root / "context.jsonl").write_text(
        '{"id": 0, "family": "f", "text": "t", "context": {}, '
        '"expect": {"intent": "x", "slots": {}}}\n'
        '{"id": 1, "family": "f", "text": "t", "context": {}}\n')
    (root / "contacts.json").write_text('{"contacts": "Ada Lovelace"}\n')
    asr = root / "asr"
    asr.mkdir()
    (asr / "labels.jsonl").write_text('{"set": "names", "file": "a.wav", "text": "hi", '
                                      '"voice": "en"}\n')
    (asr / "labels-tune.jsonl").write_text('{"set": "names-tune", "file": 7}\n')
    _wav(asr / "a.wav")
    ep = root / "endpoint"
    ep.mkdir()
    (ep / "labels.jsonl").write_text('{"file": "0000.wav", "speech_end_ms": 900, '
                                     '"pause": null}\nnot json\n')
    ep_missing = root / "endpoint-missing"
    ep_missing.mkdir()
    (ep_missing / "labels.jsonl").write_text('{"file": "gone.wav", "speech_end_ms": 900, '
                                             '"pause": null}\n')
    ep_notwav = root / "endpoint-notwav"
    ep_notwav.mkdir()
    (ep_notwav / "labels.jsonl").write_text('{"file": "0000.wav", "speech_end_ms": 900, '
                                            '"pause": null}\n')
    (ep_notwav / "0000.wav").write_text("RIFF but not really\n")
    header = json.dumps({"format": FORMAT, "version": FORMAT_VERSION, "prefix": "p."})
    row = {"topic": "audio", "role": "input", "partition": 0, "offset": 0, "ts_ms": 1,
           "key": "d", "value": "AAAA"}
    (root / "not-a-recording.jsonl").write_text('{"format": "something else"}\n')
    (root / "empty.jsonl").write_text("")
    (root / "bad-row.jsonl").write_text("\n".join([
        header, json.dumps(row), json.dumps({**row, "value": "%%% not base64"})]) + "\n")
    (root / "bad-topic.jsonl").write_text(
        "\n".join([header, json.dumps({**row, "topic": "nowhere"})]) + "\n")
    (root / "truncated.jsonl").write_text(header + '\n{"topic": "audio", "ro')
    (root / "registry.toml").write_text('[[skill]]\nname = "lights"\nintents = ["a" "b"]\n')
    (root / "registry-shape.toml").write_text('[[skill]]\nname = "lights"\ncolour = "red"\n')
    train = root / "train"
    train.mkdir()
    (train / "train.jsonl").write_text('{"annot_utt": "hi", "intent": "greet"}\n{"annot_utt"\n')
    (train / "dev.jsonl").write_text('{"annot_utt": "hi", "intent": "greet"}\n')


#: (case, arguments, environment, the file named in the error, its line or None).
CASES: list[tuple[str, list[str], dict[str, str], str, int | None]] = [
    ("config-not-json", ["--config", "{d}/not-json.json", "devices", "key", "k",
                         "--out", "{d}/k.key"], {}, "not-json.json", 2),
    ("config-a-list", ["--config", "{d}/list.json", "devices", "key", "k",
                       "--out", "{d}/k.key"], {}, "list.json", None),
    ("config-unknown-option", ["--config", "{d}/unknown.json", "devices", "key", "k",
                               "--out", "{d}/k.key"], {}, "unknown.json", None),
    ("config-wrong-type", ["--config", "{d}/wrong-type.json", "devices", "key", "k",
                           "--out", "{d}/k.key"], {}, "wrong-type.json", None),
    ("config-out-of-range", ["--config", "{d}/out-of-range.json", "devices", "key", "k",
                             "--out", "{d}/k.key"], {}, "out-of-range.json", None),
    ("config-binary", ["--config", "{d}/binary.json", "devices", "key", "k",
                       "--out", "{d}/k.key"], {}, "binary.json", None),
    ("config-missing", ["--config", "{d}/nowhere.json", "devices", "key", "k",
                        "--out", "{d}/k.key"], {}, "nowhere.json", None),
    ("device-keys-file", ["devices", "key", "k", "--out", "{d}/k.key"],
     {"VOICESTREAM_DEVICE_KEYS_FILE": "{d}/bad.key"}, "bad.key", None),
    ("device-keys-file-missing", ["devices", "key", "k", "--out", "{d}/k.key"],
     {"VOICESTREAM_DEVICE_KEYS_FILE": "{d}/gone.key"}, "gone.key", None),
    ("context-file-not-json", ["context", "--device", "d", "--file", "{d}/not-json.json"], {},
     "not-json.json", 2),
    ("context-file-a-list", ["context", "--device", "d", "--file", "{d}/list.json"], {},
     "list.json", None),
    ("context-file-bad-field", ["context", "--device", "d", "--file", "{d}/bad-context.json"],
     {}, "bad-context.json", None),
    ("context-file-missing", ["context", "--device", "d", "--file", "{d}/gone.json"], {},
     "gone.json", None),
    ("context-key-file", ["context", "--device", "d", "--set", "location=hall",
                          "--key-file", "{d}/short.key"], {}, "short.key", None),
    ("send-text-file", ["send", "{d}/text.wav", "--device", "d"], {}, "text.wav", None),
    ("send-riff-only", ["send", "{d}/riff-only.wav", "--device", "d"], {}, "riff-only.wav",
     None),
    ("send-8-bit", ["send", "{d}/8bit.wav", "--device", "d"], {}, "8bit.wav", None),
    ("send-missing", ["send", "{d}/gone.wav", "--device", "d"], {}, "gone.wav", None),
    ("send-key-file", ["send", "{d}/good.wav", "--device", "d", "--key-file", "{d}/bad.key"],
     {}, "bad.key", None),
    ("eval-nlu-not-jsonl", ["eval", "nlu", "--data", "{d}/nlu.jsonl"], {}, "nlu.jsonl", 2),
    ("eval-nlu-missing-field", ["eval", "nlu", "--data", "{d}/nlu-missing.jsonl"], {},
     "nlu-missing.jsonl", 3),
    ("eval-nlu-array", ["eval", "nlu", "--data", "{d}/nlu-array.jsonl"], {},
     "nlu-array.jsonl", 1),
    ("eval-nlu-empty", ["eval", "nlu", "--data", "{d}/nlu-empty.jsonl"], {},
     "nlu-empty.jsonl", None),
    ("eval-nlu-config-file", ["eval", "nlu", "--data", "{d}/list.json"], {}, "list.json", 1),
    ("eval-context-missing-field", ["eval", "context", "--data", "{d}/context.jsonl"], {},
     "context.jsonl", 2),
    ("eval-context-not-jsonl", ["eval", "context", "--data", "{d}/not-json.json"], {},
     "not-json.json", 1),
    ("eval-asr-context-not-json", ["eval", "asr", "--context", "{d}/not-json.json"], {},
     "not-json.json", 2),
    ("eval-asr-context-shape", ["eval", "asr", "--context", "{d}/contacts.json"], {},
     "contacts.json", None),
    ("eval-asr-labels", ["eval", "asr", "--data", "{d}/asr"], {}, "labels-tune.jsonl", 1),
    ("eval-endpoint-labels", ["eval", "endpoint", "--data", "{d}/endpoint"], {},
     "labels.jsonl", 2),
    ("eval-endpoint-missing-wav", ["eval", "endpoint", "--data", "{d}/endpoint-missing"], {},
     "labels.jsonl", 1),
    ("eval-endpoint-not-a-wav", ["eval", "endpoint", "--data", "{d}/endpoint-notwav"], {},
     "0000.wav", None),
    ("replay-not-a-recording", ["replay", "{d}/not-a-recording.jsonl"], {},
     "not-a-recording.jsonl", 1),
    ("replay-empty", ["replay", "{d}/empty.jsonl"], {}, "empty.jsonl", None),
    ("replay-bad-row", ["replay", "{d}/bad-row.jsonl"], {}, "bad-row.jsonl", 3),
    ("replay-unknown-topic", ["replay", "{d}/bad-topic.jsonl"], {}, "bad-topic.jsonl", 2),
    ("replay-truncated", ["replay", "{d}/truncated.jsonl"], {}, "truncated.jsonl", 2),
    ("replay-binary", ["replay", "{d}/binary.json"], {}, "binary.json", None),
    ("up-registry-not-toml", ["up"], {"VOICESTREAM_SKILLS_REGISTRY": "{d}/registry.toml"},
     "registry.toml", 3),
    ("up-registry-shape", ["up"], {"VOICESTREAM_SKILLS_REGISTRY": "{d}/registry-shape.toml"},
     "registry-shape.toml", None),
    ("skills-registry", ["skills", "--broker", "kafka://127.0.0.1:1"],
     {"VOICESTREAM_SKILLS_REGISTRY": "{d}/registry.toml"}, "registry.toml", 3),
    ("up-registry-missing", ["up"], {"VOICESTREAM_SKILLS_REGISTRY": "{d}/gone.toml"},
     "gone.toml", None),
    ("train-nlu-data", ["train", "nlu", "--data", "{d}/train"], {}, "train.jsonl", 2),
]


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("bad-files")
    _files(root)
    return root


@pytest.mark.parametrize(("args", "env", "named", "line"),
                         [pytest.param(*c[1:], id=c[0]) for c in CASES])
def test_a_bad_input_file_ends_in_one_line_naming_it(
        bad_files: Path, monkeypatch: pytest.MonkeyPatch, args: list[str],
        env: dict[str, str], named: str, line: int | None) -> None:
    async def never(*_a: Any, **_kw: Any) -> None:
        raise AssertionError("the worker started despite a bad file")

    monkeypatch.setattr(runner, "serve", never)
    result = run([a.format(d=bad_files) for a in args],
                 {k: v.format(d=bad_files) for k, v in env.items()})
    assert isinstance(result.exception, SystemExit), result.exception
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert result.stdout == ""
    error = [x for x in result.stderr.splitlines() if x.startswith("Error:")]
    assert len(error) == 1, result.stderr
    assert named in error[0]
    if line is not None:
        assert f"{named}:{line}:" in error[0], error[0]

