"""Interpret text with the joint model on onnxruntime: ranked intents and slots with spans."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from models.nlu.e5 import ENCODER_NAME, E5File, Unigram
from models.nlu.labels import Encoded, Tokenizer, encode, spans, type_mask, viterbi_bio
from models.nlu.massive import Slot
from models.nlu.wordpiece import WordPiece

#: Where the committed models live: English, and multilingual (de, ar, zh).
DEFAULT_DIR = Path(__file__).resolve().parent / "model"
MULTILINGUAL_DIR = Path(__file__).resolve().parent / "model-multilingual"
#: Names the ``nlu_models`` setting may give instead of a directory.
BUNDLED = {"english": DEFAULT_DIR, "multilingual": MULTILINGUAL_DIR}


class NluModelMissing(RuntimeError):
    """No trained model; ``voicestream train nlu`` makes one."""

    code = "nlu-model-missing"


@dataclasses.dataclass(frozen=True, slots=True)
class Interpretation:
    """An intent with its probability and the slots read with it."""

    intent: str
    score: float
    slots: tuple[Slot, ...]


def _softmax(x: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
    z = np.exp(x.astype(np.float64) - x.max(axis=-1, keepdims=True))
    out: npt.NDArray[np.float64] = z / z.sum(axis=-1, keepdims=True)
    return out


class NluOnnx:
    """The exported joint model."""

    def __init__(self, path: Path | None = None, *, threads: int = 1) -> None:
        """Load the model in ``path``: a directory, or a name of :data:`BUNDLED`
        (``multilingual``); the bundled English model without one."""
        path = BUNDLED.get(str(path), path) if path is not None else DEFAULT_DIR
        model = path / "nlu.int8.onnx"
        if not model.is_file():
            raise NluModelMissing(f"no NLU model in {path}; build it with voicestream train nlu")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        self.session = ort.InferenceSession(str(model), sess_options=opts,
                                            providers=["CPUExecutionProvider"])
        labels = json.loads((path / "labels.json").read_text())
        self.intents: list[str] = labels["intents"]
        self.tags: list[str] = labels["tags"]
        #: Per intent, the mask keeping the slot types its training requests used
        #: (absent from models trained before it was recorded: no restriction).
        self.masks: dict[str, np.ndarray] = {
            intent: type_mask(self.tags, types)
            for intent, types in labels.get("intent_slots", {}).items()}
        #: The multilingual model's encoder file (its word table); None for English.
        self.e5: E5File | None = None
        self.wp: Tokenizer
        if labels.get("encoder") == ENCODER_NAME:
            self.e5 = E5File()
            self.wp = Unigram(self.e5)
        else:
            self.wp = WordPiece(path / "vocab.txt")
        #: The language (``de``) the model was trained for, or ``multilingual``.
        self.language = "multilingual" if self.e5 else "en"
        words = path / "words.txt"
        #: Words of the training requests outside slots; None: judge by the vocabulary.
        self.words: frozenset[str] | None = frozenset(words.read_text().split()) \
            if words.exists() else None

    def known_word(self, word: str) -> bool:
        """Whether ``word`` is one the training requests used (or, without that list,
        whether every part of it is a whole word of the vocabulary; for the
        multilingual model, whether no part of it is unknown to its 250,002 pieces)."""
        parts = self.wp.words(word)
        if self.e5 is not None:
            return bool(parts) and all(self.wp.unk not in self.wp.split_word(w)
                                       for w, _, _ in parts)
        if self.words is not None:
            return bool(parts) and all(w in self.words or not w.isalpha() for w, _, _ in parts)
        return bool(parts) and all(
            len(ids := self.wp.split_word(w)) == 1 and ids[0] != self.wp.unk for w, _, _ in parts)

    def scores(self, texts: list[str]
               ) -> list[tuple[Encoded, npt.NDArray[np.float64], npt.NDArray[np.float64]]]:
        """Run the model once over ``texts``: per text, its encoding, the intent
        probabilities and the per-word tag log-probabilities ``[words, tags]``."""
        if not texts:
            return []
        enc = [encode(t, self.wp) for t in texts]
        n = max(len(e.ids) for e in enc)
        ids = np.zeros((len(enc), n), np.int64)
        att = np.zeros((len(enc), n), np.int64)
        for i, e in enumerate(enc):
            ids[i, : len(e.ids)] = e.ids
            att[i, : len(e.ids)] = 1
        feed: dict[str, np.ndarray] = {"ids": ids, "attention": att}
        if self.e5 is not None:
            feed = {"words": self.e5.word_rows(ids), "attention": att}
        intent_logits, slot_logits = self.session.run(None, feed)
        probs = _softmax(intent_logits)
        out = []
        for i, e in enumerate(enc):
            rows = slot_logits[i, [p for p, _, _ in e.word_starts]].astype(np.float64)
            rows -= rows.max(axis=-1, keepdims=True)
            rows -= np.log(np.exp(rows).sum(axis=-1, keepdims=True))
            out.append((e, probs[i], rows))
        return out

    def interpret_batch(self, texts: list[str], *, top_k: int = 3
                        ) -> list[list[Interpretation]]:
        """Return, per text, the ``top_k`` intents (best first), each with the slots."""
        out = []
        for text, (e, probs, rows) in zip(texts, self.scores(texts), strict=True):
            ranked = []
            for j in np.argsort(-probs)[:top_k]:
                # Each intent reads the slots with the slot types it can have.
                tags = viterbi_bio(rows, self.tags, self.masks.get(self.intents[j]))
                slots = tuple(spans(text, e.word_starts, tags))
                ranked.append(Interpretation(self.intents[j], float(probs[j]), slots))
            out.append(ranked)
        return out
