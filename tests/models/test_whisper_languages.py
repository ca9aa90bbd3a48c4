"""Whisper's language: the prompt's language token, and the model that serves each language."""

from __future__ import annotations

import pytest

from infra.eval_endpoint import speak
from models.asr import AsrError, WhisperEngine
from models.whisper.inference import WhisperOnnx, model_dir
from models.whisper.tokenizer import Tokenizer


@pytest.fixture(scope="module")
def engine() -> WhisperEngine:
    """tiny.en for English, base (loaded on first use) for the other languages."""
    return WhisperEngine(model="tiny.en", multilingual_model="base", word_times=False)


def test_the_prompt_names_the_language() -> None:
    base = Tokenizer(model_dir("base") / "tokenizer.json")
    sot, transcribe, bare = base.sot, base.vocab["<|transcribe|>"], base.no_timestamps
    assert base.prompt_for("de") == (sot, base.vocab["<|de|>"], transcribe, bare)
    assert base.prompt_for("ar") == (sot, base.vocab["<|ar|>"], transcribe, bare)
    assert base.prompt_for("zh") == (sot, base.vocab["<|zh|>"], transcribe, bare)
    assert base.prompt_for("en") == base.prompt  # English stays as it was
    assert len(base.languages) == 99
    with pytest.raises(ValueError, match="'xx'"):
        base.prompt_for("xx")


def test_an_english_only_vocabulary_has_no_other_language() -> None:
    tiny = Tokenizer(model_dir("tiny.en") / "tokenizer.json")
    assert tiny.languages == {"en"} and tiny.prompt_for("en") == tiny.prompt
    with pytest.raises(ValueError, match="'de'"):
        tiny.prompt_for("de")


def test_german_goes_to_the_multilingual_model_with_its_token(engine: WhisperEngine) -> None:
    audio = speak("schalte das Licht in der Küche ein", "de", 150)
    assert engine.model_for(audio, "en") is engine.model
    german = engine.model_for(audio, "de")
    assert german is not engine.model and german.tokenizer.multilingual
    (best, *_) = engine.transcribe(audio, language="de")
    # espeak-ng's German, heard as German (measured: "Schalten das Licht in Berküche ein.").
    assert "Licht" in best.text and "ein" in best.text


def test_the_language_token_changes_what_is_written(engine: WhisperEngine) -> None:
    audio = speak("打开厨房的灯", "cmn-latn-pinyin", 150)
    model: WhisperOnnx = engine.multilingual()
    chinese = model.transcribe(audio, language="zh", word_times=False)[0].text
    english = model.transcribe(audio, language="en", word_times=False)[0].text
    assert any("\u4e00" <= c <= "\u9fff" for c in chinese)  # Han characters
    assert not any("\u4e00" <= c <= "\u9fff" for c in english)


def test_a_language_whisper_lacks_is_locale_unsupported(engine: WhisperEngine) -> None:
    audio = speak("bonjour", "fr", 150)
    with pytest.raises(AsrError) as err:
        engine.transcribe(audio, language="xx")
    assert err.value.code == "locale-unsupported"
