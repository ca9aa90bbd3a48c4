"""NLU text handling: WordPiece with offsets, MASSIVE annotations, BIO tags and spans."""

from __future__ import annotations

from pathlib import Path

import pytest

from models.minilm import encoder_dir
from models.nlu.labels import Labels, encode, slot_f1, spans
from models.nlu.massive import Example, Slot, load, parse_annotation
from models.nlu.wordpiece import WordPiece

MASSIVE = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "massive-en-US"


@pytest.fixture(scope="module")
def wp() -> WordPiece:
    return WordPiece(encoder_dir() / "vocab.txt")


def test_basic_split_lowercases_strips_accents_and_splits_punctuation(wp: WordPiece) -> None:
    assert wp.words("Wake me at 9:30, Siobhán!") == [
        ("wake", 0, 4), ("me", 5, 7), ("at", 8, 10), ("9", 11, 12), (":", 12, 13),
        ("30", 13, 15), (",", 15, 16), ("siobhan", 17, 24), ("!", 24, 25)]


def test_wordpiece_uses_continuations_and_keeps_the_word_span(wp: WordPiece) -> None:
    pieces = wp.pieces("playing")
    assert [p.id for p in pieces] == [wp.vocab["playing"]]
    pieces = wp.pieces("siobhan")
    assert len(pieces) > 1 and all((p.start, p.end) == (0, 7) for p in pieces)
    assert wp.split_word("x" * 101) == [wp.unk]


def test_parse_annotation_gives_text_and_spans() -> None:
    text, slots = parse_annotation("wake me up at [time : nine am] on [date : friday]")
    assert text == "wake me up at nine am on friday"
    assert slots == (Slot("time", "nine am", 14, 21), Slot("date", "friday", 25, 31))
    assert all(text[s.start:s.end] == s.value for s in slots)


def test_every_massive_slot_span_matches_its_value() -> None:
    for split in ("train", "dev"):
        for ex in load(MASSIVE / f"{split}.jsonl"):
            assert all(ex.text[s.start:s.end] == s.value for s in ex.slots)


def test_bio_round_trip(wp: WordPiece) -> None:
    ex = Example("wake me up at nine am on friday", "alarm_set",
                 (Slot("time", "nine am", 14, 21), Slot("date", "friday", 25, 31)))
    labels = Labels(("alarm_set",), ("O", "B-date", "I-date", "B-time", "I-time"))
    enc = encode(ex.text, wp, labels, ex)
    tags = [labels.tags[enc.tags[p]] for p, _, _ in enc.word_starts]
    assert tags == ["O", "O", "O", "O", "B-time", "I-time", "O", "B-date"]
    assert spans(ex.text, enc.word_starts, tags) == list(ex.slots)
    assert enc.ids[0] == wp.cls and enc.ids[-1] == wp.sep


def test_stray_inside_tag_starts_a_slot(wp: WordPiece) -> None:
    enc = encode("play some jazz", wp)
    assert spans("play some jazz", enc.word_starts, ["O", "I-genre", "I-genre"]) == \
        [Slot("genre", "some jazz", 5, 14)]


def test_slot_f1_counts_exact_type_and_span() -> None:
    gold = [[Slot("time", "nine", 0, 4)], [Slot("date", "friday", 3, 9)]]
    pred = [[Slot("time", "nine", 0, 4)], [Slot("date", "frida", 3, 8)]]
    assert slot_f1(gold, pred) == pytest.approx(0.5)
