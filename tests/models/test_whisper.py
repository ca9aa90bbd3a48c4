"""The converted Whisper model against CTranslate2 on the same weights, and its parts."""

from __future__ import annotations

import itertools
import json
import wave
from pathlib import Path

import ctranslate2
import numpy as np
import pytest
import soxr

from infra.eval_endpoint import speak
from models.asr import WhisperEngine
from models.whisper.build import SOURCES, source_dir
from models.whisper.features import log_mel, mel_filters
from models.whisper.inference import Hypothesis, WhisperOnnx
from models.whisper.tokenizer import Tokenizer
from tests.models.forcing import check_one_pass

FSDD = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "fsdd-dev"


def fsdd(name: str) -> np.ndarray:
    with wave.open(str(FSDD / name), "rb") as w:
        x = np.frombuffer(w.readframes(w.getnframes()), "<i2").astype(np.float32) / 32768
        return soxr.resample(x, w.getframerate(), 16000).astype(np.float32)


@pytest.fixture(scope="module")
def clips() -> dict[str, np.ndarray]:
    return {
        "timer": speak("set a timer for ten minutes", "en-us", 160),
        "weather": speak("what is the weather like in Boston tomorrow", "en-us+f3", 150),
        "lights": speak("turn off the lights in the kitchen", "en-gb", 170),
        "digit-0": fsdd("0_george_5.wav"),
        "digit-7": fsdd("7_jackson_8.wav"),
    }


@pytest.fixture(scope="module")
def fp32() -> WhisperOnnx:
    return WhisperOnnx(quantized=False)


def ct2_dir(model: str, tmp: Path) -> Path:
    """A directory CTranslate2 can load: base's two parts of model.bin are joined."""
    source = SOURCES[model]
    if len(source.parts) == 1:
        return source.directory()
    with (tmp / "model.bin").open("wb") as fh:
        for part in source.files():
            fh.write(part.read_bytes())
    for name in ("config.json", "vocabulary.txt", "tokenizer.json"):
        (tmp / name).write_bytes((source.directory() / name).read_bytes())
    return tmp


@pytest.mark.parametrize("model", ["tiny.en", "base"])
def test_fp32_full_window_matches_ctranslate2(model: str, clips: dict[str, np.ndarray],
                                              tmp_path: Path) -> None:
    """Greedy decoding depends on the network alone: the tokens must be identical.

    (Beam search is ours and ranks differently from CTranslate2's.) Base is
    multilingual: its prompt names the language and task, and its special
    tokens sit one id higher than tiny.en's.
    """
    ours = WhisperOnnx(model=model, quantized=False)
    prompt = list(ours.tokenizer.prompt)
    assert len(prompt) == (4 if model == "base" else 2)
    reference = ctranslate2.models.Whisper(str(ct2_dir(model, tmp_path)), device="cpu",
                                           compute_type="float32", intra_threads=1)
    for name, audio in clips.items():
        mel = log_mel(audio, frames=3000)[None]
        ref = reference.generate(ctranslate2.StorageView.from_array(mel), [prompt],
                                 beam_size=1, suppress_blank=True)[0].sequences_ids[0]
        got = ours.transcribe(audio, trim=False, beam_size=1)[0]
        assert list(got.tokens) == list(ref), name
        assert got.text


def test_int8_trimmed_transcribes_commands(clips: dict[str, np.ndarray]) -> None:
    model = WhisperOnnx(quantized=True)
    text = model.transcribe(clips["weather"])[0].text
    assert text.lower().rstrip("?.") == "what is the weather like in boston tomorrow"


def test_nbest_is_ranked_and_distinct(fp32: WhisperOnnx, clips: dict[str, np.ndarray]) -> None:
    hyps = fp32.transcribe(clips["timer"], nbest=5)
    assert 1 < len(hyps) <= 5
    assert len({h.text for h in hyps}) == len(hyps)
    assert [h.score for h in hyps] == sorted((h.score for h in hyps), reverse=True)


def test_context_biasing_recovers_a_name() -> None:
    engine = WhisperEngine()
    audio = speak("call Siobhan Kowalczyk", "en-gb", 160)
    plain = engine.transcribe(audio)[0].text
    biased = engine.transcribe(audio, phrases=["Siobhan Kowalczyk", "Ada Lovelace"],
                               bias_weight=4.0)[0].text
    assert "Kowalczyk" not in plain
    assert "Siobhan Kowalczyk" in biased


def test_silence_gives_no_hypothesis_or_a_short_one(fp32: WhisperOnnx) -> None:
    assert fp32.transcribe(np.zeros(800, np.float32)) == []  # under 100 ms
    hyps = fp32.transcribe(np.zeros(16000 * 2, np.float32))
    assert all(len(h.tokens) <= 6 + 12 for h in hyps)  # capped by the audio's length


def test_mel_filterbank_shape_and_normalisation() -> None:
    f = mel_filters()
    assert f.shape == (80, 201)
    assert np.all(f >= 0) and np.all(f.sum(axis=1) > 0)
    peaks = f.argmax(axis=1)
    assert np.all(np.diff(peaks) >= 0)  # filters rise with frequency


def test_log_mel_pads_and_trims() -> None:
    x = np.zeros(16000, np.float32)
    assert log_mel(x).shape == (80, 100)
    assert log_mel(x, frames=3000).shape == (80, 3000)


def test_tokenizer_round_trips() -> None:
    tok = Tokenizer(source_dir() / "tokenizer.json")
    for text in (" Set a timer for 10 minutes.", " Call Siobhan Ní Dhomhnaill", " it's 5:30pm"):
        assert tok.decode(tok.encode(text)) == text
    assert tok.encode(" Set a timer") == [5345, 257, 19781]
    assert not tok.multilingual
    assert tok.prompt == (50257, 50362)  # start of transcript, no timestamps


def test_multilingual_tokenizer_prompts_english_transcription() -> None:
    tok = Tokenizer(source_dir("base") / "tokenizer.json")
    assert tok.multilingual
    assert tok.eot == 50257
    # start of transcript, <|en|>, <|transcribe|>, no timestamps
    assert tok.prompt == (50258, 50259, 50359, 50363)
    assert tok.decode([*tok.prompt, *tok.encode(" Set a timer"), tok.eot]) == " Set a timer"


def test_multilingual_tokenizer_merges_by_rank_without_the_missing_merge() -> None:
    """base's tokenizer.json lists no merge for " t" (id 256); words after a space
    that begin with "t" still come out as the model writes them, one piece each."""
    path = source_dir("base") / "tokenizer.json"
    tok = Tokenizer(path)
    assert tok.id_to_token[256] == "Ġt"
    assert "Ġ t" not in json.loads(path.read_text(encoding="utf-8"))["model"]["merges"]
    for word in (" two", " three", " ten", " to", " the", " train", " timer"):
        assert [tok.token_text(i) for i in tok.encode(word)] == [word]
    text = " Set a timer for two minutes to boil the eggs"
    assert tok.decode(tok.encode(text)) == text
    assert " " not in [tok.token_text(i) for i in tok.encode(text)]


def test_pocketsphinx_with_the_digits_grammar_only_says_digits() -> None:
    from models.asr import create

    engine = create("pocketsphinx", grammar="digits")
    words = set("zero one two three four five six seven eight nine oh".split())
    for name in ("0_george_5.wav", "6_george_5.wav", "9_jackson_6.wav"):
        hyps = engine.transcribe(fsdd(name))
        assert hyps and set(hyps[0].text.split()) <= words


def test_whisper_grammar_restricts_the_output(clips: dict[str, np.ndarray]) -> None:
    engine = WhisperEngine()
    grammar = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
    text = engine.transcribe(clips["digit-7"], grammar=grammar)[0].text
    assert text.lower().rstrip(".!?").strip() == "seven"
    text = engine.transcribe(clips["timer"], grammar=grammar)[0].text
    assert text.lower().rstrip(".!?").strip() in grammar


@pytest.fixture(scope="module")
def engine() -> WhisperEngine:
    return WhisperEngine()


@pytest.mark.parametrize(("text", "name"), [
    ("switch off the Neato vacuum", "Neato vacuum"),
    ("send a message to Lucasta Ostrowski", "Lucasta Ostrowski"),
])
def test_sound_alike_rescoring_writes_the_context_name(engine: WhisperEngine, text: str,
                                                       name: str) -> None:
    """tiny.en hears "needle vacuum" and "Lucas Tastro's key"; shallow fusion alone does
    not get there, the decoder's check of the sound-alike phrase does."""
    from infra.eval_asr import context_names

    audio = speak(text, "en-us", 160)
    phrases = context_names(tune=True)
    assert name in phrases
    fused = engine.transcribe(audio, phrases=phrases, bias_weight=2.0, nbest=3)
    assert all(name not in h.text for h in fused)
    rescored = engine.transcribe(audio, phrases=phrases, bias_weight=2.0, phrase_bonus=22.0,
                                 nbest=3)
    assert name in rescored[0].text
    # The n-best keeps what was heard after the corrected hypothesis.
    assert rescored[1].text == fused[0].text


def test_sound_alike_rescoring_leaves_a_sentence_without_names(engine: WhisperEngine) -> None:
    from infra.eval_asr import context_names

    audio = speak("turn off the lights in the kitchen", "en-us", 160)
    plain = engine.transcribe(audio, nbest=1)
    rescored = engine.transcribe(audio, phrases=context_names(), phrase_bonus=22.0, nbest=1)
    assert rescored[0].text == plain[0].text
    # The heavy second search finds no whole name here, so its result is not taken.
    again = engine.transcribe(audio, phrases=context_names(), phrase_bonus=22.0,
                              strong_weight=4.0, nbest=1)
    assert again[0].text == plain[0].text


def test_strong_second_search_finds_a_name_heard_as_other_words(engine: WhisperEngine) -> None:
    """tiny.en hears "Phone Sigmund, you can become the mobile": no words sound near
    enough for the rescoring, but a search under a heavy bias writes the name."""
    from infra.eval_asr import context_names

    audio = speak("phone Sigrun Vukovic on the mobile", "en-us", 160)
    phrases = context_names(tune=True)
    assert "Sigrun Vukovic" in phrases
    rescored = engine.transcribe(audio, phrases=phrases, bias_weight=2.0, phrase_bonus=22.0,
                                 nbest=3)
    assert all("Sigrun Vukovic" not in h.text for h in rescored)
    again = engine.transcribe(audio, phrases=phrases, bias_weight=2.0, phrase_bonus=22.0,
                              strong_weight=4.0, nbest=3)
    assert "Sigrun Vukovic" in again[0].text
    # What the first pass heard stays in the n-best.
    assert again[1].text == rescored[0].text


def test_strong_second_search_skips_a_result_the_model_is_sure_of(
        engine: WhisperEngine, clips: dict[str, np.ndarray],
        monkeypatch: pytest.MonkeyPatch) -> None:
    from infra.eval_asr import context_names
    from models.whisper.inference import STRONG_BELOW

    searches: list[float] = []
    search = engine.model.search

    def counted(*args: object, **kwargs: object) -> list[Hypothesis]:
        hyps = search(*args, **kwargs)  # type: ignore[arg-type]
        searches.append(hyps[0].logprob / max(len(hyps[0].tokens), 1))
        return hyps

    monkeypatch.setattr(engine.model, "search", counted)
    options = {"phrases": context_names(), "bias_weight": 2.0, "phrase_bonus": 22.0}
    sure = engine.transcribe(clips["weather"], strong_weight=4.0,
                             **options)  # type: ignore[arg-type]
    assert sure[0].text == "What is the weather like in Boston tomorrow?"
    assert len(searches) == 1 and searches[0] > STRONG_BELOW
    searches.clear()
    unsure = speak("phone Sigrun Vukovic on the mobile", "en-us", 160)
    engine.transcribe(unsure, strong_weight=4.0, **options)  # type: ignore[arg-type]
    assert len(searches) == 2 and searches[0] < STRONG_BELOW


@pytest.mark.parametrize("one_pass", [True, False])
def test_best_above_scores_as_the_search_did(one_pass: bool,
                                             clips: dict[str, np.ndarray]) -> None:
    model = WhisperOnnx()
    assert model.scorer is not None
    if not one_pass:  # a build without scorer.onnx: one decoder step per token
        model.scorer = None
    cross_k, cross_v = model.encode(model.features(clips["timer"]))
    hyps = model.search(cross_k, cross_v, beam_size=5, nbest=3, bias=None, max_tokens=30)
    seqs = [list(h.tokens) for h in hyps]
    for h, seq in zip(hyps, seqs, strict=True):
        found = model.best_above(cross_k, cross_v, [seq], -1e9)
        assert found is not None
        # int8 with dynamic quantisation: batch shapes move the figures a little.
        assert found[1] == pytest.approx(h.logprob, abs=0.5)
    best = model.best_above(cross_k, cross_v, seqs, -1e9)
    assert best is not None
    assert best[1] == pytest.approx(max(h.logprob for h in hyps), abs=0.5)
    assert model.best_above(cross_k, cross_v, seqs, max(h.logprob for h in hyps) + 5) is None
    # Credits rank and gate the sequences; the log-probability returned is the audio's.
    last = len(seqs) - 1
    credits = [0.0] * last + [50.0]
    credited = model.best_above(cross_k, cross_v, seqs, -1e9, credits=credits)
    assert credited is not None and credited[0] == last
    assert credited[1] == pytest.approx(hyps[last].logprob, abs=0.5)
    floor = max(h.logprob for h in hyps) + 5
    gated = model.best_above(cross_k, cross_v, seqs, floor, credits=credits)
    assert gated is not None and gated[0] == last
    assert gated[1] == pytest.approx(credited[1], abs=0.5)  # other batch shapes
    assert model.best_above(cross_k, cross_v, seqs, floor, credits=[-1.0] * len(seqs)) is None


def test_word_times_follow_the_audio() -> None:
    """Two phrases with a 1 s pause between them: the words are in order, inside the
    audio, the first phrase's last word ends by the pause and the second phrase's
    words after its first are heard after it. (A word after a pause starts where
    the one before it ended: the attention path enters its row there.)"""
    first = speak("turn on the lights", "en-us", 160)
    second = speak("in the kitchen please", "en-us", 160)
    audio = np.concatenate([first, np.zeros(16000, np.float32), second])
    pause_ms, resume_ms, total_ms = first.size // 16, first.size // 16 + 1000, audio.size // 16
    model = WhisperOnnx(min_window_s=10.0)  # as the engine
    hyp = model.transcribe(audio)[0]
    words = hyp.words
    heard = [w.word.lower().strip(".,") for w in words]
    assert heard == "turn on the lights in the kitchen please".split()
    assert all(0 <= w.start_ms < w.end_ms <= total_ms for w in words)
    assert all(a.end_ms <= b.start_ms for a, b in itertools.pairwise(words))
    assert abs(words[3].end_ms - pause_ms) <= 200  # "lights"
    assert words[4].end_ms >= resume_ms  # "in" runs into the second phrase
    assert all(w.start_ms >= resume_ms for w in words[5:])
    assert model.transcribe(audio, word_times=False)[0].words == ()


def _demo(name: str) -> np.ndarray:
    with wave.open(str(Path(__file__).resolve().parents[2] / "infra" / "demo_audio" / name),
                   "rb") as w:
        assert w.getframerate() == 16000
        return np.frombuffer(w.readframes(w.getnframes()), "<i2").astype(np.float32) / 32768


def test_partial_gives_the_words_so_far_and_stops_when_asked() -> None:
    engine = WhisperEngine()
    audio = _demo("light_on.wav")  # "turn on the kitchen light", 1.8 s
    so_far = engine.partial(audio[:16000])
    assert so_far is not None and so_far.text.lower().startswith("turn on the")
    whole = engine.partial(audio)
    assert whole is not None and "kitchen light" in whole.text.lower()
    assert engine.partial(audio[:800]) is None  # 50 ms: too little to decode
    steps: list[int] = []

    def stop() -> bool:
        steps.append(1)
        return len(steps) > 2

    assert engine.partial(audio, stop=stop) is None
    assert len(steps) == 3  # asked before each decoder step, stopped at the third


@pytest.mark.parametrize(("text", "kept"), [
    ("Turn on the kitchen light Turn on the kitchen light", "Turn on the kitchen light"),
    ("Turn on the kitchen light Turn on the kitchen light Turn on the",
     "Turn on the kitchen light"),
    ("Okay. Call mom. Call mom.", "Okay. Call mom."),
    ("Third. Third. Third. Third. Third", "Third."),
    ("no no no", "no no no"),  # speech, not a loop
    ("one one one one", "one one one one"),  # "one one" twice is not a phrase
    ("what is 2 + 2 + 2 + 2", "what is 2 + 2 + 2 + 2"),
    ("Play the Hunger Games.", "Play the Hunger Games."),
])
def test_a_phrase_the_decoder_repeats_is_kept_once(text: str, kept: str) -> None:
    from models.whisper.inference import repeat_free

    assert repeat_free(text) == kept


def test_the_demo_command_the_decoder_used_to_say_twice_comes_out_once() -> None:
    hyps = WhisperEngine().transcribe(_demo("light_on.wav"), nbest=5)
    assert hyps[0].text == "Turn on the kitchen light"
    assert [w.word.strip(" .").lower() for w in hyps[0].words] == \
        ["turn", "on", "the", "kitchen", "light"]
    assert len({h.text for h in hyps}) == len(hyps)


@pytest.mark.parametrize("quantized", [False, True])
def test_the_one_pass_scorer_gives_what_one_step_per_token_gives(
        quantized: bool, fp32: WhisperOnnx, clips: dict[str, np.ndarray],
        monkeypatch: pytest.MonkeyPatch) -> None:
    texts = ("What is the weather like in Boston tomorrow?", "What's the weather like?",
             "What is the whether light in Austin to Mara", "Boston")
    check_one_pass(WhisperOnnx() if quantized else fp32, fp32,
                   lambda m: m.encode(m.features(clips["weather"])),
                   [fp32.tokenizer.encode(" " + t) for t in texts], monkeypatch)


def test_teacher_forced_logprobs_of_a_batch_equal_each_alone(
        fp32: WhisperOnnx, clips: dict[str, np.ndarray]) -> None:
    keys, values = fp32.encode(fp32.features(clips["timer"]))
    texts = ("Set a timer for 10 minutes.", "Set a timer.", "Sit at a time or four ten minutes")
    seqs = [fp32.tokenizer.encode(" " + t) for t in texts]
    batch = fp32.logprobs(keys, values, seqs)
    alone = [fp32.best_above(keys, values, [s], -1e9) for s in seqs]
    assert batch == pytest.approx([a[1] for a in alone if a is not None], abs=1e-3)
    assert batch[0] == max(batch)
