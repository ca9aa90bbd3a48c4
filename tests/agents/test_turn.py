"""The semantic end-of-turn core: the decider and the end-pointer's per-revision silence."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from agents.endpointing import Decision, Endpointer
from agents.turn import TurnDecider, energy_fall
from models.eot import EotModel
from streams.endpoint import Endpoint, Reset
from streams.settings import EndpointerConfig

CFG = EndpointerConfig(semantic=True, speculative_silence_ms=256, final_silence_ms=800,
                       semantic_min_silence_ms=288)
CHUNK = 32


@pytest.fixture(scope="module")
def decider() -> TurnDecider:
    return TurnDecider(CFG, EotModel.load())


def test_complete_request_gets_the_short_wait(decider: TurnDecider) -> None:
    assert decider.decide("what is the weather like today").silence_ms == 288


def test_incomplete_request_waits_the_maximum(decider: TurnDecider) -> None:
    assert decider.decide("set an alarm for").silence_ms == 800
    assert decider.decide("").silence_ms == 800
    assert decider.decide([]).silence_ms == 800


def test_wait_stays_between_minimum_and_maximum(decider: TurnDecider) -> None:
    for text in ("set an alarm", "play music", "what is", "call mom", "remind me"):
        assert 288 <= decider.decide(text).silence_ms <= 800


def test_nlu_confidence_and_energy_fall_move_the_wait(decider: TurnDecider) -> None:
    cfg = dataclasses.replace(CFG, nlu_weight=0.5, acoustic_weight=0.2)
    d = TurnDecider(cfg, decider.model)
    text = "turn on the kitchen light"  # P(complete) between the two thresholds
    plain = d.decide(text).silence_ms
    assert d.decide(text, nlu_confidence=1.0).silence_ms < plain
    assert d.decide(text, nlu_confidence=0.0).silence_ms > plain
    assert d.decide(text, energy_fall=1.0).silence_ms < d.decide(text, energy_fall=0.0).silence_ms


def test_device_type_has_its_own_minimum(decider: TurnDecider) -> None:
    cfg = dataclasses.replace(CFG, semantic_min_silence_by_device="car=450, watch=300")
    d = TurnDecider(cfg, decider.model)
    text = "what is the weather like today"
    assert d.decide(text, device_type="car").silence_ms == 450
    assert d.decide(text, device_type="speaker").silence_ms == 288


@pytest.mark.parametrize("bad", ["car", "car=", "=300", "car=fast"])
def test_bad_device_minimums_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="semantic_min_silence_by_device"):
        EndpointerConfig(semantic_min_silence_by_device=bad)


def test_config_ranges_are_checked() -> None:
    with pytest.raises(ValueError):
        EndpointerConfig(semantic_min_silence_ms=900)
    with pytest.raises(ValueError):
        EndpointerConfig(complete_threshold=0.5, incomplete_threshold=0.6)
    with pytest.raises(ValueError):
        EndpointerConfig(semantic_min_silence_by_device="car=5000")


def test_energy_fall() -> None:
    rng = np.random.default_rng(0)
    level = rng.standard_normal(16000).astype(np.float32) * 0.1
    fading = level.copy()
    fading[-1920:] *= 0.05
    assert energy_fall(level) < 0.2
    assert energy_fall(fading) > 0.8
    assert energy_fall(level[:100]) == 0.5


# --- Endpointer.require_silence ------------------------------------------------------


def feed(ep: Endpointer, kind: str, ms: int) -> list[Decision]:
    out: list[Decision] = []
    for _ in range(ms // CHUNK):
        out.extend(ep.process(CHUNK, 0.9 if kind == "speech" else 0.05))
    return out


def kinds(decisions: list[Decision]) -> list[tuple[str, int]]:
    return [(d.kind.value, d.revision) if isinstance(d, Endpoint)
            else ("reset", d.cancelled_revision) if isinstance(d, Reset) else ("error", 0)
            for d in decisions]


def test_short_wait_confirms_at_once_when_already_passed() -> None:
    ep = Endpointer(CFG, "dev", "utt")
    out = feed(ep, "speech", 960) + feed(ep, "silence", 320)
    assert kinds(out) == [("speculative", 0)]
    final = ep.require_silence(0, 288)
    assert kinds(final) == [("final", 0)]
    assert isinstance(final[0], Endpoint) and final[0].t_ms - final[0].at_ms == 320
    assert ep.done and feed(ep, "silence", 800) == []


def test_short_wait_confirms_when_reached() -> None:
    ep = Endpointer(CFG, "dev", "utt")
    feed(ep, "speech", 960)
    feed(ep, "silence", 256)
    assert ep.require_silence(0, 400) == []
    out = feed(ep, "silence", 160)
    assert kinds(out) == [("final", 0)]
    assert isinstance(out[0], Endpoint) and out[0].t_ms - out[0].at_ms == 416


def test_long_wait_still_allows_a_reset() -> None:
    ep = Endpointer(CFG, "dev", "utt")
    feed(ep, "speech", 960)
    feed(ep, "silence", 288)
    assert ep.require_silence(0, 800) == []
    out = feed(ep, "silence", 320) + feed(ep, "speech", 640) + feed(ep, "silence", 900)
    assert kinds(out) == [("reset", 0), ("speculative", 1), ("final", 1)]
    final = out[-1]
    assert isinstance(final, Endpoint) and final.t_ms - final.at_ms == 800  # back to fixed


def test_a_cancelled_revision_cannot_confirm_the_next() -> None:
    ep = Endpointer(CFG, "dev", "utt")
    feed(ep, "speech", 960)
    feed(ep, "silence", 288)  # speculative 0
    feed(ep, "speech", 320)  # reset 0
    feed(ep, "silence", 320)  # speculative 1
    assert ep.revision == 1
    assert ep.require_silence(0, 288) == []  # the stale transcript of revision 0
    assert not ep.done
    assert kinds(ep.require_silence(1, 288)) == [("final", 1)]


def test_require_silence_before_a_speculative_or_after_done_is_ignored() -> None:
    ep = Endpointer(CFG, "dev", "utt")
    feed(ep, "speech", 960)
    assert ep.require_silence(0, 288) == []
    assert ep.final_silence_ms == 800
    feed(ep, "silence", 1000)
    assert ep.done and ep.require_silence(0, 288) == []


def test_wait_is_capped_at_the_fixed_silence() -> None:
    ep = Endpointer(CFG, "dev", "utt")
    feed(ep, "speech", 960)
    feed(ep, "silence", 288)
    ep.require_silence(0, 5000)
    assert ep.final_silence_ms == 800
