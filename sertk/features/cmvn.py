"""Cepstral mean and variance normalisation with Kaldi-format statistics.

Global statistics are one Kaldi matrix of shape ``[2, D + 1]`` (``compute-cmvn-stats``): row 0
holds the per-dimension sums and, last, the frame count; row 1 the sums of squares. They are
written and read with kaldiio, so Kaldi's ``apply-cmvn`` and ESPnet can read them too.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import kaldiio
import numpy as np
import torch

from sertk.data.ark import load_ark, load_matrix, load_scp
from sertk.errors import DataError


def accumulate(feats: Iterable[np.ndarray | tuple[str, np.ndarray]],
               source: str | Path | None = None) -> np.ndarray:
    """Sum frame statistics into a ``[2, D + 1]`` float64 matrix. ``feats``: matrices, or
    ``(key, matrix)`` pairs so that an error names the utterance; ``source``: where they come
    from (an scp), for the messages."""
    stats: np.ndarray | None = None
    first = None
    src = f" ({source})" if source else ""
    for item in feats:
        key, mat = item if isinstance(item, tuple) and len(item) == 2 and \
            isinstance(item[0], str) else (None, item)
        where = f"utterance {key}: " if key else ""
        mat = np.asarray(mat, dtype=np.float64)
        if mat.ndim != 2:
            raise DataError(f"CMVN: {where}not a feature matrix (shape {mat.shape}){src}")
        if stats is None:
            stats, first = np.zeros((2, mat.shape[1] + 1)), key
        if mat.shape[1] != stats.shape[1] - 1:
            raise DataError(f"CMVN: {where}feature dim {mat.shape[1]} differs from "
                            f"{stats.shape[1] - 1}" + (f" (of {first})" if first else "")
                            + src)
        if not np.isfinite(mat).all():
            raise DataError(f"CMVN: {where}NaN/Inf in features{src}")
        stats[0, :-1] += mat.sum(axis=0)
        stats[1, :-1] += np.square(mat).sum(axis=0)
        stats[0, -1] += mat.shape[0]
    if stats is None:
        raise DataError(f"CMVN: no features to accumulate{src}")
    return stats


def read_stats(path: str | Path) -> np.ndarray:
    """Global statistics written by :func:`compute_global_stats` (or Kaldi's
    ``compute-cmvn-stats``): a ``[2, D + 1]`` matrix; never unpickled."""
    stats = load_matrix(path, "CMVN statistics")
    if stats.ndim != 2 or stats.shape[0] != 2 or stats.shape[1] < 2:
        raise DataError(f"{path}: CMVN statistics must be a [2, D + 1] matrix, got shape "
                        f"{stats.shape}")
    return stats


def compute_global_stats(feats_scp: str | Path, out: str | Path) -> np.ndarray:
    """Global CMVN statistics over every utterance of ``feats_scp``, written to ``out``."""
    reader = load_scp(feats_scp)
    stats = accumulate(((key, reader[key]) for key in reader), feats_scp)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    kaldiio.save_mat(str(out), stats)
    return stats


def stats_to_mean_std(stats: np.ndarray, var_floor: float = 1e-10
                      ) -> tuple[np.ndarray, np.ndarray]:
    count = stats[0, -1]
    if count <= 0:
        raise DataError("CMVN statistics hold no frames")
    mean = stats[0, :-1] / count
    var = np.maximum(stats[1, :-1] / count - mean**2, var_floor)
    return mean, np.sqrt(var)


def norm_vars_of(train_cfg: dict) -> bool:
    """Whether a training config's global CMVN divides by the std (``cmvn.norm_vars``, default
    true); the trainer and a reloaded packed model must agree on it."""
    return bool((train_cfg.get("cmvn") or {}).get("norm_vars", True))


class GlobalCMVN(torch.nn.Module):
    """Applies ``(x - mean) / std`` from global statistics; stored as buffers in the model."""

    def __init__(self, mean: np.ndarray, std: np.ndarray, norm_vars: bool = True):
        super().__init__()
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32))
        self.register_buffer("std", torch.as_tensor(std, dtype=torch.float32))
        self.norm_vars = norm_vars

    @classmethod
    def from_file(cls, path: str | Path, norm_vars: bool = True) -> GlobalCMVN:
        mean, std = stats_to_mean_std(read_stats(path))
        return cls(mean, std, norm_vars)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x - self.mean
        return x / self.std if self.norm_vars else x


def compute_speaker_stats(dump_dir: str | Path, out: str | Path) -> dict[str, np.ndarray]:
    """Per-speaker statistics (``compute-cmvn-stats --spk2utt``): a Kaldi ark keyed by speaker."""
    from sertk.data.datadir import DataDir

    d = DataDir(dump_dir)
    reader = load_scp(d.path / "feats.scp")
    stats: dict[str, np.ndarray] = {}
    for spk, utts in d.table("spk2utt").items():
        stats[spk] = accumulate(((u, reader[u]) for u in utts.split()), d.path / "feats.scp")
    kaldiio.save_ark(str(out), stats)
    return stats


def apply_cmvn(src: str | Path, dst: str | Path, stats_file: str | Path | None,
               per_speaker: bool = False, norm_vars: bool = True) -> Path:
    """Write ``dst`` = ``src`` with normalised features (Kaldi ``apply-cmvn``).

    ``per_speaker``: ``stats_file`` is a speaker-keyed ark (``--utt2spk`` in Kaldi); otherwise
    one global matrix. Tables other than ``feats.scp`` are copied.
    """
    import shutil

    from sertk.data.datadir import DataDir
    from sertk.data.kaldi_table import write_table

    d = DataDir(src)
    dst = Path(dst).resolve()
    (dst / "data").mkdir(parents=True, exist_ok=True)
    if per_speaker:
        table = dict(load_ark(stats_file))
    else:
        glob = read_stats(stats_file)
    reader = load_scp(d.path / "feats.scp")
    with kaldiio.WriteHelper(f"ark,scp:{dst / 'data' / 'feats.ark'},{dst / 'feats.scp'}") as w:
        for utt in d.utts:
            if per_speaker:
                spk = d.utt2spk[utt]
                if spk not in table:
                    raise DataError(f"utterance {utt}: no CMVN statistics for speaker {spk} in "
                                    f"{stats_file}")
                st = table[spk]
            else:
                st = glob
            mean, std = stats_to_mean_std(np.asarray(st))
            x = reader[utt] - mean
            w(utt, (x / std if norm_vars else x).astype(np.float32))
    for name in os.listdir(d.path):
        if name != "feats.scp" and (d.path / name).is_file():
            shutil.copy(d.path / name, dst / name)
    if per_speaker and (d.path / "feats.yaml").is_file():
        from sertk.config import load_yaml, save_yaml

        cfg = load_yaml(d.path / "feats.yaml")
        cfg["speaker_cmvn"] = {"norm_vars": bool(norm_vars)}
        save_yaml(cfg, dst / "feats.yaml")
    write_table(dst / "feats.scp", dict(line.split(maxsplit=1) for line in
                                        (dst / "feats.scp").read_text().splitlines()))
    from sertk.data.dialog import write_context_tables

    write_context_tables(dst)  # the contexts' normalised features
    return dst
