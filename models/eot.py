"""End-of-turn text model: is this (ASR-style) word sequence a complete request?

A logistic regression over hashed n-gram features of the sequence's end
(last word, last two and three words, the first word with the last, the
length), trained in plain numpy on MASSIVE en-US *train*: every request is a
positive, and every word prefix of it that is not itself a request anywhere
in the data is a negative ("set an alarm for"). Prefixes that are requests of
their own ("play music" in "play music by queen") are left out: the words
alone cannot tell them apart, so the model must not be taught that they are
unfinished. Text goes through :func:`models.textnorm.normalize` first, so
Whisper's "Turn on the light." and MASSIVE's "turn on the light" look alike.

Inference is numpy only: a dozen CRC-32 hashes and a dot product (a few
microseconds). The weights are a float16 ``.npz`` of 128 KiB, committed beside
this module; ``voicestream train eot`` rebuilds it.
"""

from __future__ import annotations

import json
import math
import random
import zlib
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from models.textnorm import normalize

#: Hash space: 2**16 weights.
BITS = 16
DEFAULT_PATH = Path(__file__).with_name("eot.npz")
FORMAT = 1


class EotModelError(Exception):
    """The weights file is missing or not one of ours; ``code`` is kebab-case."""

    def __init__(self, path: Path, code: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path
        self.code = code


def words_of(text: str) -> list[str]:
    """ASR-style words: normalised, lower case, no punctuation."""
    return normalize(text).split()


def features(words: Sequence[str]) -> list[str]:
    """The named features of a word sequence (hashed by :func:`indices`)."""
    n = len(words)
    if n == 0:
        return ["empty"]
    last = words[-1]
    prev = words[-2] if n > 1 else "<s>"
    prev2 = words[-3] if n > 2 else "<s>"
    size = str(min(n, 10))
    return [
        "bias", f"w1={last}", f"w2={prev} {last}", f"w3={prev2} {prev} {last}",
        f"p1={prev}", f"f={words[0]}", f"fl={words[0]} {last}", f"n={size}",
        f"nw1={size} {last}", f"f2={' '.join(words[:2])}|{last}",
    ]


def indices(words: Sequence[str]) -> npt.NDArray[np.int64]:
    """Hashed feature indices of ``words``."""
    mask = (1 << BITS) - 1
    return np.fromiter((zlib.crc32(f.encode()) & mask for f in features(words)),
                       dtype=np.int64)


class EotModel:
    """P(the words are a complete request), from a weights file."""

    def __init__(self, weights: npt.NDArray[np.float32], meta: dict[str, Any]) -> None:
        if weights.shape != (1 << BITS,):
            raise ValueError(f"need {1 << BITS} weights, got {weights.shape}")
        self.weights = weights.astype(np.float32)
        self.meta = meta

    @classmethod
    def load(cls, path: Path = DEFAULT_PATH) -> EotModel:
        """Read a weights file; raise :class:`EotModelError` if it is missing or foreign."""
        if not path.is_file():
            raise EotModelError(path, "eot-model-missing",
                                "no end-of-turn model (run `voicestream train eot`)")
        try:
            with np.load(path, allow_pickle=False) as z:
                weights = np.asarray(z["weights"], dtype=np.float32)
                meta = json.loads(str(z["meta"]))
        except (OSError, ValueError, KeyError) as exc:
            raise EotModelError(path, "eot-model-invalid", f"not an end-of-turn model: {exc}"
                                ) from exc
        if meta.get("format") != FORMAT or weights.shape != (1 << BITS,):
            raise EotModelError(path, "eot-model-invalid",
                                f"format {meta.get('format')!r}, shape {weights.shape}")
        return cls(weights, meta)

    def save(self, path: Path) -> None:
        """Write the weights as float16 with the metadata."""
        np.savez_compressed(path, weights=self.weights.astype(np.float16),
                            meta=np.array(json.dumps(self.meta)))

    def complete_words(self, words: Sequence[str]) -> float:
        """P(complete) of already-normalised words."""
        z = float(self.weights[indices(words)].sum())
        return 1.0 / (1.0 + math.exp(-max(min(z, 40.0), -40.0)))

    def complete(self, text: str) -> float:
        """P(complete) of raw text (normalised here)."""
        return self.complete_words(words_of(text))


# --- data and training ---------------------------------------------------------------

Example = tuple[list[str], int]


def read_requests(path: Path) -> list[list[str]]:
    """Normalised word lists of the ``utt`` of every line of a MASSIVE JSONL file."""
    out = []
    for line in path.read_text().splitlines():
        if line.strip():
            words = words_of(json.loads(line)["utt"])
            if words:
                out.append(words)
    return out


def examples(requests: Iterable[list[str]], complete: set[tuple[str, ...]] | None
             ) -> list[Example]:
    """Each request (label 1) and its prefixes (label 0).

    With ``complete``, prefixes in it (requests of their own) are left out;
    with ``None`` they count as unfinished here, so that the model learns how
    often a sequence is continued: "play music" is then complete only as often
    as it ends a request.
    """
    out: list[Example] = []
    for words in requests:
        out.append((words, 1))
        out.extend((words[:k], 0) for k in range(1, len(words))
                   if complete is None or tuple(words[:k]) not in complete)
    return out


def train(data: list[Example], *, epochs: int = 40, lr: float = 0.1, l2: float = 1e-6,
          seed: int = 0, progress: Callable[[int, float], None] | None = None
          ) -> EotModel:
    """Fit the weights with Adagrad mini-batches on class-balanced logistic loss."""
    rng = random.Random(seed)
    rows = [indices(w) for w, _ in data]
    labels = np.array([y for _, y in data], dtype=np.float32)
    pos = float(labels.sum())
    # Balance the classes: complete requests are a minority of the examples.
    weight = np.where(labels == 1, len(labels) / (2 * pos), len(labels) / (2 * (len(labels) - pos)))
    w = np.zeros(1 << BITS, np.float32)
    g2 = np.full(1 << BITS, 1e-8, np.float32)
    order = list(range(len(rows)))
    batch = 256
    loss = 0.0
    for epoch in range(epochs):
        rng.shuffle(order)
        total = 0.0
        for s in range(0, len(order), batch):
            ids = order[s:s + batch]
            idx = np.concatenate([rows[i] for i in ids])
            owner = np.repeat(np.arange(len(ids)), [rows[i].size for i in ids])
            z = np.bincount(owner, weights=w[idx], minlength=len(ids))
            p = 1 / (1 + np.exp(-np.clip(z, -40, 40)))
            y, c = labels[ids], weight[ids]
            total += float(-(c * (y * np.log(p + 1e-9) + (1 - y) * np.log(1 - p + 1e-9))).sum())
            grad_row = c * (p - y) / len(ids)
            grad = np.bincount(idx, weights=grad_row[owner], minlength=w.size).astype(np.float32)
            grad += l2 * w
            g2 += grad * grad
            w -= lr * grad / np.sqrt(g2)
        loss = total / len(order)
        if progress is not None:
            progress(epoch + 1, loss)
    return EotModel(w, {"format": FORMAT, "bits": BITS, "epochs": epochs, "train_loss": loss})


def score(model: EotModel, data: list[Example], threshold: float = 0.5) -> dict[str, Any]:
    """Accuracy, and precision/recall of "complete" (a false one cuts the user off)."""
    probs = np.array([model.complete_words(w) for w, _ in data])
    y = np.array([lab for _, lab in data])
    pred = probs >= threshold
    tp = int((pred & (y == 1)).sum())
    fp = int((pred & (y == 0)).sum())
    fn = int((~pred & (y == 1)).sum())
    return {
        "examples": len(data), "complete": int(y.sum()), "truncated": int((y == 0).sum()),
        "threshold": threshold,
        "accuracy": round(float((pred == (y == 1)).mean()), 4),
        "precision_complete": round(tp / max(tp + fp, 1), 4),
        "recall_complete": round(tp / max(tp + fn, 1), 4),
        "truncated_called_complete_rate": round(fp / max(int((y == 0).sum()), 1), 4),
    }


def build(shared: Path, out: Path = DEFAULT_PATH, *, epochs: int = 15,
          keep_ambiguous: bool = True,
          progress: Callable[[int, float], None] | None = None) -> dict[str, Any]:
    """Train on MASSIVE en-US train, score on dev prefixes, save to ``out``; return figures."""
    root = shared / "massive-en-US"
    train_req = read_requests(root / "train.jsonl")
    dev_req = read_requests(root / "dev.jsonl")
    complete = {tuple(w) for w in train_req} | {tuple(w) for w in dev_req}
    model = train(examples(train_req, None if keep_ambiguous else complete), epochs=epochs,
                  progress=progress)
    model.meta["ambiguous_prefixes"] = "negative" if keep_ambiguous else "dropped"
    dev = examples(dev_req, complete)
    report: dict[str, Any] = {"split": "MASSIVE en-US dev prefixes", "dev": score(model, dev),
              "dev_at_0.95": score(model, dev, 0.95)}
    model.meta["dev"] = report["dev"]
    model.save(out)
    report["file"] = str(out)
    report["file_bytes"] = out.stat().st_size
    return report
