"""Pure semantic end-of-turn decision: how much silence the final end-point needs.

At the speculative end-point the pipeline already knows the words (the
speculative transcript's top hypothesis), often the interpretation's
confidence, and the audio. :class:`TurnDecider` turns these into the final
silence to require, between ``semantic_min_silence_ms`` (a complete request:
"turn on the kitchen light") and ``final_silence_ms`` (an unfinished one:
"set an alarm for"). No I/O; the end-pointing agent calls it when the
speculative transcript of the current revision arrives and hands the result to
:meth:`agents.endpointing.Endpointer.require_silence`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from models.eot import EotModel, words_of
from streams.settings import EndpointerConfig

#: Audio the energy-fall cue compares: the last ``_TAIL_MS`` of speech against
#: the ``_BODY_MS`` before it.
_TAIL_MS = 120
_BODY_MS = 480


def energy_fall(samples: npt.NDArray[np.float32], rate_hz: int = 16000) -> float:
    """How much the energy falls at the end of ``samples`` (speech up to its end), 0..1.

    0: the last 120 ms are as loud as the 480 ms before (speech cut mid-phrase);
    1: they are silent by comparison (a phrase-final fall). Too little audio gives 0.5.
    """
    tail = rate_hz * _TAIL_MS // 1000
    body = rate_hz * _BODY_MS // 1000
    if samples.size < tail + body // 2:
        return 0.5
    last = float(np.sqrt(np.mean(samples[-tail:] ** 2)))
    before = float(np.sqrt(np.mean(samples[-tail - body:-tail] ** 2)))
    if before <= 1e-6:
        return 0.5
    return float(np.clip(1.0 - last / before, 0.0, 1.0))


@dataclasses.dataclass(frozen=True, slots=True)
class TurnDecision:
    """The final silence to require, and what it came from (for logs and evaluation)."""

    silence_ms: int
    score: float
    p_complete: float


class TurnDecider:
    """Maps (words, NLU confidence, acoustic cue) to the final silence to require."""

    def __init__(self, config: EndpointerConfig, model: EotModel) -> None:
        self.config = config
        self.model = model

    def decide(self, words: Sequence[str] | str, *, nlu_confidence: float | None = None,
               energy_fall: float | None = None, device_type: str = "") -> TurnDecision:
        """The final silence for a speculative transcript ``words`` (text or word list)."""
        cfg = self.config
        seq = words_of(words) if isinstance(words, str) else [w.lower() for w in words]
        if not seq:  # nothing recognised: do not shorten the wait
            return TurnDecision(cfg.final_silence_ms, 0.0, 0.0)
        p = self.model.complete_words(seq)
        score = p
        if nlu_confidence is not None:
            score = (1 - cfg.nlu_weight) * score + cfg.nlu_weight * nlu_confidence
        if energy_fall is not None:
            score += cfg.acoustic_weight * (energy_fall - 0.5) * 2
        lo, hi = cfg.incomplete_threshold, cfg.complete_threshold
        share = float(np.clip((score - lo) / (hi - lo), 0.0, 1.0))
        shortest = cfg.min_silence_for(device_type) if device_type else cfg.semantic_min_silence_ms
        silence = round(cfg.final_silence_ms - share * (cfg.final_silence_ms - shortest))
        return TurnDecision(silence, round(score, 4), round(p, 4))
