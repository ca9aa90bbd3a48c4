"""The biasing trie: bonuses for phrases, take-back for abandoned partial matches."""

from __future__ import annotations

import numpy as np
import pytest

from models.whisper.bias import BiasTrie

V = 20


class Letters:
    """A toy tokenizer: one token per letter a..s, space ignored."""

    def encode(self, text: str) -> list[int]:
        return [ord(c) - ord("a") for c in text.lower().replace(" ", "")]


@pytest.fixture
def trie() -> BiasTrie:
    return BiasTrie([(1, 2, 3), (1, 4)], weight=2.0)


def path_bonus(trie: BiasTrie, tokens: list[int]) -> float:
    state, total = trie.start(), 0.0
    for t in tokens:
        total += float(trie.bonus_vector(state, V)[t])
        state = trie.advance(state, t)
    return total + float(trie.bonus_vector(state, V)[0])  # then an unrelated token


def test_completed_phrase_keeps_its_bonus(trie: BiasTrie) -> None:
    assert path_bonus(trie, [1, 2, 3]) == pytest.approx(6.0)
    assert path_bonus(trie, [1, 4]) == pytest.approx(4.0)


def test_abandoned_partial_match_gives_everything_back(trie: BiasTrie) -> None:
    assert path_bonus(trie, [1, 2]) == pytest.approx(0.0)
    assert path_bonus(trie, [5, 1, 2, 7]) == pytest.approx(0.0)


def test_restarting_a_phrase_from_a_partial_match(trie: BiasTrie) -> None:
    # 1 2 (partial) then 1 4 (complete): the first partial's bonus is taken back.
    assert path_bonus(trie, [1, 2, 1, 4]) == pytest.approx(4.0)


def test_a_phrase_cannot_follow_itself_at_once(trie: BiasTrie) -> None:
    state = trie.start()
    for t in (1, 4):
        state = trie.advance(state, t)
    assert trie.bonus_vector(state, V)[1] == 0.0  # no bonus to say it again


def test_zero_weight_biases_nothing() -> None:
    trie = BiasTrie([(1, 2)], weight=0.0)
    assert not np.any(trie.bonus_vector(trie.start(), V))


def test_from_phrases_adds_spacing_and_capital_forms() -> None:
    trie = BiasTrie.from_phrases(["ab"], Letters(), weight=1.0)
    assert len(trie) == 1  # "ab", " ab", "Ab" all tokenize alike here
    with pytest.raises(ValueError):
        BiasTrie([(1,)], weight=-1.0)


def test_a_phrase_said_again_later_earns_nothing_more(trie: BiasTrie) -> None:
    # Once: 6 nats. Again after another word: the second match's bonus is taken back,
    # so repeating a name (or a whole sentence around it) is not rewarded.
    assert path_bonus(trie, [1, 2, 3, 7, 1, 2, 3]) == pytest.approx(6.0)
    # A different phrase after it still earns its own bonus.
    assert path_bonus(trie, [1, 2, 3, 7, 1, 4]) == pytest.approx(10.0)
