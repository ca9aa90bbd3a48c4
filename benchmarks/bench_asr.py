"""Compute time of Whisper for a 3 s spoken command, one thread, side by side.

Rows: tiny.en with int8/fp32 weights and a 10 s or 30 s encoder window (and
the default without word times), base
(``voicestream models build --whisper base``) with a 10 s window, then the
default (tiny.en, int8, 10 s) with a 200-phrase device context: shallow fusion
only, with the sound-alike rescoring pass, and with the strong second search,
for a command without a name that the model is sure of, one it is unsure of
and one with a context name in it; last, the same command from an 8 kHz device
(band-limited), through the engine the worker runs (``asr_narrowband_model``
base, and empty: tiny.en for all audio), the narrowband check included.

Moonshine base English rows (``voicestream models build --moonshine``): our
graphs int8 and fp32 with beam 5, the worker's engine with its n-best reordered
by the requests' language model and without (``asr_lm_weight`` and 0), with
Whisper base's second opinion (as the worker runs it, asked for every request:
what an unsure one costs, and the same with the other model's texts forced one
decoder step per token instead of in one ``scorer.onnx`` pass), then with the
200-phrase context (fusion alone, with rescoring, with the second search) for
the weather command and a name, then greedy;
then greedy on the packaged ``.ort`` graphs (which dequantise every weight at
each step) against our graphs, with the decoder's time per step.

Run: python benchmarks/bench_asr.py [--runs 15] [--moonshine-only]
(``--moonshine-only``: the Moonshine rows and the default tiny.en row beside them)
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np

from infra.eval_asr import context_names
from infra.eval_endpoint import speak
from infra.eval_natural import band_limit
from models.asr import MoonshineEngine, WhisperEngine
from models.whisper.inference import WhisperOnnx
from streams.settings import Settings

ROW = "{:<38} {:7.0f} {:7.0f}  {}"


def three_seconds(audio: np.ndarray) -> np.ndarray:
    """Return ``audio`` padded with silence or cut to 3 s at 16 kHz."""
    return np.concatenate([audio, np.zeros(max(0, 48000 - audio.size), np.float32)])[:48000]


def main() -> None:
    """Print p50/p95 ms per variant for the same 3 s command."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=15, help="decodes per variant")
    parser.add_argument("--moonshine-only", action="store_true",
                        help="only the Moonshine rows, beside the default tiny.en row")
    args = parser.parse_args()
    audio = three_seconds(speak("what is the weather like in boston tomorrow morning",
                                "en-us", 150))
    print(f"audio: {audio.size / 16000:.1f} s; beam 5; onnxruntime, 1 thread")
    print(f"{'variant':<38} {'p50 ms':>7} {'p95 ms':>7}  text")
    variants = [("tiny.en", q, w, True) for q in (True, False) for w in (10.0, 30.0)]
    variants.insert(1, ("tiny.en", True, 10.0, False))
    variants += [("base", q, 10.0, True) for q in (True, False)]
    if args.moonshine_only:
        variants = variants[:1]
    for model_name, quantized, window, words in variants:
        model = WhisperOnnx(model=model_name, quantized=quantized, threads=1,
                            min_window_s=window)
        times, text = [], ""
        for _ in range(args.runs):
            start = time.perf_counter()
            hyps = model.transcribe(audio, trim=window < 30, word_times=words)
            times.append((time.perf_counter() - start) * 1000)
            text = hyps[0].text if hyps else ""
        name = f"{model_name} {'int8' if quantized else 'fp32'}, {window:.0f} s window" + \
            ("" if words else ", no word times")
        p50, p95 = np.percentile(times, [50, 95])
        print(f"{name:<38} {p50:7.0f} {p95:7.0f}  {text}")
    moonshine(audio, args.runs)
    if args.moonshine_only:
        return
    phrases = context_names(tune=True)
    engine = WhisperEngine()
    named = three_seconds(speak("send a message to Lucasta Ostrowski", "en-us", 160))
    # tiny.en is unsure of this one ("Turn off the Ripes in the kitchen"): the
    # second search runs on it, and finds no name.
    unsure = three_seconds(speak("turn off the lights in the kitchen", "en-gb", 170))
    for label, clip in (("weather", audio), ("unsure", unsure), ("name", named)):
        for name, bonus, strong in ((f"int8 10 s, 200 phrases, {label}", 0.0, 0.0),
                                    ("  + sound-alike rescoring", 22.0, 0.0),
                                    ("  + strong second search", 22.0, 4.0)):
            times = []
            for _ in range(args.runs):
                start = time.perf_counter()
                out = engine.transcribe(clip, phrases=phrases, bias_weight=2.0,
                                        phrase_bonus=bonus, strong_weight=strong, nbest=5)
                times.append((time.perf_counter() - start) * 1000)
            p50, p95 = np.percentile(times, [50, 95])
            print(f"{name:<38} {p50:7.0f} {p95:7.0f}  {out[0].text if out else ''}")
    narrow = band_limit(audio)
    for label, narrowband_model in (("8 kHz, narrowband model base", "base"),
                                    ("8 kHz, tiny.en for all audio", "")):
        engine = WhisperEngine(narrowband_model=narrowband_model)
        engine.transcribe(narrow, nbest=5)  # loads the narrowband model
        times = []
        for _ in range(args.runs):
            start = time.perf_counter()
            out = engine.transcribe(narrow, nbest=5)
            times.append((time.perf_counter() - start) * 1000)
        p50, p95 = np.percentile(times, [50, 95])
        print(f"{label:<38} {p50:7.0f} {p95:7.0f}  {out[0].text if out else ''}")


def _timed(runs: int, decode: Callable[[], str]) -> tuple[float, float, str]:
    """Return p50 and p95 ms of ``runs`` calls of ``decode`` and its last text."""
    times, text = [], ""
    for _ in range(runs):
        start = time.perf_counter()
        text = decode()
        times.append((time.perf_counter() - start) * 1000)
    p50, p95 = np.percentile(times, [50, 95])
    return float(p50), float(p95), text


def moonshine(audio: np.ndarray, runs: int) -> None:
    """Print the Moonshine rows: our graphs, then the packaged .ort graphs."""
    from models.moonshine.build import source_dir
    from models.moonshine.inference import MoonshineOnnx
    from models.moonshine.reference import OrtReference

    models = {q: MoonshineOnnx(quantized=q, threads=1) for q in (True, False)}
    for quantized, model in models.items():
        kind = "int8" if quantized else "fp32"

        def beam(model: MoonshineOnnx = model) -> str:
            hyps = model.transcribe(audio, beam_size=5, nbest=5)
            return hyps[0].text if hyps else ""

        print(ROW.format(f"moonshine base {kind} (ours), beam 5", *_timed(runs, beam)))
    # The worker's engine, its n-best reordered by the requests' language model or not.
    for weight in (0.0, Settings().asr_lm_weight):
        worker = MoonshineEngine(lm_weight=weight)

        def reordered(worker: MoonshineEngine = worker) -> str:
            out = worker.transcribe(audio, nbest=5)
            return out[0].text if out else ""

        print(ROW.format(f"moonshine int8 engine, lm weight {weight}", *_timed(runs, reordered)))
    # The second opinion: the worker's engine as it runs (this command is one Moonshine
    # is sure of, so Whisper base is not asked), then asked for every request, which
    # is what an unsure one costs.
    # Last, asked always with each model's texts forced one decoder step per token (a
    # build without scorer.onnx), beside the one-pass forcing the rows above use.
    base = WhisperEngine(model="base", word_times=False)
    judged = MoonshineEngine(lm_weight=Settings().asr_lm_weight, second=lambda: base.model)
    scorers = (judged.model.scorer, base.model.scorer)
    for label, line, one_pass in (("as run", judged.second_below, True),
                                  ("asked always", 0.0, True),
                                  ("always, stepped", 0.0, False)):
        judged.second_below = line
        judged.model.scorer, base.model.scorer = scorers if one_pass else (None, None)

        def second(judged: MoonshineEngine = judged) -> str:
            out = judged.transcribe(audio, nbest=5)
            return out[0].text if out else ""

        print(ROW.format(f"  + second opinion, {label}", *_timed(runs, second)))
    judged.model.scorer, base.model.scorer = scorers
    plain = MoonshineEngine()
    vetoing = MoonshineEngine(phrase_lm_weight=Settings().asr_moonshine_phrase_lm_weight)
    phrases = context_names(tune=True)
    named = three_seconds(speak("send a message to Lucasta Ostrowski", "en-us", 160))
    for label, clip in (("weather", audio), ("name", named)):
        for name, bonus, strong, engine in (
                (f"moonshine int8, 200 phrases, {label}", 0.0, 0.0, plain),
                ("  + sound-alike rescoring", 22.0, 0.0, plain),
                ("  + strong second search", 22.0, 4.0, plain),
                ("  + the requests' model's veto", 22.0, 4.0, vetoing)):

            def biased(clip: np.ndarray = clip, bonus: float = bonus,
                       strong: float = strong, engine: MoonshineEngine = engine) -> str:
                out = engine.transcribe(clip, phrases=phrases, bias_weight=2.0,
                                        phrase_bonus=bonus, strong_weight=strong, nbest=5)
                return out[0].text if out else ""

            print(ROW.format(name, *_timed(runs, biased)))
    reference = OrtReference(source_dir(), threads=1)
    limit = models[True].token_limit(audio.size)
    steps = len(reference.greedy(audio, limit)[0]) + 1  # the end of text is a step too
    batch = np.asarray(audio, np.float32)[None]
    rows: list[tuple[str, float, float, str, float]] = []
    for quantized, model in models.items():
        kind = "int8" if quantized else "fp32"

        def greedy(model: MoonshineOnnx = model) -> str:
            return model.tokenizer.decode(model.greedy(audio)).strip()

        def encode(model: MoonshineOnnx = model) -> str:
            model.encode(audio)
            return ""

        p50, p95, text = _timed(runs, greedy)
        enc = _timed(runs, encode)[0]
        rows.append((f"moonshine {kind} (ours), greedy", p50, p95, text, enc))
    p50, p95, text = _timed(runs, lambda: models[True].tokenizer.decode(
        reference.greedy(audio, limit)[0]).strip())
    enc = _timed(runs, lambda: (reference.encoder.run(None, {"input_values": batch}), "")[1])[0]
    rows.append(("moonshine .ort (packaged), greedy", p50, p95, text, enc))
    for name, p50, p95, text, enc in rows:
        print(ROW.format(name, p50, p95, text))
        print(f"  encoder {enc:.0f} ms p50, then {(p50 - enc) / steps:.1f} ms per decoder step "
              f"({steps} steps)")

if __name__ == "__main__":
    main()
