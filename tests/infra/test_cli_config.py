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
