"""Device context resolves ambiguity: the rules alone, and with the trained model."""

from __future__ import annotations

import pytest

from agents.context import merge
from models.nlu.context import resolve
from streams.directive import ContextUpdate
from streams.nlu import Hypothesis, SlotValue


def h(intent: str, text: str, **slots: str) -> Hypothesis:
    return Hypothesis(intent=intent, score=0.9, text=text,
                      slots=tuple(SlotValue(type=t, text=v, value=v, start=text.find(v),
                                            end=text.find(v) + len(v))
                                  for t, v in slots.items()))


def slots(x: Hypothesis) -> dict[str, str]:
    return {s.type: s.value for s in x.slots}


def test_temperature_is_the_appliance_that_heats_else_the_weather() -> None:
    ask = h("weather_query", "what's the temperature", weather_descriptor="temperature")
    oven = resolve(ask, {"states": {"oven": "on", "thermostat": "heating"}})
    assert (oven.intent, slots(oven)["device_type"]) == ("iot_appliance_query", "oven")
    assert oven.context == ("states.oven=on",)
    assert resolve(ask, {"states": {"oven": "off"}}).intent == "weather_query"
    # A place or a date is a weather question whatever is on.
    paris = h("weather_query", "what's the temperature in paris", place_name="paris")
    assert resolve(paris, {"states": {"oven": "on"}}).intent == "weather_query"
    # Setting a temperature is not asking for one.
    assert resolve(h("iot_wemo_on", "set the temperature to twenty"),
                   {"states": {"oven": "on"}}).intent == "iot_wemo_on"


def test_a_bare_title_depends_on_screen_and_what_is_playing() -> None:
    ask = h("play_music", "play the hunger games", song_name="games")
    film = resolve(ask, {"has_screen": True})
    assert (film.intent, slots(film)) == ("play_video", {"movie_name": "the hunger games"})
    assert resolve(ask, {}).intent == "play_audiobook"
    assert resolve(ask, {"playing": {"kind": "music"}}).intent == "play_music"
    # A media word or an artist makes the request explicit: context does not override it.
    assert resolve(h("play_music", "play the song hunger games"),
                   {"has_screen": True}).intent == "play_music"
    assert resolve(h("play_music", "play adele", artist_name="adele"),
                   {"has_screen": True}).intent == "play_music"


def test_it_is_what_is_on_or_the_most_recently_used() -> None:
    off = h("iot_wemo_off", "turn it off")
    tv = resolve(off, {"states": {"tv": "on", "fan": "off"}})
    assert (tv.intent, slots(tv)) == ("iot_wemo_off", {"device_type": "tv"})
    lamp = resolve(off, {"states": {"lamp": "on"}})
    assert lamp.intent == "iot_hue_lightoff"
    recent = resolve(off, {"states": {"tv": "on", "fan": "on"}, "history": ["on:fan", "on:tv"]})
    assert slots(recent) == {"device_type": "tv"} and "history" in recent.context
    assert resolve(off, {"playing": {"kind": "music"}}).intent == "media_stop"
    assert resolve(off, {}).intent == "iot_wemo_off"  # nothing to resolve it with
    named = h("iot_wemo_off", "turn the tv off", device_type="tv")
    assert resolve(named, {"states": {"fan": "on"}}) == named


def test_play_music_follows_listening_history_and_lights_the_room() -> None:
    music = resolve(h("play_music", "play some music"),
                    {"history": ["music:rock", "music:jazz", "music:jazz", "video:film"]})
    assert slots(music) == {"music_genre": "jazz"}
    tie = resolve(h("play_music", "play music"), {"history": ["music:rock", "music:pop"]})
    assert slots(tie) == {"music_genre": "pop"}  # a tie goes to the most recent
    lights = resolve(h("iot_hue_lighton", "lights on"), {"location": "kitchen"})
    assert slots(lights) == {"house_place": "kitchen"}
    assert resolve(h("iot_hue_lighton", "lights on"), {}).slots == ()


def test_context_updates_merge_into_the_table_value() -> None:
    base = merge(None, ContextUpdate(device_id="d1", states={"oven": "on"}))
    assert base["states"] == {"oven": "on"} and base["device_id"] == "d1"
    after = merge(base, ContextUpdate(device_id="d1", states={"oven": "", "tv": "on"},
                                      playing={"kind": "music"}, history=("music:jazz",)))
    assert after["states"] == {"tv": "on"} and after["playing"] == {"kind": "music"}
    assert after["history"] == ["music:jazz"]
    many = merge(after, ContextUpdate(device_id="d1", history=tuple(f"x:{i}" for i in range(80))))
    assert len(many["history"]) == 50 and many["history"][-1] == "x:79"


@pytest.fixture(scope="module")
def understander() -> object:
    from agents.nlu import Understander
    from models.nlu.inference import NluOnnx

    return Understander(NluOnnx())


@pytest.mark.parametrize(("text", "ctx", "intent", "slot"), [
    ("what's the temperature", {"states": {"oven": "on"}}, "iot_appliance_query",
     ("device_type", "oven")),
    ("what's the temperature", {}, "weather_query", None),
    ("play hunger games", {"has_screen": True}, "play_video", ("movie_name", "hunger games")),
    ("play hunger games", {"has_screen": False}, "play_audiobook",
     ("audiobook_name", "hunger games")),
    ("play music", {"history": ["music:jazz", "music:jazz"]}, "play_music",
     ("music_genre", "jazz")),
    ("wake me up at seven", {"local_time": "22:00"}, "alarm_set", ("time", "07:00")),
])
def test_the_seed_examples_with_the_trained_model(understander: object, text: str,
                                                  ctx: dict[str, object], intent: str,
                                                  slot: tuple[str, str] | None) -> None:
    from streams.asr import NBest

    best = understander.interpret([NBest(text=text, score=0.0)], ctx)[0]  # type: ignore[attr-defined]
    assert best.intent == intent
    if slot is not None:
        assert slot in {(s.type, s.value) for s in best.slots}


def test_context_evaluation_set_is_large_and_scores_high_with_context(
        understander: object) -> None:
    from infra.eval_context import evaluate, load

    cases = load()
    assert len(cases) >= 200
    report = evaluate(understander, cases)
    assert report["with_context"]["accuracy"] >= 0.95
    assert report["without_context"]["accuracy"] < report["with_context"]["accuracy"]


def test_eval_context_command_prints_both_figures() -> None:
    import json

    from click.testing import CliRunner

    from infra.cli import main

    result = CliRunner().invoke(main, ["eval", "context", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["cases"] >= 200 and "failures" not in report
    assert report["with_context"]["accuracy"] > report["without_context"]["accuracy"]


@pytest.mark.parametrize("text", ["je voudrais un café s'il vous plaît", "wo ist der bahnhof bitte",
                                  "asdf qwer zxcv", "um uh hmm"])
def test_other_languages_and_garbage_get_a_low_score(understander: object, text: str) -> None:
    from streams.asr import NBest

    best = understander.interpret([NBest(text=text, score=0.0)], {})[0]  # type: ignore[attr-defined]
    assert best.score < 0.1


def test_ordinary_requests_keep_their_score(understander: object) -> None:
    from streams.asr import NBest

    best = understander.interpret(  # type: ignore[attr-defined]
        [NBest(text="please turn off the dehumidifier", score=0.0)], {})[0]
    assert best.intent == "iot_wemo_off"
    # No familiarity discount: the score is the ASR and NLU probabilities' product.
    assert best.score == pytest.approx(best.asr_prob * best.nlu_prob, abs=1e-3)
    assert best.score > 0.2
