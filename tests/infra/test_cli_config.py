"""Configuration as a user gives it: precedence of the four layers, where metrics bind,
and one clear line for a malformed --config file."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from click.testing import CliRunner

from infra import metrics
from infra.broker import free_port
from infra.cli import main


def effective(tmp_path: Path, *, file: str | None, env: str | None,
              flag: str | None) -> str:
    args: list[str] = []
    if file is not None:
        config = tmp_path / "settings.json"
        config.write_text(json.dumps({"log_level": file, "partitions": 7}))
        args += ["--config", str(config)]
    if flag is not None:
        args += ["--log-level", flag]
    environ = {"VOICESTREAM_LOG_LEVEL": env} if env is not None else {}
    result = CliRunner().invoke(main, [*args, "settings"], env=environ)
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["partitions"] == (7 if file is not None else 4)
    return str(data["log_level"])


def test_flags_over_environment_over_file_over_defaults(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VOICESTREAM_LOG_LEVEL", raising=False)
    assert effective(tmp_path, file="debug", env="warning", flag="error") == "error"
    assert effective(tmp_path, file="debug", env="warning", flag=None) == "warning"
    assert effective(tmp_path, file="debug", env=None, flag=None) == "debug"
    assert effective(tmp_path, file=None, env=None, flag=None) == "info"
    assert effective(tmp_path, file=None, env="warning", flag="error") == "error"


@pytest.mark.parametrize(("content", "says"), [
    ("{bad", "not JSON (line 1, column 2"),
    ('["partitions", 3]', "must hold a JSON object"),
    ('{"partitons": 3}', "unknown option(s) partitons"),
    ('{"partitions": "many"}', "partitions='many' is not a valid int"),
    ("\xff\xfe", "cannot be read"),
])
def test_a_malformed_config_file_is_one_clear_line(tmp_path: Path, content: str,
                                                   says: str) -> None:
    config = tmp_path / "settings.json"
    config.write_bytes(content.encode("latin-1"))
    result = CliRunner().invoke(main, ["--config", str(config), "settings"])
    assert result.exit_code == 2
    assert says in result.output and "Traceback" not in result.output
    if "option" not in says and "valid int" not in says:
        assert str(config) in result.output


def test_metrics_bind_where_told() -> None:
    port = free_port()
    metrics.serve(port, "127.0.0.2")
    body = urllib.request.urlopen(f"http://127.0.0.2:{port}/metrics", timeout=5).read()
    assert b"voicestream_" in body
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2)
    result = CliRunner().invoke(main, ["settings"], env={"VOICESTREAM_METRICS_HOST": "0.0.0.0"})
    assert json.loads(result.output)["metrics_host"] == "0.0.0.0"


@pytest.mark.parametrize(("command", "jsonl"), [
    (["eval", "nlu", "--data"], True),
    (["eval", "context", "--data"], True),
    (["context", "--device", "d1", "--broker", "kafka://127.0.0.1:1", "--file"], False),
])
@pytest.mark.parametrize(("content", "jsonl_says", "object_says"), [
    ("not json at all\n", "line 1: not JSON", "line 1: not JSON"),
    ('{"x": 1}\n[1, 2]\n', "line 1: no ", "line 2: not JSON"),
    ("[1, 2]\n", "line 1: a JSON array", "not a JSON array"),
    ("", "empty", "line 1: not JSON"),
    ("\xff\xfe\xfd", "not UTF-8", "not UTF-8"),
])
def test_malformed_input_files_end_with_one_line_naming_the_file(
        tmp_path: Path, command: list[str], jsonl: bool, content: str, jsonl_says: str,
        object_says: str) -> None:
    bad = tmp_path / "input.jsonl"
    bad.write_bytes(content.encode("latin-1"))
    result = CliRunner().invoke(main, [*command, str(bad)])
    assert result.exit_code == 1, result.output
    assert f"Error: {bad}: " in result.output and "Traceback" not in result.output
    assert (jsonl_says if jsonl else object_says) in result.output


def test_jsonl_reader_names_the_line_and_the_missing_keys(tmp_path: Path) -> None:
    from streams.files import InputFileError, read_jsonl

    path = tmp_path / "rows.jsonl"
    path.write_text('{"a": 1, "b": 2}\n\n{"a": 3}\n')
    with pytest.raises(InputFileError, match=r"rows\.jsonl: line 3: no 'b'"):
        read_jsonl(path, ("a", "b"))
    assert read_jsonl(path, ("a",)) == [{"a": 1, "b": 2}, {"a": 3}]
    with pytest.raises(InputFileError, match="no such file"):
        read_jsonl(tmp_path / "missing.jsonl")
