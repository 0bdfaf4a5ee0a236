"""Token embeddings initialised from a local word-vector file (GloVe / word2vec text), through
the tokenizer's units, for the multimodal models' text streams (issue 16)."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from sertk import models
from sertk.errors import SertkError
from sertk.models.layers.token_embedding import (
    TokenEmbedding,
    portable_text_conf,
    unit_candidates,
)
from sertk.text.tokenizer import train_tokenizer

WORDS = ["great", "awful", "table", "the", "a"]


@pytest.fixture(scope="module")
def units(tmp_path_factory):
    """A unigram tokenizer whose units are the (upper-case) words, and a GloVe-style file of
    lower-case 4-dim vectors for all words but ``a``."""
    root = tmp_path_factory.mktemp("tok")
    rng = np.random.default_rng(0)
    lines = [" ".join(rng.choice(WORDS, 5)).upper() for _ in range(200)]
    (root / "text").write_text("".join(f"u{i} {t}\n" for i, t in enumerate(lines)))
    tok = train_tokenizer(root / "text", root / "units", "unigram", vocab_size=30)
    vecs = {w: np.arange(4) + 10 * i for i, w in enumerate(WORDS[:-1], 1)}
    (root / "glove.txt").write_text("".join(f"{w} {' '.join(map(str, v))}\n"
                                            for w, v in vecs.items()))
    return root, tok, vecs


def test_unit_candidates():
    assert unit_candidates("\u2581GREAT") == ["\u2581GREAT", "GREAT", "great"]
    assert unit_candidates("the") == ["the"] and unit_candidates("\u2581") == ["\u2581"]


def test_rows_from_the_vector_file(units, caplog):
    root, tok, vecs = units
    with caplog.at_level(logging.INFO):
        emb = TokenEmbedding(len(tok), 4, str(root / "glove.txt"), str(root / "units"))
    found = 0
    for uid, unit in enumerate(tok.tokens):
        word = unit.replace("\u2581", "").lower()
        if uid and word in vecs:
            assert torch.equal(emb.weight[uid], torch.tensor(vecs[word], dtype=torch.float32))
            found += 1
    assert found >= 3 and not emb.weight[0].any()  # padding row stays zero
    assert f"{found} of {len(tok) - 1} text units initialised from" in caplog.text
    assert emb.weight.requires_grad
    frozen = TokenEmbedding(len(tok), 4, str(root / "glove.txt"), str(root / "units"),
                            freeze=True)
    assert not frozen.weight.requires_grad


def test_errors(units, tmp_path):
    root, tok, _ = units
    with pytest.raises(SertkError, match="m embedding_path needs model.conf.tokenizer"):
        TokenEmbedding(len(tok), 4, str(root / "glove.txt"), None, model="m")
    with pytest.raises(SertkError, match="glove.txt: 4-dim vectors, but embedding_dim is 5"):
        TokenEmbedding(len(tok), 5, str(root / "glove.txt"), str(root / "units"))
    with pytest.raises(SertkError, match=f"has {len(tok)} units, the embedding 7"):
        TokenEmbedding(7, 4, str(root / "glove.txt"), str(root / "units"))
    (tmp_path / "other.txt").write_text("zebra 1 2 3 4\n")
    with pytest.raises(SertkError, match="other.txt: no unit of tokenizer .* has a vector"):
        TokenEmbedding(len(tok), 4, str(tmp_path / "other.txt"), str(root / "units"))
    with pytest.raises(SertkError, match="nope.txt: embedding file not found"):
        TokenEmbedding(len(tok), 4, str(tmp_path / "nope.txt"), str(root / "units"))


@pytest.mark.parametrize("name", ["rajan_self_cross", "amh", "mcsan"])
def test_models_load_the_vectors_and_packs_drop_the_path(units, name):
    root, tok, vecs = units
    conf = {"modalities": ["audio", "text"], "embedding_dim": 4,
            "embedding_path": str(root / "glove.txt"), "tokenizer": str(root / "units"),
            "freeze_embedding": True}
    if name == "rajan_self_cross":
        conf |= {"gru_hidden": 4, "heads": 2}
    if name == "mcsan":
        conf |= {"lstm_hidden": 4, "heads": 2, "conv_channels": [4]}
    net = models.build(name, input_dim=3, num_classes=2, input_sizes={"text": len(tok)},
                       **conf)
    uid = next(i for i, u in enumerate(tok.tokens) if u.replace("\u2581", "") == "GREAT")
    emb = net.encoders["text"].embedding
    assert torch.equal(emb.weight[uid], torch.tensor(vecs["great"], dtype=torch.float32))
    assert not emb.weight.requires_grad
    packed = type(net).portable_conf(conf)
    assert packed["embedding_path"] is None and conf["embedding_path"]
    assert portable_text_conf({"a": 1}) == {"a": 1}
