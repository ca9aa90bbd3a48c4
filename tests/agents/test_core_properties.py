"""Property-based checks of the pure cores: any frame sequence, any event order."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from agents.endpointing import Chunker, FrameAssembler
from agents.revisions import Cancel, Decode, Emit, RevisionTracker
from streams.audio import MAX_FRAME_MS, AudioFrame, SampleFormat
from streams.endpoint import Endpoint, EndpointKind, Reset, ResetReason

CODES = {"audio-gap", "late-frame", "duplicate-frame", "unsupported-format",
         "sample-rate-changed", "malformed-frame", "frame-too-large"}
seqs = st.one_of(st.integers(0, 40), st.integers(0, 2**63), st.sampled_from([10**18, 5 * 10**8]))


@st.composite
def frames(draw: st.DrawFn) -> AudioFrame:
    seq = draw(seqs)
    rate = draw(st.sampled_from([16000, 16000, 16000, 8000]))  # 8 kHz: rate changed
    n_bytes = draw(st.one_of(st.just(rate // 50 * 2), st.integers(0, rate // 2)))
    return AudioFrame(
        device_id="d", utterance_id="u", seq=seq, pcm=bytes(n_bytes), sample_rate_hz=rate,
        audio_ms=draw(st.one_of(st.just(seq * 20 % 2**62), st.integers(0, 2**62))),
        sample_format=draw(st.sampled_from([SampleFormat.S16LE] * 4 + list(SampleFormat))),
        channels=draw(st.sampled_from([1, 1, 1, 2])))


@settings(max_examples=300, deadline=None)
@given(stream=st.lists(frames(), max_size=40), window=st.integers(0, 6),
       max_gap_ms=st.integers(0, 3000))
def test_any_frame_sequence_is_assembled_without_raising_and_bounded_by_time(
        stream: list[AudioFrame], window: int, max_gap_ms: int) -> None:
    fa = FrameAssembler(16000, reorder_window=window, max_gap_ms=max_gap_ms)
    taken: list[AudioFrame] = []
    produced, gaps = 0, 0
    for frame in stream:
        out, problems = fa.push(frame)
        assert {p.code for p in problems} <= CODES
        if not any(p.dead_letter for p in problems):
            taken.append(frame)
        produced += sum(c.size for c in out)
        gaps += sum(p.code == "audio-gap" for p in problems)
        assert len(fa._pending) <= window  # the reorder buffer stays bounded
    out, problems = fa.flush()
    produced += sum(c.size for c in out)
    gaps += sum(p.code == "audio-gap" for p in problems)
    assert not fa._pending
    # Each sequence number is taken at most once; the samples out are the frames'
    # own plus at most max_gap_ms of silence per gap, however far the numbers jump.
    assert len(taken) == len({f.seq for f in taken})
    assert all(f.duration_ms <= MAX_FRAME_MS and f.channels == 1 for f in taken)
    frame_samples = sum(len(f.pcm) // 2 for f in taken)
    assert produced <= frame_samples + gaps * max_gap_ms * 16


@settings(max_examples=200, deadline=None)
@given(sizes=st.lists(st.integers(0, 5000), max_size=30), chunk=st.integers(1, 1024))
def test_the_chunker_keeps_every_sample_in_order_and_holds_under_one_chunk(
        sizes: list[int], chunk: int) -> None:
    ch = Chunker(chunk)
    pushed = [np.arange(n, dtype=np.float32) + i * 10_000 for i, n in enumerate(sizes)]
    got: list[np.ndarray] = []
    for block in pushed:
        out = ch.push([block])
        assert all(c.size == chunk for c in out)
        assert ch.held < chunk
        got.extend(out)
    stream = np.concatenate([np.zeros(0, np.float32), *pushed])
    cut = np.concatenate([np.zeros(0, np.float32), *got])
    assert cut.size == stream.size - ch.held
    assert np.array_equal(cut, stream[:cut.size])


@st.composite
def protocol_events(draw: st.DrawFn) -> list[tuple[str, int]]:
    """End-points, resets and decode results for revisions 0..3, in any order."""
    kinds = st.sampled_from(["speculative", "final", "reset", "result"])
    return draw(st.lists(st.tuples(kinds, st.integers(0, 3)), max_size=30))


@settings(max_examples=500)
@given(events=protocol_events())
def test_the_revision_protocol_never_emits_cancelled_work(
        events: list[tuple[str, int]]) -> None:
    tracker: RevisionTracker[str] = RevisionTracker()
    decoded: list[int] = []
    emitted: list[tuple[int, EndpointKind]] = []
    reset: set[int] = set()
    running: set[int] = set()
    for kind, r in events:
        if kind == "reset":
            actions = tracker.on_reset(Reset(device_id="d", utterance_id="u",
                                             cancelled_revision=r,
                                             reason=ResetReason.SPEECH_RESUMED, t_ms=0))
            reset.add(r)
            assert actions == [Cancel(r)]
        elif kind == "result":
            if r not in running:
                continue  # a result comes once, for a decode that was started
            running.discard(r)
            actions = tracker.on_result(r, f"text {r}", 0)
        else:
            actions = tracker.on_endpoint(Endpoint(
                device_id="d", utterance_id="u", kind=EndpointKind(kind), revision=r,
                at_ms=0, t_ms=0))
        for action in actions:
            if isinstance(action, Decode):
                decoded.append(action.revision)
                running.add(action.revision)
            elif isinstance(action, Emit):
                assert action.revision not in reset  # nothing after its reset
                emitted.append((action.revision, action.kind))
    assert len(decoded) == len(set(decoded))  # each revision decoded at most once
    finals = [r for r, k in emitted if k is EndpointKind.FINAL]
    assert len(finals) <= 1
    for r in finals:  # a final only after the same revision's speculative
        assert emitted.index((r, EndpointKind.SPECULATIVE)) < emitted.index(
            (r, EndpointKind.FINAL))
    assert len(emitted) == len(set(emitted))
