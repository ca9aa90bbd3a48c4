"""What each speech-enhancement front end does to a noisy sentence, and what it costs.

For each front end of ``models/denoise.py`` (those whose wheel is installed) and
each tuning voice of the natural set, one MASSIVE-style command mixed with pink
noise at 10 dB SNR (as ``voicestream eval asr`` mixes it): the scale-invariant SNR
before and after, and the compute per second of audio (p50 over ``--runs``; one
thread: DeepFilterNet's runtime uses one, NSNet2's onnxruntime session is set to one).

Run: python benchmarks/bench_denoise.py [--runs 5] [--limit-db D]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from infra.eval_natural import RATE, mix_at_snr, pink_noise, synthesize
from models.denoise import NAMES, DenoiseError, create

SENTENCE = "turn off the lights in the hall at ten"
VOICES = ("slt-hts", "slt", "awb")


def si_snr_db(clean: np.ndarray, other: np.ndarray) -> float:
    """Return the scale-invariant SNR of ``other`` against ``clean`` in dB."""
    ref, est = clean.astype(np.float64), other.astype(np.float64)
    target = np.dot(est, ref) / np.dot(ref, ref) * ref
    return float(10 * np.log10(np.sum(target**2) / np.sum((est - target) ** 2)))


def main() -> None:
    """Print one row per front end and voice."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="timed runs per utterance")
    parser.add_argument("--limit-db", type=float, default=None,
                        help="cap on the attenuation [default: each front end's own]")
    args = parser.parse_args()
    speech = {v: synthesize(SENTENCE, v) for v in VOICES}
    noisy = {v: mix_at_snr(x, pink_noise(x.size, np.random.default_rng(3)), 10.0)
             for v, x in speech.items()}
    print(f"{'front end':<12} {'voice':<8} {'SI-SNR in':>9} {'out':>6} {'ms per s':>9}")
    for name in NAMES:
        try:
            front = create(name, args.limit_db)
        except DenoiseError as exc:
            print(f"{name:<12} skipped: {exc}")
            continue
        for voice in VOICES:
            front(noisy[voice])  # DeepFilterNet: the state hears this noise first
            times = []
            for _ in range(args.runs):
                start = time.perf_counter()
                out = front(noisy[voice])
                times.append(time.perf_counter() - start)
            per_s = float(np.median(times)) / (noisy[voice].size / RATE) * 1000
            print(f"{name:<12} {voice:<8} {si_snr_db(speech[voice], noisy[voice]):9.1f} "
                  f"{si_snr_db(speech[voice], out):6.1f} {per_s:9.1f}")


if __name__ == "__main__":
    main()
