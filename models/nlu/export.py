"""Export the trained joint model to ONNX and quantize it to int8 (build time, torch)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from models.nlu.torch_model import JointModel


def export(trained: Path, out: Path, vocab: Path) -> Path:
    """Write ``nlu.int8.onnx``, ``labels.json`` and ``vocab.txt`` into ``out``."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    labels = json.loads((trained / "labels.json").read_text())
    model = JointModel(len(labels["intents"]), len(labels["tags"]),
                       embed_rank=labels.get("embed_rank"))
    model.load_state_dict(torch.load(trained / "joint.pt", map_location="cpu", weights_only=True))
    model.eval()
    out.mkdir(parents=True, exist_ok=True)
    fp32 = out / "nlu.onnx"
    ids = torch.ones(2, 9, dtype=torch.long)
    with torch.no_grad():
        torch.onnx.export(
            model, (ids, torch.ones_like(ids)), str(fp32), dynamo=False,
            input_names=["ids", "attention"], output_names=["intent_logits", "slot_logits"],
            dynamic_axes={"ids": {0: "batch", 1: "n"}, "attention": {0: "batch", 1: "n"},
                          "intent_logits": {0: "batch"}, "slot_logits": {0: "batch", 1: "n"}},
            opset_version=17)
    quantize_dynamic(str(fp32), str(out / "nlu.int8.onnx"), weight_type=QuantType.QInt8,
                     op_types_to_quantize=["MatMul", "Gemm", "Gather"])
    fp32.unlink()
    shutil.copy(trained / "labels.json", out / "labels.json")
    shutil.copy(vocab, out / "vocab.txt")
    report = trained / "train_report.json"
    if report.exists():
        shutil.copy(report, out / "train_report.json")
    return out
