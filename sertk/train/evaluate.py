"""Evaluation during training: metrics over a dev set (all-reduced across DDP ranks),
test-time window averaging, and batch-norm recalibration of averaged weights."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import nn

from sertk.data.dataset import FeatsDataset, pad_collate
from sertk.data.inputs import InputTable, batch_inputs
from sertk.data.sampler import BucketBatchSampler
from sertk.data.segments import windows
from sertk.errors import SertkError
from sertk.losses import CCCLoss
from sertk.models.classifier import EmotionClassifier
from sertk.scoring import confusion_matrix, metrics_from_confusion
from sertk.train.checkpoint import unwrap
from sertk.train.distributed import DistInfo, all_reduce_sum
from sertk.train.targets import TargetTable


@torch.no_grad()
def evaluate(model: nn.Module, dataset: FeatsDataset, sampler: BucketBatchSampler,
             criterion: nn.Module, info: DistInfo, num_classes: int,
             segment: tuple[int, int] | None = None,
             inputs: dict[str, InputTable] | None = None) -> dict[str, Any]:
    """Loss and metrics over the whole set; each rank scores its share, sums are all-reduced.

    With ``segment = (length, shift)`` each utterance is scored as the mean posterior of its
    windows (test-time averaging) and the loss is the NLL of that mean. ``inputs``: the
    model's extra input tables (:mod:`sertk.data.inputs`).
    """
    model = unwrap(model)
    model.eval()
    cm = torch.zeros(num_classes, num_classes, dtype=torch.float64)
    loss_sum = torch.zeros(1, dtype=torch.float64)
    loader = torch.utils.data.DataLoader(dataset, batch_sampler=sampler, collate_fn=pad_collate)
    for batch in loader:
        target = batch["labels"].to(info.device)
        if segment is None:
            logits = model(batch["feats"].to(info.device), batch["lengths"].to(info.device),
                           inputs=batch_inputs(inputs, batch["keys"], info.device))
            loss_sum += float(criterion(logits.float(), target)) * target.numel()
            hyp = logits.argmax(-1)
        else:
            post = segment_posteriors(model, batch["feats"], batch["lengths"], segment,
                                      info.device)
            loss_sum += float(torch.nn.functional.nll_loss(post.clamp_min(1e-12).log(),
                                                           target.cpu(), reduction="sum"))
            hyp = post.argmax(-1)
        cm += torch.from_numpy(confusion_matrix(target.cpu().numpy(), hyp.cpu().numpy(),
                                                num_classes)).double()
    all_reduce_sum(cm, info)
    all_reduce_sum(loss_sum, info)
    res = metrics_from_confusion(cm.numpy().astype(np.int64), [str(i) for i in range(num_classes)])
    res["loss"] = float(loss_sum) / max(1, res["num_utts"])
    if math.isnan(res["loss"]):
        raise SertkError("validation loss is NaN")
    return res


@torch.no_grad()
def evaluate_dims(model: nn.Module, dataset: FeatsDataset, sampler: BucketBatchSampler,
                  criterion: nn.Module, info: DistInfo, targets: TargetTable,
                  names: list[str], inputs: dict[str, InputTable] | None = None
                  ) -> dict[str, Any]:
    """Dimensional task: CCC, Pearson and MSE per dimension over the whole set (from sums
    all-reduced across ranks), ``CCC`` their mean CCC; ``loss`` is the CCC loss of the
    whole set (``1 - sum_d w_d CCC_d``) or, for other criteria, the mean batch loss."""
    model = unwrap(model)
    model.eval()
    k = len(names)
    sums = torch.zeros(6, k, dtype=torch.float64)   # n, x, y, xx, yy, xy
    loss_sum = torch.zeros(1, dtype=torch.float64)
    loader = torch.utils.data.DataLoader(dataset, batch_sampler=sampler, collate_fn=pad_collate)
    for batch in loader:
        y = targets.batch(batch["keys"]).double()
        x = model(batch["feats"].to(info.device), batch["lengths"].to(info.device),
                  inputs=batch_inputs(inputs, batch["keys"], info.device)).double().cpu()
        sums += torch.stack([torch.ones_like(x).sum(0), x.sum(0), y.sum(0), (x * x).sum(0),
                             (y * y).sum(0), (x * y).sum(0)])
        loss_sum += float(criterion(x.float(), y.float())) * x.shape[0]
    all_reduce_sum(sums, info)
    all_reduce_sum(loss_sum, info)
    res = dims_from_sums(sums.numpy(), names)
    weights = getattr(criterion, "weights", None)
    res["loss"] = 1 - float(sum(float(w) * res[f"CCC_{n}"] for w, n in zip(weights, names))) \
        if isinstance(criterion, CCCLoss) else float(loss_sum) / max(1, res["num_utts"])
    if math.isnan(res["loss"]):
        raise SertkError("validation loss is NaN")
    return res


def dims_from_sums(sums: np.ndarray, names: list[str]) -> dict[str, Any]:
    """CCC / Pearson / MSE per dimension from ``[n, sx, sy, sxx, syy, sxy]`` rows."""
    n, sx, sy, sxx, syy, sxy = sums
    mx, my = sx / n, sy / n
    vx, vy = sxx / n - mx ** 2, syy / n - my ** 2
    cov = sxy / n - mx * my
    ccc = 2 * cov / np.maximum(vx + vy + (mx - my) ** 2, 1e-12)
    pearson = cov / np.maximum(np.sqrt(np.maximum(vx, 0) * np.maximum(vy, 0)), 1e-12)
    mse = (sxx - 2 * sxy + syy) / n
    res: dict[str, Any] = {"num_utts": int(n[0]), "CCC": float(ccc.mean())}
    for i, name in enumerate(names):
        res[f"CCC_{name}"] = float(ccc[i])
        res[f"Pearson_{name}"] = float(pearson[i])
        res[f"MSE_{name}"] = float(mse[i])
    return res


def segment_posteriors(model: nn.Module, feats: torch.Tensor, lengths: torch.Tensor,
                       segment: tuple[int, int], device: torch.device | str) -> torch.Tensor:
    """Mean softmax posterior over each utterance's windows -> ``[B, C]`` (on the CPU)."""
    pieces, owner = [], []
    for b, n in enumerate(lengths.tolist()):
        for s, e in windows(n, int(segment[0]), int(segment[1])):
            pieces.append(feats[b, s:e])
            owner.append(b)
    x = torch.nn.utils.rnn.pad_sequence(pieces, batch_first=True).to(device)
    lens = torch.tensor([p.shape[0] for p in pieces], device=device)
    post = torch.softmax(model(x, lens).float(), -1).cpu()
    idx = torch.tensor(owner)
    out = torch.zeros(len(lengths), post.shape[1]).index_add_(0, idx, post)
    return out / torch.bincount(idx, minlength=len(lengths)).unsqueeze(1).float()


def bn_init_residual(model: nn.Module) -> tuple[float, int]:
    """Largest share of their initial values (mean 0, variance 1) that batch-norm running
    statistics still hold, ``(1 - momentum) ** updates``, and that layer's update count.
    After few training steps a layer whose real variance is far from 1 (a raw-waveform
    convolution: about 0.006) normalises wrongly in evaluation mode. ``(0.0, 0)`` without
    batch norm (or with cumulative averages, momentum None)."""
    worst = (0.0, 0)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats \
                and m.momentum is not None:
            n = int(m.num_batches_tracked)
            worst = max(worst, ((1.0 - float(m.momentum)) ** n, n))
    return worst


@torch.no_grad()
def recalibrate_bn(model: EmotionClassifier, dataset: FeatsDataset, info: DistInfo,
                   batch_size: int = 32, inputs: dict[str, InputTable] | None = None) -> bool:
    """Recompute batch-norm running statistics as a cumulative average over one pass of the
    training set (SWA's ``update_bn``: averaged weights need their own statistics). Each
    rank uses its own shard; rank 0's statistics are kept. Returns False without BN layers."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return False
    saved = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
    model.train()
    sampler = BucketBatchSampler(dataset.lengths if len(dataset.items) == len(dataset.lengths)
                                 else [dataset.effective_length(i) for i in range(len(dataset))],
                                 batch_size, shuffle=False, rank=info.rank,
                                 world_size=info.world_size, pad_to_world=False)
    loader = torch.utils.data.DataLoader(dataset, batch_sampler=sampler, collate_fn=pad_collate)
    for batch in loader:
        model(batch["feats"].to(info.device), batch["lengths"].to(info.device),
              inputs=batch_inputs(inputs, batch["keys"], info.device))
    for m, mom in zip(bns, saved):
        m.momentum = mom
    model.eval()
    return True
