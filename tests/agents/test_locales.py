"""Locale routing: the router's table, and what each stage does with a device's locale."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from agents.arbiter import ArbiterService
from agents.asr import AsrService
from agents.locales import LocaleRouter, LocaleUnsupported, Route, canonical
from agents.nlu import NluService
from agents.registry import Registry
from agents.routing import Arbiter
from infra.config import ConfigError, Settings
from models.asr import Float32Array, Hypothesis
from streams.asr import NBest, Transcript
from streams.codec import Codec, encode
from streams.control import ErrorEvent
from streams.directive import Declined, DeclineReason, Directive
from streams.endpoint import EndpointKind
from streams.nlu import Hypothesis as Meaning
from streams.nlu import Interpretations
from tests.agents import test_arbiter as arb
from tests.agents import test_nlu as nlu
from tests.agents.test_asr import SPEC, Sent, endpoint_event, ep, feed_audio, settle

#: Another model directory for every language.
WITH_MODELS = Settings(nlu_models="de=/models/multi,ar=/models/multi,zh=/models/multi")


@pytest.mark.parametrize(("locale", "language", "asr_model", "nlu_dir", "phonetic"), [
    ("en-US", "en", "", "", True),
    ("en-gb", "en", "", "", True),
    ("de-DE", "de", "base", "/models/multi", False),
    ("de_DE", "de", "base", "/models/multi", False),
    ("ar-SA", "ar", "base", "/models/multi", False),
    ("zh-CN", "zh", "base", "/models/multi", False),
])
def test_a_supported_locale_chooses_language_models_and_phonetics(
        locale: str, language: str, asr_model: str, nlu_dir: str, phonetic: bool) -> None:
    route = LocaleRouter(WITH_MODELS).route(locale)
    assert (route.language, route.asr_model, route.nlu_dir, route.phonetic) == \
        (language, asr_model, nlu_dir, phonetic)
    assert route.locale == canonical(locale)


@pytest.mark.parametrize(("settings", "locale", "reason"), [
    (WITH_MODELS, "xx-XX", "not in locales"),
    (WITH_MODELS, "de-AT", "not in locales"),  # German, but not a listed locale
    (WITH_MODELS, "fr-FR", "not in locales"),
    (WITH_MODELS, "klingon!", "not a BCP 47 locale"),
    # Listed, but nothing understands it.
    (Settings(nlu_models="ar=multilingual"), "de-DE", "no NLU model for 'de'"),
    (Settings(asr_engine="pocketsphinx", nlu_models="de=/m"), "de-DE", "English only"),
])
def test_an_unsupported_locale_is_refused_with_its_reason(settings: Settings, locale: str,
                                                         reason: str) -> None:
    with pytest.raises(LocaleUnsupported) as err:
        LocaleRouter(settings).route(locale)
    assert err.value.code == "locale-unsupported" and reason in err.value.reason


def test_a_device_without_a_locale_is_english() -> None:
    router = LocaleRouter(Settings())
    assert router.route_context(None).locale == "en-US"
    assert router.route_context({"locale": ""}).language == "en"


@pytest.mark.parametrize(("option", "value"), [
    ("locales", "de_DE"), ("locales", "german"), ("nlu_models", "de"),
    ("nlu_models", "deutsch=/x"), ("asr_multilingual_model", "tiny.en")])
def test_bad_locale_settings_fail_when_built(option: str, value: str) -> None:
    with pytest.raises(ConfigError, match=option):
        Settings.from_mapping({option: value})


class Recording:
    """An engine that records what it was asked for."""

    name = "fake"

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def transcribe(self, audio: Float32Array, *, phrases: Sequence[str] = (),
                   bias_weight: float = 0.0, phrase_bonus: float = 0.0,
                   strong_weight: float = 0.0, nbest: int = 5,
                   grammar: Sequence[str] = (), language: str = "en") -> list[Hypothesis]:
        self.calls.append({"language": language, "phrase_bonus": phrase_bonus,
                           "strong_weight": strong_weight, "bias_weight": bias_weight,
                           "phrases": tuple(phrases)})
        return [Hypothesis("schalte das licht ein", -0.2)]


async def asr_run(settings: Settings, ctx: dict[str, Any]) -> tuple[Sent, Recording]:
    sent, engine = Sent(), Recording()
    svc = AsrService(settings, sent, lambda: engine, contexts={"d": ctx})
    await feed_audio(svc, 1.5)
    await endpoint_event(svc, ep(SPEC, 0))
    await settle(svc)
    return sent, engine


async def test_asr_tells_the_engine_the_locale_s_language_without_english_phonetics() -> None:
    sent, engine = await asr_run(WITH_MODELS, {"locale": "de-DE", "appliances": ["Backofen"]})
    (call,) = engine.calls
    assert call["language"] == "de"
    # Names still bias the search (tokens), but the English sound-alike pass is off.
    assert call["phrases"] == ("Backofen",) and call["bias_weight"] > 0
    assert call["phrase_bonus"] == 0 and call["strong_weight"] == 0
    (transcript,) = sent.messages
    assert isinstance(transcript, Transcript)
    assert (transcript.locale, transcript.language) == ("de-DE", "de")


async def test_asr_keeps_english_phonetics_for_english_devices() -> None:
    _, engine = await asr_run(Settings(), {"locale": "en-GB", "appliances": ["Neato vacuum"]})
    (call,) = engine.calls
    assert call["language"] == "en" and call["phrase_bonus"] > 0 and call["strong_weight"] > 0


@pytest.mark.parametrize("decoder", ["moonshine", "whisper"])
async def test_each_engine_gets_its_own_context_settings(decoder: str) -> None:
    settings = Settings.from_mapping({"asr_bias_weight": 1.5, "asr_phrase_bonus": 11,
                                      "asr_strong_weight": 3, "asr_moonshine_bias_weight": 4.5,
                                      "asr_moonshine_phrase_bonus": 33,
                                      "asr_moonshine_strong_weight": 5})
    sent, engine = Sent(), Recording()
    engine.name = decoder
    svc = AsrService(settings, sent, lambda: engine,
                     contexts={"d": {"locale": "en-US", "appliances": ["Neato vacuum"]}})
    await feed_audio(svc, 1.5)
    await endpoint_event(svc, ep(SPEC, 0))
    await settle(svc)
    (call,) = engine.calls
    weights = (call["bias_weight"], call["phrase_bonus"], call["strong_weight"])
    assert weights == ((4.5, 33, 5) if decoder == "moonshine" else (1.5, 11, 3))
    (transcript,) = sent.messages
    assert isinstance(transcript, Transcript) and transcript.engine == decoder


#: German listed in locales, but no NLU model for it.
NO_GERMAN = Settings(nlu_models="ar=multilingual,zh=multilingual")


@pytest.mark.parametrize("locale", ["xx-XX", "de-DE"])  # de-DE: no German NLU model set
async def test_asr_ends_an_unsupported_locale_with_the_coded_outcome(locale: str) -> None:
    sent, engine = await asr_run(NO_GERMAN, {"locale": locale})
    assert engine.calls == []  # nothing was recognised as if it were English
    (error,) = sent.messages
    assert isinstance(error, ErrorEvent)
    assert (error.code, error.stage) == ("locale-unsupported", "asr")
    assert locale in error.message


class Paths:
    """A model factory that records which directory each model came from."""

    def __init__(self) -> None:
        self.loaded: list[Path | None] = []

    def __call__(self, path: Path | None = None) -> nlu.FakeModel:
        self.loaded.append(path)
        return nlu.FakeModel()


def said(kind: EndpointKind, text: str) -> bytes:
    """A transcript of revision 0 holding ``text``."""
    return encode(Transcript(device_id="d1", utterance_id="u1", kind=kind, revision=0,
                             at_ms=900, t_ms=1000, engine="fake",
                             nbest=(NBest(text=text, score=-0.1),)), Codec.JSON)


async def test_nlu_reads_with_the_locale_s_model_and_normaliser() -> None:
    factory, sent = Paths(), nlu.Sent()
    svc = NluService(WITH_MODELS, sent, factory, contexts={"d1": {"locale": "zh-CN"}})
    for kind in (EndpointKind.SPECULATIVE, EndpointKind.FINAL):
        await svc.on_event(nlu.ORIGIN, said(kind, "打開廚房的燈。"))
        await nlu._settle(svc)
    assert factory.loaded == [Path("/models/multi")]  # loaded once, from zh's directory
    final = sent.messages[-1]
    assert isinstance(final, Interpretations) and final.locale == "zh-CN"
    assert final.best is not None
    assert final.best.text == "打开厨房的灯"  # simplified, punctuation dropped
    svc.close()


async def test_nlu_refuses_a_locale_that_became_unsupported() -> None:
    sent = nlu.Sent()
    svc = NluService(Settings(nlu_models="de=multilingual"), sent, Paths(),
                     contexts={"d1": {"locale": "ar-SA"}})
    for kind in (EndpointKind.SPECULATIVE, EndpointKind.FINAL):
        await svc.on_event(nlu.ORIGIN, nlu.transcript(kind, 0))
        await nlu._settle(svc)
    (error,) = sent.messages
    assert isinstance(error, ErrorEvent) and error.code == "locale-unsupported"
    svc.close()


def test_nlu_keeps_english_text_as_massive_writes_it() -> None:
    svc = NluService(Settings(), nlu.Sent(), Paths())
    assert svc.core().normalise("Wake me up at 730.") == "wake me up at seven thirty"
    german = svc.core(Route("de-DE", "de", "base", "", False))
    assert german.normalise("Weck mich um 7 Uhr!") == "weck mich um 7 uhr"


LANGUAGES = Registry.parse({"skill": [
    {"name": "lights-de", "intents": ["iot_*"], "languages": ["de"], "priority": 5},
    {"name": "lights", "intents": ["iot_*"], "languages": ["en"]},
    {"name": "anywhere", "intents": ["weather_query"]},
]})


def test_the_arbiter_routes_to_skills_that_serve_the_request_s_language() -> None:
    light = arb.hyp("iot_hue_lighton", 0.9)
    arbiter = Arbiter(LANGUAGES)
    choice = arbiter.choose([light], None, "de")
    assert choice.skill is not None and choice.skill.name == "lights-de"
    choice = arbiter.choose([light], None, "en")
    assert choice.skill is not None and choice.skill.name == "lights"
    choice = arbiter.choose([light], None, "ar")
    assert choice.skill is None and choice.reason is DeclineReason.NO_CAPABLE_SKILL
    assert "'ar'" in choice.explanation
    weather = arbiter.choose([arb.hyp("weather_query", 0.9)], None, "zh")
    assert weather.skill is not None and weather.skill.name == "anywhere"  # default: '*'


def test_registry_languages_are_validated() -> None:
    with pytest.raises(Exception, match="languages must be"):
        Registry.parse({"skill": [{"name": "a", "intents": ["x"], "languages": ["German"]}]})


async def test_directives_carry_the_locale() -> None:
    sent = arb.Sent()
    svc = ArbiterService(Settings(), sent, LANGUAGES, check_liveness=False)
    msg = Interpretations(device_id="d1", utterance_id="u1", kind=EndpointKind.FINAL,
                          revision=0, t_ms=1000, locale="de-DE",
                          interpretations=(Meaning(intent="iot_hue_lighton", score=0.9),))
    await svc.on_event(arb.ORIGIN, encode(msg, Codec.JSON))
    (outcome,) = sent.on("directives")
    assert isinstance(outcome, Directive)
    assert (outcome.skill, outcome.locale) == ("lights-de", "de-DE")
    msg = Interpretations(device_id="d1", utterance_id="u2", kind=EndpointKind.FINAL,
                          revision=0, t_ms=1000, locale="ar-SA",
                          interpretations=(Meaning(intent="iot_hue_lighton", score=0.9),))
    await svc.on_event(arb.ORIGIN, encode(msg, Codec.JSON))
    declined = sent.on("directives")[-1]
    assert isinstance(declined, Declined) and declined.reason is DeclineReason.NO_CAPABLE_SKILL



async def test_a_missing_language_model_is_a_coded_error_not_a_crash(tmp_path: Path) -> None:
    from models.nlu.inference import NluOnnx

    sent = nlu.Sent()
    settings = Settings(nlu_models=f"de={tmp_path / 'nothing'}")
    svc = NluService(settings, sent, NluOnnx, contexts={"d1": {"locale": "de-DE"}})
    await svc.warm_up()  # logs the German model as unavailable; English still loads
    assert svc.loaded
    for kind in (EndpointKind.SPECULATIVE, EndpointKind.FINAL):
        await svc.on_event(nlu.ORIGIN, said(kind, "Schalte das Licht ein."))
        await nlu._settle(svc)
    (error,) = sent.messages
    assert isinstance(error, ErrorEvent) and error.code == "nlu-model-missing"
    svc.close()


def test_moonshine_routes_other_languages_to_the_multilingual_whisper() -> None:
    route = LocaleRouter(Settings(asr_engine="moonshine")).route("de-DE")
    assert (route.language, route.asr_model) == ("de", "base")
