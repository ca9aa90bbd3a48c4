"""eval rewrite's counts on a tiny hand-made log, with a stand-in interpreter."""

from __future__ import annotations

from pathlib import Path

from infra.eval_rewrite import evaluate
from models.rewrite.logs import write_interactions
from models.rewrite.precomputed import MiningConfig
from streams.rewrite import Interaction, Meaning, Outcome

MUSIC = Meaning(intent="play_music", slots={"artist_name": "beyonce"})
WEATHER = Meaning(intent="weather_query")
#: What the stand-in NLU understands; anything else is read as "unknown".
KNOWN = {"play beyonce": MUSIC, "weather": WEATHER, "whats the weather": WEATHER}


def interpret(texts: list[str]) -> list[Meaning]:
    return [KNOWN.get(t, Meaning(intent="unknown")) for t in texts]


def _i(session: str, ts: int, text: str, ok: bool, truth: Meaning | None = None) -> Interaction:
    return Interaction(session_id=session, user_id="u" + session, device_id="d", ts=ts,
                       utterance=text, outcome=Outcome.SUCCESS if ok else Outcome.DEFECT,
                       truth=truth)


def test_counts_wins_losses_and_defect_rates(tmp_path: Path) -> None:
    train = []
    for k in range(3):  # "play beyond say" fails and is rephrased: a rule
        train += [_i(f"a{k}", 1000 * k, "play beyond say", False),
                  _i(f"a{k}", 1000 * k + 3000, "play beyonce", True)]
    for k in range(3):  # "weather" fails, then "whats the weather" works: a rule too
        train += [_i(f"b{k}", 1000 * k, "weather", False),
                  _i(f"b{k}", 1000 * k + 3000, "whats the weather", True)]
    test = [
        _i("t1", 10, "play beyond say", False, MUSIC),  # rewritten and right: a win
        _i("t2", 20, "weather", True, WEATHER),  # right already, rewritten: still right
        _i("t3", 30, "play beyond say", False, WEATHER),  # meant else: rewrite wrong too
        _i("t4", 40, "something new", False, MUSIC),  # no rule: stays a defect
        _i("t5", 50, "play beyonce", True, MUSIC),  # fine and left alone
        _i("t6", 60, "play beyonce", True),  # no truth: not scored
    ]
    # Half the "weather" chains give up: the rule keeps probability 1/2.
    train += [_i(f"c{k}", 1000 * k, "weather", False) for k in range(3)]
    write_interactions(tmp_path / "train.jsonl", train)
    write_interactions(tmp_path / "test.jsonl", test)
    with (tmp_path / "test.jsonl").open("a") as f:
        f.write("not json\n")
    report = evaluate(tmp_path / "train.jsonl", tmp_path / "test.jsonl", interpret,
                      mining=MiningConfig(min_support=3, min_probability=0.4))
    got = report["global"]
    assert got["records"] == 5 and report["test_without_truth"] == 1
    assert report["skipped_lines"] == {"train": 0, "test": 1}
    assert got["rewritten"] == 3  # t1, t2, t3
    assert (got["wins"], got["losses"]) == (1, 0)
    assert got["defect_rate_before"] == 0.6  # t1, t3, t4
    assert got["defect_rate_after"] == 0.4  # t3, t4
    assert got["by_source"] == {"precomputed": 3}
    assert report["global+personal"]["wins"] == 1


def test_a_rewrite_that_breaks_a_request_is_a_loss(tmp_path: Path) -> None:
    train = []
    for k in range(4):
        train += [_i(f"a{k}", 0, "weather", False), _i(f"a{k}", 2000, "play beyonce", True)]
    write_interactions(tmp_path / "train.jsonl", train)
    write_interactions(tmp_path / "test.jsonl", [_i("t", 0, "weather", True, WEATHER)])
    got = evaluate(tmp_path / "train.jsonl", tmp_path / "test.jsonl", interpret,
                   mining=MiningConfig(min_support=3, min_similarity=0))["global"]
    assert (got["wins"], got["losses"], got["rewritten"]) == (0, 1, 1)
    assert (got["defect_rate_before"], got["defect_rate_after"]) == (0.0, 1.0)


def test_placement_rewrites_only_below_the_confidence_gate() -> None:
    from infra.eval_rewrite import Score

    score = Score()
    score.samples = [
        (0.99, False, True, True),   # confident but wrong: only "every request" fixes it
        (0.50, False, True, True),   # unsure and wrong: fixed below any gate above 0.5
        (0.97, True, False, True),   # confident and right: a loss unless gated
        (0.30, True, True, False),   # unsure, right, left alone
    ]
    rows = {row["gate"]: row for row in score.placement((1.0, 0.95, 0.4))}
    assert (rows[1.0]["asked"], rows[1.0]["wins"], rows[1.0]["losses"]) == (4, 2, 1)
    assert rows[1.0]["defect_rate_after"] == 0.25  # the loss
    assert (rows[0.95]["asked"], rows[0.95]["wins"], rows[0.95]["losses"]) == (2, 1, 0)
    assert rows[0.95]["rewritten"] == 1
    assert rows[0.95]["defect_rate_after"] == 0.25  # the confident wrong one stays
    assert (rows[0.4]["asked"], rows[0.4]["wins"], rows[0.4]["defect_rate_after"]) == (1, 0, 0.5)
    assert rows[0.4]["defect_reduction"] == 0.0
