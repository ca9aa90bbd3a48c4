"""voicestream rewrites mine end to end: bad lines reported, the table written and reloaded."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from agents.rewriter import load_online
from infra.cli import main
from models.rewrite.logs import read_rules, write_interactions
from models.rewrite.precomputed import PrecomputedLayer
from streams.rewrite import Interaction, Outcome, RewriteRule
from tests.agents.test_rewriter import HashEmbedder


def _log(path: Path) -> None:
    records = []
    for k in range(4):
        records += [
            Interaction(session_id=f"s{k}", user_id="u", device_id="d", ts=1000 * k,
                        utterance="play are with man", outcome=Outcome.DEFECT),
            Interaction(session_id=f"s{k}", user_id="u", device_id="d", ts=1000 * k + 4000,
                        utterance="play a r rahman", outcome=Outcome.SUCCESS),
        ]
    write_interactions(path, records)
    with path.open("a") as f:
        f.write('{"session_id": "s9"}\n')


def test_mine_writes_the_table_and_names_bad_lines(tmp_path: Path) -> None:
    logs, table = tmp_path / "logs.jsonl", tmp_path / "table.jsonl"
    _log(logs)
    result = CliRunner().invoke(main, ["rewrites", "mine", "--logs", str(logs),
                                       "--out", str(table)])
    assert result.exit_code == 0, result.output
    assert f"{logs}:9: missing-field" in result.output
    assert "8 records, 1 rules, 0 withdrawn" in result.output
    layer = PrecomputedLayer(read_rules(table))
    got = layer.propose("someone", "Play are with man")
    assert got is not None and got.text == "play a r rahman"


def test_mine_withdraws_rules_gone_since_the_previous_table(tmp_path: Path) -> None:
    logs, previous = tmp_path / "logs.jsonl", tmp_path / "old.jsonl"
    _log(logs)
    (previous).write_text(json.dumps(RewriteRule(form="old form", rewrite="new form",
                                                 probability=0.9, support=5).to_wire()) + "\n")
    result = CliRunner().invoke(main, ["rewrites", "mine", "--logs", str(logs),
                                       "--previous", str(previous)])
    assert result.exit_code == 0, result.output
    assert "1 rules, 1 withdrawn" in result.output
    printed = [json.loads(line) for line in result.output.splitlines()
               if line.startswith('{"type": "rewrite-rule"')]
    assert [r["form"] for r in printed] == ["play are with man"]


def test_mine_a_missing_file_is_one_line_and_status_2(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["rewrites", "mine", "--logs", str(tmp_path / "no.jsonl")])
    assert result.exit_code == 2
    assert "no.jsonl: no such file" in result.output


def test_mine_online_out_saves_a_layer_the_worker_loads(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import models.rewrite.embedder as embedder

    monkeypatch.setattr(embedder, "Embedder", lambda threads=1: HashEmbedder())
    logs, online = tmp_path / "logs.jsonl", tmp_path / "online"
    _log(logs)
    result = CliRunner().invoke(main, ["rewrites", "mine", "--logs", str(logs),
                                       "--out", str(tmp_path / "table.jsonl"),
                                       "--online-out", str(online)])
    assert result.exit_code == 0, result.output
    assert "online layer: 1 global forms, 1 users" in result.output
    layer = load_online(str(online))
    assert layer is not None
    got = layer.propose("u", "play are with man")
    assert got is not None and got.text == "play a r rahman"


def test_mine_online_out_without_the_embedder_build_says_so(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import models.rewrite.embedder as embedder

    monkeypatch.setattr(embedder, "model_dir", lambda: tmp_path / "no-build")
    logs = tmp_path / "logs.jsonl"
    _log(logs)
    result = CliRunner().invoke(main, ["rewrites", "mine", "--logs", str(logs),
                                       "--online-out", str(tmp_path / "online")])
    assert result.exit_code == 1
    assert "embedder-model-missing" in result.output
    assert not (tmp_path / "online").exists()
