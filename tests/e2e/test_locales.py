"""Other languages through the CLI: a device's locale routes recognition and understanding.

The worker runs with the default settings: de, ar and zh are served by the
bundled multilingual NLU model (``nlu_models``), with Whisper base, the
locale's language token and the locale's normaliser. The commands are espeak-ng
speech (no natural German or Arabic voice ships in a package); Whisper base
hears each well enough for the right directive (the Arabic one's verb it
mishears, "شراء موسيقى", buy music, but not the music: README, Other
languages).
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import jsonschema
import pytest

from infra.demo import LANGUAGE_COMMANDS, audio_path
from infra.process import Process
from models.textnorm import normalizer_for
from tests.conftest import (
    VOICESTREAM,
    env_with,
    event_schema,
    isolated,
)

pytestmark = pytest.mark.broker

Stack = tuple[str, dict[str, str]]


@pytest.fixture(scope="module")
def multi_stack(broker_kind: str, request: pytest.FixtureRequest,
                tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """``voicestream up --skills`` (de, ar and zh by the bundled multilingual model), on
    topics of its own; yields the broker URL and the environment its clients need."""
    data = tmp_path_factory.mktemp(f"locales-{broker_kind}")
    url = request.getfixturevalue("kafka_cluster").url if broker_kind == "kafka" else ""
    env = isolated(data, url)
    proc = Process(["up", "--skills"], env_with(**env))
    try:
        yield proc.wait_ready(180), env  # on Kafka, under a full suite, joining can be slow
    finally:
        code = proc.stop()
        proc.kill()
        assert code == 0, "\n".join(proc.stderr[-20:])


@pytest.fixture(scope="module")
def spoken() -> dict[str, Path]:
    """The demo's command in each language (espeak-ng, committed: ``infra.demo``)."""
    files = {"de-DE": "licht_aus_de.wav", "zh-CN": "ge_zh.wav", "ar-SA": "musiqa_ar.wav"}
    assert set(files.values()) == {name for name, _, _ in LANGUAGE_COMMANDS}
    return {locale: audio_path(name) for locale, name in files.items()}


def set_locale(stack: Stack, device: str, locale: str) -> None:
    broker, env = stack
    run = subprocess.run([*VOICESTREAM, "context", "--device", device, "--broker", broker,
                          "--set", f"locale={locale}"], capture_output=True, text=True,
                         timeout=60, env=env_with(**env))
    assert run.returncode == 0, run.stderr


def send(stack: Stack, wav: Path, device: str) -> tuple[int, list[dict[str, object]]]:
    """``voicestream send --json --fast`` on the stack's topics; exit status and events."""
    broker, env = stack
    run = subprocess.run([*VOICESTREAM, "send", str(wav), "--device", device, "--broker",
                          broker, "--json", "--fast"], capture_output=True, text=True,
                         timeout=90, env=env_with(**env))
    events = [json.loads(line) for line in run.stdout.splitlines() if line.startswith("{")]
    for event in events:  # the contract's schemas hold for the new fields too
        jsonschema.validate(event, event_schema(event["type"]))
    return run.returncode, events


def of_type(events: list[dict[str, object]], kind: str) -> list[dict[str, object]]:
    return [e for e in events if e["type"] == kind]


def best_text(event: dict[str, object]) -> str:
    nbest = event["nbest"]
    assert isinstance(nbest, list) and nbest
    return str(nbest[0]["text"])


def lower_case(text: str) -> bool:
    return text == text.lower() and "." not in text


def chinese(text: str) -> bool:
    """Han characters, the full-width comma and stop dropped."""
    return any("\u4e00" <= c <= "\u9fff" for c in text) and not any(
        p in text for p in "\uff0c\u3002")


def arabic(text: str) -> bool:
    return any("\u0621" <= c <= "\u064a" for c in text) and "\u0629" not in text


@pytest.mark.parametrize(("locale", "language", "heard", "nlu_check", "intent", "skill"), [
    # Transcripts measured with these voices (see README, Other languages).
    ("de-DE", "de", "Licht", lower_case, "iot_hue_lightoff", "smart-home"),  # "…Licht aus"
    ("zh-CN", "zh", "歌", chinese, "play_music", "media"),  # "播放一首歌", play a song
    ("ar-SA", "ar", "موسيقى", arabic, "play_music", "media"),  # "شغل موسيقى", play music
])
def test_the_locale_routes_recognition_and_understanding(
        multi_stack: Stack, spoken: dict[str, Path], locale: str, language: str, heard: str,
        nlu_check: Callable[[str], bool], intent: str, skill: str) -> None:
    device = f"loc-{language}"
    set_locale(multi_stack, device, locale)
    code, events = send(multi_stack, spoken[locale], device)
    assert code == 0
    final = [t for t in of_type(events, "transcript") if t["kind"] == "final"][-1]
    # Whisper base with the locale's language token wrote it in that language.
    assert (final["locale"], final["language"], final["engine"]) == (locale, language,
                                                                    "whisper")
    assert heard in best_text(final)
    interpretation = [i for i in of_type(events, "interpretation") if i["kind"] == "final"][-1]
    assert interpretation["locale"] == locale
    readings = interpretation["interpretations"]
    assert isinstance(readings, list) and readings
    # The locale's normaliser ran before the model: lower case, no punctuation,
    # Chinese in simplified characters, Arabic spellings unified.
    nbest = final["nbest"]
    assert isinstance(nbest, list)
    for reading in readings:
        said = str(nbest[int(reading["asr_rank"])]["text"])
        assert reading["text"] == normalizer_for(locale)(said)
        assert nlu_check(reading["text"])
    # One outcome: the command reaches its skill.
    (outcome,) = [e for e in events if e["type"] in ("directive", "declined", "error")]
    assert outcome["type"] == "directive", (outcome.get("reason"), interpretation)
    assert outcome["locale"] == locale
    assert (outcome["intent"], outcome["skill"]) == (intent, skill), outcome


@pytest.mark.parametrize("locale", ["xx-XX", "fr-FR"])
def test_an_unsupported_locale_gets_the_coded_outcome_and_no_skill_acts(
        multi_stack: Stack, spoken: dict[str, Path], locale: str) -> None:
    device = f"loc-{locale.lower()}"
    set_locale(multi_stack, device, locale)
    code, events = send(multi_stack, spoken["de-DE"], device)
    assert code == 1  # an error outcome
    (outcome,) = [e for e in events if e["type"] in ("directive", "declined", "error")]
    assert (outcome["type"], outcome["code"], outcome["stage"]) == \
        ("error", "locale-unsupported", "asr")
    assert locale in str(outcome["message"])
    # Nothing was recognised as English, interpreted, or sent to a skill.
    assert of_type(events, "transcript") == [] and of_type(events, "interpretation") == []
    assert of_type(events, "skill-response") == []

