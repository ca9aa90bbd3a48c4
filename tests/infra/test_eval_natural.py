"""Natural-voice evaluation sets: synthesis and its cache, noise at the asked SNR, 8 kHz band."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from infra import eval_natural as ev
from infra.eval_asr import context_names
from models.asr import Hypothesis


def _snr_db(speech: np.ndarray, mixed: np.ndarray) -> float:
    noise = mixed.astype(np.float64) - speech
    return float(10 * np.log10(np.mean(speech.astype(np.float64) ** 2) / np.mean(noise**2)))


def _tone(seconds: float = 1.0) -> np.ndarray:
    t = np.arange(int(ev.RATE * seconds)) / ev.RATE
    return (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)


@pytest.mark.parametrize("snr", [0.0, 10.0, 20.0])
def test_pink_noise_is_mixed_at_the_asked_snr(snr: float) -> None:
    speech = _tone()
    mixed = ev.mix_at_snr(speech, ev.pink_noise(speech.size, np.random.default_rng(1)), snr)
    assert _snr_db(speech, mixed) == pytest.approx(snr, abs=0.05)


def test_snr_counts_only_the_active_speech() -> None:
    speech = np.concatenate([np.zeros(ev.RATE, np.float32), _tone(), np.zeros(ev.RATE,
                                                                               np.float32)])
    mixed = ev.mix_at_snr(speech, ev.pink_noise(speech.size, np.random.default_rng(2)), 10.0)
    # The tone's power against the noise's over the whole clip: 10 dB, though the
    # clip is two thirds silence (over the whole clip the ratio would be 4.8 dB).
    p_tone = np.mean(speech[ev.RATE:2 * ev.RATE].astype(np.float64) ** 2)
    p_noise = np.mean((mixed.astype(np.float64) - speech) ** 2)
    assert 10 * np.log10(p_tone / p_noise) == pytest.approx(10.0, abs=0.05)


def test_pink_noise_falls_3_db_per_octave() -> None:
    x = ev.pink_noise(ev.RATE * 8, np.random.default_rng(3))
    power = np.abs(np.fft.rfft(x)) ** 2
    freqs = np.fft.rfftfreq(x.size, 1 / ev.RATE)
    low = power[(freqs > 500) & (freqs < 1000)].mean()
    high = power[(freqs > 1000) & (freqs < 2000)].mean()
    assert 10 * np.log10(low / high) == pytest.approx(3.0, abs=0.5)


def test_babble_at_the_asked_snr_from_other_utterances() -> None:
    rng = np.random.default_rng(4)
    others = [rng.standard_normal(8000).astype(np.float32) * k for k in (0.1, 0.5, 1.0)]
    speech = _tone()
    noise = ev.babble(speech.size, others)
    assert np.sqrt(np.mean(noise.astype(np.float64) ** 2)) == pytest.approx(1.0, rel=1e-3)
    assert _snr_db(speech, ev.mix_at_snr(speech, noise, 10.0)) == pytest.approx(10.0, abs=0.05)


def test_band_limit_removes_everything_above_4_khz() -> None:
    x = np.random.default_rng(5).standard_normal(ev.RATE).astype(np.float32) * 0.1
    y = ev.band_limit(x)
    power = np.abs(np.fft.rfft(y)) ** 2
    freqs = np.fft.rfftfreq(y.size, 1 / ev.RATE)
    assert y.size == x.size
    assert power[freqs > 4100].sum() / power.sum() < 1e-4
    assert power[(freqs > 300) & (freqs < 3000)].sum() / power.sum() > 0.3


def test_conditions_are_deterministic_and_unknown_ones_fail() -> None:
    rows = [{"set": "natural", "voice": "slt", "text": t, "id": str(i), "audio": _tone()}
            for i, t in enumerate(["a b", "c d", "e f"])]
    a = ev.condition(rows[0], "8k", "babble", rows)
    assert np.array_equal(a, ev.condition(rows[0], "8k", "babble", rows))
    assert not np.array_equal(a, rows[0]["audio"])
    with pytest.raises(ValueError, match="valid: clean, pink, babble"):
        ev.condition(rows[0], "16k", "brown", rows)
    with pytest.raises(ValueError, match="valid: 16k, 8k"):
        ev.condition(rows[0], "11k", "clean", rows)


def test_sample_is_fixed_and_from_the_dev_split(tmp_path: Path) -> None:
    (tmp_path / "massive-en-US").mkdir()
    utts = [f"sentence number {i} here" for i in range(50)] + ["too short"]
    (tmp_path / "massive-en-US" / "dev.jsonl").write_text(
        "".join(json.dumps({"utt": u}) + "\n" for u in utts))
    first = ev.sample_sentences(tmp_path, 10)
    assert first == ev.sample_sentences(tmp_path, 10)
    assert len(set(first)) == 10 and "too short" not in first


needs_flite = pytest.mark.skipif(not ev.shutil.which("flite"), reason="flite not installed "
                                 "(setup.sh installs it)")


@needs_flite
def test_build_two_sentences_with_flite_and_reuse_the_cache(tmp_path: Path) -> None:
    (tmp_path / "massive-en-US").mkdir()
    (tmp_path / "massive-en-US" / "dev.jsonl").write_text(
        json.dumps({"utt": "turn off the lights in the hall"}) + "\n"
        + json.dumps({"utt": "what is the weather like today"}) + "\n")
    cache = tmp_path / "cache"
    rows = ev.build_rows(["natural"], ["slt", "rms"], tmp_path, sentences=2, cache=cache)
    assert {(r["voice"], r["text"]) for r in rows} == {
        (v, t) for v in ("slt", "rms")
        for t in ("turn off the lights in the hall", "what is the weather like today")}
    for r in rows:
        seconds = r["audio"].size / ev.RATE
        assert 0.8 < seconds < 6 and np.abs(r["audio"]).max() > 0.05
    assert len(list(cache.glob("*.wav"))) == 4
    # Two voices say the same words differently.
    slt = next(r["audio"] for r in rows if r["voice"] == "slt")
    rms = next(r["audio"] for r in rows if r["voice"] == "rms")
    assert slt.size != rms.size or not np.allclose(slt, rms)
    again = ev.build_rows(["natural"], ["slt", "rms"], tmp_path, sentences=2, cache=cache)
    assert all(np.array_equal(a["audio"], b["audio"]) for a, b in zip(rows, again, strict=True))


def test_unknown_voice_fails_listing_the_valid_ones(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="valid: slt-hts, slt, awb, rms"):
        ev.synthesize("hello", "kal", cache=tmp_path)


@pytest.mark.parametrize(("args", "says"), [
    (["--sets", "natural,podcasts"], "unknown podcasts"),
    (["--sets", "natural", "--voices", "slt,kal"], "unknown kal"),
    (["--sets", "natural", "--bands", "11k"], "unknown 11k"),
    (["--sets", "natural", "--noises", "brown"], "unknown brown"),
])
def test_eval_asr_rejects_unknown_sets_voices_bands_noises(args: list[str], says: str) -> None:
    from click.testing import CliRunner

    from infra.cli import main

    result = CliRunner().invoke(main, ["eval", "asr", *args])
    assert result.exit_code == 2, result.output
    assert says in result.output


class _ListEcho:
    """An engine that writes the first phrase of the context it is given (the plain
    decode: "nothing")."""

    name = "list-echo"

    def transcribe(self, audio: np.ndarray, *, phrases: Sequence[str] = (),
                   **_: Any) -> list[Hypothesis]:
        return [Hypothesis(phrases[0] if phrases else "nothing", 0.0)]


def test_each_names_set_is_decoded_with_its_own_list() -> None:
    held_out, tune = context_names(), context_names(tune=True)
    assert not set(held_out[:40]) & set(tune[:25])  # the sets' names do not overlap
    audio = _tone(0.5)
    rows = [{"set": "natural-names", "voice": "slt", "text": f"call {held_out[0]}",
             "audio": audio, "id": "0", "name": held_out[0]},
            {"set": "natural-names-tune", "voice": "slt", "text": f"call {tune[0]}",
             "audio": audio, "id": "1", "name": tune[0]}]
    out = ev.evaluate(_ListEcho(), rows, bands=["16k"], noises=["clean"], bias_weight=1,
                      phrase_bonus=0, strong_weight=0)
    by_set = {g["set"]: g for g in out["groups"]}
    # Each set's context holds its own names: with the wrong list neither would be found.
    assert {s: (g["name_recall"], g["name_recall_context"]) for s, g in by_set.items()} == \
        {"natural-names": (0.0, 1.0), "natural-names-tune": (0.0, 1.0)}


def test_context_cost_decodes_the_sentences_again_with_the_held_out_list() -> None:
    rows = [{"set": "natural", "voice": v, "text": "nothing", "audio": _tone(0.5), "id": v}
            for v in ("slt", "rms")]
    plain = ev.evaluate(_ListEcho(), rows, bands=["16k"], noises=["clean"], bias_weight=1,
                        phrase_bonus=0, strong_weight=0)
    assert all("wer_context" not in g for g in plain["groups"])
    assert set(plain["summary"]) == {"natural_16k_clean_tuning_voices_wer",
                                     "natural_16k_clean_held_out_wer"}
    out = ev.evaluate(_ListEcho(), rows, bands=["16k"], noises=["clean"], bias_weight=1,
                      phrase_bonus=0, strong_weight=0, context_cost=True)
    # Without the list the echo says "nothing" (right); with it, the list's first name.
    assert [(g["wer"], g["wer_context"]) for g in out["groups"]] == [(0.0, 2.0)] * 2
    assert out["summary"]["natural_16k_clean_held_out_wer_context"] == 2.0
    assert out["summary"]["natural_16k_clean_tuning_voices_wer"] == 0.0


def test_the_tuning_names_set_holds_the_tuning_names(monkeypatch: pytest.MonkeyPatch,
                                                     tmp_path: Path) -> None:
    monkeypatch.setattr(ev, "synthesize", lambda text, voice, cache: _tone(0.1))
    rows = ev.build_rows(["natural-names-tune"], ["slt", "awb"], tmp_path)
    tune = set(context_names(tune=True))
    assert rows and all(r["set"] == "natural-names-tune" and r["name"] in tune for r in rows)
    assert {r["voice"] for r in rows} == {"slt", "awb"}
    assert not {r["name"] for r in rows} & set(context_names()[:40])
