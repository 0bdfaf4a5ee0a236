"""Datasets over dumped features (``feats.scp`` + ``utt2emo``) and the padding collate."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from sertk.data.ark import load_mat
from sertk.data.datadir import DataDir
from sertk.data.segments import windows
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


def _feat_dim(dump_dir: Path) -> int | None:
    """The feature dimension a dump directory declares (``feat_dim``), None without one."""
    path = dump_dir / "feat_dim"
    if not path.is_file():
        return None
    try:
        return int(path.read_text().strip())
    except ValueError:
        raise DataError(f"{path}: not an integer") from None


def write_labels(path: str | Path, labels: list[str]) -> None:
    Path(path).write_text("".join(f"{lab}\n" for lab in labels))


class FeatsDataset(torch.utils.data.Dataset):
    """Items of a dump directory: ``(key, feats [T, D] float32, label index or -1)``.

    Features are read lazily from the arks. A label not in ``labels``, a missing label (when
    ``require_labels``) or a NaN/Inf feature raises :class:`DataError` naming the utterance.

    Training views (all optional):

    * ``crop_frames``: a random window of at most that many frames per item; with
      ``crop_pad: repeat`` a shorter item is tiled (repeated from its start) to exactly
      ``crop_frames``, so every training item has the same length and batches need no
      padding mask (the layers' fast paths); ``crop_pad: mask`` keeps it short (padded in
      the batch, masked);
    * ``segment = (length, shift)``: every utterance becomes its overlapping windows, each an
      item with the utterance's label (segment-level training);
    * ``repeat``: each item appears ``repeat`` times per epoch (copies for random
      augmentation, e.g. VTLP's 7 extra copies with ``repeat: 8``).
    """

    def __init__(self, dump_dir: str | Path, labels: list[str] | None,
                 require_labels: bool = True, crop_frames: int | None = None,
                 seed: int = 0, segment: tuple[int, int] | None = None, repeat: int = 1,
                 crop_pad: str = "mask"):
        if crop_pad not in ("mask", "repeat"):
            raise DataError(f"crop_pad must be mask or repeat, got {crop_pad!r}")
        self.dir = DataDir(dump_dir)
        if not self.dir.has("feats.scp"):
            raise DataError(f"{self.dir.path}: feats.scp is missing (run `sertk feats dump`)")
        self.scp = self.dir.table("feats.scp")
        self.keys = sorted(self.scp)
        if not self.keys:
            raise DataError(f"{self.dir.path / 'feats.scp'}: no utterances (empty file)")
        self.dim = _feat_dim(self.dir.path)  # every matrix is checked against it (if known)
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
            self.lengths = [self.load(i).shape[0] for i in range(len(self.keys))]
        self.crop_frames = crop_frames
        self.crop_pad = crop_pad
        self.seed = seed
        self.rng = np.random.default_rng(seed)
        # items: (utterance index, start, end); end None = whole utterance
        items: list[tuple[int, int, int | None]] = []
        for i, n in enumerate(self.lengths):
            if segment is not None:
                items.extend((i, s, e) for s, e in windows(n, int(segment[0]), int(segment[1])))
            else:
                items.append((i, 0, None))
        self.items = items * max(1, int(repeat))

    def set_epoch(self, epoch: int, rank: int = 0) -> None:
        """Reseed the cropping so every epoch (and rank) draws different, reproducible crops."""
        self.rng = np.random.default_rng([self.seed, epoch, rank])

    def __len__(self) -> int:
        return len(self.items)

    def load(self, i: int) -> np.ndarray:
        """Features of utterance ``i`` (index into ``keys``), checked for NaN/Inf."""
        key = self.keys[i]
        mat = load_mat(self.scp[key], key)  # never unpickles; errors name key and entry
        if isinstance(mat, tuple) or np.ndim(mat) != 2:
            raise DataError(f"utterance {key}: {self.scp[key]} is not a feature matrix")
        if self.dim is not None and mat.shape[1] != self.dim:
            raise DataError(f"utterance {key}: features of dimension {mat.shape[1]} in "
                            f"{self.scp[key]}, but {self.dir.path / 'feat_dim'} says {self.dim}")
        if not np.isfinite(mat).all():
            raise DataError(f"utterance {key}: NaN/Inf in features {self.scp[key]}")
        return mat

    def random_chunk(self, mat: np.ndarray, frames: int | None) -> np.ndarray:
        if frames and mat.shape[0] > frames:
            start = int(self.rng.integers(0, mat.shape[0] - frames + 1))
            mat = mat[start:start + frames]
        elif frames and self.crop_pad == "repeat" and 0 < mat.shape[0] < frames:
            mat = np.tile(mat, (-(-frames // mat.shape[0]), 1))[:frames]
        return mat

    def __getitem__(self, j: int) -> tuple[str, torch.Tensor, int]:
        i, start, end = self.items[j]
        mat = self.load(i)
        if end is not None:
            mat = mat[start:end]
        mat = self.random_chunk(mat, self.crop_frames)
        return self.keys[i], torch.from_numpy(np.array(mat, dtype=np.float32)), self.targets[i]

    def effective_length(self, j: int) -> int:
        i, start, end = self.items[j]
        n = (end - start) if end is not None else self.lengths[i]
        if not self.crop_frames:
            return n
        return self.crop_frames if self.crop_pad == "repeat" and n > 0 else min(n,
                                                                                self.crop_frames)

    def indices_by_label(self) -> dict[int, list[int]]:
        out: dict[int, list[int]] = {}
        for i, t in enumerate(self.targets):
            out.setdefault(t, []).append(i)
        return out


def pad_collate(batch: list[tuple[str, torch.Tensor, int]]) -> dict[str, object]:
    """Pad ``[T, D]`` features to the longest in the batch; keep the true lengths."""
    keys = [b[0] for b in batch]
    lengths = torch.tensor([b[1].shape[0] for b in batch], dtype=torch.long)
    feats = torch.nn.utils.rnn.pad_sequence([b[1] for b in batch], batch_first=True)
    labels = torch.tensor([b[2] for b in batch], dtype=torch.long)
    return {"keys": keys, "feats": feats, "lengths": lengths, "labels": labels}
