"""sertk tokenizer: sentencepiece (unigram, bpe) and character units, ids with <blank> = 0."""

from __future__ import annotations

import random

import pytest

from sertk.errors import DataError
from sertk.text.tokenizer import Tokenizer, train_tokenizer
from tests.conftest import run_sertk

WORDS = ("kids are talking by the door dogs sitting happy sad angry calm never again why "
         "would you do that tomorrow morning okay").split()


def _text(path, n=200, seed=0):
    rng = random.Random(seed)
    lines = [f"utt{i:03d} " + " ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 9)))
             for i in range(n)]
    path.write_text("\n".join(lines) + "\nutt999\n")  # an empty transcript is skipped
    return [line.split(" ", 1)[1] for line in lines]


@pytest.mark.parametrize("kind", ["unigram", "bpe", "char"])
def test_round_trip_and_reserved_ids(tmp_path, kind):
    texts = _text(tmp_path / "text")
    tok = train_tokenizer(tmp_path / "text", tmp_path / "tok", kind, vocab_size=60)
    assert tok.tokens[:2] == ["<blank>", "<unk>"]
    assert (len(tok) <= 61) if kind != "char" else len(tok) == 2 + len(set("".join(WORDS))) + 1
    for t in texts[:20]:
        ids = tok.encode(t)
        assert ids and min(ids) >= 1 and tok.decode(ids) == t
    assert tok.decode([0, *tok.encode("kids"), 0]) == "kids"  # CTC blanks dropped
    assert 1 in tok.encode("kids qx")                       # unseen characters -> <unk>
    again = Tokenizer(tmp_path / "tok")                     # reloads from the directory
    assert again.encode(texts[0]) == tok.encode(texts[0])


def test_subword_units_are_shorter_than_characters(tmp_path):
    texts = _text(tmp_path / "text")
    char = train_tokenizer(tmp_path / "text", tmp_path / "c", "char")
    uni = train_tokenizer(tmp_path / "text", tmp_path / "u", "unigram", vocab_size=80)
    n_char = sum(len(char.encode(t)) for t in texts)
    n_uni = sum(len(uni.encode(t)) for t in texts)
    assert n_uni < 0.7 * n_char


def test_cli_train_encode_decode(tmp_path):
    (tmp_path / "data").mkdir()
    texts = _text(tmp_path / "data" / "text")
    out = run_sertk("tokenizer", "train", tmp_path / "data", tmp_path / "tok", "--kind", "bpe",
                    "--vocab-size", "50").stdout
    assert "bpe tokenizer" in out
    enc = run_sertk("tokenizer", "encode", tmp_path / "tok", tmp_path / "data" / "text").stdout
    (tmp_path / "ids").write_text(enc)
    dec = run_sertk("tokenizer", "decode", tmp_path / "tok", tmp_path / "ids").stdout
    assert dec.splitlines()[0] == f"utt000 {texts[0]}"
    assert dec.splitlines()[-1] == "utt999"


def test_clear_errors(tmp_path):
    proc = run_sertk("tokenizer", "train", tmp_path / "nowhere", tmp_path / "tok", check=False)
    assert proc.returncode == 1 and proc.stderr.strip().startswith("sertk: error: no transcripts")
    (tmp_path / "text").write_text("u1\nu2\n")
    with pytest.raises(DataError, match="no non-empty transcripts"):
        train_tokenizer(tmp_path / "text", tmp_path / "tok", "unigram")
    with pytest.raises(DataError, match="unknown tokenizer kind"):
        train_tokenizer(tmp_path / "text", tmp_path / "tok", "wordpiece")
    _text(tmp_path / "text")
    tok = train_tokenizer(tmp_path / "text", tmp_path / "tok", "char")
    with pytest.raises(DataError, match="outside"):
        tok.decode([len(tok)])
