"""Per-utterance training targets read from Kaldi tables: the dimensional task's ``utt2dim``
and the auxiliary targets models declare (kinds ``class``, ``vector``, ``tokens``,
``listeners``; the contract is in :mod:`sertk.models.registry`).

Each table becomes a :class:`TargetTable` built once from the training set; ``batch(keys)``
gives the tensor (or tuple) for a batch of utterance keys.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sertk.data.datadir import DataDir
from sertk.errors import DataError, SertkError

KINDS = ("class", "vector", "tokens", "listeners")
DEFAULT_DIMS = ("arousal", "valence", "dominance")
OTHER_LISTENER = "other"


@dataclass
class TargetTable:
    """One table's targets: ``size`` is what the model's constructor gets in ``aux_classes``
    (classes, columns, vocabulary size or listeners); ``vocab`` names the classes or
    listeners (empty for vectors and tokens)."""

    table: str
    kind: str
    size: int
    values: dict[str, Any]
    vocab: list[str] = field(default_factory=list)

    def batch(self, keys: list[str], device: torch.device | str = "cpu") -> Any:
        if self.kind == "class":
            return torch.tensor([self.values.get(k, -1) for k in keys], device=device)
        if self.kind == "vector":
            rows = [self.values.get(k, np.full(self.size, np.nan)) for k in keys]
            return torch.tensor(np.stack(rows), dtype=torch.float32, device=device)
        if self.kind == "tokens":
            seqs = [self.values.get(k, []) for k in keys]
            out = torch.zeros(len(keys), max([1, *map(len, seqs)]), dtype=torch.long)
            for i, s in enumerate(seqs):
                out[i, :len(s)] = torch.tensor(s, dtype=torch.long)
            return out.to(device), torch.tensor([len(s) for s in seqs], device=device)
        out = torch.full((len(keys), self.size), -1, dtype=torch.long)
        for i, k in enumerate(keys):
            for listener, label in self.values.get(k, {}).items():
                out[i, listener] = label
        return out.to(device)


def read_vectors(path: Path, width: int | None = None) -> dict[str, np.ndarray]:
    """``utt v1 v2 ...`` rows of one width; a non-number, NaN or a different width is an
    error naming the utterance and the file."""
    from sertk.data.kaldi_table import read_table

    out: dict[str, np.ndarray] = {}
    for utt, rest in read_table(path, 2).items():
        try:
            row = np.array([float(v) for v in rest.split()], dtype=np.float64)
        except ValueError:
            raise DataError(f"{path}: utterance {utt}: values must be numbers: {rest!r}"
                            ) from None
        if not np.isfinite(row).all():
            raise DataError(f"{path}: utterance {utt}: NaN or infinite value")
        width = width or row.size
        if row.size != width:
            raise DataError(f"{path}: utterance {utt}: {row.size} values, the table has "
                            f"{width} per utterance")
        out[utt] = row
    return out


def class_targets(d: DataDir, table: str) -> TargetTable:
    values = d.table(table)
    vocab = sorted(set(values.values()))
    index = {v: i for i, v in enumerate(vocab)}
    return TargetTable(table, "class", len(vocab), {u: index[v] for u, v in values.items()},
                       vocab)


def vector_targets(d: DataDir, table: str) -> TargetTable:
    values = read_vectors(d.path / table)
    if not values:
        raise DataError(f"{d.path / table}: empty table")
    return TargetTable(table, "vector", len(next(iter(values.values()))), values)


def token_targets(d: DataDir, table: str, tokenizer_path: str | None) -> TargetTable:
    from sertk.text.tokenizer import Tokenizer

    if not tokenizer_path:
        raise SertkError(f"{table} targets need model.conf.tokenizer (a `sertk tokenizer "
                         "train` output)")
    if not Path(tokenizer_path).exists():
        raise SertkError(f"model.conf.tokenizer {tokenizer_path} not found")
    tok = Tokenizer(tokenizer_path)
    values = {u: tok.encode(t) for u, t in d.table(table).items()}
    return TargetTable(table, "tokens", len(tok), values)


def parse_listener_labels(d: DataDir, table: str) -> dict[str, list[tuple[str, str]]]:
    """``utt L1:label L2:label ...`` as ``{utt: [(listener, label), ...]}``."""
    out = {}
    for utt, rest in d.table(table).items():
        pairs = []
        for tok in rest.split():
            listener, sep, label = tok.rpartition(":")
            if not sep or not listener or not label:
                raise DataError(f"{d.path / table}: utterance {utt}: {tok!r} is not "
                                "listener:label")
            pairs.append((listener, label))
        out[utt] = pairs
    return out


def listener_targets(d: DataDir, table: str, labels: list[str], min_utts: int = 1
                     ) -> TargetTable:
    """Listeners with fewer than ``min_utts`` utterances are pooled as ``other``; each
    listener's first label in ``labels`` counts."""
    pairs = parse_listener_labels(d, table)
    counts = Counter(lis for p in pairs.values() for lis in {lis for lis, _ in p})
    kept = sorted(lis for lis, n in counts.items() if n >= min_utts)
    vocab = kept + ([OTHER_LISTENER] if len(kept) < len(counts) else [])
    index = {lis: i for i, lis in enumerate(kept)}
    other = len(kept)
    label_index = {lab: i for i, lab in enumerate(labels)}
    values: dict[str, dict[int, int]] = {}
    for utt, p in pairs.items():
        row: dict[int, int] = {}
        for lis, lab in p:
            slot = index.get(lis, other)
            if slot not in row and lab in label_index:
                row[slot] = label_index[lab]
        values[utt] = row
    return TargetTable(table, "listeners", len(vocab), values, vocab)


def build_targets(d: DataDir, table: str, kind: str, conf: dict[str, Any],
                  labels: list[str]) -> TargetTable:
    if not d.has(table):
        raise SertkError(f"the model needs {table} in {d.path} ({kind} targets)")
    if kind == "class":
        return class_targets(d, table)
    if kind == "vector":
        return vector_targets(d, table)
    if kind == "tokens":
        return token_targets(d, table, conf.get("tokenizer"))
    if kind == "listeners":
        return listener_targets(d, table, labels, int(conf.get("listener_min_utts", 1)))
    raise SertkError(f"unknown auxiliary target kind {kind!r} for {table} (known: "
                     f"{', '.join(KINDS)})")


def dim_names(cfg: dict[str, Any], width: int) -> list[str]:
    """Names of the dimensional task's outputs: ``cfg['dims']``, else arousal valence
    dominance (for 3 columns) or dim1..dimK."""
    names = list(cfg.get("dims") or (DEFAULT_DIMS if width == 3 else
                                     [f"dim{i + 1}" for i in range(width)]))
    if len(names) != width:
        raise SertkError(f"dims {names} do not match the {width} columns of utt2dim")
    return names


def dim_targets(data_dir: Path, keys: list[str]) -> TargetTable:
    """The dimensional task's ``utt2dim`` of a dump directory; every utterance needs a row."""
    table = vector_targets(DataDir(data_dir), "utt2dim") if (data_dir / "utt2dim").is_file() \
        else None
    if table is None:
        raise SertkError(f"task: dimensional needs {data_dir / 'utt2dim'}")
    missing = [k for k in keys if k not in table.values]
    if missing:
        raise DataError(f"utterance {missing[0]}: no row in {data_dir / 'utt2dim'} "
                        f"({len(missing)} utterances without one)")
    return table
