"""The simulator: deterministic per seed, split by time, defects from the interpreter."""

from __future__ import annotations

from models.nlu.massive import Example, Slot
from models.rewrite.simulate import DAY_MS, START_MS, SimConfig, simulate
from streams.rewrite import Meaning, Outcome


def _ex(text: str, intent: str, slot: str = "", value: str = "") -> Example:
    slots = (Slot(slot, value, text.index(value), text.index(value) + len(value)),) if slot \
        else ()
    return Example(text, intent, slots)


EXAMPLES = [
    _ex("play songs by bowie", "play_music", "artist_name", "bowie"),
    _ex("directions to the park", "transport_query", "place_name", "the park"),
    _ex("how do i get to the park", "transport_query", "place_name", "the park"),
    _ex("what's the weather", "weather_query"),
    _ex("whats it like outside", "weather_query"),
]
CONFUSIONS = [{"slot": "artist_name", "said": "bowie", "heard": "molly"}]


def interpret(texts: list[str]) -> list[Meaning]:
    """A stand-in NLU that misreads "molly", the first park phrasing and shorthands."""
    out = []
    for t in texts:
        if "molly" in t or t.startswith("directions"):
            out.append(Meaning(intent="unknown"))
        elif "by" in t:
            out.append(Meaning(intent="play_music", slots={"artist_name": t.split("by ")[1]}))
        elif "to" in t:
            out.append(Meaning(intent="transport_query",
                               slots={"place_name": t.split("to ")[1].split()[0]}))
        else:
            out.append(Meaning(intent="weather_query"))
    return out


CONFIG = SimConfig(users=6, days=6, train_days=4, seed=7, p_trouble=0.6, pool=5)


def test_same_seed_same_logs_other_seed_other_logs() -> None:
    a = simulate(CONFIG, EXAMPLES, CONFUSIONS, interpret)
    b = simulate(CONFIG, EXAMPLES, CONFUSIONS, interpret)
    c = simulate(SimConfig(users=6, days=6, train_days=4, seed=8, p_trouble=0.6, pool=5),
                 EXAMPLES, CONFUSIONS, interpret)
    assert a == b
    assert a != c


def test_train_and_test_are_split_by_time_and_only_test_has_truth() -> None:
    train, test = simulate(CONFIG, EXAMPLES, CONFUSIONS, interpret)
    assert train and test
    split = START_MS + 4 * DAY_MS
    assert max(r.ts for r in train) < split <= min(r.ts for r in test)
    assert all(r.truth is None for r in train) and all(r.truth is not None for r in test)
    assert [r.ts for r in test] == sorted(r.ts for r in test)


def test_defects_are_what_the_interpreter_got_wrong() -> None:
    _train, test = simulate(CONFIG, EXAMPLES, CONFUSIONS, interpret)
    kinds = {r.outcome for r in test}
    assert kinds == {Outcome.SUCCESS, Outcome.DEFECT}
    for r in test:
        assert r.truth is not None
        right = interpret([r.utterance])[0] == r.truth
        assert (r.outcome is Outcome.SUCCESS) == right, r
    # The name Whisper mishears is never understood.
    misheard = [r for r in test if "molly" in r.utterance]
    assert misheard and all(r.outcome is Outcome.DEFECT for r in misheard)


def test_the_same_shorthand_request_means_different_places_to_different_users() -> None:
    config = SimConfig(users=40, days=4, train_days=2, seed=3, p_trouble=1.0, pool=5,
                       place_requests=1)
    _, test = simulate(config, EXAMPLES, CONFUSIONS, interpret)
    # What each shorthand request (a place word with no place kind) meant, and to whom.
    meant: dict[str, set[str]] = {}
    users: dict[str, set[str]] = {}
    for r in test:
        if r.truth is None or "place_name" not in r.truth.slots:
            continue
        if r.utterance.split()[-1] in {"park", "gym", "street", "school", "library", "cafe",
                                       "office", "station"}:
            continue  # spelled out
        meant.setdefault(r.utterance, set()).add(r.truth.slots["place_name"])
        users.setdefault(r.utterance, set()).add(r.user_id)
    assert meant
    # One wording for everyone (place_requests=1): the same words, several users' places.
    ambiguous = [u for u in meant if len(meant[u]) >= 2 and len(users[u]) >= 2]
    assert ambiguous, meant
