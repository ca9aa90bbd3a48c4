"""Measure our ASR's real confusions of rare names: espeak-ng speaks them, Whisper hears them.

The simulator's name-misrecognition defects come from this table, not from
invented typos. Made (and re-made) with::

    python -m models.rewrite.confusions --data ../shared/data/massive-en-US/train.jsonl \\
        --limit 160 --out models/rewrite/confusions.json

It speaks each rare slot value (artists, people, places, songs, ...) of
MASSIVE en-US train with espeak-ng (voices en-us and en-gb-x-rp), runs it
through Whisper tiny.en (int8, as the ASR stage does) and keeps the values
heard as something else.
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import wave
from collections import Counter
from pathlib import Path

import numpy as np
import soxr

from models.nlu.massive import parse_annotation
from streams.rewrite import form

#: Where the committed table lives.
DEFAULT_TABLE = Path(__file__).resolve().parent / "confusions.json"
#: Slot types whose rare values are the names people ask for.
NAME_SLOTS = ("artist_name", "person", "place_name", "song_name", "business_name",
              "player_setting", "radio_name", "podcast_name", "house_place", "relation")
VOICES = ("en-us", "en-gb-x-rp")


def rare_names(path: Path, limit: int) -> list[tuple[str, str]]:
    """The ``limit`` rarest name-like slot values of a MASSIVE file, as (slot type, value)."""
    counts: Counter[tuple[str, str]] = Counter()
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        _text, slots = parse_annotation(json.loads(line)["annot_utt"])
        for s in slots:
            if s.type in NAME_SLOTS and len(s.value) > 3:
                counts[s.type, s.value] += 1
    rare = sorted((c, t, v) for (t, v), c in counts.items() if c <= 2)
    step = max(1, len(rare) // limit)
    return [(t, v) for _c, t, v in rare[::step][:limit]]


def speak(text: str, voice: str) -> np.ndarray:
    """``text`` spoken by espeak-ng as 16 kHz mono float32."""
    wav = subprocess.run(["espeak-ng", "-v", voice, "-s", "150", "--stdout", text],
                         check=True, capture_output=True).stdout
    with wave.open(io.BytesIO(wav)) as w:
        rate = w.getframerate()
        pcm = np.frombuffer(w.readframes(w.getnframes()), np.int16).astype(np.float32) / 32768
    return np.asarray(soxr.resample(pcm, rate, 16_000), np.float32)


def main() -> None:
    """Measure and write the confusion table."""
    from models.asr import WhisperEngine

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path("../shared/data/massive-en-US/train.jsonl"))
    ap.add_argument("--limit", type=int, default=160)
    ap.add_argument("--out", type=Path, default=DEFAULT_TABLE)
    args = ap.parse_args()
    engine = WhisperEngine(model="tiny.en")
    rows = []
    names = rare_names(args.data, args.limit)
    for i, (slot, value) in enumerate(names):
        for voice in VOICES:
            hyps = engine.transcribe(speak(value, voice), nbest=1)
            heard = hyps[0].text if hyps else ""
            if form(heard) and form(heard) != form(value):
                rows.append({"slot": slot, "said": value, "heard": form(heard), "voice": voice})
        print(f"{i + 1}/{len(names)} {len(rows)} confusions", flush=True)
    args.out.write_text(json.dumps({"command": "python -m models.rewrite.confusions --limit "
                                    f"{args.limit}", "spoken": len(names) * len(VOICES),
                                    "asr": "whisper tiny.en int8", "confusions": rows},
                                   indent=1, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
