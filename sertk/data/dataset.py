"""Datasets over dumped features (``feats.scp`` + ``utt2emo``) and the padding collate."""

from __future__ import annotations

from pathlib import Path

import kaldiio
import numpy as np
import torch

from sertk.data.datadir import DataDir
from sertk.errors import DataError


def read_labels(path: str | Path) -> list[str]:
    """Read a label list (one label per line, in class-index order)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"label list not found: {path}")
    labels = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if len(set(labels)) != len(labels):
        raise DataError(f"{path}: duplicate labels")
    return labels


def write_labels(path: str | Path, labels: list[str]) -> None:
    Path(path).write_text("".join(f"{lab}\n" for lab in labels))


class FeatsDataset(torch.utils.data.Dataset):
    """Utterances of a dump directory: ``(key, feats [T, D] float32, label index or -1)``.

    Features are read lazily from the arks. A label not in ``labels``, a missing label (when
    ``require_labels``) or a NaN/Inf feature raises :class:`DataError` naming the utterance.
    ``crop_frames`` (training only) takes a random window of at most that many frames.
    """

    def __init__(self, dump_dir: str | Path, labels: list[str] | None,
                 require_labels: bool = True, crop_frames: int | None = None,
                 seed: int = 0):
        self.dir = DataDir(dump_dir)
        if not self.dir.has("feats.scp"):
            raise DataError(f"{self.dir.path}: feats.scp is missing (run `sertk feats dump`)")
        self.scp = self.dir.table("feats.scp")
        self.keys = sorted(self.scp)
        self.labels = labels
        self.targets = [-1] * len(self.keys)
        if labels is not None and (require_labels or self.dir.has("utt2emo")):
            utt2emo = self.dir.utt2emo
            index = {lab: i for i, lab in enumerate(labels)}
            for i, key in enumerate(self.keys):
                if key not in utt2emo:
                    raise DataError(f"utterance {key}: no label in {self.dir.path / 'utt2emo'}")
                lab = utt2emo[key]
                if lab not in index:
                    raise DataError(f"utterance {key}: unknown label {lab!r} in "
                                    f"{self.dir.path / 'utt2emo'} (known: {' '.join(labels)})")
                self.targets[i] = index[lab]
        if self.dir.has("utt2num_frames"):
            u2n = self.dir.table("utt2num_frames")
            self.lengths = [int(u2n[k]) for k in self.keys]
        else:
            self.lengths = [self._load(i).shape[0] for i in range(len(self.keys))]
        self.crop_frames = crop_frames
        self.seed = seed
        self.rng = np.random.default_rng(seed)

    def set_epoch(self, epoch: int, rank: int = 0) -> None:
        """Reseed the cropping so every epoch (and rank) draws different, reproducible crops."""
        self.rng = np.random.default_rng([self.seed, epoch, rank])

    def __len__(self) -> int:
        return len(self.keys)

    def _load(self, i: int) -> np.ndarray:
        key = self.keys[i]
        try:
            mat = kaldiio.load_mat(self.scp[key])
        except Exception as exc:  # kaldiio raises several types for broken arks
            raise DataError(f"utterance {key}: cannot read features {self.scp[key]}: "
                            f"{exc}") from None
        if not np.isfinite(mat).all():
            raise DataError(f"utterance {key}: NaN/Inf in features {self.scp[key]}")
        return mat

    def __getitem__(self, i: int) -> tuple[str, torch.Tensor, int]:
        mat = self._load(i)
        if self.crop_frames and mat.shape[0] > self.crop_frames:
            start = int(self.rng.integers(0, mat.shape[0] - self.crop_frames + 1))
            mat = mat[start:start + self.crop_frames]
        return self.keys[i], torch.from_numpy(np.array(mat, dtype=np.float32)), self.targets[i]

    def effective_length(self, i: int) -> int:
        n = self.lengths[i]
        return min(n, self.crop_frames) if self.crop_frames else n


def pad_collate(batch: list[tuple[str, torch.Tensor, int]]) -> dict[str, object]:
    """Pad ``[T, D]`` features to the longest in the batch; keep the true lengths."""
    keys = [b[0] for b in batch]
    lengths = torch.tensor([b[1].shape[0] for b in batch], dtype=torch.long)
    feats = torch.nn.utils.rnn.pad_sequence([b[1] for b in batch], batch_first=True)
    labels = torch.tensor([b[2] for b in batch], dtype=torch.long)
    return {"keys": keys, "feats": feats, "lengths": lengths, "labels": labels}
