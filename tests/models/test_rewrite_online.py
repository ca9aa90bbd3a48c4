"""Online rewriting: retrieval over successful requests, the ranker and its fit."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from models.rewrite.embedder import Embedder
from models.rewrite.online import (
    FEATURES,
    OnlineRewriter,
    OnlineStateError,
    calibration_report,
)
from streams.rewrite import Interaction, Meaning, Outcome, RewriteSource

OK, BAD = Outcome.SUCCESS, Outcome.DEFECT


def _i(user: str, session: str, ts: int, text: str, outcome: Outcome,
       intent: str = "transport_query") -> Interaction:
    meaning = Meaning(intent=intent if outcome is OK else "general_quirky")
    return Interaction(session_id=session, user_id=user, device_id=f"d-{user}", ts=ts,
                       utterance=text, interpretation=meaning, outcome=outcome)


def _log() -> list[Interaction]:
    """Ann's "wilkerson" is her gym, Bob's (and most people's) a street; jazz always works."""
    log: list[Interaction] = []
    t = 0
    for k in range(3):
        for user, place in (("ann", "gym"), ("bob", "street")):
            t += 100_000
            log += [_i(user, f"{user}{k}", t, "wilkerson", BAD),
                    _i(user, f"{user}{k}", t + 5_000, f"directions to wilkerson {place}", OK)]
    for user in ("carl", "dan", "eve"):
        for k in range(3):
            t += 100_000
            log += [_i(user, f"{user}w{k}", t, "directions to wilkerson street", OK),
                    _i(user, f"{user}j{k}", t + 20_000, "play some jazz music", OK, "play_music"),
                    _i(user, f"{user}p{k}", t + 40_000, "play jazz", OK, "play_music")]
    return log


@pytest.fixture(scope="module")
def rewriter(embedder: Embedder) -> OnlineRewriter:
    r = OnlineRewriter(embedder)
    for record in _log():
        r.learn(record)
    return r


def test_personal_rewrite_beats_global_for_its_owner(rewriter: OnlineRewriter) -> None:
    ann = rewriter.propose("ann", "wilkerson")
    assert ann is not None
    assert (ann.text, ann.source) == ("directions to wilkerson gym", RewriteSource.ONLINE_PERSONAL)
    bob = rewriter.propose("bob", "Wilkerson!")
    assert bob is not None
    assert bob.text == "directions to wilkerson street"
    assert 0.5 <= bob.score <= 1.0


def test_global_layer_alone_serves_the_crowd(embedder: Embedder) -> None:
    r = OnlineRewriter(embedder, personal=False)
    for record in _log():
        r.learn(record)
    got = r.propose("ann", "wilkerson")
    assert got is not None
    assert (got.text, got.source) == ("directions to wilkerson street",
                                      RewriteSource.ONLINE_GLOBAL)


def test_unseen_unrelated_request_is_left_alone(rewriter: OnlineRewriter) -> None:
    assert rewriter.propose("ann", "what is the capital of peru") is None
    assert rewriter.propose("zoe", "how tall is mount everest") is None
    assert rewriter.propose("ann", "  ?! ") is None


def test_successful_request_is_left_alone(rewriter: OnlineRewriter) -> None:
    names, _, _ = rewriter.features("carl", "play jazz",
                                       rewriter.embedder.embed(["play jazz"])[0])
    assert "play some jazz music" in names  # a near neighbour exists...
    assert "play jazz" not in names  # ...never the request itself
    assert rewriter.propose("carl", "play jazz") is None  # ...but it already works
    assert rewriter.propose("zoe", "directions to wilkerson street") is None


def test_context_fit_breaks_a_tie(embedder: Embedder) -> None:
    r = OnlineRewriter(embedder)
    t = 0
    for k in range(3):
        for text, intent in (("turn off the oven", "iot_appliance_off"),
                             ("turn off the radio", "play_radio")):
            t += 100_000
            r.learn(_i("amy", f"s{k}{intent}", t, "turn it off", BAD))
            r.learn(_i("amy", f"s{k}{intent}", t + 3_000, text, OK, intent))
    oven = r.propose("amy", "turn it off", {"states": {"oven": "on"}})
    radio = r.propose("amy", "turn it off", {"playing": {"kind": "radio"}})
    assert oven is not None and radio is not None
    assert (oven.text, radio.text) == ("turn off the oven", "turn off the radio")


def test_personal_index_is_bounded(embedder: Embedder) -> None:
    r = OnlineRewriter(embedder, personal_size=3)
    for k, text in enumerate(["play jazz", "play jazz", "play rock", "play pop", "play folk"]):
        r.learn(_i("amy", f"s{k}", k * 100_000, text, OK, "play_music"))
    user = r.users["amy"]
    assert len(user.names) == 3 and user.vectors.shape == (3, 384)
    assert "play jazz" in user.forms  # used twice: kept
    assert len(r.forms) == 4  # the global index keeps every form


def test_fit_learns_from_rephrase_chains_and_reports_calibration(embedder: Embedder) -> None:
    rng = np.random.default_rng(0)
    troubles = [("play wrong with man", "play a r rahman", "play_music"),
                ("call mum mobile", "call mom on her mobile", "calling"),
                ("lights of", "turn the lights off", "iot_hue_lightoff"),
                ("whether tomorrow", "what's the weather tomorrow", "weather_query")]
    plain = [("set an alarm for six", "alarm_set"), ("tell me a joke", "general_joke"),
             ("what time is it", "datetime_query"), ("play the news", "news_query")]
    log: list[Interaction] = []
    t = 0
    for n in range(300):
        user = f"u{rng.integers(20)}"
        t += 120_000
        if rng.random() < 0.5:
            bad, good, intent = troubles[rng.integers(len(troubles))]
            log += [_i(user, f"s{n}", t, bad, BAD), _i(user, f"s{n}", t + 4_000, good, OK, intent)]
        else:
            text, intent = plain[rng.integers(len(plain))]
            log.append(_i(user, f"s{n}", t, text, OK, intent))
    r = OnlineRewriter(embedder)
    report = r.fit(log, holdout=0.5)
    assert report["fitted"] and report["positives"] > 10
    assert report["brier"] < 0.1 and 0.0 <= report["ece"] < 0.2
    assert sum(row["n"] for row in report["reliability"]) == report["held_out"]
    assert set(report["weights"]) == {"intercept", *FEATURES}
    assert report["weights"]["context_fit"] == 1.0  # logs carry no context: the prior stays
    got = r.propose("u0", "play wrong with man")
    assert got is not None and got.text == "play a r rahman"
    assert r.propose("u0", "tell me a joke") is None


def test_calibration_report_of_perfect_and_constant_scores() -> None:
    y = np.array([0, 0, 1, 1], dtype=float)
    assert calibration_report(y, y)["brier"] == 0.0
    half = calibration_report(np.full(4, 0.5), y)
    assert half["brier"] == 0.25 and half["ece"] == 0.0


def test_bad_settings_are_refused(embedder: Embedder) -> None:
    with pytest.raises(ValueError, match="threshold"):
        OnlineRewriter(embedder, threshold=1.5)
    with pytest.raises(ValueError, match="weights"):
        OnlineRewriter(embedder, weights=np.zeros(3))


def test_eval_asks_the_online_layer_after_the_table(
        embedder_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from infra.eval_rewrite import build_layers
    from models.rewrite.precomputed import PrecomputedLayer

    monkeypatch.setenv("VOICESTREAM_MODEL_DIR", str(embedder_dir.parent))
    layers = build_layers(_log(), personal=False, online=True)
    assert [type(layer) for layer in layers] == [PrecomputedLayer, OnlineRewriter]
    online = layers[1]
    assert isinstance(online, OnlineRewriter) and not online.personal
    assert len(online.forms) == 4  # every successful form of the log is indexed
    assert len(build_layers(_log(), personal=True)) == 1  # online is opt-in below the CLI


def test_saved_layer_proposes_and_learns_as_before(rewriter: OnlineRewriter,
                                                   tmp_path: Path) -> None:
    saved = rewriter.save(tmp_path / "online")
    assert sorted(p.name for p in saved.iterdir()) == ["global.usearch", "personal.npz",
                                                       "state.json"]
    back = OnlineRewriter.load(saved, rewriter.embedder)
    for user, text in (("ann", "wilkerson"), ("bob", "wilkerson"), ("carl", "play jazz"),
                       ("zoe", "how tall is mount everest")):
        assert back.propose(user, text) == rewriter.propose(user, text)
    assert (back.forms, back.successes) == (rewriter.forms, rewriter.successes)
    assert back.users["ann"].fixes == rewriter.users["ann"].fixes
    # an open rephrase chain survives: zoe's defect before the save, her fix after it
    t = 10**9
    back.learn(_i("zoe", "z1", t, "metro home", BAD))  # the copy: the fixture stays as it was
    back = OnlineRewriter.load(back.save(tmp_path / "again"), rewriter.embedder)
    back.learn(_i("zoe", "z1", t + 4_000, "directions home by metro", OK))
    assert back.fixes["metro home"]["directions home by metro"] == 1
    assert back.forms[-1] == "directions home by metro" and len(back.index) == len(back.forms)


@pytest.mark.parametrize(("damage", "code", "says"), [
    (lambda d: (d / "state.json").unlink(), "online-state-missing", "state.json: no such file"),
    (lambda d: (d / "state.json").write_text('{"format": 1,\n "forms": [,]}'),
     "online-state-corrupt", "state.json:2: "),  # the file and line of the fault
    (lambda d: (d / "state.json").write_text('{"format": 0}'), "online-state-format",
     "format 0"),
    (lambda d: (d / "global.usearch").write_bytes(b"not an index"), "online-state-corrupt",
     "RuntimeError"),
    (lambda d: (d / "personal.npz").unlink(), "online-state-corrupt", "personal.npz"),
], ids=["no-state", "bad-json", "old-format", "bad-index", "no-personal"])
def test_damaged_save_is_a_coded_error(rewriter: OnlineRewriter, tmp_path: Path,
                                       damage: Callable[[Path], object], code: str,
                                       says: str) -> None:
    saved = rewriter.save(tmp_path / "online")
    damage(saved)
    with pytest.raises(OnlineStateError) as err:
        OnlineRewriter.load(saved, rewriter.embedder)
    assert err.value.code == code
    assert says in str(err.value)


def test_save_with_an_index_of_other_forms_is_refused(rewriter: OnlineRewriter,
                                                      tmp_path: Path) -> None:
    saved = rewriter.save(tmp_path / "online")
    state = json.loads((saved / "state.json").read_text())
    state["forms"].append("a form with no vector")
    (saved / "state.json").write_text(json.dumps(state))
    with pytest.raises(OnlineStateError, match=r"online-state-corrupt: .*vectors for"):
        OnlineRewriter.load(saved, rewriter.embedder)
