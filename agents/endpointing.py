"""Pure, synchronous end-pointing: frames in, end-points, resets and errors out.

No I/O and no model: :class:`FrameAssembler` turns device frames into 16 kHz
samples (dropping duplicates, fixing small reorderings, filling gaps with
silence, resampling), and :class:`Endpointer` turns a speech probability per
32 ms chunk into decisions. The Faust agent in ``agents/endpointer.py`` runs
the VAD between the two, off the event loop.
"""

from __future__ import annotations

import dataclasses
from collections import deque

import numpy as np
import numpy.typing as npt
import soxr

from streams.audio import MAX_FRAME_MS, SUPPORTED_SAMPLE_RATES_HZ, AudioFrame, SampleFormat
from streams.control import ErrorEvent
from streams.endpoint import Endpoint, EndpointKind, Reset, ResetReason
from streams.settings import EndpointerConfig

STAGE = "endpointer"
#: Filled gaps an assembler remembers (to tell late frames from duplicates).
_FILLED_MEMORY = 64
TARGET_RATE_HZ = 16000
Float32Array = npt.NDArray[np.float32]
Decision = Endpoint | Reset | ErrorEvent


class Endpointer:
    """Two-pass end-pointing state machine for one utterance.

    Feed one speech probability per chunk with :meth:`process`; call
    :meth:`stop` when the microphone closes. After a speculative end-point,
    speech that resumes before the final one cancels it with a ``Reset`` and
    opens the next revision.
    """

    def __init__(self, config: EndpointerConfig, device_id: str, utterance_id: str) -> None:
        self.config = config
        self.device_id = device_id
        self.utterance_id = utterance_id
        self.pos_ms = 0
        self.revision = 0
        self.done = False
        self._heard_speech = False
        self._in_speech = False
        self._speech_run_ms = 0
        self._last_speech_end_ms = 0
        self._speculative_sent = False
        #: Final silence required of the current revision (semantic end-pointing).
        self.final_silence_ms = config.final_silence_ms

    @property
    def silence_ms(self) -> int:
        """Trailing silence so far (0 while speech goes on or before any)."""
        if not self._heard_speech or self._in_speech:
            return 0
        return self.pos_ms - self._last_speech_end_ms

    def require_silence(self, revision: int, silence_ms: int) -> list[Decision]:
        """Set the final silence of ``revision``; confirm it now if already passed.

        A stale revision (one a reset cancelled) or a done utterance is ignored,
        so nothing decided about a cancelled revision can confirm the next one.
        """
        if self.done or revision != self.revision or not self._speculative_sent:
            return []
        self.final_silence_ms = max(1, min(silence_ms, self.config.final_silence_ms))
        if not self._in_speech and self.silence_ms >= self.final_silence_ms:
            return [self._endpoint(EndpointKind.FINAL)]
        return []

    def process(self, chunk_ms: int, speech_prob: float) -> list[Decision]:
        """Advance by one chunk of ``chunk_ms`` with the VAD's ``speech_prob``."""
        self.pos_ms += chunk_ms
        if self.done:
            return []
        cfg = self.config
        out: list[Decision] = []
        if speech_prob >= cfg.speech_threshold:
            self._speech_run_ms += chunk_ms
            if self._in_speech:
                self._last_speech_end_ms = self.pos_ms
            elif self._speech_run_ms >= cfg.min_speech_ms:
                self._in_speech = True
                self._heard_speech = True
                self._last_speech_end_ms = self.pos_ms
                if self._speculative_sent:
                    out.append(self._reset())
        elif speech_prob < cfg.silence_threshold:
            self._speech_run_ms = 0
            self._in_speech = False
        elif self._in_speech:
            self._last_speech_end_ms = self.pos_ms  # between thresholds: speech continues

        if self._heard_speech and not self._in_speech:
            silence = self.pos_ms - self._last_speech_end_ms
            early = cfg.speculative_silence_ms if cfg.speculative else self.final_silence_ms
            if not self._speculative_sent and silence >= early:
                out.append(self._endpoint(EndpointKind.SPECULATIVE))
            if self._speculative_sent and silence >= self.final_silence_ms:
                out.append(self._endpoint(EndpointKind.FINAL))
        if self.done:
            return out
        if not self._heard_speech and self.pos_ms >= cfg.no_speech_timeout_ms:
            out.append(self._no_speech(f"no speech in the first {cfg.no_speech_timeout_ms} ms"))
        elif self._heard_speech and self.pos_ms >= cfg.max_utterance_ms:
            out.extend(self._force("max-length"))
        return out

    def stop(self) -> list[Decision]:
        """Close the utterance because the microphone closed."""
        if self.done:
            return []
        if not self._heard_speech:
            return [self._no_speech("microphone closed before any speech")]
        return self._force("stream-ended")

    def _force(self, why: str) -> list[Decision]:
        if self._in_speech:
            self._last_speech_end_ms = self.pos_ms
        out: list[Decision] = []
        if not self._speculative_sent:
            out.append(self._endpoint(EndpointKind.SPECULATIVE, forced=why))
        out.append(self._endpoint(EndpointKind.FINAL, forced=why))
        return out

    def _endpoint(self, kind: EndpointKind, forced: str = "") -> Endpoint:
        if kind is EndpointKind.SPECULATIVE:
            self._speculative_sent = True
        else:
            self.done = True
        return Endpoint(
            device_id=self.device_id, utterance_id=self.utterance_id, kind=kind,
            revision=self.revision, at_ms=self._last_speech_end_ms, t_ms=self.pos_ms,
            forced=forced,
        )

    def _reset(self) -> Reset:
        reset = Reset(
            device_id=self.device_id, utterance_id=self.utterance_id,
            cancelled_revision=self.revision, reason=ResetReason.SPEECH_RESUMED,
            t_ms=self.pos_ms,
        )
        self.revision += 1
        self._speculative_sent = False
        self.final_silence_ms = self.config.final_silence_ms
        return reset

    def _no_speech(self, message: str) -> ErrorEvent:
        self.done = True
        return ErrorEvent(
            device_id=self.device_id, utterance_id=self.utterance_id, stage=STAGE,
            code="no-speech", message=message, revision=self.revision, t_ms=self.pos_ms,
        )


@dataclasses.dataclass(frozen=True, slots=True)
class Problem:
    """Something wrong with a frame; ``dead_letter`` says whether to dead-letter it."""

    code: str
    message: str
    dead_letter: bool
    seq: int


class FrameAssembler:
    """Orders one utterance's frames and turns them into 16 kHz float samples.

    Duplicates and frames that arrive too late are rejected; a reordering of
    up to ``reorder_window`` frames is repaired; a gap still open when the
    window fills is filled with silence. Other sample rates are resampled with
    soxr. The reorder buffer is bounded by ``reorder_window``.
    """

    def __init__(self, sample_rate_hz: int, *, reorder_window: int = 4,
                 max_gap_ms: int = 2000) -> None:
        if sample_rate_hz not in SUPPORTED_SAMPLE_RATES_HZ:
            raise ValueError(f"unsupported sample rate {sample_rate_hz}")
        self.sample_rate_hz = sample_rate_hz
        self.reorder_window = reorder_window
        self.max_gap_ms = max_gap_ms
        self.next_seq = 0
        self.next_audio_ms = 0.0
        self._pending: dict[int, AudioFrame] = {}
        #: Sequence ranges ``[lo, hi)`` filled with silence (the last few), so that a
        #: frame arriving after its gap was filled is told apart from a duplicate.
        #: Ranges, not numbers: a gap costs the same whatever the numbers say.
        self._filled: deque[tuple[int, int]] = deque(maxlen=_FILLED_MEMORY)
        self._resampler = (
            None if sample_rate_hz == TARGET_RATE_HZ
            else soxr.ResampleStream(sample_rate_hz, TARGET_RATE_HZ, 1, dtype="float32")
        )

    def push(self, frame: AudioFrame) -> tuple[list[Float32Array], list[Problem]]:
        """Accept one frame; return the samples now in order and any problems."""
        problem = self._check(frame)
        if problem is not None:
            return [], [problem]
        if frame.seq < self.next_seq or frame.seq in self._pending:
            late = any(lo <= frame.seq < hi for lo, hi in self._filled)
            code = "late-frame" if late else "duplicate-frame"
            why = ("arrived after its gap was filled with silence" if code == "late-frame"
                   else "already received")
            return [], [Problem(code, f"frame {frame.seq} {why}", True, frame.seq)]
        self._pending[frame.seq] = frame
        out: list[Float32Array] = []
        problems: list[Problem] = []
        self._release(out)
        while len(self._pending) > self.reorder_window:
            problems.append(self._fill_gap(out))
            self._release(out)
        return out, problems

    def flush(self) -> tuple[list[Float32Array], list[Problem]]:
        """Release everything still held, filling gaps; call at the end of the utterance."""
        out: list[Float32Array] = []
        problems: list[Problem] = []
        self._release(out)
        while self._pending:
            problems.append(self._fill_gap(out))
            self._release(out)
        if self._resampler is not None:
            tail = self._resampler.resample_chunk(np.zeros(0, np.float32), last=True)
            if tail.size:
                out.append(tail.astype(np.float32, copy=False))
        return out, problems

    def _check(self, frame: AudioFrame) -> Problem | None:
        if frame.sample_format is not SampleFormat.S16LE or frame.channels != 1:
            return Problem("unsupported-format",
                           f"{frame.sample_format.value} x{frame.channels}: need s16le mono",
                           True, frame.seq)
        if frame.sample_rate_hz != self.sample_rate_hz:
            return Problem("sample-rate-changed",
                           f"{frame.sample_rate_hz} Hz in an utterance started at "
                           f"{self.sample_rate_hz} Hz", True, frame.seq)
        if len(frame.pcm) % 2:
            return Problem("malformed-frame", "odd number of PCM bytes", True, frame.seq)
        if frame.duration_ms > MAX_FRAME_MS:
            return Problem("frame-too-large",
                           f"{frame.duration_ms:.0f} ms frame, limit {MAX_FRAME_MS} ms",
                           True, frame.seq)
        return None

    def _release(self, out: list[Float32Array]) -> None:
        while self.next_seq in self._pending:
            frame = self._pending.pop(self.next_seq)
            self.next_seq += 1
            self.next_audio_ms = max(self.next_audio_ms, frame.audio_ms + frame.duration_ms)
            pcm = np.frombuffer(frame.pcm, dtype="<i2").astype(np.float32) / 32768.0
            out.append(self._resample(pcm))

    def _fill_gap(self, out: list[Float32Array]) -> Problem:
        first = min(self._pending)
        missing = first - self.next_seq
        gap_ms = min(max(self._pending[first].audio_ms - self.next_audio_ms, 0.0),
                     float(self.max_gap_ms))
        self._filled.append((self.next_seq, first))
        problem = Problem(
            "audio-gap", f"frames {self.next_seq}..{first - 1} missing ({missing}); "
            f"{gap_ms:.0f} ms filled with silence", False, self.next_seq,
        )
        n = round(gap_ms * self.sample_rate_hz / 1000)
        if n:
            out.append(self._resample(np.zeros(n, np.float32)))
        self.next_seq = first
        self.next_audio_ms += gap_ms
        return problem

    def _resample(self, pcm: Float32Array) -> Float32Array:
        if self._resampler is None:
            return pcm
        return np.asarray(self._resampler.resample_chunk(pcm), dtype=np.float32)


class Chunker:
    """Cuts a sample stream into fixed-size chunks.

    It never holds more than one chunk's worth: every push returns all the
    complete chunks, however many samples arrive at once.
    """

    def __init__(self, chunk_samples: int) -> None:
        self.chunk_samples = chunk_samples
        self._buf = np.zeros(0, np.float32)

    @property
    def held(self) -> int:
        """Samples waiting for the rest of their chunk (fewer than one chunk)."""
        return int(self._buf.size)

    def push(self, samples: list[Float32Array]) -> list[Float32Array]:
        """Add samples; return every complete chunk."""
        if samples:
            self._buf = np.concatenate([self._buf, *samples])
        n = self._buf.size // self.chunk_samples
        chunks = [self._buf[i * self.chunk_samples:(i + 1) * self.chunk_samples]
                  for i in range(n)]
        self._buf = self._buf[n * self.chunk_samples:]
        return chunks
