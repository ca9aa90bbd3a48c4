"""The check the Whisper and Moonshine tests share: teacher forcing in one pass of the
``scorer`` graph against one decoder step per token."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pytest

from models.whisper.inference import ContextPasses, Float32Array

#: A model's encoder keys and values for the test's audio.
Encode = Callable[[ContextPasses], tuple[Float32Array, Float32Array]]


def check_one_pass(model: ContextPasses, fp32: ContextPasses, encode: Encode,
                   seqs: Sequence[Sequence[int]], monkeypatch: pytest.MonkeyPatch) -> None:
    """float32: the one pass gives the stepped log-probabilities; int8: it is no further
    from float32's per token than the int8 decoder stepping one token at a time, within
    0.01 nats (the prompt goes through the decoder first, so the pass's activations
    are quantised without the prompt's). The first of ``seqs`` is what the audio says."""
    assert model.scorer is not None
    keys, values = encode(model)
    one_pass = model.logprobs(keys, values, seqs)
    with monkeypatch.context() as m:
        m.setattr(model, "scorer", None)
        stepped = model.logprobs(keys, values, seqs)
    assert max(one_pass) == one_pass[0]
    if model is fp32:
        assert one_pass == pytest.approx(stepped, abs=1e-3)
        return
    exact = np.array(fp32.logprobs(*encode(fp32), seqs))
    tokens = np.array([len(s) + 1 for s in seqs])
    one_off = np.abs(np.array(one_pass) - exact) / tokens
    step_off = np.abs(np.array(stepped) - exact) / tokens
    assert one_off.mean() <= step_off.mean() + 0.01
