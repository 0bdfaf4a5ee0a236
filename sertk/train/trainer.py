"""The training loop behind ``sertk train``: alone or under ``torchrun`` (DDP).

Per epoch: length-bucketed training batches with padding masks, optional augmentation, AMP on
GPU, gradient clipping; validation (UA, WA, macro-F1, loss) summed over ranks; the best
checkpoint by valid UA; early stopping; a metrics CSV row and a log line. ``resume`` restarts
from ``EXP/checkpoints/last.pt``. Randomness is reseeded from ``seed`` at every epoch, so a
resumed run continues as the uninterrupted one would.

The experiment directory ends up self-contained for ``sertk predict`` and ``sertk pack``:
``config.yaml`` (resolved training config + input dim), ``labels.txt``, ``cmvn.ark``,
``feats.yaml`` (front end used for the dump), ``model.safetensors`` (best weights),
``metrics.csv`` and ``train.log``.
"""

from __future__ import annotations

import csv
import logging
import random
import shutil
import time
from collections import Counter
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from tqdm import tqdm

from sertk.augment import Batch, build_augment
from sertk.config import save_yaml
from sertk.data.datadir import DataDir
from sertk.data.dataset import FeatsDataset, pad_collate, read_labels, write_labels
from sertk.data.sampler import BucketBatchSampler
from sertk.errors import SertkError
from sertk.features.cmvn import GlobalCMVN, compute_global_stats, norm_vars_of
from sertk.logging_utils import setup_logging
from sertk.losses import build_loss
from sertk.models.classifier import EmotionClassifier, aux_tables
from sertk.train.checkpoint import (
    load_state,
    load_weights,
    save_state,
    save_weights,
)
from sertk.train.distributed import (
    DistInfo,
    all_reduce_sum,
    barrier,
    cleanup,
    init_distributed,
)
from sertk.train.evaluate import evaluate, recalibrate_bn
from sertk.train.schedule import build_optimizer, build_scheduler

log = logging.getLogger(__name__)

DEFAULT_TRAIN = {"epochs": 30, "batch_size": 16, "max_frames": None, "crop_frames": None,
                 "segment": None, "eval_segment": None, "repeat": 1,
                 "select": "best", "average_last": 5, "batch_crop": False,
                 "save_initial": False,
                 "grad_clip": 5.0, "patience": None, "seed": 0, "num_workers": 0,
                 "amp": True, "valid_batch_size": 32}
CSV_FIELDS = ["epoch", "lr", "train_loss", "train_acc", "valid_loss", "valid_WA", "valid_UA",
              "valid_macro_F1", "seconds", "best"]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _train_cfg(cfg: dict[str, Any]) -> dict[str, Any]:
    tc = {**DEFAULT_TRAIN, **(cfg.get("train") or {})}
    unknown = set(tc) - set(DEFAULT_TRAIN)
    if unknown:
        raise SertkError(f"unknown train options: {', '.join(sorted(unknown))}")
    return tc


def prepare_labels(cfg: dict[str, Any], train_dir: Path, labels_file: str | None) -> list[str]:
    if labels_file:
        return read_labels(labels_file)
    if cfg.get("labels"):
        return list(cfg["labels"])
    return DataDir(train_dir).labels()


def train(cfg: dict[str, Any], train_dir: str | Path, valid_dir: str | Path, exp_dir: str | Path,
          resume: bool = False, cmvn_file: str | None = None, labels_file: str | None = None,
          device: str | None = None, progress: bool = True) -> dict[str, Any]:
    """Train ``cfg['model']`` on a dump directory; return the best validation metrics."""
    info = init_distributed(device)
    exp = Path(exp_dir)
    try:
        if info.is_main:
            (exp / "checkpoints").mkdir(parents=True, exist_ok=True)
        barrier(info)
        setup_logging(exp / "train.log" if info.is_main else None, rank=info.rank)
        return _train(cfg, Path(train_dir), Path(valid_dir), exp, resume, cmvn_file,
                      labels_file, info, progress)
    finally:
        cleanup(info)


def _train(cfg: dict[str, Any], train_dir: Path, valid_dir: Path, exp: Path, resume: bool,
           cmvn_file: str | None, labels_file: str | None, info: DistInfo, progress: bool
           ) -> dict[str, Any]:
    tc = _train_cfg(cfg)
    seed = int(tc["seed"])
    seed_everything(seed)
    labels = prepare_labels(cfg, train_dir, labels_file)
    train_set = FeatsDataset(train_dir, labels, crop_frames=tc["crop_frames"], seed=seed,
                             segment=tc["segment"], repeat=int(tc["repeat"]))
    valid_set = FeatsDataset(valid_dir, labels)
    eval_segment = tuple(tc["eval_segment"]) if tc["eval_segment"] else None
    input_dim = int(DataDir(train_dir).path.joinpath("feat_dim").read_text()) \
        if (train_dir / "feat_dim").is_file() else train_set[0][1].shape[1]
    log.info("train %s: %d items; valid %s: %d utts; %d classes: %s; input dim %d; "
             "%d process(es) on %s", train_dir, len(train_set), valid_dir, len(valid_set),
             len(labels),
             " ".join(labels), input_dim, info.world_size, info.device)

    cmvn_path = exp / "cmvn.ark"
    if info.is_main:
        if cmvn_file:
            shutil.copy(cmvn_file, cmvn_path)
        elif not cmvn_path.is_file():
            log.info("computing global CMVN statistics from %s", train_dir)
            compute_global_stats(train_dir / "feats.scp", cmvn_path)
        write_labels(exp / "labels.txt", labels)
        if (train_dir / "feats.yaml").is_file():
            shutil.copy(train_dir / "feats.yaml", exp / "feats.yaml")
        save_yaml({**cfg, "input_dim": input_dim, "labels": labels}, exp / "config.yaml")
    barrier(info)

    mcfg = cfg.get("model") or {}
    if "name" not in mcfg:
        raise SertkError("training config needs model.name")
    init_ckpt = (mcfg.get("conf") or {}).get("init_checkpoint")
    if init_ckpt and not Path(init_ckpt).is_file():
        # the model itself only warns (a packed model is rebuilt without its init file)
        raise SertkError(f"model.conf.init_checkpoint {init_ckpt} not found (training would "
                         "start from a random initialisation)")
    aux_vocab = aux_vocabularies(mcfg["name"], train_dir, mcfg.get("conf"))
    aux_classes = {t: len(v) for t, v in aux_vocab.items()} or None
    if info.is_main and aux_classes:
        save_yaml({**cfg, "input_dim": input_dim, "labels": labels,
                   "aux_classes": aux_classes}, exp / "config.yaml")
    norm_vars = norm_vars_of(cfg)
    model = EmotionClassifier(mcfg["name"], input_dim, len(labels), mcfg.get("conf"),
                              GlobalCMVN.from_file(cmvn_path, norm_vars),
                              aux_classes).to(info.device)
    net = model.net
    emotion_weight = float(getattr(net, "emotion_loss_weight", 1.0))
    has_aux = hasattr(net, "auxiliary_loss")
    nparams = sum(p.numel() for p in model.parameters() if p.requires_grad)
    log.info("model %s: %.3fM trainable parameters", mcfg["name"], nparams / 1e6)
    ddp_model: nn.Module = model
    if info.distributed:
        ddp_model = nn.parallel.DistributedDataParallel(
            model, device_ids=[info.local_rank] if info.device.type == "cuda" else None,
            find_unused_parameters=bool(getattr(net, "ddp_find_unused_parameters", False)))

    counts = Counter(train_set.targets)
    criterion = build_loss(cfg.get("loss") or {}, [counts.get(i, 0) for i in range(len(labels))]
                           ).to(info.device)
    optimizer = build_optimizer(model.parameters(), cfg.get("optim") or {})
    train_sampler = BucketBatchSampler(
        [train_set.effective_length(i) for i in range(len(train_set))], int(tc["batch_size"]),
        shuffle=True, seed=seed, rank=info.rank, world_size=info.world_size,
        max_frames=tc["max_frames"])
    valid_sampler = BucketBatchSampler(valid_set.lengths, int(tc["valid_batch_size"]),
                                       shuffle=False, rank=info.rank,
                                       world_size=info.world_size, pad_to_world=False)
    epochs = int(tc["epochs"])
    scheduler, interval = build_scheduler(optimizer, cfg.get("scheduler"), epochs,
                                          len(train_sampler))
    batch_aug, items_aug = build_augment(cfg.get("augment"))
    use_amp = bool(tc["amp"]) and info.device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)

    state = {"epoch": 0, "best_ua": -1.0, "best_epoch": 0, "bad_epochs": 0}
    last = exp / "checkpoints" / "last.pt"
    if resume and last.is_file():
        ck = load_state(last)
        model.load_state_dict(ck["model"])
        optimizer.load_state_dict(ck["optimizer"])
        if scheduler is not None:
            scheduler.load_state_dict(ck["scheduler"])
        scaler.load_state_dict(ck["scaler"])
        state = ck["state"]
        log.info("resumed from %s after epoch %d (best UA %.4f at epoch %d)", last,
                 state["epoch"], state["best_ua"], state["best_epoch"])
    elif resume:
        log.warning("--resume given but %s does not exist; starting from scratch", last)
    elif info.is_main:
        for stale in (exp / "metrics.csv", exp / "checkpoints" / "best.safetensors"):
            stale.unlink(missing_ok=True)
        if tc["save_initial"]:  # for `sertk models compare-weights` after training
            save_weights(model, exp / "checkpoints" / "initial.safetensors")

    aux_maps = {t: {u: vocab.index(lab) for u, lab in DataDir(train_dir).table(t).items()}
                for t, vocab in aux_vocab.items()}
    patience = tc["patience"]
    best_metrics: dict[str, Any] = {}
    for epoch in range(state["epoch"] + 1, epochs + 1):
        if patience is not None and state["bad_epochs"] >= int(patience):
            break
        t0 = time.time()
        torch.manual_seed(seed + 1000 * epoch + info.rank)
        gen = torch.Generator().manual_seed(seed + 7919 * epoch + info.rank)
        train_sampler.set_epoch(epoch)
        train_set.set_epoch(epoch, info.rank)
        collate = pad_collate if items_aug is None and not tc["batch_crop"] else partial(
            _train_collate, items_aug, bool(tc["batch_crop"]), train_set,
            np.random.default_rng([seed, epoch, 1 + info.rank]))
        loader = torch.utils.data.DataLoader(train_set, batch_sampler=train_sampler,
                                             collate_fn=collate,
                                             num_workers=int(tc["num_workers"]))
        model.train()
        loss_sum, correct, seen = 0.0, 0, 0
        bar = tqdm(loader, desc=f"epoch {epoch}/{epochs}", disable=not (progress and
                                                                      info.is_main),
                   leave=False, unit="batch")
        for batch in bar:
            feats = batch["feats"].to(info.device, non_blocking=True)
            lengths = batch["lengths"].to(info.device)
            target = batch["labels"].to(info.device)
            with torch.no_grad():
                feats = model.cmvn(feats)
            if batch_aug is not None:
                b = batch_aug(Batch(feats, lengths, target, len(labels)), gen)
                feats, lengths, target = b.feats, b.lengths, b.targets
            with torch.autocast(info.device.type, dtype=torch.float16, enabled=use_amp):
                if has_aux:
                    aux = {t: torch.tensor([v.get(k, -1) for k in batch["keys"]],
                                           device=info.device) for t, v in aux_maps.items()}
                    logits, aux_loss = ddp_model(feats, lengths, normalized=True,
                                                 aux_targets=aux)
                    loss = emotion_weight * criterion(logits.float(), target) + aux_loss
                else:
                    logits = ddp_model(feats, lengths, normalized=True)
                    loss = criterion(logits.float(), target)
            if not torch.isfinite(loss):
                raise SertkError(f"epoch {epoch}: loss became {loss.item()} on batch "
                                 f"{batch['keys'][:3]}...; lower the learning rate")
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if tc["grad_clip"]:
                scaler.unscale_(optimizer)
                nn.utils.clip_grad_norm_(model.parameters(), float(tc["grad_clip"]))
            scaler.step(optimizer)
            scaler.update()
            if scheduler is not None and interval == "step":
                scheduler.step()
            n = target.shape[0]
            hard = target if target.dim() == 1 else target.argmax(-1)
            loss_sum += loss.item() * n
            correct += int((logits.argmax(-1) == hard).sum())
            seen += n
            bar.set_postfix(loss=f"{loss_sum / seen:.3f}")
        bar.close()
        lr = optimizer.param_groups[0]["lr"]
        if scheduler is not None and interval == "epoch":
            scheduler.step()
        tot = all_reduce_sum(torch.tensor([loss_sum, correct, seen], dtype=torch.float64), info)
        train_loss, train_acc = float(tot[0] / tot[2]), float(tot[1] / tot[2])

        metrics = evaluate(model, valid_set, valid_sampler, criterion, info, len(labels),
                           eval_segment)
        # a pre-training stage without emotion loss keeps its last epoch
        improved = metrics["UA"] > state["best_ua"] or emotion_weight == 0.0
        state["epoch"] = epoch
        if improved:
            state.update(best_ua=metrics["UA"], best_epoch=epoch, bad_epochs=0)
            best_metrics = metrics
        else:
            state["bad_epochs"] += 1
        seconds = time.time() - t0
        if info.is_main:
            if improved:
                save_weights(model, exp / "checkpoints" / "best.safetensors")
            if tc["select"] == "average":
                save_weights(model, exp / "checkpoints" / f"epoch{epoch}.safetensors")
                (exp / "checkpoints" / f"epoch{epoch - int(tc['average_last'])}.safetensors"
                 ).unlink(missing_ok=True)
            save_state(last, {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                              "scheduler": scheduler.state_dict() if scheduler else None,
                              "scaler": scaler.state_dict(), "state": state})
            _append_csv(exp / "metrics.csv", {
                "epoch": epoch, "lr": f"{lr:.3e}", "train_loss": f"{train_loss:.4f}",
                "train_acc": f"{train_acc:.4f}", "valid_loss": f"{metrics['loss']:.4f}",
                "valid_WA": f"{metrics['WA']:.4f}", "valid_UA": f"{metrics['UA']:.4f}",
                "valid_macro_F1": f"{metrics['macro_F1']:.4f}", "seconds": f"{seconds:.1f}",
                "best": int(improved)})
            log.info("epoch %d/%d: train loss %.4f acc %.4f | valid loss %.4f UA %.4f WA %.4f "
                     "F1 %.4f | lr %.2e | %.1fs%s", epoch, epochs, train_loss, train_acc,
                     metrics["loss"], metrics["UA"], metrics["WA"], metrics["macro_F1"], lr,
                     seconds, " *best*" if improved else "")
        barrier(info)
    if patience is not None and state["bad_epochs"] >= int(patience):
        log.info("early stopping: no valid UA improvement in %d epochs", state["bad_epochs"])
    if tc["select"] in ("last", "average"):
        return _export_final(model, tc, exp, state, train_set, valid_set, valid_sampler,
                             criterion, info, len(labels), eval_segment)
    if info.is_main:
        best = exp / "checkpoints" / "best.safetensors"
        if not best.is_file():
            raise SertkError(f"no best checkpoint in {best.parent}; did any epoch run?")
        shutil.copy(best, exp / "model.safetensors")
        log.info("best valid UA %.4f at epoch %d -> %s", state["best_ua"], state["best_epoch"],
                 exp / "model.safetensors")
    return {"best_epoch": state["best_epoch"], "best_ua": state["best_ua"], **best_metrics}


def _export_final(model: EmotionClassifier, tc: dict[str, Any], exp: Path,
                  state: dict[str, Any], train_set: FeatsDataset, valid_set: FeatsDataset,
                  valid_sampler: BucketBatchSampler, criterion: nn.Module, info: DistInfo,
                  num_classes: int, eval_segment: tuple[int, int] | None) -> dict[str, Any]:
    """``select: last`` keeps the last epoch; ``select: average`` averages the weights of the
    last ``average_last`` epochs and recomputes the batch-norm statistics on the training set
    (stochastic weight averaging, Izmailov et al. 2018). Both are scored on the validation set
    and written to ``model.safetensors``."""
    out = exp / "model.safetensors"
    if info.is_main:
        if tc["select"] == "average":
            files = sorted((exp / "checkpoints").glob("epoch*.safetensors"),
                           key=lambda p: int(p.stem[5:]))[-int(tc["average_last"]):]
            if not files:
                raise SertkError(f"no epoch checkpoints to average in {exp / 'checkpoints'}")
            states = [load_file(str(f)) for f in files]
            avg = {k: (sum(st[k].double() for st in states) / len(states)).to(v.dtype)
                   if v.is_floating_point() else v for k, v in states[-1].items()}
            save_file(avg, str(out))
            log.info("averaged the weights of epochs %s", ", ".join(f.stem[5:] for f in files))
        else:
            save_weights(model, out)
    barrier(info)
    load_weights(model, out)
    if tc["select"] == "average" and recalibrate_bn(model, train_set, info):
        if info.is_main:
            save_weights(model, out)
            log.info("recomputed batch-norm statistics of the averaged weights on the "
                     "training set")
    metrics = evaluate(model, valid_set, valid_sampler, criterion, info, num_classes,
                       eval_segment)
    log.info("%s model: valid UA %.4f WA %.4f -> %s", tc["select"], metrics["UA"],
             metrics["WA"], out)
    return {"best_epoch": state["epoch"], "best_ua": metrics["UA"], **metrics}


def aux_vocabularies(name: str, train_dir: Path, conf: dict[str, Any] | None = None
                     ) -> dict[str, list[str]]:
    """Sorted class list of each auxiliary table the model asks for, from the training set."""
    out = {}
    d = DataDir(train_dir)
    for table in aux_tables(name, conf):
        if not d.has(table):
            raise SertkError(f"model {name} needs {table} in {train_dir} (auxiliary targets)")
        out[table] = sorted(set(d.table(table).values()))
    return out


def _train_collate(items_aug, batch_crop: bool, dataset: FeatsDataset,
                   rng: np.random.Generator, items: list) -> dict[str, object]:
    """Item-level augmentation, then (``batch_crop``) a random window of every item cut to the
    batch's shortest length, so that the batch has no padding (and takes the layers' fast
    paths)."""
    if items_aug is not None:
        items = items_aug(items, dataset, rng)
    if batch_crop:
        n = min(f.shape[0] for _, f, _ in items)
        cropped = []
        for key, f, label in items:
            start = int(rng.integers(0, f.shape[0] - n + 1))
            cropped.append((key, f[start:start + n], label))
        items = cropped
    return pad_collate(items)


def _append_csv(path: Path, row: dict[str, Any]) -> None:
    new = not path.is_file()
    with path.open("a", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=CSV_FIELDS)
        if new:
            writer.writeheader()
        writer.writerow(row)
