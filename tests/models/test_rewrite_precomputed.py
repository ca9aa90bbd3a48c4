"""Mining rewrites: rephrase chains, the absorbing-chain solve, thresholds and the layer."""

from __future__ import annotations

from pathlib import Path

import pytest

from models.rewrite.logs import read_rules, write_rules
from models.rewrite.precomputed import (
    Chain,
    ChainCounts,
    MiningConfig,
    PrecomputedLayer,
    absorption_rows,
    chains,
    mine,
    withdrawn,
)
from streams.rewrite import Interaction, Meaning, Outcome, RewriteRule, RewriteSource

OK, BAD = Outcome.SUCCESS, Outcome.DEFECT


def _i(session: str, ts: int, text: str, outcome: Outcome, user: str = "u") -> Interaction:
    return Interaction(session_id=session, user_id=user, device_id="d", ts=ts, utterance=text,
                       interpretation=Meaning(intent="x"), outcome=outcome)


def test_chains_cut_at_success_gap_dissimilarity_and_session() -> None:
    log = [
        _i("s1", 0, "Play Beyond Say", BAD),
        _i("s1", 5_000, "play beyonce!", OK),  # rephrase that worked: one chain
        _i("s1", 9_000, "what's the weather", OK),  # new chain after a success
        _i("s1", 12_000, "set an alarm for six", BAD),
        _i("s1", 90_000, "set an alarm for 6", OK),  # too late: two chains
        _i("s1", 95_000, "turn on the lights", BAD),
        _i("s1", 97_000, "how old is obama", OK),  # not similar: two chains
        _i("s2", 0, "turn on the light", BAD),  # another session
    ]
    got = list(chains(log, MiningConfig(window_ms=30_000)))
    assert got == [
        Chain(("play beyond say", "play beyonce"), True),
        Chain(("what's the weather",), True),
        Chain(("set an alarm for six",), False),
        Chain(("set an alarm for 6",), True),
        Chain(("turn on the lights",), False),
        Chain(("how old is obama",), True),
        Chain(("turn on the light",), False),
    ]


def test_absorption_matches_hand_computed_chain() -> None:
    # A->B twice, A fails twice, B->A once, B succeeds once:
    # Q[A,B] = 1/2, R[A,fail] = 1/2, Q[B,A] = 1/2, R[B,ok(B)] = 1/2.
    # x_A = x_B / 2, x_B = 1/2 + x_A / 2  =>  x_A = 1/3, x_B = 2/3; failure from A = 2/3.
    counts = ChainCounts()
    for chain in (Chain(("a", "b", "a"), False), Chain(("a", "b"), True), Chain(("a",), False)):
        counts.add(chain)
    a, b = counts.index["a"], counts.index["b"]
    rows = absorption_rows(counts, [a, b]).toarray()
    n = len(counts.index)
    assert rows[0, b] == pytest.approx(1 / 3)
    assert rows[0, n] == pytest.approx(2 / 3)
    assert rows[1, b] == pytest.approx(2 / 3)
    assert rows[1, n] == pytest.approx(1 / 3)
    assert rows.sum(axis=1) == pytest.approx([1.0, 1.0])


def _sessions(n: int, first: str, then: str, first_ok: int = 0) -> list[Interaction]:
    log = []
    for k in range(n):
        if k < first_ok:
            log.append(_i(f"s{k}", 0, first, OK))
        else:
            log += [_i(f"s{k}", 0, first, BAD), _i(f"s{k}", 4_000, then, OK)]
    return log


def test_thresholds_on_support_and_probability() -> None:
    log = _sessions(4, "play yesterday by the beatles", "play yesterday by beatles")
    rules = mine(log, MiningConfig(min_support=3))
    assert [(r.form, r.rewrite, r.support) for r in rules] == [
        ("play yesterday by the beatles", "play yesterday by beatles", 4)]
    assert rules[0].probability == pytest.approx(1.0)
    assert mine(log, MiningConfig(min_support=5)) == []
    # Works 3 times out of 5 as said: the rewrite (2/5) loses to the form itself.
    mixed = _sessions(5, "call mom", "call mum", first_ok=3)
    assert mine(mixed, MiningConfig(min_support=1, min_probability=0.3)) == []
    # Works 1 time out of 5: the rewrite has 4/5.
    rules = mine(_sessions(5, "call mom", "call mum", first_ok=1),
                 MiningConfig(min_support=1, min_probability=0.7))
    assert [(r.rewrite, round(r.probability, 6)) for r in rules] == [("call mum", 0.8)]
    assert mine(_sessions(5, "call mom", "call mum", first_ok=1),
                MiningConfig(min_support=1, min_probability=0.9)) == []


def test_config_is_checked() -> None:
    with pytest.raises(ValueError, match="min_probability"):
        MiningConfig(min_probability=0.0)


def test_layer_table_round_trip_and_withdrawals(tmp_path: Path) -> None:
    rules = [RewriteRule(form="play beyond say", rewrite="play beyonce", probability=0.9,
                         support=7)]
    path = tmp_path / "table.jsonl"
    write_rules(path, rules)
    layer = PrecomputedLayer.from_file(path)
    got = layer.propose("anyone", "Play, Beyond Say!")
    assert got is not None and got.text == "play beyonce"
    assert got.source is RewriteSource.PRECOMPUTED and got.score == pytest.approx(0.9)
    assert layer.propose("anyone", "play something else") is None
    assert PrecomputedLayer(rules, min_score=0.95).propose("u", "play beyond say") is None
    gone = withdrawn(list(read_rules(path)), [])
    assert [(r.form, r.rewrite) for r in gone] == [("play beyond say", "")]
    assert PrecomputedLayer(rules + gone).propose("u", "play beyond say") is None
