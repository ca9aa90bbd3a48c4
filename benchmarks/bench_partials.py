"""What partial transcripts cost the recogniser: the figures, side by side in one run.

On ``--sentences`` MASSIVE en-US **dev** sentences in flite's voices (the
latency bench's audio, ``infra.bench.massive_speech``), Whisper tiny.en int8,
one thread:

- a partial decode of the audio so far, cut every 0.5 s of each sentence, with
  the partials' encoder window (the audio plus 1 s, at least
  ``PARTIAL_WINDOW_S``) and with the final decode's 10 s window, and how often
  the two give the same words;
- the full decode of each sentence (beam search, word times), alone and right
  after two partials of another sentence on the same thread, interleaved, as
  the ratio per pair (does a partial slow the decode that follows it?).

Run: python -m benchmarks.bench_partials [--sentences 20] [--shared ../shared/data]
"""

from __future__ import annotations

import argparse
import random
import time
from pathlib import Path

import numpy as np
import soxr

from infra.bench import massive_speech
from models.asr import WhisperEngine
from models.textnorm import normalize
from models.whisper.features import SAMPLE_RATE_HZ
from models.whisper.inference import PARTIAL_WINDOW_S


def _ms(start: float) -> float:
    return (time.perf_counter() - start) * 1000


def _q(values: list[float]) -> str:
    return f"{np.percentile(values, 50):.0f} / {np.percentile(values, 95):.0f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sentences", type=int, default=20)
    parser.add_argument("--shared", default="../shared/data")
    args = parser.parse_args()
    audio = [soxr.resample(np.frombuffer(s.pcm, "<i2").astype(np.float32) / 32768, s.rate,
                           SAMPLE_RATE_HZ).astype(np.float32)
             for s in massive_speech(args.sentences, shared=Path(args.shared))]
    engine = WhisperEngine()
    model = engine.model
    engine.transcribe(audio[0])  # loaded and warm

    short: list[float] = []
    full_window: list[float] = []
    same = 0
    cuts = 0
    for a in audio:
        for cut in np.arange(0.5, a.size / SAMPLE_RATE_HZ, 0.5):
            part = a[: int(cut * SAMPLE_RATE_HZ)]
            start = time.perf_counter()
            quick = engine.partial(part)
            short.append(_ms(start))
            model.min_window_s, kept = max(model.min_window_s, 10.0), model.min_window_s
            start = time.perf_counter()
            # The same greedy search over the final decode's window.
            hyps = model.search(*model.encode(model.features(part)), beam_size=1, nbest=1,
                                bias=None, max_tokens=6 + int(cut * 6),
                                prompt=model.tokenizer.prompt)
            full_window.append(_ms(start))
            model.min_window_s = kept
            cuts += 1
            same += normalize(quick.text if quick else "") == \
                normalize(hyps[0].text if hyps else "")

    rng = random.Random(1)
    alone: list[float] = []
    after: list[float] = []
    for i, a in enumerate(audio):
        start = time.perf_counter()
        engine.transcribe(a)
        alone.append(_ms(start))
        other = audio[(i + 1) % len(audio)]
        for _ in range(2):
            engine.partial(other[: int(rng.uniform(0.5, other.size / SAMPLE_RATE_HZ)
                                       * SAMPLE_RATE_HZ)])
        start = time.perf_counter()
        engine.transcribe(a)
        after.append(_ms(start))

    print(f"{len(audio)} MASSIVE dev sentences (flite), tiny.en int8, one thread")
    print(f"partial, window audio + 1 s (>= {PARTIAL_WINDOW_S:g} s): {_q(short)} p50 / p95 "
          f"over {cuts} cuts")
    print(f"partial, window >= 10 s (the final decode's):   {_q(full_window)}; same words "
          f"as the short window in {same} of {cuts}")
    print(f"full decode of the sentence: alone {_q(alone)}, right after two partials "
          f"{_q(after)}; ratio per pair (median) "
          f"{float(np.median(np.array(after) / np.array(alone))):.2f}")


if __name__ == "__main__":
    main()
