"""Model inputs beside the audio features: a transcript (``text``, tokenised) or another
modality's frame features (``feats_video.scp``, ...), read from Kaldi tables of the data dir.

A model declares the tables it reads with ``input_tables_for(conf) -> {table: kind}`` (or a
static ``input_tables``), kinds:

* ``tokens``: a transcript table encoded with the tokenizer at ``conf["tokenizer"]``
  (``sertk tokenizer train``; ids 1.. are units, 0 pads); the model gets ``input_sizes[table]``
  = the vocabulary size and per batch ``(LongTensor [B, L] padded with 0, LongTensor [B])``;
* ``feats``: an scp of per-utterance matrices ``[T, D]`` (kaldiio); ``input_sizes[table]`` =
  ``D``; per batch ``(FloatTensor [B, T, D] padded with 0, LongTensor [B])``;
* ``context``: an scp of other utterances' features of the model's own front end (the dialogue
  context tables of :mod:`sertk.data.dialog`), ``-`` for none (length 0); ``D`` is the
  directory's ``feat_dim``; the model wrapper applies its CMVN to them as to the features.

Each modality is padded on its own and has its own lengths (the model builds its masks);
the utterances of a batch are the same, in the same order, in every modality. Every
utterance of a dataset must have an entry: a missing one, an empty transcript or a bad
matrix is an error naming the utterance and the file (nothing is dropped).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sertk.data.ark import load_mat
from sertk.data.datadir import DataDir
from sertk.errors import DataError, SertkError

KINDS = ("tokens", "feats", "context")
NO_CONTEXT = "-"  # a context table's entry for an utterance without that context


@dataclass
class InputTable:
    """One extra input of a dataset: ``values`` are token ids (``tokens``) or rxspecifiers
    (``feats``) per utterance; ``size`` is what the model gets in ``input_sizes``."""

    table: str
    kind: str
    size: int
    path: Path
    values: dict[str, Any]

    def item(self, key: str) -> torch.Tensor:
        if key not in self.values:
            raise DataError(f"utterance {key}: no entry in {self.path} (the model reads "
                            f"{self.table})")
        if self.kind == "tokens":
            return torch.tensor(self.values[key], dtype=torch.long)
        if self.kind == "context" and self.values[key] == NO_CONTEXT:
            return torch.zeros(0, self.size)
        mat = np.asarray(load_mat(self.values[key], key))  # never unpickles
        if mat.ndim != 2 or mat.shape[0] == 0 or mat.shape[1] != self.size:
            raise DataError(f"utterance {key}: {self.path} gives a matrix of shape "
                            f"{tuple(mat.shape)}, expected [T > 0, {self.size}]")
        if not np.isfinite(mat).all():
            raise DataError(f"utterance {key}: NaN/Inf in {self.values[key]} ({self.path})")
        return torch.from_numpy(np.array(mat, dtype=np.float32))

    def batch(self, keys: list[str], device: torch.device | str = "cpu"
              ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(padded [B, L(, D)], lengths [B])`` for ``keys`` in their order."""
        seqs = [self.item(k) for k in keys]
        lengths = torch.tensor([s.shape[0] for s in seqs], dtype=torch.long)
        padded = torch.nn.utils.rnn.pad_sequence(seqs, batch_first=True)
        return padded.to(device), lengths.to(device)


def token_input(d: DataDir, table: str, tokenizer: Any) -> InputTable:
    """``table`` (e.g. ``text``) encoded with ``tokenizer``; an empty transcript is an error."""
    values = {}
    for utt, text in d.table(table).items():
        ids = tokenizer.encode(text) if text.strip() else []
        if not ids:
            raise DataError(f"utterance {utt}: empty transcript in {d.path / table}")
        values[utt] = ids
    return InputTable(table, "tokens", len(tokenizer), d.path / table, values)


def feats_input(d: DataDir, table: str) -> InputTable:
    """An scp of matrices; its dimension is the first entry's."""
    values = d.table(table)
    if not values:
        raise DataError(f"{d.path / table}: empty table")
    first = next(iter(values))
    mat = np.asarray(load_mat(values[first], first))  # never unpickles
    if mat.ndim != 2:
        raise DataError(f"utterance {first}: {values[first]} ({d.path / table}) is not a "
                        "matrix")
    dim = int(mat.shape[1])
    return InputTable(table, "feats", dim, d.path / table, values)


def load_tokenizer(conf: dict[str, Any]) -> Any:
    from sertk.text.tokenizer import Tokenizer

    path = conf.get("tokenizer")
    if not path:
        raise SertkError("a text input needs model.conf.tokenizer (a `sertk tokenizer train` "
                         "output)")
    if not Path(str(path)).exists():
        raise SertkError(f"model.conf.tokenizer {path} not found")
    return Tokenizer(str(path))


def context_input(d: DataDir, table: str) -> InputTable:
    """A context scp (``-``: none) of the directory's own features (``feat_dim``)."""
    dim_file = d.path / "feat_dim"
    if not dim_file.is_file():
        raise DataError(f"{d.path}: no feat_dim (a context input needs the dump's dimension)")
    return InputTable(table, "context", int(dim_file.read_text().split()[0]), d.path / table,
                      d.table(table))


def build_inputs(data_dir: str | Path, kinds: dict[str, str], keys: list[str],
                 tokenizer: Any = None, conf: dict[str, Any] | None = None
                 ) -> dict[str, InputTable]:
    """The input tables ``kinds`` of a data/dump dir, checked to cover every key in ``keys``.
    ``tokens`` tables use ``tokenizer`` (else the one at ``conf["tokenizer"]``)."""
    d = DataDir(data_dir)
    out: dict[str, InputTable] = {}
    for table, kind in kinds.items():
        if kind not in KINDS:
            raise SertkError(f"unknown input kind {kind!r} for {table} (known: "
                             f"{', '.join(KINDS)})")
        if not d.has(table):
            raise DataError(f"the model reads {table} ({kind}), which {d.path} does not have")
        if kind == "tokens":
            out[table] = token_input(d, table, tokenizer or load_tokenizer(conf or {}))
        elif kind == "context":
            out[table] = context_input(d, table)
        else:
            out[table] = feats_input(d, table)
        missing = [k for k in keys if k not in out[table].values]
        if missing:
            raise DataError(f"utterance {missing[0]}: no entry in {d.path / table} "
                            f"({len(missing)} of {len(keys)} utterances have none; the model "
                            f"reads {table})")
    return out


def batch_inputs(tables: dict[str, InputTable] | None, keys: list[str],
                 device: torch.device | str = "cpu"
                 ) -> dict[str, tuple[torch.Tensor, torch.Tensor]] | None:
    """The extra inputs of a batch (None when the model reads none)."""
    if not tables:
        return None
    return {t: tab.batch(keys, device) for t, tab in tables.items()}
