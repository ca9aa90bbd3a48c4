"""Sound keys and the sound-alike search that proposes context phrases to the decoder."""

from __future__ import annotations

import random

import pytest

from models.whisper.phonetic import SoundIndex, key_distance, sound_key


@pytest.mark.parametrize(("a", "b"), [
    ("Miele dishwasher", "meal dishwasher"),
    ("Florentyna Oduya", "Florentina Odouya"),
    ("Philippa", "Filipa"),
    ("Kowalczyk", "Kovalchik"),
    ("Szczepanski", "Shchepanski"),
    ("Cecile", "Sesil"),
])
def test_spellings_of_one_sound_have_near_keys(a: str, b: str) -> None:
    ka, kb = sound_key(a), sound_key(b)
    assert key_distance(ka, kb) / len(ka) <= 0.2, (ka, kb)


@pytest.mark.parametrize(("a", "b"), [
    ("Miele dishwasher", "Nespresso machine"),
    ("Siobhan", "Thermostat"),
    ("Roborock", "Nespresso"),
])
def test_different_words_have_far_keys(a: str, b: str) -> None:
    ka, kb = sound_key(a), sound_key(b)
    assert key_distance(ka, kb) / len(ka) > 0.5, (ka, kb)


def test_key_distance_is_an_edit_distance() -> None:
    assert key_distance("tad", "tad") == 0
    assert key_distance("tad", "tat") == 0.5  # t/d: one class
    assert key_distance("tad", "tak") == 1.0
    assert key_distance("", "kak") == 2.5  # the vowel costs half
    assert key_distance("kak", "") == 2.5
    assert key_distance("tada", "tad") == 0.5  # a vowel dropped costs half


def test_vectorised_search_agrees_with_brute_force() -> None:
    rng = random.Random(5)
    letters = "aptksfmlrbdgSN"
    phrases = ["".join(rng.choice(letters) for _ in range(rng.randint(2, 7)))
               for _ in range(40)]
    index = SoundIndex(phrases)
    for _ in range(20):
        text = "".join(rng.choice(letters) for _ in range(rng.randint(0, 12)))
        fast = index._best_substring(text)
        for p, key in enumerate(index.keys):
            brute = min(key_distance(key, text[i:j])
                        for i in range(len(text) + 1) for j in range(i, len(text) + 1))
            assert fast[p] == pytest.approx(brute), (key, text)


PHRASES = ["Tado thermostat", "Thermomix", "Miele dishwasher", "Bosch dryer",
           "Florentyna Oduya", "Siobhan Kowalczyk"]


def test_search_names_the_phrase_and_the_words_it_may_have_been_heard_as() -> None:
    text = "Turn on the Tango thermostat."
    best = SoundIndex(PHRASES).search(text)[0]
    assert best.phrase == "Tado thermostat"
    assert text[best.start: best.end] == "Tango thermostat"
    text = "Send a message to Florentina Odouya"
    best = SoundIndex(PHRASES).search(text)[0]
    assert (best.phrase, text[best.start: best.end]) == ("Florentyna Oduya",
                                                         "Florentina Odouya")


def test_search_leaves_a_phrase_already_written_alone() -> None:
    matches = SoundIndex(PHRASES).search("is the Miele dishwasher running")
    assert all(m.phrase != "Miele dishwasher" for m in matches)
    # No other phrase may claim the words of the one that is there.
    assert all(m.end <= 7 or m.start >= 23 for m in matches)


def test_search_proposes_nothing_for_unrelated_words() -> None:
    assert SoundIndex(PHRASES).search("what is the weather like tomorrow",
                                      max_distance=0.3) == []
    assert SoundIndex(PHRASES).search("") == []
    assert SoundIndex([]).search("turn on the Tango thermostat") == []


def test_contained_finds_whole_phrases_only() -> None:
    index = SoundIndex(["Sigrun Vukovic", "Neato vacuum", "Ann"])
    assert index.contained("Phone Sigrun Vukovic, on the mobile.") == {"Sigrun Vukovic"}
    assert index.contained("switch off the NEATO VACUUM") == {"Neato vacuum"}
    # Part of a phrase, or a phrase inside a longer word, is not the phrase.
    assert index.contained("Phone Sigrun on the mobile") == set()
    assert index.contained("Annabel called") == set()
    assert index.contained("") == set()
