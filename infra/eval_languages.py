"""Spoken commands in German, Arabic and Mandarin: what Whisper base writes for each,
and what the locale's NLU model (the bundled multilingual one) makes of it.

Run: python -m infra.eval_languages [--json] [--rate WPM]

Each command is synthesised with espeak-ng (robotic voices: ``de``, ``ar``
and ``cmn-latn-pinyin``; Debian's plain ``cmn`` voice reads the tone numbers
of its romanisation aloud in English, "da three kai one", so the pinyin voice
speaks the same characters with tones), recognised by the engine the worker
uses for the locale (Whisper base, prompt language token from the locale: what
:class:`agents.locales.LocaleRouter` chooses), and by the same model with
the English token for comparison (what voicestream did before locales were
routed). Prints every transcript and, per language, WER and CER with both
reference and hypothesis put through the locale's NLU normaliser
(:func:`models.textnorm.normalizer_for`: lower case, no punctuation, Arabic
spellings unified, Chinese in simplified characters). Chinese has no spaces,
so its WER is not reported; numbers are not spelled out (``7`` against
``sieben`` counts as an error). Each command's intent is read by the NLU model
the default settings give its locale, from the written command and from what
Whisper heard (both through the live normaliser), against :data:`EXPECTED`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from agents.locales import LocaleRouter
from infra.config import Settings
from infra.eval_endpoint import speak
from models.asr import WhisperEngine
from models.nlu.inference import NluOnnx
from models.textnorm import edit_distance, normalizer_for

#: Per locale: the espeak-ng voice and the commands (the skills' everyday requests).
COMMANDS: dict[str, tuple[str, tuple[str, ...]]] = {
    "de-DE": ("de", (
        "schalte das Licht in der Küche ein",
        "wie wird das Wetter morgen",
        "weck mich morgen um sieben Uhr",
        "spiel etwas Jazz",
        "stelle einen Timer für zehn Minuten",
    )),
    "ar-SA": ("ar", (
        "شغل الضوء في المطبخ",
        "ما هو الطقس غدا",
        "أيقظني الساعة السابعة صباحا",
        "شغل موسيقى الجاز",
        "اضبط مؤقتا لمدة عشر دقائق",
    )),
    "zh-CN": ("cmn-latn-pinyin", (
        "打开厨房的灯",
        "明天天气怎么样",
        "明天早上七点叫醒我",
        "播放一些爵士音乐",
        "设置一个十分钟的计时器",
    )),
}
#: The MASSIVE intent each command asks for, in :data:`COMMANDS`' order (the same in
#: every language); None: MASSIVE has no intent for it (timers: one train request).
EXPECTED: tuple[str | None, ...] = ("iot_hue_lighton", "weather_query", "alarm_set",
                                    "play_music", None)
#: The default settings: de, ar and zh served by the bundled multilingual model.
_ROUTABLE = Settings()


@dataclasses.dataclass(frozen=True, slots=True)
class Row:
    """One command: what was said and what each prompt made of it."""

    locale: str
    language: str
    said: str
    heard: str
    heard_with_en: str
    #: What the locale's NLU model made of the written command and of what was heard.
    intent_said: str = ""
    intent_heard: str = ""
    expected: str | None = None


def _errors(locale: str, ref: str, hyp: str) -> tuple[int, int, int, int]:
    """(word errors, words, character errors, characters) after the locale's normaliser."""
    # Spelling variants of one Arabic letter are not recognition errors.
    norm = normalizer_for(locale, arabic_letters=True)
    r, h = norm(ref), norm(hyp)
    chars_r, chars_h = list(r.replace(" ", "")), list(h.replace(" ", ""))
    return edit_distance(r.split(), h.split()), len(r.split()), \
        edit_distance(chars_r, chars_h), len(chars_r)


def run(rate_wpm: int = 150) -> list[Row]:
    """Synthesise, recognise and interpret every command; return the rows."""
    engine = WhisperEngine(model="tiny.en", multilingual_model="base", word_times=False)
    router = LocaleRouter(_ROUTABLE)
    models: dict[str, NluOnnx] = {}
    rows = []
    for locale, (voice, commands) in COMMANDS.items():
        route = router.route(locale)
        nlu = models.setdefault(route.nlu_dir, NluOnnx(Path(route.nlu_dir)))
        norm = normalizer_for(locale)
        for text, expected in zip(commands, EXPECTED, strict=True):
            audio = speak(text, voice, rate_wpm)
            heard = engine.transcribe(audio, language=route.language)
            model = engine.multilingual()
            english = model.transcribe(audio, language="en", word_times=False)
            said_text = heard[0].text if heard else ""
            readings = nlu.interpret_batch([norm(text), norm(said_text) or "-"], top_k=1)
            rows.append(Row(locale, route.language, text, said_text,
                            english[0].text if english else "", readings[0][0].intent,
                            readings[1][0].intent, expected))
    return rows


def summary(rows: list[Row]) -> dict[str, dict[str, float]]:
    """Per locale: WER and CER with the locale's token and with English's."""
    out: dict[str, dict[str, float]] = {}
    for locale in COMMANDS:
        mine = [r for r in rows if r.locale == locale]
        if not mine:
            continue
        for key, field in (("", "heard"), ("_en_token", "heard_with_en")):
            totals = [sum(x) for x in zip(
                *(_errors(locale, r.said, str(getattr(r, field))) for r in mine), strict=True)]
            we, words, ce, chars = totals
            out.setdefault(locale, {})[f"wer{key}"] = round(we / max(words, 1), 3)
            out[locale][f"cer{key}"] = round(ce / max(chars, 1), 3)
        scored = [r for r in mine if r.expected]
        if scored and any(r.intent_said for r in scored):
            out[locale]["intent_written"] = round(
                sum(r.intent_said == r.expected for r in scored) / len(scored), 3)
            out[locale]["intent_heard"] = round(
                sum(r.intent_heard == r.expected for r in scored) / len(scored), 3)
    return out


def main() -> None:
    """Print the transcripts and the error table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=int, default=150, help="espeak-ng words per minute")
    parser.add_argument("--json", action="store_true", help="one JSON object")
    args = parser.parse_args()
    rows = run(args.rate)
    table = summary(rows)
    if args.json:
        print(json.dumps({"rows": [dataclasses.asdict(r) for r in rows], "summary": table},
                         ensure_ascii=False))
        return
    for r in rows:
        print(f"{r.locale}  {r.said}  [{r.expected or 'no MASSIVE intent'}: {r.intent_said}]"
              f"\n    <|{r.language}|>: {r.heard}  [{r.intent_heard}]\n"
              f"    <|en|>: {r.heard_with_en}")
    print(f"\n{'locale':8} {'WER':>6} {'CER':>6} {'WER <|en|>':>11} {'CER <|en|>':>11}"
          f" {'intent, written':>16} {'intent, heard':>14}")
    for locale, m in table.items():
        wer = "-" if locale.startswith("zh") else f"{m['wer']:.3f}"
        wer_en = "-" if locale.startswith("zh") else f"{m['wer_en_token']:.3f}"
        print(f"{locale:8} {wer:>6} {m['cer']:>6.3f} {wer_en:>11} {m['cer_en_token']:>11.3f}"
              f" {m.get('intent_written', 0):>16.2f} {m.get('intent_heard', 0):>14.2f}")


if __name__ == "__main__":
    main()
