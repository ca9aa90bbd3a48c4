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


def test_bio_decoding_never_starts_or_switches_a_span_with_i() -> None:
    import numpy as np

    from models.nlu.labels import viterbi_bio

    tags = ["O", "B-time", "I-time", "B-date", "I-date"]
    # Arg-max per word would read O, I-time, I-date: two broken spans.
    lp = np.log(np.array([[0.9, 0.02, 0.04, 0.02, 0.02],
                          [0.3, 0.25, 0.4, 0.03, 0.02],
                          [0.05, 0.05, 0.4, 0.05, 0.45]]))
    assert viterbi_bio(lp, tags) == ["O", "B-time", "I-time"]
    assert viterbi_bio(np.zeros((0, 5)), tags) == []


def test_4bit_embedding_blocks_round_trip_closely() -> None:
    import numpy as np

    from models.nlu.export import quantize_rows_4bit

    w = np.random.default_rng(1).normal(size=(50, 64)).astype(np.float32)
    packed, scale, zp = quantize_rows_4bit(w)
    assert packed.shape == (50, 32) and scale.shape == (50, 2) and zp.shape == (50, 1)
    q = np.stack([packed & 15, packed >> 4], axis=-1).reshape(50, 64).astype(np.float32)
    z = np.stack([zp & 15, zp >> 4], axis=-1).reshape(50, 2).astype(np.float32)
    back = ((q.reshape(50, 2, 32) - z[..., None]) * scale[..., None]).reshape(50, 64)
    assert np.abs(back - w).max() <= scale.max() / 2 + 1e-6


def test_committed_model_is_small_and_stores_embeddings_in_4_bits() -> None:
    import onnx

    from models.nlu.inference import DEFAULT_DIR

    path = DEFAULT_DIR / "nlu.int8.onnx"
    assert path.stat().st_size < 20_000_000
    ops = {n.op_type for n in onnx.load(str(path), load_external_data=False).graph.node}
    assert "GatherBlockQuantized" in ops and "MatMulInteger" in ops
