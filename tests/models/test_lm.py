"""The requests' word trigram (models/lm.py) and the n-best reranking built on it."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from models.asr import Hypothesis, MoonshineEngine, _holds_phrase, phrase_judge, rerank
from models.lm import BUNDLED, PHRASE, WordTrigram, build_bundled, bundled, phrase_words

MASSIVE = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "massive-en-US"

TRAIN = ["set an alarm for six am", "set an alarm for seven", "set a timer",
         "what is the weather today", "play some jazz", "said no one ever"]


@pytest.fixture(scope="module")
def small() -> WordTrigram:
    return WordTrigram.from_sentences(TRAIN)


@pytest.mark.parametrize("context", [("set", "an"), ("<s>", "<s>"), ("never", "seen")])
def test_probabilities_over_the_vocabulary_sum_to_one(small: WordTrigram,
                                                      context: tuple[str, str]) -> None:
    words = {w for t in TRAIN for w in t.split()} | {"</s>", "zzz-unseen"}
    # Every seen word, the end, and one stand-in for all unseen words.
    assert sum(small.probability(*context, w) for w in words) == pytest.approx(1.0)
    assert small.vocabulary == len(words)


def test_requests_it_has_seen_score_above_sound_alikes(small: WordTrigram) -> None:
    assert small.per_word("Set an alarm for 6 am.") > small.per_word("said an alarm for six am")
    # Normalised like the scorer: digits, case and punctuation do not matter.
    assert small.per_word("Set an alarm for 6 AM!") == small.per_word("set an alarm for six am")


def test_counts_round_trip_and_a_bad_line_is_named(small: WordTrigram, tmp_path: Path) -> None:
    small.save(tmp_path / "lm.tsv.gz")
    again = WordTrigram.load(tmp_path / "lm.tsv.gz")
    assert again.trigrams == small.trigrams
    assert again.per_word("play some jazz") == small.per_word("play some jazz")
    with gzip.open(tmp_path / "bad.tsv.gz", "wt") as f:
        f.write("set an alarm\t3\nset an\tx\n")
    with pytest.raises(ValueError, match=r"bad.tsv.gz:2"):
        WordTrigram.load(tmp_path / "bad.tsv.gz")
    with pytest.raises(ValueError, match="discount"):
        WordTrigram(small.trigrams, discount=1.0)


def test_the_bundled_counts_are_massive_train() -> None:
    model = bundled()
    assert BUNDLED.stat().st_size < 400_000
    assert len(model.trigrams) > 40_000
    assert model.per_word("wake me up at seven am") > model.per_word("wake me up at seven and")
    assert model.per_word("send the email to john") > model.per_word("send me a mail to john")


def test_the_bundled_counts_are_rebuilt_from_massive_train_alone(tmp_path: Path) -> None:
    # CI has ../shared beside the clone; the counts are MASSIVE train's, never dev's.
    rebuilt = build_bundled(MASSIVE / "train.jsonl", tmp_path / "lm.tsv.gz")
    assert rebuilt.trigrams == bundled().trigrams


def test_rerank_adds_the_weighted_model_score_and_sorts(small: WordTrigram) -> None:
    hyps = [Hypothesis("said an alarm for six am", -0.20),
            Hypothesis("set an alarm for six am", -0.25)]
    out = rerank(hyps, small, 0.5)
    assert [h.text for h in out] == ["set an alarm for six am", "said an alarm for six am"]
    assert out[0].score == round(-0.25 + 0.5 * small.per_word(out[0].text), 4)
    assert [h.text for h in rerank(hyps, small, 0.0)] == [h.text for h in hyps]


def test_a_hypothesis_with_a_device_phrase_is_spotted_as_whole_words() -> None:
    hyps = [Hypothesis("Call Siobhan Kowalczyk.", -0.3), Hypothesis("call shivan", -0.2)]
    assert _holds_phrase(hyps, ("siobhan kowalczyk", "oven"))
    assert not _holds_phrase([Hypothesis("turn on the ovens", -0.1)], ("oven",))
    assert not _holds_phrase(hyps, ())


def test_a_negative_weight_is_refused() -> None:
    with pytest.raises(ValueError, match="lm_weight"):
        MoonshineEngine(lm_weight=-1.0)
    with pytest.raises(ValueError, match="phrase_lm_weight"):
        MoonshineEngine(phrase_lm_weight=-1.0)


def test_a_phrase_is_one_unseen_word(small: WordTrigram) -> None:
    assert phrase_words("Call Siobhan Kowalczyk!", "Siobhan Kowalczyk") == ["call", PHRASE]
    assert phrase_words("Switch off the Roborock 2.", "roborock") == [
        "switch", "off", "the", PHRASE, "two"]
    # Not there as whole words: the words as they are.
    assert phrase_words("call Siobhan", "Siobhan Kowalczyk") == ["call", "siobhan"]
    assert phrase_words("the ovens", "oven") == ["the", "ovens"]
    # The total is what the mean per word was taken from.
    words = phrase_words("set an alarm for six am", "alarm")
    assert small.logprob(words) == pytest.approx(small.per_word(
        "set an zzzunseen for six am") * (len(words) + 1))
    # However long the name, it costs one unseen word.
    assert small.logprob(phrase_words("call Ann", "Ann")) == pytest.approx(
        small.logprob(phrase_words("call Anneliese Vandersloot", "Anneliese Vandersloot")))


def test_the_judge_vetoes_a_name_that_makes_the_request_less_likely() -> None:
    judge = phrase_judge(bundled(), 2.0)
    telephone = ("Please give me the telephone", "Please give me the telephone, Siobhan "
                 "Abernathy", "Siobhan Abernathy")
    assert judge(*telephone) < -10
    assert phrase_judge(bundled(), 1.0)(*telephone) == pytest.approx(judge(*telephone) / 2)
    assert judge("Phone Marisol Delacroix on the mobile", "Phone Marisol Delacroix on the "
                 "Roborock", "Roborock") < -4
    # Garbled words turned into a request for a name: no veto, and no reward either
    # (the audio alone decides), however many words the name takes the place of.
    assert judge("Call shout on, cowl chick.", "Call Siobhan Kowalczyk.",
                 "Siobhan Kowalczyk") == 0.0
    # Per word: "give me all my recent emails" is not worse for being long.
    assert judge("Give me all my recent emails.", "Give me Ignatius Sandoval.",
                 "Ignatius Sandoval") < -10
