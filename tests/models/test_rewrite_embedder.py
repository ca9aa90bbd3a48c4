"""The sentence embedder: the ONNX graph against the numpy reference, int8 against fp32."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from models.minilm import encoder_dir, read_safetensors
from models.rewrite.embedder import (
    DIM,
    MIN_AGREEMENT,
    Embedder,
    EmbedderError,
    reference,
    tokenize,
)

REQUESTS = ["wake me up at seven thirty", "Play Beyoncé!", "what's the weather like in Paris",
            "turn the lights off in the kitchen please", "wilkerson", "a",
            "set a timer for ten minutes and then remind me to call mom about the party"]


def test_fp32_graph_matches_numpy_reference(embedder_dir: Path) -> None:
    fp32 = Embedder(embedder_dir, int8=False)
    ids, mask = tokenize(fp32.wordpiece, REQUESTS)
    ref = reference(read_safetensors(encoder_dir() / "model.safetensors"), ids, mask)
    got = fp32.embed(REQUESTS)
    assert got.shape == (len(REQUESTS), DIM)
    np.testing.assert_allclose(got, ref, atol=2e-5)


def test_embeddings_are_unit_and_batch_independent(embedder: Embedder) -> None:
    together = embedder.embed(REQUESTS)  # padded to the longest
    np.testing.assert_allclose(np.linalg.norm(together, axis=1), 1.0, atol=1e-5)
    alone = np.vstack([embedder.embed([r]) for r in REQUESTS])
    np.testing.assert_allclose(together, alone, atol=1e-5)
    reordered = embedder.embed_many(REQUESTS[::-1], batch=3)[::-1]
    np.testing.assert_allclose(reordered, together, atol=1e-5)
    assert embedder.embed([]).shape == (0, DIM)


def test_int8_graph_agrees_with_fp32(embedder_dir: Path) -> None:
    manifest = json.loads((embedder_dir / "manifest.json").read_text())
    fp32 = Embedder(embedder_dir, int8=False).embed(REQUESTS)
    int8 = Embedder(embedder_dir, int8=True).embed(REQUESTS)
    cosine = (fp32 * int8).sum(1)
    assert cosine.min() > 0.95
    chosen = manifest["default"]
    measured = manifest["agreement"]["int8_vs_fp32"]["mean_cosine"]
    assert chosen == ("embedder.int8.onnx" if measured >= MIN_AGREEMENT else "embedder.onnx")


def test_paraphrases_are_nearer_than_other_requests(embedder: Embedder) -> None:
    a, b, c, d = embedder.embed(["turn off the lights", "switch the lights off",
                                 "what time is it in tokyo", "please wake me at six"])
    assert a @ b > 0.7
    assert a @ b > max(a @ c, a @ d, b @ c) + 0.3


def test_missing_build_is_a_coded_error(tmp_path: Path) -> None:
    with pytest.raises(EmbedderError) as err:
        Embedder(tmp_path)
    assert err.value.code == "embedder-model-missing"
    with pytest.raises(EmbedderError):
        Embedder(tmp_path, int8=False)
