"""`voicestream eval endpoint` on the built MASSIVE-dev set meets the backbone's goals."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.conftest import VOICESTREAM, env_with

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    data = tmp_path_factory.mktemp("eval") / "endpoint"
    run = subprocess.run(
        [*VOICESTREAM, "eval", "endpoint", "--data", str(data), "--shared", str(SHARED),
         "--json"], capture_output=True, text=True, timeout=600, env=env_with())
    assert run.returncode == 0, run.stderr[-2000:]
    result: dict[str, object] = json.loads(run.stdout)
    return result


def test_set_has_pauses_of_100_to_800_ms(report: dict[str, object]) -> None:
    assert report["utterances"] == 160
    assert report["with_pause"] == 120


def test_premature_final_cutoffs_at_most_two_percent(report: dict[str, object]) -> None:
    assert report["premature_final_cutoff_rate"] <= 0.02  # type: ignore[operator]


def test_median_speculative_lead_at_least_200_ms(report: dict[str, object]) -> None:
    lead = report["speculative_lead_ms"]
    assert isinstance(lead, dict) and lead["p50"] >= 200


def test_every_premature_speculative_is_reset_unless_the_final_was_premature(
        report: dict[str, object]) -> None:
    premature_finals = round(report["premature_final_cutoff_rate"]  # type: ignore[operator]
                             * report["utterances"])  # type: ignore[operator]
    assert report["premature_speculatives"] == \
        report["premature_speculatives_reset"] + premature_finals  # type: ignore[operator]
    assert report["premature_speculatives"] > 0  # the set does exercise resets


def test_semantic_final_is_sooner_without_more_cut_offs(report: dict[str, object]) -> None:
    sem = report["semantic"]
    assert isinstance(sem, dict)
    assert sem["premature_final_cutoff_rate"] <= 0.01
    fixed = report["final_delay_ms"]
    assert isinstance(fixed, dict)
    assert sem["final_delay_ms"]["p50"] < fixed["p50"] - 150


def test_replay_blends_in_the_interpretation_s_confidence() -> None:
    import dataclasses

    from agents.turn import TurnDecider
    from infra.eval_endpoint import replay
    from models.eot import EotModel
    from models.vad import CHUNK_MS
    from streams.endpoint import Endpoint, EndpointKind
    from streams.settings import EndpointerConfig

    config = EndpointerConfig()
    turn = TurnDecider(dataclasses.replace(config, semantic=True, nlu_weight=1.0),
                       EotModel.load())
    probs = [0.9] * (1000 // CHUNK_MS) + [0.05] * (2000 // CHUNK_MS)

    def final_delay(sure: float) -> int:
        decisions = replay(probs, config, turn=turn, words_at=lambda _a, _t: ["set", "a", "timer"],
                           asr_latency_ms=100, confidence=lambda _w: sure)
        [final] = [d for d in decisions if isinstance(d, Endpoint)
                   and d.kind is EndpointKind.FINAL]
        return final.t_ms - final.at_ms

    assert final_delay(1.0) < config.final_silence_ms <= final_delay(0.0)
