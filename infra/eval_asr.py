"""ASR evaluation: WER on real spoken digits and espeak MASSIVE dev sentences, name recall.

Sets (built once into ``DATA/``, deterministic):

* ``digits``: the Free Spoken Digit Dataset files in ``shared/data/fsdd-dev``
  (real speech, 8 kHz, 6 speakers), read in place.
* ``massive``: MASSIVE en-US **dev** sentences spoken by espeak-ng. Voice ``en-us``
  was used while tuning; ``en-gb-x-rp``, ``en-029`` and ``en-us+f3`` were not.
* ``names``: commands with uncommon contact and appliance names, in the held-out
  voices, scored with and without a 200-phrase context list that contains them.
* ``names-tune``: the same kind of commands with *other* names, in the tuning
  voice, with their own 200-phrase list: what the biasing settings were tuned
  on, so that ``names`` stays a held-out figure.

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

from infra.eval_endpoint import read_pcm, speak
from infra.inputs import InputFileError, read_jsonl
from models.asr import Engine
from models.textnorm import corpus_wer, normalize

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
TUNE_FIRST = ("Aurelio Berenike Cosimo Dagny Eulalia Fionnuala Gaspard Hyacinth Ingeborg "
              "Jolanta Kazimiera Lucasta Mstislav Nkechi Orsolya Pieternella Quirinus "
              "Radegund Sigrun Tancredi").split()
TUNE_LAST = ("Brzezinski Ekwueme Farquharson Grzybowski Hakkinen Iwuchukwu Jablonski "
             "Kilpatrick Lewandowska Montmorency Nwachukwu Ostrowski Pietrangeli Quigley "
             "Rzepecki Stavropoulos Terwilliger Urquhart Vukovic Wierzbicki").split()
TUNE_APPLIANCES = ("Kenwood mixer", "Breville toaster", "Ninja air fryer", "Gaggia grinder",
                   "Neato vacuum")
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


def context_names(*, tune: bool = False) -> list[str]:
    """Return a 200-phrase context list: every target plus distractors.

    ``tune`` gives the list of the ``names-tune`` set instead of ``names``.
    """
    first, last = (TUNE_FIRST, TUNE_LAST) if tune else (FIRST, LAST)
    targets = [f"{f} {s}" for f, s in zip(first, last, strict=True)]
    distractors = [f"{first[i]} {last[(i * 7 + k) % len(last)]}"
                   for k in range(1, 12) for i in range(len(first))]
    # The targets first: a list cut at 200 must never drop one of them.
    names = list(dict.fromkeys([*targets, *(TUNE_APPLIANCES if tune else APPLIANCES),
                                *distractors]))
    return names[:200]


def _name_items(first: tuple[str, ...] | list[str], last: tuple[str, ...] | list[str],
                appliances: tuple[str, ...]) -> list[tuple[str, str]]:
    targets = [f"{f} {s}" for f, s in zip(first, last, strict=True)]
    items = [(CONTACT_TEMPLATES[i % len(CONTACT_TEMPLATES)].format(n), n)
             for i, n in enumerate(targets)]
    items += [(APPLIANCE_TEMPLATES[i % len(APPLIANCE_TEMPLATES)].format(a), a)
              for i, a in enumerate(appliances)]
    return items


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
    for i, (text, target) in enumerate(_name_items(FIRST, LAST, APPLIANCES)):
        voice = HELD_OUT_VOICES[i % len(HELD_OUT_VOICES)]
        name = f"names-{i:03d}.wav"
        _write(out / name, speak(text, voice, rng.randint(150, 180)))
        rows.append({"set": "names", "file": name, "text": text, "voice": voice,
                     "name": target})
    (out / "labels.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    build_tune(out)


def build_tune(out: Path, *, seed: int = 23) -> None:
    """Build the ``names-tune`` set (tuning voice, its own names) into ``out``."""
    rng = random.Random(seed)
    rows: list[dict[str, Any]] = []
    for i, (text, target) in enumerate(_name_items(TUNE_FIRST, TUNE_LAST, TUNE_APPLIANCES)):
        name = f"names-tune-{i:03d}.wav"
        _write(out / name, speak(text, TUNING_VOICES[0], rng.randint(150, 180)))
        rows.append({"set": "names-tune", "file": name, "text": text,
                     "voice": TUNING_VOICES[0], "name": target})
    (out / "labels-tune.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def _read(path: Path) -> np.ndarray:
    pcm, rate = read_pcm(path)
    x = np.frombuffer(pcm, "<i2").astype(np.float32) / 32768
    return x if rate == RATE else soxr.resample(x, rate, RATE).astype(np.float32)


#: The espeak-ng (stress) sets and the real digits, as ``--sets`` names them.
SETS = ("digits", "massive", "names", "names-tune")
#: What each labelled utterance must hold, and its type.
FIELDS = {"set": str, "file": str, "text": str, "voice": str}


def load(data: Path, shared: Path) -> list[dict[str, Any]]:
    """Return every labelled utterance: the built sets plus the spoken digits."""
    if not (data / "labels-tune.jsonl").exists():
        build_tune(data)  # a set added after ``data`` was built
    rows = []
    for name in ("labels.jsonl", "labels-tune.jsonl"):
        for line, row in read_jsonl(data / name, FIELDS, what="a labelled utterance"):
            row["path"] = data / row["file"]
            if not row["path"].is_file():
                raise InputFileError(data / name, f"{row['file']}: no such file", line=line)
            rows.append(row)
    for f in sorted((shared / "fsdd-dev").glob("*.wav")):
        rows.append({"set": "digits", "path": f, "text": DIGITS[int(f.name[0])],
                     "voice": f.name.split("_")[1]})
    return rows


def evaluate(engine: Engine, rows: list[dict[str, Any]], *, phrases: list[str],
             bias_weight: float, phrase_bonus: float = 0.0, strong_weight: float = 0.0,
             sets: tuple[str, ...] = ("digits", "massive", "names", "names-tune"),
             progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Decode every row of ``sets``; return WER, name recall and compute figures.

    ``phrases`` is the context of ``massive`` and ``names``; ``names-tune`` has its own.
    """
    chosen = [r for r in rows if r["set"] in sets]
    contexts = {"names-tune": context_names(tune=True)}
    results: dict[str, dict[str, list[tuple[str, str]]]] = {}
    compute: dict[str, list[float]] = {}
    audio_s = 0.0
    recall: dict[str, dict[str, list[bool]]] = {}
    done, total = 0, len(chosen) * 2
    for label in ("plain", "context"):
        for row in chosen:
            audio = _read(row["path"])
            grammar = DIGIT_GRAMMAR if row["set"] == "digits" and label == "context" else ()
            context = contexts.get(row["set"], phrases) if label == "context" else []
            start = time.perf_counter()
            hyps = engine.transcribe(audio, phrases=() if grammar else context,
                                     bias_weight=bias_weight, phrase_bonus=phrase_bonus,
                                     strong_weight=strong_weight, nbest=1, grammar=grammar)
            elapsed = time.perf_counter() - start
            compute.setdefault(label, []).append(elapsed * 1000)
            if label == "plain":
                audio_s += audio.size / RATE
            hyp = hyps[0].text if hyps else ""
            key = f"{row['set']}/{row['voice']}" if row["set"] == "massive" else row["set"]
            results.setdefault(label, {}).setdefault(key, []).append((row["text"], hyp))
            if "name" in row:
                recall.setdefault(label, {}).setdefault(row["set"], []).append(
                    normalize(row["name"]) in normalize(hyp))
            done += 1
            if progress is not None:
                progress(done, total)
    report: dict[str, Any] = {"engine": engine.name, "bias_weight": bias_weight,
                              "phrase_bonus": phrase_bonus, "strong_weight": strong_weight}
    for label, groups in results.items():
        section: dict[str, Any] = {}
        for key, pairs in sorted(groups.items()):
            section[f"wer_{key}"] = corpus_wer(pairs)
        massive = [p for k, v in groups.items() if k.startswith("massive/") for p in v]
        held = [p for k, v in groups.items() if k.startswith("massive/")
                and k.split("/")[1] in HELD_OUT_VOICES for p in v]
        if massive:
            section["wer_massive"] = corpus_wer(massive)
            section["wer_massive_held_out_voices"] = corpus_wer(held)
        for name_set, hits in sorted(recall.get(label, {}).items()):
            suffix = "" if name_set == "names" else "_" + name_set.split("-")[1]
            section[f"name_recall{suffix}"] = round(float(np.mean(hits)), 4)
        times = compute.get(label, [])
        section["compute_ms_p50"] = round(float(np.percentile(times, 50)), 1) if times else None
        section["compute_ms_p95"] = round(float(np.percentile(times, 95)), 1) if times else None
        report[label] = section
    plain = compute.get("plain", [])
    report["compute_ms_p50"] = report.get("plain", {}).get("compute_ms_p50")
    report["compute_ms_p95"] = report.get("plain", {}).get("compute_ms_p95")
    report["real_time_factor"] = round(sum(plain) / 1000 / audio_s, 4) if audio_s else None
    report["utterances"] = len(chosen)
    return report
