"""The pure end-pointing core, driven by probabilities and frames, no I/O."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from agents.endpointing import (
    Chunker,
    Decision,
    Endpointer,
    FrameAssembler,
)
from streams.audio import AudioFrame, SampleFormat
from streams.control import ErrorEvent
from streams.endpoint import Endpoint, Reset
from streams.settings import EndpointerConfig

CFG = EndpointerConfig(speculative_silence_ms=320, final_silence_ms=640,
                       no_speech_timeout_ms=3000, max_utterance_ms=8000)
CHUNK = 32


def run(segments: list[tuple[str, int]], *, stop: bool = False,
        cfg: EndpointerConfig = CFG) -> list[Decision]:
    """Feed ('speech'|'silence', ms) segments; return every decision."""
    ep = Endpointer(cfg, "dev", "utt")
    out: list[Decision] = []
    for kind, ms in segments:
        prob = 0.9 if kind == "speech" else 0.05
        for _ in range(ms // CHUNK):
            out.extend(ep.process(CHUNK, prob))
    if stop:
        out.extend(ep.stop())
    return out


def summary(decisions: list[Decision]) -> list[tuple[str, int]]:
    rows: list[tuple[str, int]] = []
    for d in decisions:
        if isinstance(d, Endpoint):
            rows.append((d.kind.value, d.revision))
        elif isinstance(d, Reset):
            rows.append(("reset", d.cancelled_revision))
        else:
            rows.append((d.code, d.revision))
    return rows


def test_no_pause_gives_speculative_then_final() -> None:
    out = run([("silence", 320), ("speech", 1600), ("silence", 1500)])
    assert summary(out) == [("speculative", 0), ("final", 0)]
    spec, final = out
    assert isinstance(spec, Endpoint) and isinstance(final, Endpoint)
    assert spec.at_ms == final.at_ms == 1920
    assert spec.t_ms == 1920 + 320
    assert final.t_ms == 1920 + 640
    assert final.t_ms - spec.t_ms >= 200  # the speculative lead


def test_pause_between_thresholds_resets_and_confirms_next_revision() -> None:
    out = run([("speech", 960), ("silence", 480), ("speech", 640), ("silence", 1000)])
    assert summary(out) == [("speculative", 0), ("reset", 0), ("speculative", 1), ("final", 1)]
    reset = out[1]
    assert isinstance(reset, Reset) and reset.revision == reset.cancelled_revision == 0
    final = out[3]
    assert isinstance(final, Endpoint) and final.at_ms == 960 + 480 + 640


def test_without_speculation_both_end_points_come_at_the_final_silence() -> None:
    final_only = dataclasses.replace(CFG, speculative=False)
    out = run([("silence", 320), ("speech", 1600), ("silence", 1500)], cfg=final_only)
    assert summary(out) == [("speculative", 0), ("final", 0)]
    spec, final = out
    assert isinstance(spec, Endpoint) and isinstance(final, Endpoint)
    assert spec.t_ms == final.t_ms == 1920 + 640  # nothing starts before the final
    # A pause that would have given a premature speculative (and a reset) gives none.
    paused = run([("speech", 960), ("silence", 480), ("speech", 640), ("silence", 1000)],
                 cfg=final_only)
    assert summary(paused) == [("speculative", 0), ("final", 0)]


def test_short_pause_gives_no_speculative() -> None:
    out = run([("speech", 960), ("silence", 192), ("speech", 640), ("silence", 1000)])
    assert summary(out) == [("speculative", 0), ("final", 0)]


def test_click_during_pause_does_not_reset() -> None:
    out = run([("speech", 960), ("silence", 384), ("speech", 32), ("silence", 1000)])
    assert summary(out) == [("speculative", 0), ("final", 0)]


def test_several_pauses_count_revisions_up() -> None:
    segs = [("speech", 640), ("silence", 416)] * 3 + [("speech", 640), ("silence", 1000)]
    out = run(segs)
    assert summary(out) == [
        ("speculative", 0), ("reset", 0), ("speculative", 1), ("reset", 1),
        ("speculative", 2), ("reset", 2), ("speculative", 3), ("final", 3),
    ]


def test_silence_gives_no_speech_error_at_timeout() -> None:
    out = run([("silence", 5000)])
    assert summary(out) == [("no-speech", 0)]
    err = out[0]
    # 3008: the first chunk boundary at or past the timeout.
    assert isinstance(err, ErrorEvent) and err.t_ms == 3008


def test_microphone_closed_without_speech() -> None:
    assert summary(run([("silence", 640)], stop=True)) == [("no-speech", 0)]


def test_microphone_closed_mid_speech_forces_both_endpoints() -> None:
    out = run([("speech", 960)], stop=True)
    assert summary(out) == [("speculative", 0), ("final", 0)]
    assert all(isinstance(d, Endpoint) and d.forced == "stream-ended" for d in out)


def test_max_length_forces_final() -> None:
    out = run([("speech", 9000)])
    assert summary(out) == [("speculative", 0), ("final", 0)]
    final = out[-1]
    assert isinstance(final, Endpoint) and final.forced == "max-length"
    assert final.t_ms == CFG.max_utterance_ms  # 8000 is a chunk boundary


def test_nothing_after_final() -> None:
    ep = Endpointer(CFG, "d", "u")
    for _ in range(30):
        ep.process(CHUNK, 0.9)
    for _ in range(30):
        ep.process(CHUNK, 0.0)
    assert ep.done
    assert ep.process(CHUNK, 0.9) == [] and ep.stop() == []


@pytest.mark.parametrize("kwargs", [
    {"speculative_silence_ms": 900, "final_silence_ms": 900},
    {"speech_threshold": 0.3, "silence_threshold": 0.5},
    {"no_speech_timeout_ms": 0},
])
def test_config_rejects_inconsistent_values(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        EndpointerConfig(**kwargs)  # type: ignore[arg-type]


def frame(seq: int, *, rate: int = 16000, ms: int = 20, value: int = 1000,
          **kw: object) -> AudioFrame:
    n = rate * ms // 1000
    pcm = np.full(n, value, dtype="<i2").tobytes()
    return AudioFrame(device_id="d", utterance_id="u", seq=seq, pcm=pcm,
                      sample_rate_hz=rate, audio_ms=seq * ms, **kw)  # type: ignore[arg-type]


def samples(chunks: list[np.ndarray]) -> int:
    return sum(c.size for c in chunks)


def test_in_order_frames_pass_through() -> None:
    fa = FrameAssembler(16000)
    total = 0
    for i in range(5):
        out, problems = fa.push(frame(i))
        assert problems == []
        total += samples(out)
    assert total == 5 * 320


def test_duplicate_is_rejected_and_not_played_twice() -> None:
    fa = FrameAssembler(16000)
    fa.push(frame(0))
    out, problems = fa.push(frame(0))
    assert out == [] and [p.code for p in problems] == ["duplicate-frame"]
    assert problems[0].dead_letter


def test_small_reordering_is_repaired() -> None:
    fa = FrameAssembler(16000)
    values = []
    for seq in (0, 2, 1, 3):
        out, problems = fa.push(frame(seq, value=seq + 1))
        assert problems == []
        values.extend(round(float(c[0]) * 32768) for c in out)
    assert values == [1, 2, 3, 4]


def test_gap_is_filled_with_silence_and_late_frame_rejected() -> None:
    fa = FrameAssembler(16000, reorder_window=2)
    fa.push(frame(0))
    total, codes = 0, []
    for seq in (3, 4, 5):
        out, problems = fa.push(frame(seq))
        total += samples(out)
        codes += [p.code for p in problems]
    assert codes == ["audio-gap"]
    assert total == 320 * 2 + 320 * 3  # 40 ms of silence, then frames 3..5
    _, problems = fa.push(frame(1))
    assert [p.code for p in problems] == ["late-frame"]


def test_other_rates_are_resampled_to_16k() -> None:
    fa = FrameAssembler(8000)
    total = 0
    for i in range(50):
        out, _ = fa.push(frame(i, rate=8000))
        total += samples(out)
    out, _ = fa.flush()
    total += samples(out)
    assert abs(total - 50 * 320) <= 2


@pytest.mark.parametrize(("bad", "code"), [
    (frame(0, rate=8000), "sample-rate-changed"),
    (frame(0, ms=400), "frame-too-large"),
    (AudioFrame(device_id="d", utterance_id="u", seq=0, pcm=b"\x00\x01\x02",
                sample_rate_hz=16000, audio_ms=0), "malformed-frame"),
    (frame(0, channels=2), "unsupported-format"),
])
def test_bad_frames_are_rejected_with_codes(bad: AudioFrame, code: str) -> None:
    out, problems = FrameAssembler(16000).push(bad)
    assert out == [] and [p.code for p in problems] == [code]


def test_unsupported_rate_is_refused() -> None:
    with pytest.raises(ValueError):
        FrameAssembler(12345)


def test_chunker_cuts_exact_chunks() -> None:
    ch = Chunker(512)
    chunks = ch.push([np.zeros(300, np.float32), np.ones(800, np.float32)])
    assert [c.size for c in chunks] == [512, 512]
    assert ch.push([np.zeros(100, np.float32)]) == []  # 176 samples held
    assert [c.size for c in ch.push([np.zeros(336, np.float32)])] == [512]


def test_sample_format_enum_is_strict() -> None:
    assert SampleFormat("s16le") is SampleFormat.S16LE


def test_a_gap_costs_the_same_whatever_the_sequence_numbers_say() -> None:
    # Gap filling is bounded by time: seq 10**18 is one 2 s gap, filled at once
    # (walking the missing numbers would never finish), and a frame from inside
    # that gap is still told apart from a duplicate.
    fa = FrameAssembler(16000, reorder_window=0)
    fa.push(frame(0))
    big = AudioFrame(device_id="d", utterance_id="u", seq=10**18, pcm=bytes(640),
                     sample_rate_hz=16000, audio_ms=10**15)
    out, problems = fa.push(big)
    assert [p.code for p in problems] == ["audio-gap"]
    assert samples(out) == 2000 * 16 + 320  # the gap is capped at max_gap_ms
    assert fa.next_seq == 10**18 + 1
    _, problems = fa.push(frame(7))
    assert [p.code for p in problems] == ["late-frame"]
    _, problems = fa.push(big)
    assert [p.code for p in problems] == ["duplicate-frame"]


def test_flushing_many_gaps_drains_through_the_chunker() -> None:
    # Four 2 s gaps at the stop are 8 s of audio at once: more than the chunker
    # ever held before (it raised past 5 s and took the batch down with it).
    fa = FrameAssembler(16000)
    ch = Chunker(512)
    fa.push(frame(0))
    for seq in (100, 200, 300, 400):
        fa.push(AudioFrame(device_id="d", utterance_id="u", seq=seq, pcm=bytes(640),
                           sample_rate_hz=16000, audio_ms=seq * 3000))
    out, problems = fa.flush()
    assert [p.code for p in problems] == ["audio-gap"] * 4
    chunks = ch.push(out)
    assert len(chunks) == 4 * (2000 * 16 + 320) // 512  # frame 0 went out on its push
    assert all(c.size == 512 for c in chunks) and ch.held < 512
