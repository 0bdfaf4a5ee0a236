"""CPC pre-training without labels (Li et al., ICASSP 2021; papers.md section 6):
``sertk pretrain cpc --data DATA --out DIR``.

Every utterance of ``DATA/wav.scp`` (or of ``DATA/segments`` when present) is read with
:func:`sertk.data.audio.load_audio` and cut to a fixed crop of ``crop_seconds`` (paper: 10 s;
a longer utterance gives a random window, drawn anew every epoch -- the paper only says "cut";
a shorter one is repeated from its start, as in the paper). The network
(:class:`sertk.models.cpc.CPC`) is trained with the InfoNCE loss, Adam lr 2e-4, weight decay
1e-5 (paper). Not in the paper (``conf/pretrain/cpc.yaml``): batch 8 (the paper's per-GPU
batch), 50 epochs (the paper's count, stated for its training in general), no gradient
clipping, seed 42.

Writes ``DIR/cpc.safetensors`` (the CPC weights after the last finished epoch, rewritten every
epoch; ``encoder.*``, ``gru.*``, ``predictors.*``), ``DIR/config.yaml`` (the resolved config),
``DIR/train.log`` and ``DIR/metrics.csv`` (epoch, loss, accuracy of the positive among its
negatives, seconds).
"""

from __future__ import annotations

import csv
import logging
import math
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from sertk.config import deep_update, save_yaml
from sertk.data.audio import AudioConfig, load_audio
from sertk.data.datadir import DataDir
from sertk.errors import DataError, SertkError
from sertk.logging_utils import setup_logging
from sertk.models.cpc import CPC

log = logging.getLogger(__name__)

DEFAULTS: dict[str, Any] = {
    "model": {"channels": 128, "hidden": 256, "strides": [5, 4, 4, 2],
              "kernels": [10, 8, 8, 4], "horizon": 12, "negatives": 50, "temperature": 1.0,
              "normalize": True},
    "data": {"sample_rate": 16000, "crop_seconds": 10.0},
    "train": {"epochs": 50, "batch_size": 8, "lr": 2.0e-4, "weight_decay": 1.0e-5,
              "grad_clip": None, "num_workers": 0, "seed": 42},
}
METRICS = ("epoch", "loss", "accuracy", "seconds")


def resolve_config(cfg: dict[str, Any] | None) -> dict[str, Any]:
    """``DEFAULTS`` updated with ``cfg``; an unknown section or key is an error."""
    cfg = cfg or {}
    for section, values in cfg.items():
        if section not in DEFAULTS or not isinstance(values, dict):
            raise SertkError(f"pretrain cpc config: unknown section {section!r} (known: "
                             f"{', '.join(DEFAULTS)})")
        unknown = sorted(set(values) - set(DEFAULTS[section]))
        if unknown:
            raise SertkError(f"pretrain cpc config: unknown key {section}.{unknown[0]} "
                             f"(known: {', '.join(DEFAULTS[section])})")
    return deep_update(DEFAULTS, cfg)


def audio_items(data_dir: str | Path) -> list[tuple[str, str, float, float | None]]:
    """``(key, wav.scp entry, start, end)`` of every utterance: the ``segments`` when the
    directory has them, else every ``wav.scp`` entry."""
    d = DataDir(data_dir)
    if not d.has("wav.scp"):
        raise DataError(f"{data_dir}: wav.scp is missing")
    wav, segs = d.wav_scp, d.segments()
    if segs is None:
        items = [(key, entry, 0.0, None) for key, entry in sorted(wav.items())]
    else:
        items = []
        for utt, seg in sorted(segs.items()):
            if seg.reco not in wav:
                raise DataError(f"utterance {utt}: recording {seg.reco} not in "
                                f"{d.path / 'wav.scp'}")
            items.append((utt, wav[seg.reco], seg.start, seg.end))
    if not items:
        raise DataError(f"{data_dir}: no utterances")
    return items


def fixed_crop(wav: torch.Tensor, n: int) -> torch.Tensor:
    """A random ``n``-sample window of a longer waveform; a shorter one repeated to ``n``."""
    if wav.numel() >= n:
        start = random.randrange(wav.numel() - n + 1)
        return wav[start:start + n]
    return wav.repeat(math.ceil(n / wav.numel()))[:n]


class CropDataset(torch.utils.data.Dataset):
    """The utterances of a data directory as fixed-length waveform crops, read on demand."""

    def __init__(self, items: list[tuple[str, str, float, float | None]], sample_rate: int,
                 crop_seconds: float):
        self.items, self.audio = items, AudioConfig(sample_rate=int(sample_rate))
        self.crop = int(round(float(crop_seconds) * int(sample_rate)))
        if self.crop < 1:
            raise SertkError(f"pretrain cpc: crop_seconds {crop_seconds} gives no samples")

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> torch.Tensor:
        key, entry, start, end = self.items[i]
        return fixed_crop(load_audio(entry, self.audio, key, start, end), self.crop)


def _seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _device(name: str | None) -> torch.device:
    if name is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise SertkError(f"device {name} requested but CUDA is not available")
    return torch.device(name)


def _epoch(model: CPC, loader: torch.utils.data.DataLoader, opt: torch.optim.Optimizer,
           tc: dict[str, Any], device: torch.device, desc: str, progress: bool
           ) -> tuple[float, float]:
    """One pass over the crops; returns the mean loss and accuracy per batch."""
    model.train()
    loss_sum = acc_sum = 0.0
    bar = tqdm(loader, desc=desc, disable=not progress, leave=False, unit="batch")
    for step, wave in enumerate(bar, start=1):
        wave = wave.to(device)
        lengths = torch.full((wave.shape[0],), wave.shape[1], device=device)
        loss, acc = model.info_nce(wave, lengths)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if tc["grad_clip"]:
            torch.nn.utils.clip_grad_norm_(model.parameters(), float(tc["grad_clip"]))
        opt.step()
        loss_sum, acc_sum = loss_sum + loss.item(), acc_sum + acc.item()
        bar.set_postfix(loss=f"{loss_sum / step:.3f}", acc=f"{acc_sum / step:.3f}")
    bar.close()
    return loss_sum / len(loader), acc_sum / len(loader)


def _save(model: CPC, path: Path) -> None:
    """Weights only (safetensors), written beside and renamed: never a half-written file."""
    from safetensors.torch import save_file

    tmp = path.with_suffix(".tmp")
    save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
              str(tmp))
    tmp.replace(path)


def pretrain(data_dir: str | Path, out: str | Path, cfg: dict[str, Any] | None = None,
             device: str | None = None, progress: bool = True) -> dict[str, Any]:
    """Train CPC on the audio of ``data_dir`` into ``out``; returns the last epoch's
    ``{"epoch", "loss", "accuracy", "seconds"}``."""
    cfg = resolve_config(cfg)
    tc, out = cfg["train"], Path(out)
    items = audio_items(data_dir)
    out.mkdir(parents=True, exist_ok=True)
    setup_logging(out / "train.log")
    save_yaml(cfg, out / "config.yaml")
    _seed(int(tc["seed"]))
    dev = _device(device)
    model = CPC(**cfg["model"]).to(dev)
    data = CropDataset(items, **cfg["data"])
    loader = torch.utils.data.DataLoader(data, batch_size=int(tc["batch_size"]), shuffle=True,
                                         num_workers=int(tc["num_workers"]))
    opt = torch.optim.Adam(model.parameters(), lr=float(tc["lr"]),
                           weight_decay=float(tc["weight_decay"]))
    log.info("CPC pre-training on %d utterances of %s (%.1f s crops), %d epochs, device %s, "
             "%.2fM parameters; output %s", len(data), data_dir, data.crop / data.audio.sample_rate,
             tc["epochs"], dev, sum(p.numel() for p in model.parameters()) / 1e6, out)
    with open(out / "metrics.csv", "w", newline="") as fh:
        csv.writer(fh).writerow(METRICS)
    row: dict[str, Any] = {}
    for epoch in range(1, int(tc["epochs"]) + 1):
        start = time.time()
        loss, acc = _epoch(model, loader, opt, tc, dev, f"cpc epoch {epoch}/{tc['epochs']}",
                           progress)
        row = {"epoch": epoch, "loss": round(loss, 5), "accuracy": round(acc, 5),
               "seconds": round(time.time() - start, 2)}
        if not math.isfinite(loss):
            raise SertkError(f"pretrain cpc: loss is {loss} at epoch {epoch} (lower train.lr "
                             "or set train.grad_clip)")
        _save(model, out / "cpc.safetensors")
        with open(out / "metrics.csv", "a", newline="") as fh:
            csv.writer(fh).writerow([row[k] for k in METRICS])
        log.info("epoch %d/%d: loss %.4f, accuracy %.4f, %.1f s", epoch, tc["epochs"], loss,
                 acc, row["seconds"])
    log.info("wrote %s", out / "cpc.safetensors")
    return row
