"""The end-of-turn text model: the shipped weights, features, training and errors."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

from models.eot import (
    BITS,
    DEFAULT_PATH,
    EotModel,
    EotModelError,
    examples,
    features,
    score,
    train,
    words_of,
)
from tests.conftest import VOICESTREAM, env_with


@pytest.fixture(scope="module")
def model() -> EotModel:
    return EotModel.load()


def test_shipped_weights_are_small_and_scored_on_dev(model: EotModel) -> None:
    assert DEFAULT_PATH.stat().st_size < 1_000_000
    assert model.meta["ambiguous_prefixes"] == "negative"
    assert model.meta["dev"]["accuracy"] > 0.8


@pytest.mark.parametrize("text", ["turn on the kitchen light", "tell me a joke",
                                  "Turn on the kitchen light."])
def test_complete_requests_score_high(model: EotModel, text: str) -> None:
    assert model.complete(text) > 0.8


@pytest.mark.parametrize("text", ["set an alarm for", "what is the", "play music by",
                                  "wake me up at"])
def test_truncated_requests_score_low(model: EotModel, text: str) -> None:
    assert model.complete(text) < 0.1


def test_asr_style_text_is_normalised() -> None:
    assert words_of("Set an alarm for 7:00.") == ["set", "an", "alarm", "for", "seven"]


def test_features_look_at_the_end_and_handle_empty() -> None:
    assert features([]) == ["empty"]
    names = features(["set", "an", "alarm", "for"])
    assert "w1=for" in names and "w2=alarm for" in names and "fl=set for" in names


def test_examples_keep_or_drop_prefixes_that_are_requests() -> None:
    reqs = [["play", "music", "by", "queen"], ["play", "music"]]
    kept = examples(reqs, None)
    dropped = examples(reqs, {("play", "music"), ("play", "music", "by", "queen")})
    assert (["play", "music"], 0) in kept and (["play", "music"], 1) in kept
    assert (["play", "music"], 0) not in dropped
    assert (["play", "music", "by"], 0) in dropped


def test_training_learns_a_toy_language(tmp_path: Path) -> None:
    reqs = [["set", "an", "alarm", "for", t] for t in ("six", "seven", "noon", "later")]
    reqs += [["turn", "on", "the", room, "light"] for room in ("kitchen", "hall", "bath")]
    data = examples(reqs, None)
    model = train(data, epochs=30)
    figures = score(model, data)
    assert figures["accuracy"] == 1.0
    model.save(tmp_path / "toy.npz")
    again = EotModel.load(tmp_path / "toy.npz")
    assert again.complete("set an alarm for") < 0.5 < again.complete("turn on the hall light")


def test_missing_and_foreign_files_are_coded_errors(tmp_path: Path) -> None:
    with pytest.raises(EotModelError) as missing:
        EotModel.load(tmp_path / "none.npz")
    assert missing.value.code == "eot-model-missing"
    bad = tmp_path / "bad.npz"
    np.savez(bad, weights=np.zeros(3, np.float16), meta=np.array("{}"))
    with pytest.raises(EotModelError) as foreign:
        EotModel.load(bad)
    assert foreign.value.code == "eot-model-invalid"
    text = tmp_path / "text.npz"
    text.write_text("not a zip")
    with pytest.raises(EotModelError) as garbage:
        EotModel.load(text)
    assert garbage.value.code == "eot-model-invalid"
    with pytest.raises(ValueError):
        EotModel(np.zeros((1 << BITS) - 1, np.float32), {})


SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"


@pytest.mark.skipif(not (SHARED / "massive-en-US").is_dir(), reason="needs MASSIVE")
def test_train_eot_command_rebuilds_and_scores_on_dev(tmp_path: Path) -> None:
    out = tmp_path / "eot.npz"
    run = subprocess.run([*VOICESTREAM, "train", "eot", "--shared", str(SHARED), "--out",
                          str(out), "--epochs", "3", "--json"],
                         capture_output=True, text=True, timeout=300, env=env_with())
    assert run.returncode == 0, run.stderr[-2000:]
    report = json.loads(run.stdout)
    assert report["split"] == "MASSIVE en-US dev prefixes"
    assert report["dev"]["examples"] > 10000 and report["dev"]["accuracy"] > 0.7
    assert 0 < out.stat().st_size < 5_000_000
    assert EotModel.load(out).meta["dev"] == report["dev"]


def test_train_eot_without_data_is_a_clear_error(tmp_path: Path) -> None:
    run = subprocess.run([*VOICESTREAM, "train", "eot", "--shared", str(tmp_path)],
                         capture_output=True, text=True, timeout=120, env=env_with())
    assert run.returncode != 0
    assert "train.jsonl: no such file" in run.stderr
