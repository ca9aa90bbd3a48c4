"""The latency bench: true end of speech, per-mode summaries, and a small run end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from infra import bench


def tone_then_silence(speech_s: float, silence_s: float, rate: int = 16000) -> bytes:
    t = np.arange(int(speech_s * rate)) / rate
    voiced = (0.3 * 32767 * np.sin(2 * np.pi * 220 * t)).astype("<i2")
    quiet = (np.random.default_rng(0).normal(0, 20, int(silence_s * rate))).astype("<i2")
    return voiced.tobytes() + quiet.tobytes()


def test_speech_end_is_found_before_the_trailing_silence() -> None:
    pcm = tone_then_silence(1.25, 0.8)
    assert bench.speech_end_s(pcm, 16000) == pytest.approx(1.25, abs=0.011)
    assert bench.speech_end_s(b"", 16000) == 0.0


def test_summary_counts_losses_latency_and_stage_shares() -> None:
    spoken = bench.Spoken("s", tone_then_silence(1.0, 0.5), 16000, 1.0)
    decided = bench.Record(spoken, "d0", started_s=10.0,
                           events=[(11.8, "endpoint:final"), (11.9, "transcript:final"),
                                   (11.95, "interpretation:final"), (12.0, "directive")],
                           outcomes=[(12.0, "directive")], final_at_ms=1000)
    cut = bench.Record(spoken, "d1", started_s=20.0, outcomes=[(21.5, "declined")],
                       final_at_ms=500)
    lost = bench.Record(spoken, "d2", started_s=30.0)
    twice = bench.Record(spoken, "d3", started_s=40.0,
                         outcomes=[(41.2, "directive"), (41.3, "directive")])
    summary = bench.summarise([decided, cut, lost, twice], {}, wall_s=40.0)
    assert summary["utterances"] == 4
    assert summary["lost"] == 1 and summary["several_outcomes"] == 1
    assert summary["outcomes"] == {"directive": 2, "declined": 1}
    assert summary["latencies_ms"] == [200.0, 500.0, 1000.0]
    assert summary["p50_ms"] == 500.0
    assert summary["premature_final"] == 1  # d1's final end-point at 0.5 s of 1.0 s speech
    assert summary["stage_p50_ms"]["end-point"] == pytest.approx(800.0)
    assert summary["stage_p50_ms"]["arbitration"] == pytest.approx(50.0)
    # The goals: p50 500 ms misses 400 ms, and the end-point's share is named as the cause.
    result = {"modes": {"speculative": summary}, "lost": 1, "median_saving_ms": 300.0}
    rows = {g["goal"]: g for g in bench.goals(result)}
    p50 = rows["speculative p50 <= 400 ms"]
    assert p50["value"] == 500.0 and not p50["met"]
    assert p50["bottleneck"] == "end-point (800 ms at the median)"
    assert not rows["nothing lost"]["met"]
    assert rows["speculation saves >= 150 ms at the median"]["met"]


@pytest.mark.broker
def test_a_small_bench_accounts_for_every_utterance(tmp_path: Path, broker_url: str) -> None:
    out = tmp_path / "bench"
    result = bench.run(devices=2, rate=0.5, duration_s=6.0, workers=1, modes=bench.MODES,
                       broker=broker_url, out=out, speech="demo", sentences=0,
                       shared=Path("../shared/data"), settings={})
    written = json.loads((out / "bench.json").read_text())
    assert written == json.loads(json.dumps(result))
    for key in ("median_saving_ms", "p50_ms", "p95_ms", "lost", "modes", "broker"):
        assert key in written, key
    for mode in bench.MODES:
        figures = written["modes"][mode]
        # Every utterance sent is accounted for: exactly one outcome each.
        assert figures["utterances"] == 3
        assert figures["lost"] == 0 and figures["several_outcomes"] == 0
        assert sum(figures["outcomes"].values()) == 3
        assert len(figures["latencies_ms"]) == 3
        assert set(figures["processes"]) == {"worker0", "skills"}
        assert figures["processes"]["worker0"]["cpu_s"] > 0
    assert written["lost"] == 0
    for name in ("latency_cdf.png", "waterfall.png"):
        assert (out / name).read_bytes().startswith(b"\x89PNG")
    assert "| speculative | 3 | 0 |" in (out / "report.md").read_text()


def test_speech_start_skips_the_leading_silence() -> None:
    quiet = (np.random.default_rng(1).normal(0, 20, 8000)).astype("<i2").tobytes()
    pcm = quiet + tone_then_silence(1.0, 0.0)
    assert bench.speech_start_s(pcm, 16000) == pytest.approx(0.5, abs=0.011)


def test_the_sweep_finds_the_highest_rate_within_the_p95_budget(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p95 = {0.5: 700.0, 1.0: 950.0, 2.0: 1800.0, 4.0: 900.0}
    lost = {0.5: 0, 1.0: 0, 2.0: 0, 4.0: 3}  # fast at 4/s only because it dropped work
    runs = []

    async def fake_measure(**kwargs: object) -> dict[str, object]:
        rate = float(kwargs["rate"])  # type: ignore[arg-type]
        runs.append((rate, kwargs["modes"]))
        return {"broker": "tansu", "modes": {"speculative": {
            "p50_ms": p95[rate] / 2, "p95_ms": p95[rate], "p99_ms": p95[rate] + 1,
            "lost": lost[rate], "utterances": 10, "outcomes": {}, "processes": {}}}}

    monkeypatch.setattr(bench, "measure", fake_measure)
    monkeypatch.setattr(bench, "demo_speech", lambda: [])
    result = bench.sweep(rates=[0.5, 1.0, 2.0, 4.0], devices=4, duration_s=5.0, workers=1,
                         mode="speculative", broker="", out=tmp_path, speech="demo",
                         sentences=0, shared=tmp_path, settings={})
    assert runs == [(r, ("speculative",)) for r in (0.5, 1.0, 2.0, 4.0)]
    assert result["sustained_rate"] == 1.0
    assert json.loads((tmp_path / "sweep.json").read_text())["sustained_rate"] == 1.0
    assert (tmp_path / "latency_vs_load.png").read_bytes().startswith(b"\x89PNG")
    # 2/s is the first past saturation: its p95 is over twice the lightest rate's.
    assert result["saturation"]["rate"] == 2.0
    assert "p95 1800 ms > 2 x 700 ms" in result["saturation"]["why"]
    assert "Saturated at 2 utt/s" in (tmp_path / "report.md").read_text()


def test_saturation_counts_losses_and_shed_utterances() -> None:
    def point(rate: float, p95: float, lost: int = 0, errors: int = 0) -> dict[str, object]:
        return {"rate": rate, "p95_ms": p95, "lost": lost,
                "outcomes": {"directive": 5, **({"error": errors} if errors else {})}}

    assert bench.saturation([point(1, 900), point(2, 1000)]) is None
    sat = bench.saturation([point(1, 900), point(2, 950, errors=3), point(4, 990, lost=1)])
    assert sat is not None and sat["rate"] == 2 and "3 ended with an error" in sat["why"]
    sat = bench.saturation([point(1, 900), point(2, 950, lost=2)])
    assert sat is not None and sat["why"] == "2 lost"


def test_all_modes_compare_speculation_and_the_semantic_end_pointer(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p50 = {"speculative": 900.0, "final-only": 1800.0, "semantic": 600.0}
    seen: list[tuple[str, ...]] = []

    async def fake_measure(**kwargs: object) -> dict[str, object]:
        modes = kwargs["modes"]
        assert isinstance(modes, tuple)
        seen.append(modes)
        records = [bench.Record(bench.Spoken("s", b"", 16000, 1.0), "d0", started_s=0.0,
                                events=[(0.9 + p50[m] / 1000, "endpoint:final")],
                                outcomes=[(1.0 + p50[m] / 1000, "directive")]) for m in modes]
        return {"broker": "tansu", "modes": {
            m: bench.summarise([r], {}, wall_s=10.0) for m, r in zip(modes, records, strict=True)}}

    monkeypatch.setattr(bench, "measure", fake_measure)
    monkeypatch.setattr(bench, "demo_speech", lambda: [])
    result = bench.run(devices=1, rate=0.5, duration_s=2.0, workers=1, modes=bench.ALL_MODES,
                       broker="", out=tmp_path, speech="demo", sentences=0, shared=tmp_path,
                       settings={})
    assert seen == [("speculative", "final-only", "semantic")]
    assert bench.MODE_SETTINGS["semantic"] == {"endpointer__semantic": "true"}
    assert result["median_saving_ms"] == 900.0 and result["semantic_saving_ms"] == 300.0
    report = (tmp_path / "report.md").read_text()
    assert "semantic final end-pointer saves 300.0 ms" in report
    assert "| semantic | 1 | 0 |" in report


def test_partials_mode_compares_latency_with_and_without_partial_transcripts(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p50 = {"speculative": 930.0, "no-partials": 900.0}

    async def fake_measure(**kwargs: object) -> dict[str, object]:
        modes = kwargs["modes"]
        assert isinstance(modes, tuple)
        summaries = {}
        for m in modes:
            record = bench.Record(bench.Spoken("s", b"", 16000, 1.0), "d0", started_s=0.0,
                                  outcomes=[(1.0 + p50[m] / 1000, "directive")],
                                  partial_lags=[0.12, 0.08, 0.1] if m == "speculative" else [])
            summaries[m] = bench.summarise([record], {}, wall_s=10.0)
        return {"broker": "tansu", "modes": summaries}

    monkeypatch.setattr(bench, "measure", fake_measure)
    monkeypatch.setattr(bench, "demo_speech", lambda: [])
    result = bench.run(devices=1, rate=0.5, duration_s=2.0, workers=1,
                       modes=bench.PARTIAL_MODES, broker="", out=tmp_path, speech="demo",
                       sentences=0, shared=tmp_path, settings={})
    assert bench.MODE_SETTINGS["no-partials"] == {"asr_partial_ms": "0"}
    assert result["partials_cost_ms"] == 30.0
    spec = result["modes"]["speculative"]
    assert spec["partials"] == 3 and spec["partial_lag_p50_ms"] == pytest.approx(100.0)
    assert result["modes"]["no-partials"]["partials"] == 0
    assert "change the median latency by 30.0 ms" in (tmp_path / "report.md").read_text()
