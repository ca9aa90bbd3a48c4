"""ASR evaluation: WER on real spoken digits and espeak MASSIVE dev sentences, name recall.

Sets (built once into ``DATA/``, deterministic):

* ``digits``: the Free Spoken Digit Dataset files in ``shared/data/fsdd-dev``
  (real speech, 8 kHz, 6 speakers), read in place.
* ``massive``: MASSIVE en-US **dev** sentences spoken by espeak-ng. Voice ``en-us``
  was used while tuning; ``en-gb-x-rp``, ``en-029`` and ``en-us+f3`` were not.
* ``names``: commands with uncommon contact and appliance names, in the held-out
  voices, scored with and without a 200-phrase context list that contains them.

Each set is decoded twice: ``plain`` (no context) and ``context``: the digits
with the grammar a device asking for a digit would set, the sentences and
names with the 200-phrase list active.
"""

from __future__ import annotations

import json
import random
import time
import wave
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import soxr

from infra.eval_endpoint import speak
from models.asr import Engine
from models.textnorm import edit_distance, normalize

RATE = 16000
TUNING_VOICES = ("en-us",)
HELD_OUT_VOICES = ("en-gb-x-rp", "en-029", "en-us+f3")
FIRST = ("Siobhan Tadeusz Ngozi Anneliese Xiomara Leocadia Bartholomew Ignatius Oluwaseun "
         "Zbigniew Evangelina Radomir Thaddeus Marisol Yevgenia Kwabena Seraphina Casimir "
         "Ottoline Perpetua Dashiell Florentyna Gwendolyn Ezekiel Isadora Lysander Mireille "
         "Octavian Philippa Rosalind").split()
LAST = ("Kowalczyk Okonkwo Abernathy Vandersloot Przybylski Oyelaran Castellanos Haverbrook "
        "Szczepanski Thorvaldsen Wojciechowski Achterberg Mbatha Delacroix Fitzwilliam "
        "Gruszecki Hollingsworth Jankowiak Kaczmarek Lindqvist Nakagawa Oduya Pemberton "
        "Quaresma Rasmussen Sandoval Villanueva Whitlock Xenakis Zielinski").split()
APPLIANCES = ("Thermomix", "Vorwerk hoover", "Miele dishwasher", "Nespresso machine",
              "Dyson fan", "Bosch dryer", "Tado thermostat", "Roborock", "Sonos speaker",
              "Weber grill")
CONTACT_TEMPLATES = ("call {}", "send a message to {}", "text {} that I am running late",
                     "phone {} on the mobile", "email {} about the meeting")
APPLIANCE_TEMPLATES = ("turn on the {}", "switch off the {}", "is the {} running")
DIGITS = "zero one two three four five six seven eight nine".split()
#: The grammar a device asking for a digit would set: the words and the numerals.
DIGIT_GRAMMAR = (*DIGITS, *map(str, range(10)))


def _write(path: Path, audio: np.ndarray) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes((np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes())


def context_names() -> list[str]:
    """Return the 200-phrase context list: every target plus distractors."""
    targets = [f"{f} {s}" for f, s in zip(FIRST, LAST, strict=True)]
    distractors = [f"{FIRST[i]} {LAST[(i * 7 + k) % len(LAST)]}"
                   for k in range(1, 7) for i in range(len(FIRST))]
    names = list(dict.fromkeys(targets + [d for d in distractors if d not in targets]))
    return (names + list(APPLIANCES))[:200]


def build(out: Path, shared: Path, *, sentences: int = 60, seed: int = 11) -> None:
    """Build the ``massive`` and ``names`` sets into ``out``."""
    rng = random.Random(seed)
    out.mkdir(parents=True, exist_ok=True)
    dev = shared / "massive-en-US" / "dev.jsonl"
    texts = [json.loads(x)["utt"] for x in dev.read_text().splitlines()]
    texts = [t for t in texts if 3 <= len(t.split()) <= 14]
    rng.shuffle(texts)
    rows: list[dict[str, Any]] = []
    for i, text in enumerate(texts[:sentences]):
        for voice in TUNING_VOICES + HELD_OUT_VOICES:
            name = f"massive-{i:03d}-{voice.replace('+', '_')}.wav"
            _write(out / name, speak(text, voice, rng.randint(150, 180)))
            rows.append({"set": "massive", "file": name, "text": text, "voice": voice})
    targets = [f"{f} {s}" for f, s in zip(FIRST, LAST, strict=True)]
    items = [(CONTACT_TEMPLATES[i % len(CONTACT_TEMPLATES)].format(n), n)
             for i, n in enumerate(targets)]
    items += [(APPLIANCE_TEMPLATES[i % len(APPLIANCE_TEMPLATES)].format(a), a)
              for i, a in enumerate(APPLIANCES)]
    for i, (text, target) in enumerate(items):
        voice = HELD_OUT_VOICES[i % len(HELD_OUT_VOICES)]
        name = f"names-{i:03d}.wav"
        _write(out / name, speak(text, voice, rng.randint(150, 180)))
        rows.append({"set": "names", "file": name, "text": text, "voice": voice,
                     "name": target})
    (out / "context.json").write_text(json.dumps({"contacts": context_names()}, indent=1))
    (out / "labels.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def _read(path: Path) -> np.ndarray:
    with wave.open(str(path), "rb") as w:
        x = np.frombuffer(w.readframes(w.getnframes()), "<i2").astype(np.float32) / 32768
        rate = w.getframerate()
    return x if rate == RATE else soxr.resample(x, rate, RATE).astype(np.float32)


def load(data: Path, shared: Path) -> list[dict[str, Any]]:
    """Return every labelled utterance: the built sets plus the spoken digits."""
    rows = [json.loads(x) for x in (data / "labels.jsonl").read_text().splitlines()]
    for row in rows:
        row["path"] = data / row["file"]
    for f in sorted((shared / "fsdd-dev").glob("*.wav")):
        rows.append({"set": "digits", "path": f, "text": DIGITS[int(f.name[0])],
                     "voice": f.name.split("_")[1]})
    return rows


def _wer(pairs: list[tuple[str, str]]) -> float | None:
    words = sum(len(normalize(r).split()) for r, _ in pairs)
    if not words:
        return None
    errors = sum(edit_distance(normalize(r).split(), normalize(h).split()) for r, h in pairs)
    return round(errors / words, 4)


def evaluate(engine: Engine, rows: list[dict[str, Any]], *, phrases: list[str],
             bias_weight: float, sets: tuple[str, ...] = ("digits", "massive", "names"),
             progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Decode every row of ``sets``; return WER, name recall and compute figures."""
    chosen = [r for r in rows if r["set"] in sets]
    runs: list[tuple[str, list[str]]] = [("plain", []), ("context", phrases)]
    results: dict[str, dict[str, list[tuple[str, str]]]] = {}
    compute: list[float] = []
    audio_s = 0.0
    recall: dict[str, list[bool]] = {}
    done, total = 0, len(chosen) * len(runs)
    for label, context in runs:
        for row in chosen:
            audio = _read(row["path"])
            start = time.perf_counter()
            grammar = DIGIT_GRAMMAR if row["set"] == "digits" and label == "context" else ()
            hyps = engine.transcribe(audio, phrases=() if grammar else context,
                                     bias_weight=bias_weight, nbest=1, grammar=grammar)
            elapsed = time.perf_counter() - start
            if label == "plain":
                compute.append(elapsed * 1000)
                audio_s += audio.size / RATE
            hyp = hyps[0].text if hyps else ""
            key = f"{row['set']}/{row['voice']}" if row["set"] == "massive" else row["set"]
            results.setdefault(label, {}).setdefault(key, []).append((row["text"], hyp))
            if row["set"] == "names":
                recall.setdefault(label, []).append(normalize(row["name"]) in normalize(hyp))
            done += 1
            if progress is not None:
                progress(done, total)
    report: dict[str, Any] = {"engine": engine.name, "bias_weight": bias_weight}
    for label, groups in results.items():
        section: dict[str, Any] = {}
        for key, pairs in sorted(groups.items()):
            section[f"wer_{key}"] = _wer(pairs)
        massive = [p for k, v in groups.items() if k.startswith("massive/") for p in v]
        held = [p for k, v in groups.items() if k.startswith("massive/")
                and k.split("/")[1] in HELD_OUT_VOICES for p in v]
        if massive:
            section["wer_massive"] = _wer(massive)
            section["wer_massive_held_out_voices"] = _wer(held)
        if label in recall:
            section["name_recall"] = round(float(np.mean(recall[label])), 4)
        report[label] = section
    report["compute_ms_p50"] = round(float(np.percentile(compute, 50)), 1) if compute else None
    report["compute_ms_p95"] = round(float(np.percentile(compute, 95)), 1) if compute else None
    report["real_time_factor"] = round(sum(compute) / 1000 / audio_s, 4) if audio_s else None
    report["utterances"] = len(chosen)
    return report
