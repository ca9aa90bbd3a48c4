"""The packaged ``.ort`` graphs run as they ship: the yardstick for our graphs.

Used by the agreement tests and ``benchmarks/bench_asr.py`` (ours against
theirs), never by the worker. The merged decoder takes every layer's past
keys and values and a ``use_cache_branch`` flag: the first step (flag false)
computes the cross-attention keys and values from ``encoder_hidden_states``;
later steps (flag true) return empty placeholders for them, so the first
step's are kept.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

Float32Array = npt.NDArray[np.float32]


class OrtReference:
    """Greedy decoding with ``encoder_model.ort`` and ``decoder_model_merged.ort``."""

    def __init__(self, directory: Path, *, threads: int = 1) -> None:
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        providers = ["CPUExecutionProvider"]
        self.encoder = ort.InferenceSession(str(directory / "encoder_model.ort"), opts,
                                            providers=providers)
        self.decoder = ort.InferenceSession(str(directory / "decoder_model_merged.ort"), opts,
                                            providers=providers)
        self.outputs = [o.name for o in self.decoder.get_outputs()]
        self.past = [i.name for i in self.decoder.get_inputs()
                     if i.name.startswith("past_key_values.")]
        self.heads, self.head_dim = (int(d) for d in self.decoder.get_inputs()[2].shape[1::2])

    def greedy(self, audio: Float32Array, max_tokens: int, *, sot: int = 1, eot: int = 2,
               force: list[int] | None = None) -> tuple[list[int], list[Float32Array]]:
        """Return the greedy tokens (end excluded) and each step's logits ``[V]``.

        With ``force``, those tokens are fed instead of the argmax (teacher forcing),
        so that logits can be compared step by step with another decoder's.
        """
        (hidden,) = self.encoder.run(None, {"input_values": np.asarray(audio, np.float32)[None]})
        feeds: dict[str, npt.NDArray[np.generic]] = {
            "input_ids": np.array([[sot]], np.int64), "encoder_hidden_states": hidden,
            "use_cache_branch": np.array([False])}
        for name in self.past:
            feeds[name] = np.zeros((1, self.heads, 0, self.head_dim), np.float32)
        tokens: list[int] = []
        logits: list[Float32Array] = []
        for step in range(max_tokens):
            out = dict(zip(self.outputs, self.decoder.run(None, feeds), strict=True))
            logits.append(out["logits"][0, -1])
            token = int(logits[-1].argmax()) if force is None or step >= len(force) \
                else force[step]
            if token == eot:
                break
            tokens.append(token)
            feeds["input_ids"] = np.array([[token]], np.int64)
            feeds["use_cache_branch"] = np.array([True])
            for name in self.past:
                present = out[name.replace("past_key_values", "present")]
                if present.size:  # the cross keys/values come back empty after step 0
                    feeds[name] = present
        return tokens, logits
