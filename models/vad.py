"""Silero VAD on onnxruntime: per-stream state, batched over streams.

The ONNX file ships in the ``silero-vad`` wheel (pinned ``6.2.3``, MIT). The
wheel declares torch as a dependency, so we install it with ``--no-deps`` and
locate the file without importing the package (its ``__init__`` imports torch).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

SAMPLE_RATE_HZ = 16000
CHUNK_SAMPLES = 512
CONTEXT_SAMPLES = 64
CHUNK_MS = CHUNK_SAMPLES * 1000 // SAMPLE_RATE_HZ  # 32
_STATE_SHAPE = (2, 1, 128)
ENV_MODEL = "VOICESTREAM_VAD_MODEL"

Float32Array = npt.NDArray[np.float32]


class VadModelMissing(RuntimeError):
    """The silero-vad ONNX file could not be found."""

    code = "vad-model-missing"


def find_model() -> Path:
    """Return the silero ONNX path: ``$VOICESTREAM_VAD_MODEL`` or the silero-vad wheel."""
    override = os.environ.get(ENV_MODEL)
    if override:
        path = Path(override)
        if not path.is_file():
            raise VadModelMissing(f"{ENV_MODEL}={override} is not a file")
        return path
    spec = importlib.util.find_spec("silero_vad")
    if spec is None or not spec.submodule_search_locations:
        raise VadModelMissing(
            "silero-vad is not installed: pip install --no-deps silero-vad==6.2.3"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "silero_vad.onnx"
    if not path.is_file():
        raise VadModelMissing(f"{path} is missing from the silero-vad package")
    return path


@dataclasses.dataclass(slots=True)
class VadState:
    """Recurrent state and audio context of one stream."""

    state: Float32Array = dataclasses.field(
        default_factory=lambda: np.zeros(_STATE_SHAPE, dtype=np.float32)
    )
    context: Float32Array = dataclasses.field(
        default_factory=lambda: np.zeros(CONTEXT_SAMPLES, dtype=np.float32)
    )


class SileroVad:
    """Speech probability per 512-sample chunk of 16 kHz audio."""

    def __init__(self, model_path: Path | None = None, *, threads: int = 1) -> None:
        opts = ort.SessionOptions()
        # One thread each: the worker runs many small calls and keeps cores for other stages.
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        self._session = ort.InferenceSession(
            str(model_path or find_model()), sess_options=opts,
            providers=["CPUExecutionProvider"],
        )
        self._sr = np.array(SAMPLE_RATE_HZ, dtype=np.int64)

    def probabilities(
        self, states: list[VadState], chunks: list[Float32Array]
    ) -> list[float]:
        """Return each stream's speech probability for its chunk, updating its state.

        ``chunks[i]`` is 512 float32 samples in [-1, 1] for ``states[i]``; all are run
        as one batch.
        """
        if not chunks:
            return []
        if any(c.shape != (CHUNK_SAMPLES,) for c in chunks):
            raise ValueError(f"every chunk must have {CHUNK_SAMPLES} samples")
        batch = np.stack(
            [np.concatenate([s.context, c]) for s, c in zip(states, chunks, strict=True)]
        ).astype(np.float32, copy=False)
        state = np.concatenate([s.state for s in states], axis=1)
        out, new_state = self._session.run(
            None, {"input": batch, "state": state, "sr": self._sr}
        )
        for i, (s, c) in enumerate(zip(states, chunks, strict=True)):
            s.state = np.ascontiguousarray(new_state[:, i : i + 1, :])
            s.context = c[-CONTEXT_SAMPLES:].copy()
        return [float(p) for p in out[:, 0]]
