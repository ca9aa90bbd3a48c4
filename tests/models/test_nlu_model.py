"""The NLU export path: a joint model exported to int8 ONNX answers like the torch one."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from infra.eval_nlu import evaluate
from models.nlu.export import export
from models.nlu.inference import NluModelMissing, NluOnnx
from models.nlu.labels import encode
from models.nlu.torch_model import JointModel
from models.nlu.train import encoder_dir

INTENTS = ["alarm_set", "weather_query", "play_music"]
TAGS = ["O", "B-time", "I-time"]


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[JointModel, Path]:
    torch.manual_seed(0)
    full = JointModel(len(INTENTS), len(TAGS)).eval()  # untrained: only the export is tested
    trained = tmp_path_factory.mktemp("trained")
    torch.save(full.state_dict(), trained / "joint.pt")
    (trained / "labels.json").write_text(json.dumps({"intents": INTENTS, "tags": TAGS}))
    out = export(trained, tmp_path_factory.mktemp("model"), encoder_dir() / "vocab.txt")
    return full, out


def test_onnx_int8_agrees_with_torch(exported: tuple[JointModel, Path]) -> None:
    model, path = exported
    nlu = NluOnnx(path)
    texts = ["wake me up at nine am", "what is the weather in paris", "play some jazz"]
    results = nlu.interpret_batch(texts, top_k=3)
    for text, ranked in zip(texts, results, strict=True):
        enc = encode(text, nlu.wp)
        ids = torch.tensor([enc.ids])
        with torch.no_grad():
            il, _ = model(ids, torch.ones_like(ids))
        probs = torch.softmax(il[0], -1).numpy()
        assert ranked[0].intent == INTENTS[int(np.argmax(probs))]
        assert ranked[0].score == pytest.approx(float(probs.max()), abs=0.05)
        assert [r.score for r in ranked] == sorted((r.score for r in ranked), reverse=True)
        for slot in ranked[0].slots:
            assert text[slot.start:slot.end] == slot.value


def test_eval_nlu_reports_massive_figures(exported: tuple[JointModel, Path],
                                          tmp_path: Path) -> None:
    _, path = exported
    data = tmp_path / "tiny.jsonl"
    rows = [{"intent": "alarm_set", "annot_utt": "wake me at [time : nine]"},
            {"intent": "play_music", "annot_utt": "play jazz"}]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    report = evaluate(NluOnnx(path), data)
    assert report["utterances"] == 2
    for key in ("intent_accuracy", "slot_f1", "exact_match"):
        assert 0.0 <= report[key] <= 1.0
    assert report["exact_match"] <= report["intent_accuracy"]


def test_missing_model_is_a_coded_error(tmp_path: Path) -> None:
    with pytest.raises(NluModelMissing) as info:
        NluOnnx(tmp_path)
    assert info.value.code == "nlu-model-missing"
