"""Token embeddings of the text streams: learned, or initialised from a local word2vec / GloVe
text file (``embedding_path``), as the multimodal papers' GloVe-300 inputs (papers.md sections
17-24; the issue's "word embeddings learned, or loaded from a local GloVe / word2vec file").

The model's text ids come from a ``sertk tokenizer`` (``model.conf.tokenizer``); a unit is
looked up in the vector file as written, without sentencepiece's word-boundary mark ``▁``,
then lower-cased. Units found get their vector, the others keep the random initialisation,
the padding id 0 stays zero; the coverage is logged, and a file matching no unit is an error
(a character tokenizer cannot use word vectors). A pack keeps the weights, not the path
(:func:`portable_text_conf`).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sertk.errors import SertkError

log = logging.getLogger(__name__)
WORD_BOUNDARY = "\u2581"  # sentencepiece's "▁"


def unit_candidates(unit: str) -> list[str]:
    """Spellings of a tokenizer unit to look up in a word-vector file, in order."""
    word = unit.replace(WORD_BOUNDARY, "")
    return list(dict.fromkeys(w for w in (unit, word, word.lower()) if w))


def pretrained_rows(path: str | Path, units: list[str], dim: int
                    ) -> dict[int, torch.Tensor]:
    """``{unit id: vector}`` for the units of ``units`` (id = position) found in ``path``."""
    from sertk.text.cross_modal import load_embeddings

    words, vecs = load_embeddings(path)
    if vecs.shape[1] != dim:
        raise SertkError(f"{path}: {vecs.shape[1]}-dim vectors, but embedding_dim is {dim}")
    table = {w: i for i, w in enumerate(words)}
    rows = {}
    for uid, unit in enumerate(units):
        hit = next((table[w] for w in unit_candidates(unit) if w in table), None)
        if uid and hit is not None:
            rows[uid] = torch.from_numpy(vecs[hit].copy())
    return rows


class TokenEmbedding(nn.Embedding):
    """``nn.Embedding(vocab_size, dim, padding_idx=0)``, optionally initialised from a
    word-vector file through the tokenizer's units, optionally frozen."""

    def __init__(self, vocab_size: int, dim: int, embedding_path: str | None = None,
                 tokenizer: str | None = None, freeze: bool = False, model: str = "model"):
        super().__init__(int(vocab_size), int(dim), padding_idx=0)
        if embedding_path:
            self._load(str(embedding_path), tokenizer, model)
        self.weight.requires_grad_(not freeze)

    def _load(self, path: str, tokenizer: str | None, model: str) -> None:
        from sertk.text.tokenizer import Tokenizer

        if not tokenizer:
            raise SertkError(f"{model} embedding_path needs model.conf.tokenizer (its units "
                             "are looked up in the vector file)")
        units = Tokenizer(tokenizer).tokens
        if len(units) != self.num_embeddings:
            raise SertkError(f"{model}: tokenizer {tokenizer} has {len(units)} units, the "
                             f"embedding {self.num_embeddings}")
        rows = pretrained_rows(path, units, self.embedding_dim)
        if not rows:
            raise SertkError(f"{path}: no unit of tokenizer {tokenizer} has a vector (word "
                             "vectors need a word or subword tokenizer, not characters)")
        with torch.no_grad():
            for uid, vec in rows.items():
                self.weight[uid] = vec
        log.info("%s: %d of %d text units initialised from %s", model, len(rows),
                 len(units) - 1, path)


def portable_text_conf(conf: dict[str, Any]) -> dict[str, Any]:
    """A pack's model conf: the vectors are in the weights, so no ``embedding_path``."""
    out = dict(conf)
    if out.get("embedding_path"):
        out["embedding_path"] = None
    return out
