"""The training loop behind ``sertk train``: alone or under ``torchrun`` (DDP).

Per epoch: training batches (uniformly shuffled, or length-bucketed with ``bucket_pools``)
with padding masks, optional augmentation, AMP on GPU, gradient clipping; validation (UA, WA,
macro-F1, loss) summed over ranks; a metrics CSV row and a log line. The model kept at the end
is chosen by ``select``: the ``best`` validation UA, the ``last`` epoch, or the ``average`` of
the last epochs' weights. ``resume`` restarts from ``EXP/checkpoints/last.pt`` (from
``last.prev.pt`` when a crash left it unreadable). Randomness is reseeded from ``seed`` at every
epoch and the generators' states travel in ``last.pt``, so a resumed run, even after a kill -9,
continues as the uninterrupted one would, to the same bits. ``last.pt`` is written last in an
epoch (after the ``metrics.csv`` row; every file crash-safely) and a resume drops the rows of
later epochs. ``EXP/.lock`` keeps a second run out of a directory in use (:mod:`.lock`).

``task: dimensional`` (top level of the config) trains regression of the ``utt2dim`` columns
(``dims`` names them; default arousal valence dominance) with the ``ccc`` or ``mse`` loss;
validation gives CCC / Pearson / MSE per dimension and selection maximises the mean CCC;
``labels.txt`` then holds the dimension names.

The experiment directory ends up self-contained for ``sertk predict`` and ``sertk pack``:
``config.yaml`` (resolved training config + input dim), ``labels.txt``, ``cmvn.ark``,
``feats.yaml`` (front end used for the dump), ``model.safetensors`` (the selected weights),
``metrics.csv`` and ``train.log``.
"""

from __future__ import annotations

import csv
import io
import logging
import random
import shutil
import time
from collections import Counter
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file
from torch import nn
from tqdm import tqdm

from sertk.atomic import atomic_write, atomic_write_text
from sertk.augment import Batch, build_augment
from sertk.config import save_yaml
from sertk.data.datadir import DataDir
from sertk.data.dataset import FeatsDataset, pad_collate, read_labels, write_labels
from sertk.data.inputs import InputTable, batch_inputs, build_inputs, load_tokenizer
from sertk.data.sampler import BucketBatchSampler
from sertk.errors import SertkError
from sertk.features.cmvn import GlobalCMVN, compute_global_stats, norm_vars_of
from sertk.logging_utils import setup_logging
from sertk.losses import build_loss, emotion_loss
from sertk.models.classifier import EmotionClassifier, aux_kinds, input_tables, members_of
from sertk.train.checkpoint import (
    load_last_state,
    load_weights,
    prev_path,
    restore_rng_state,
    rng_state,
    save_state,
    save_tensors,
    save_weights,
    truncate_metrics,
)
from sertk.train.curves import WaitTimer, record_epoch, restart_events
from sertk.train.distributed import (
    DistInfo,
    all_reduce_sum,
    barrier,
    cleanup,
    init_distributed,
)
from sertk.train.evaluate import bn_init_residual, evaluate, evaluate_dims, recalibrate_bn
from sertk.train.lock import lock_ranks
from sertk.train.schedule import build_optimizer, build_scheduler
from sertk.train.targets import TargetTable, build_targets, dim_names, dim_targets

log = logging.getLogger(__name__)

DEFAULT_TRAIN = {"epochs": 30, "batch_size": 16, "max_frames": None, "crop_frames": None,
                 "crop_pad": "mask", "segment": None, "eval_segment": None, "repeat": 1,
                 "bucket_pools": 50,
                 "select": "best", "average_last": 5, "batch_crop": False,
                 "save_initial": False,
                 "grad_clip": 5.0, "patience": None, "seed": 0, "num_workers": 0,
                 "amp": True, "channels_last": False, "valid_batch_size": 32}
CSV_FIELDS = ["epoch", "lr", "train_loss", "train_acc", "valid_loss", "valid_WA", "valid_UA",
              "valid_macro_F1", "seconds", "data_wait", "best"]
TASKS = ("categorical", "dimensional")


def csv_fields(dims: list[str] | None) -> list[str]:
    """Columns of ``metrics.csv``: UA/WA/F1 (categorical) or CCC per dimension and their
    mean (dimensional)."""
    if dims is None:
        return CSV_FIELDS
    return ["epoch", "lr", "train_loss", "valid_loss", "valid_CCC",
            *[f"valid_CCC_{d}" for d in dims], "seconds", "data_wait", "best"]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _train_cfg(cfg: dict[str, Any]) -> dict[str, Any]:
    tc = {**DEFAULT_TRAIN, **(cfg.get("train") or {})}
    unknown = set(tc) - set(DEFAULT_TRAIN)
    if unknown:
        raise SertkError(f"unknown train options: {', '.join(sorted(unknown))}")
    if cfg.get("task", "categorical") not in TASKS:
        raise SertkError(f"task must be {' or '.join(TASKS)}, got {cfg.get('task')!r}")
    loss = (cfg.get("loss") or {}).get("name", "ce")
    if (cfg.get("task") == "dimensional") != (loss in ("ccc", "mse")):
        raise SertkError(f"loss {loss} does not fit task {cfg.get('task', 'categorical')}: "
                         "ccc or mse for task: dimensional, ce or focal otherwise")
    if cfg.get("task") == "dimensional" and tc["eval_segment"]:
        raise SertkError("train.eval_segment (window-averaged posteriors) is for the "
                         "categorical task; remove it with task: dimensional")
    if tc["select"] not in ("best", "last", "average"):
        raise SertkError(f"train.select must be best, last or average, got {tc['select']!r}")
    return tc


def prepare_labels(cfg: dict[str, Any], train_dir: Path, labels_file: str | None) -> list[str]:
    if labels_file:
        return read_labels(labels_file)
    if cfg.get("labels"):
        return list(cfg["labels"])
    return DataDir(train_dir).labels()


@dataclass
class TrainData:
    """The training and validation sets with their samplers, labels (the dimension names in
    a dimensional task), input dimension and the tables of per-utterance targets."""

    labels: list[str]
    train_set: FeatsDataset
    valid_set: FeatsDataset | None
    train_sampler: BucketBatchSampler
    valid_sampler: BucketBatchSampler | None
    input_dim: int
    eval_segment: tuple[int, int] | None
    aux: dict[str, TargetTable]
    dims: TargetTable | None = None        # utt2dim of the training set (dimensional task)
    valid_dims: TargetTable | None = None
    inputs: dict[str, InputTable] = field(default_factory=dict)  # extra model inputs
    valid_inputs: dict[str, InputTable] = field(default_factory=dict)

    @property
    def select_metric(self) -> str:
        """What model selection maximises: mean CCC (dimensional) or UA."""
        return "CCC" if self.dims is not None else "UA"


@dataclass
class Session:
    """Everything the epoch loop updates, built once per training call."""

    cfg: dict[str, Any]
    tc: dict[str, Any]
    exp: Path
    info: DistInfo
    data: TrainData
    model: EmotionClassifier
    ddp_model: nn.Module
    criterion: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    interval: str
    scaler: torch.amp.GradScaler
    batch_aug: Any
    items_aug: Any
    amp_dtype: torch.dtype | None
    emotion_weight: float
    has_aux: bool
    select_on_valid: bool
    state: dict[str, Any] = field(default_factory=lambda: {
        "epoch": 0, "best_ua": -1.0, "best_epoch": 0, "bad_epochs": 0})
    best_metrics: dict[str, Any] = field(default_factory=dict)
    data_wait: float = 0.0  # last epoch's fraction of training time blocked on the loader


def train(cfg: dict[str, Any], train_dir: str | Path, valid_dir: str | Path | None,
          exp_dir: str | Path,
          resume: bool = False, cmvn_file: str | None = None, labels_file: str | None = None,
          device: str | None = None, progress: bool = True) -> dict[str, Any]:
    """Train ``cfg['model']`` on a dump directory; return the selected model's validation
    metrics (``best_ua``: the selection score, UA or mean CCC; ``best_epoch``; and the
    metrics of ``evaluate`` / ``evaluate_dims``). Without a
    validation set (``valid_dir`` None: a final model trained on all the data) the model is
    chosen by ``select: last`` or ``average`` and the metrics are NaN."""
    info = init_distributed(device)
    exp = Path(exp_dir)
    try:
        if info.is_main:
            (exp / "checkpoints").mkdir(parents=True, exist_ok=True)
        barrier(info)
        setup_logging(exp / "train.log" if info.is_main else None, rank=info.rank)
        with lock_ranks(exp, info):  # EXP/.lock: one run per experiment directory
            return _train(cfg, Path(train_dir), Path(valid_dir) if valid_dir else None, exp,
                          resume, cmvn_file, labels_file, info, progress)
    finally:
        cleanup(info)


def _train(cfg: dict[str, Any], train_dir: Path, valid_dir: Path | None, exp: Path,
           resume: bool,
           cmvn_file: str | None, labels_file: str | None, info: DistInfo, progress: bool
           ) -> dict[str, Any]:
    tc = _train_cfg(cfg)
    seed_everything(int(tc["seed"]))
    data = _load_data(cfg, tc, train_dir, valid_dir, labels_file, info)
    _write_exp_files(cfg, data, train_dir, exp, cmvn_file, info)
    s = _build_session(cfg, tc, data, exp, info)
    _resume_or_start(s, resume)
    patience = tc["patience"]
    for epoch in range(s.state["epoch"] + 1, int(tc["epochs"]) + 1):
        if patience is not None and s.state["bad_epochs"] >= int(patience):
            break
        t0 = time.time()
        train_loss, train_acc = _train_epoch(s, epoch, progress)
        lr = s.optimizer.param_groups[0]["lr"]
        if s.scheduler is not None and s.interval == "epoch":
            s.scheduler.step()
        _end_epoch(s, epoch, lr, train_loss, train_acc, t0)
    if patience is not None and s.state["bad_epochs"] >= int(patience):
        log.info("early stopping: no valid UA improvement in %d epochs", s.state["bad_epochs"])
    _warn_unsettled_bn(s.model)
    if tc["select"] in ("last", "average"):
        return _export_final(s)
    return _export_best(s)


def _warn_unsettled_bn(model: nn.Module) -> None:
    """Warn when batch-norm running statistics still hold more than 0.1 % of their initial
    values (too few training steps): evaluation-mode outputs can then be off in scale."""
    residual, updates = bn_init_residual(model)
    if residual > 1e-3:
        log.warning("batch-norm running statistics come from only %d training steps and still "
                    "hold %.1f %% of their initial values: evaluation-mode outputs can be off "
                    "in scale; train for more steps (more epochs or smaller batches)",
                    updates, 100 * residual)


def _check_selection_set(tc: dict[str, Any], train_set: FeatsDataset,
                         valid_set: FeatsDataset | None) -> None:
    """Selection on dev (``train.select: best``, ``train.patience``) needs held-out validation
    utterances: refuse it without a validation set, or when the validation utterances are also
    trained on (e.g. a recipe's ``--train_on_dev true``), where it would reward memorisation."""
    if tc["select"] != "best" and tc["patience"] is None:
        return
    if valid_set is None:
        raise SertkError("without a validation set (--valid) the model must be chosen by "
                         "train.select: last or average, with no train.patience")
    seen = set(train_set.keys).intersection(valid_set.keys)
    if seen:
        raise SertkError(
            f"{len(seen)} of the {len(valid_set.keys)} validation utterances are training "
            f"utterances too (e.g. {sorted(seen)[0]}): train.select best / train.patience "
            "would choose the model on training data; use train.select last or average "
            "(recipes: or --train_on_dev false)")


def _load_data(cfg: dict[str, Any], tc: dict[str, Any], train_dir: Path, valid_dir: Path | None,
               labels_file: str | None, info: DistInfo) -> TrainData:
    seed = int(tc["seed"])
    dimensional = cfg.get("task") == "dimensional"
    labels = None if dimensional else prepare_labels(cfg, train_dir, labels_file)
    train_set = FeatsDataset(train_dir, labels, require_labels=not dimensional,
                             crop_frames=tc["crop_frames"], seed=seed, segment=tc["segment"],
                             repeat=int(tc["repeat"]), crop_pad=str(tc["crop_pad"]))
    valid_set = FeatsDataset(valid_dir, labels, require_labels=not dimensional) \
        if valid_dir else None
    dims = valid_dims = None
    if dimensional:
        dims = dim_targets(train_dir, train_set.keys)
        valid_dims = dim_targets(valid_dir, valid_set.keys) if valid_set else None
        labels = dim_names(cfg, dims.size)
    _check_selection_set(tc, train_set, valid_set)
    input_dim = int((train_dir / "feat_dim").read_text()) \
        if (train_dir / "feat_dim").is_file() else train_set[0][1].shape[1]
    log.info("train %s: %d items; valid %s: %d utts; %d classes: %s; input dim %d; "
             "%d process(es) on %s", train_dir, len(train_set), valid_dir or "none",
             len(valid_set) if valid_set else 0,
             len(labels), " ".join(labels), input_dim, info.world_size, info.device)
    train_sampler = BucketBatchSampler(
        [train_set.effective_length(i) for i in range(len(train_set))], int(tc["batch_size"]),
        shuffle=True, seed=seed, rank=info.rank, world_size=info.world_size,
        max_frames=tc["max_frames"], bucket_pools=int(tc["bucket_pools"] or 0))
    valid_sampler = BucketBatchSampler(valid_set.lengths, int(tc["valid_batch_size"]),
                                       shuffle=False, rank=info.rank,
                                       world_size=info.world_size, pad_to_world=False) \
        if valid_set else None
    mcfg = cfg.get("model") or {}
    if "name" not in mcfg:
        raise SertkError("training config needs model.name")
    d, conf = DataDir(train_dir), mcfg.get("conf") or {}
    aux = {t: build_targets(d, t, kind, conf, labels)
           for t, kind in aux_kinds(mcfg["name"], conf).items()}
    kinds = input_tables(mcfg["name"], conf)
    if kinds and tc["eval_segment"]:
        raise SertkError(f"train.eval_segment (window-averaged posteriors) is not available "
                         f"for a model that reads {', '.join(kinds)}")
    tok = load_tokenizer(conf) if "tokens" in kinds.values() else None
    inputs = build_inputs(train_dir, kinds, train_set.keys, tok)
    valid_inputs = build_inputs(valid_dir, kinds, valid_set.keys, tok) if valid_set else {}
    return TrainData(labels, train_set, valid_set, train_sampler, valid_sampler, input_dim,
                     tuple(tc["eval_segment"]) if tc["eval_segment"] else None, aux, dims,
                     valid_dims, inputs, valid_inputs)


def _write_exp_files(cfg: dict[str, Any], data: TrainData, train_dir: Path, exp: Path,
                     cmvn_file: str | None, info: DistInfo) -> None:
    """``cmvn.ark``, ``labels.txt``, ``feats.yaml`` and ``config.yaml`` (rank 0)."""
    if info.is_main:
        cmvn_path = exp / "cmvn.ark"
        if cmvn_file:
            shutil.copy(cmvn_file, cmvn_path)
        elif not cmvn_path.is_file():
            log.info("computing global CMVN statistics from %s", train_dir)
            compute_global_stats(train_dir / "feats.scp", cmvn_path)
        write_labels(exp / "labels.txt", data.labels)
        if (train_dir / "feats.yaml").is_file():
            shutil.copy(train_dir / "feats.yaml", exp / "feats.yaml")
        resolved = {**cfg, "input_dim": data.input_dim, "labels": data.labels}
        if data.aux:
            resolved["aux_classes"] = {t: a.size for t, a in data.aux.items()}
        if data.inputs:
            resolved["input_sizes"] = {t: a.size for t, a in data.inputs.items()}
        for t, a in data.aux.items():
            if a.vocab:
                (exp / "aux").mkdir(exist_ok=True)
                write_labels(exp / "aux" / f"{t}.txt", a.vocab)
        if any(a.kind == "tokens" for a in [*data.aux.values(), *data.inputs.values()]):
            # the units travel with the model (pack, infer)
            shutil.copytree(cfg["model"]["conf"]["tokenizer"], exp / "tokenizer",
                            dirs_exist_ok=True)
        save_yaml(resolved, exp / "config.yaml")
    barrier(info)


def _build_model(cfg: dict[str, Any], data: TrainData, exp: Path, info: DistInfo
                 ) -> EmotionClassifier:
    mcfg = cfg["model"]
    init_ckpt = (mcfg.get("conf") or {}).get("init_checkpoint")
    if init_ckpt and not Path(init_ckpt).is_file():
        # the model itself only warns (a packed model is rebuilt without its init file)
        raise SertkError(f"model.conf.init_checkpoint {init_ckpt} not found (training would "
                         "start from a random initialisation)")
    aux_classes = {t: a.size for t, a in data.aux.items()} or None
    model = EmotionClassifier(mcfg["name"], data.input_dim, len(data.labels), mcfg.get("conf"),
                              GlobalCMVN.from_file(exp / "cmvn.ark", norm_vars_of(cfg)),
                              aux_classes, members_of(mcfg),
                              {t: a.size for t, a in data.inputs.items()} or None
                              ).to(info.device)
    nparams = sum(p.numel() for p in model.parameters() if p.requires_grad)
    log.info("model %s: %.3fM trainable parameters", mcfg["name"], nparams / 1e6)
    return model


def autocast_dtype(amp: bool | str, device: torch.device) -> torch.dtype | None:
    """Mixed precision of the training forward pass from ``train.amp``: ``true`` is float16
    on CUDA (with loss scaling) and off on the CPU; ``bf16`` is bfloat16 on CUDA and on CPUs
    with native bfloat16 (AVX512-BF16 / AMX; about 1.7x faster convolutions here), float32
    elsewhere; ``false`` is off. Validation and inference always run in float32."""
    if amp == "bf16":
        if device.type == "cuda" or torch.cpu._is_avx512_bf16_supported():
            return torch.bfloat16
        log.warning("train.amp: bf16 but this CPU has no native bfloat16; training in float32")
        return None
    if amp not in (True, False):
        raise SertkError(f"train.amp must be true, false or bf16, got {amp!r}")
    return torch.float16 if amp and device.type == "cuda" else None


def _build_session(cfg: dict[str, Any], tc: dict[str, Any], data: TrainData, exp: Path,
                   info: DistInfo) -> Session:
    model = _build_model(cfg, data, exp, info)
    if tc["channels_last"]:  # NHWC convolutions: faster 2-D CNNs on CPU (oneDNN) and GPU
        model = model.to(memory_format=torch.channels_last)
    ddp_model: nn.Module = model
    if info.distributed:
        ddp_model = nn.parallel.DistributedDataParallel(
            model, device_ids=[info.local_rank] if info.device.type == "cuda" else None,
            find_unused_parameters=bool(getattr(model.net, "ddp_find_unused_parameters",
                                                False)))
    counts = Counter(data.train_set.targets)
    criterion = build_loss(cfg.get("loss") or {},
                           [counts.get(i, 0) for i in range(len(data.labels))]).to(info.device)
    optimizer = build_optimizer(model.parameters(), cfg.get("optim") or {})
    scheduler, interval = build_scheduler(optimizer, cfg.get("scheduler"), int(tc["epochs"]),
                                          len(data.train_sampler))
    batch_aug, items_aug = build_augment(cfg.get("augment"))
    amp_dtype = autocast_dtype(tc["amp"], info.device)
    return Session(cfg, tc, exp, info, data, model, ddp_model, criterion, optimizer,
                   scheduler, interval,
                   torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16),
                   batch_aug, items_aug, amp_dtype,
                   float(getattr(model.net, "emotion_loss_weight", 1.0)),
                   hasattr(model.net, "auxiliary_loss"),
                   bool(getattr(model.net, "select_on_valid", False)))


def _resume_or_start(s: Session, resume: bool) -> None:
    """Load ``last.pt`` (``resume``; ``last.prev.pt`` when it is unreadable) or clear a
    previous run's outputs."""
    last = s.exp / "checkpoints" / "last.pt"
    found = load_last_state(last) if resume else None
    if found is not None:
        _load_session(s, *found)
        return
    if resume:
        log.warning("--resume given but %s does not exist; starting from scratch", last)
    if s.info.is_main:
        ckpt = s.exp / "checkpoints"
        for stale in (s.exp / "metrics.csv", ckpt / "best.safetensors", last,
                      prev_path(last), *ckpt.glob("epoch*.safetensors")):
            stale.unlink(missing_ok=True)
        restart_events(s.exp, 0)
        if s.tc["save_initial"]:  # for `sertk models compare-weights` after training
            save_weights(s.model, s.exp / "checkpoints" / "initial.safetensors")


def _load_session(s: Session, ck: dict[str, Any], path: Path) -> None:
    """Continue from a saved state: weights, optimiser, scheduler, scaler, selection state
    and random generators; the metrics rows and epoch weights of later (not checkpointed)
    epochs of a killed run are dropped, their TensorBoard scalars hidden."""
    s.model.load_state_dict(ck["model"])
    s.optimizer.load_state_dict(ck["optimizer"])
    if s.scheduler is not None:
        s.scheduler.load_state_dict(ck["scheduler"])
    s.scaler.load_state_dict(ck["scaler"])
    s.state = ck["state"]
    s.best_metrics = dict(ck.get("best_metrics") or {})
    restore_rng_state(ck.get("rng"))
    epoch = s.state["epoch"]
    if s.info.is_main:
        dropped = truncate_metrics(s.exp / "metrics.csv", epoch)
        for f in (s.exp / "checkpoints").glob("epoch*.safetensors"):
            if f.stem[5:].isdigit() and int(f.stem[5:]) > epoch:
                f.unlink()
        if dropped:
            log.info("metrics.csv: dropped %d row(s) of epochs after %d", dropped, epoch)
        restart_events(s.exp, epoch)
    log.info("resumed from %s after epoch %d (best %s %.4f at epoch %d)", path, epoch,
             s.data.select_metric, s.state["best_ua"], s.state["best_epoch"])


def _epoch_loader(s: Session, epoch: int) -> torch.utils.data.DataLoader:
    """The epoch's training batches; sampler, crops and item augmentation reseeded."""
    seed, rank, d = int(s.tc["seed"]), s.info.rank, s.data
    d.train_sampler.set_epoch(epoch)
    d.train_set.set_epoch(epoch, rank)
    collate = pad_collate if s.items_aug is None and not s.tc["batch_crop"] else partial(
        _train_collate, s.items_aug, bool(s.tc["batch_crop"]), d.train_set,
        np.random.default_rng([seed, epoch, 1 + rank]))
    return torch.utils.data.DataLoader(d.train_set, batch_sampler=d.train_sampler,
                                       collate_fn=collate,
                                       num_workers=int(s.tc["num_workers"]))


def _train_epoch(s: Session, epoch: int, progress: bool) -> tuple[float, float]:
    """One pass over the training batches; returns (loss, accuracy) summed over ranks."""
    seed, info = int(s.tc["seed"]), s.info
    torch.manual_seed(seed + 1000 * epoch + info.rank)
    gen = torch.Generator().manual_seed(seed + 7919 * epoch + info.rank)
    timer = WaitTimer()
    loader = timer.wrap(_epoch_loader(s, epoch))
    s.model.train()
    loss_sum, correct, seen = 0.0, 0, 0
    bar = tqdm(loader, desc=f"epoch {epoch}/{s.tc['epochs']}", total=len(s.data.train_sampler),
               disable=not (progress and info.is_main), leave=False, unit="batch")
    for batch in bar:
        logits, target, loss = _train_step(s, batch, gen, epoch)
        n = target.shape[0]
        loss_sum += loss * n
        if s.data.dims is None:
            hard = target if target.dim() == 1 else target.argmax(-1)
            correct += int((logits.argmax(-1) == hard).sum())
        seen += n
        bar.set_postfix(loss=f"{loss_sum / seen:.3f}")
    bar.close()
    tot = all_reduce_sum(torch.tensor([loss_sum, correct, seen, timer.fraction],
                                      dtype=torch.float64), info)
    s.data_wait = float(tot[3]) / info.world_size  # mean over ranks
    return float(tot[0] / tot[2]), float(tot[1] / tot[2])


def _train_step(s: Session, batch: dict[str, Any], gen: torch.Generator, epoch: int
                ) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Normalise, augment, forward, backward and step on one batch."""
    device = s.info.device
    feats = batch["feats"].to(device, non_blocking=True)
    lengths = batch["lengths"].to(device)
    target = batch["labels"].to(device) if s.data.dims is None \
        else s.data.dims.batch(batch["keys"], device)
    with torch.no_grad():
        feats = s.model.cmvn(feats)
    if s.batch_aug is not None:
        b = s.batch_aug(Batch(feats, lengths, target, len(s.data.labels)), gen)
        feats, lengths, target = b.feats, b.lengths, b.targets
    inputs = batch_inputs(s.data.inputs, batch["keys"], device)
    with torch.autocast(device.type, dtype=s.amp_dtype or torch.float32,
                        enabled=s.amp_dtype is not None):
        if s.has_aux:
            aux = {t: a.batch(batch["keys"], device) for t, a in s.data.aux.items()}
            logits, aux_loss = s.ddp_model(feats, lengths, normalized=True, aux_targets=aux,
                                           inputs=inputs)
            loss = s.emotion_weight * emotion_loss(s.criterion, logits, target) + aux_loss
        else:
            logits = s.ddp_model(feats, lengths, normalized=True, inputs=inputs)
            loss = emotion_loss(s.criterion, logits, target)
    if not torch.isfinite(loss):
        raise SertkError(f"epoch {epoch}: loss became {loss.item()} on batch "
                         f"{batch['keys'][:3]}...; lower the learning rate")
    s.optimizer.zero_grad(set_to_none=True)
    s.scaler.scale(loss).backward()
    if s.tc["grad_clip"]:
        s.scaler.unscale_(s.optimizer)
        nn.utils.clip_grad_norm_(s.model.parameters(), float(s.tc["grad_clip"]))
    s.scaler.step(s.optimizer)
    s.scaler.update()
    if s.scheduler is not None and s.interval == "step":
        s.scheduler.step()
    if logits.dim() == 3:  # an ensemble: report the members' mean loss and mean logits
        return logits.detach().mean(0), target, loss.item() / logits.shape[0]
    return logits, target, loss.item()


def _end_epoch(s: Session, epoch: int, lr: float, train_loss: float, train_acc: float,
               t0: float) -> None:
    """Validate, update the selection state, save checkpoints, write the CSV row and log."""
    d, exp = s.data, s.exp
    metrics = _validate(s)
    score = metrics[d.select_metric]
    # a pre-training stage without emotion loss keeps its last epoch
    improved = score > s.state["best_ua"] or d.valid_set is None or \
        (s.emotion_weight == 0.0 and not s.select_on_valid)
    s.state["epoch"] = epoch
    if improved:
        s.state.update(best_ua=score, best_epoch=epoch, bad_epochs=0)
        s.best_metrics = metrics
    else:
        s.state["bad_epochs"] += 1
    seconds = time.time() - t0
    if s.info.is_main:  # the metrics row first: last.pt, saved last, commits the epoch
        row = _csv_row(s, epoch, lr, train_loss, train_acc, metrics, seconds, improved)
        _append_csv(exp / "metrics.csv", row,
                    csv_fields(d.labels if d.dims is not None else None))
        _save_epoch(s, epoch, improved)
        record_epoch(exp, row)
        log.info("epoch %d/%d: train loss %.4f%s | valid loss %.4f %s | lr %.2e | %.1fs "
                 "(data wait %.0f%%)%s",
                 epoch, s.tc["epochs"], train_loss,
                 "" if d.dims is not None else f" acc {train_acc:.4f}", metrics["loss"],
                 _metrics_text(metrics, d), lr, seconds, 100 * s.data_wait,
                 " *best*" if improved and d.valid_set is not None else "")
    barrier(s.info)


def _save_epoch(s: Session, epoch: int, improved: bool) -> None:
    """``best.safetensors`` (when improved), the epoch's weights for ``select: average`` and
    ``last.pt`` (rank 0)."""
    ckpt = s.exp / "checkpoints"
    if improved and s.data.valid_set is not None:
        save_weights(s.model, ckpt / "best.safetensors")
    if s.tc["select"] == "average":
        save_weights(s.model, ckpt / f"epoch{epoch}.safetensors")
        (ckpt / f"epoch{epoch - int(s.tc['average_last'])}.safetensors").unlink(missing_ok=True)
    save_state(ckpt / "last.pt", {
        "model": s.model.state_dict(), "optimizer": s.optimizer.state_dict(),
        "scheduler": s.scheduler.state_dict() if s.scheduler else None,
        "scaler": s.scaler.state_dict(), "state": s.state, "rng": rng_state(),
        "best_metrics": {k: v for k, v in s.best_metrics.items()
                         if isinstance(v, (int, float, str))}})


def _csv_row(s: Session, epoch: int, lr: float, train_loss: float, train_acc: float,
             metrics: dict[str, Any], seconds: float, improved: bool) -> dict[str, Any]:
    row = {"epoch": epoch, "lr": f"{lr:.3e}", "train_loss": f"{train_loss:.4f}",
           "valid_loss": f"{metrics['loss']:.4f}", "seconds": f"{seconds:.1f}",
           "data_wait": f"{s.data_wait:.3f}", "best": int(improved)}
    if s.data.dims is not None:
        names = ["CCC", *[f"CCC_{d}" for d in s.data.labels]]
    else:
        row["train_acc"] = f"{train_acc:.4f}"
        names = ["WA", "UA", "macro_F1"]
    return {**row, **{f"valid_{n}": f"{metrics[n]:.4f}" for n in names}}


def _metrics_text(metrics: dict[str, Any], d: TrainData) -> str:
    if d.dims is not None:
        return f"CCC {metrics['CCC']:.4f} (" + " ".join(
            f"{n} {metrics[f'CCC_{n}']:.3f}" for n in d.labels) + ")"
    return f"UA {metrics['UA']:.4f} WA {metrics['WA']:.4f} F1 {metrics['macro_F1']:.4f}"


def _validate(s: Session) -> dict[str, Any]:
    """Metrics of the current model on the validation set (NaN without one)."""
    d = s.data
    if d.valid_set is None:
        names = ["CCC", *[f"CCC_{n}" for n in d.labels]] if d.dims is not None \
            else ["UA", "WA", "macro_F1"]
        return {k: float("nan") for k in ("loss", *names)}
    if d.dims is not None:
        return evaluate_dims(s.model, d.valid_set, d.valid_sampler, s.criterion, s.info,
                             d.valid_dims, d.labels, d.valid_inputs)
    return evaluate(s.model, d.valid_set, d.valid_sampler, s.criterion, s.info,
                    len(d.labels), d.eval_segment, d.valid_inputs)


def _export_best(s: Session) -> dict[str, Any]:
    """``select: best``: the checkpoint of the best validation UA becomes the model."""
    if s.info.is_main:
        best = s.exp / "checkpoints" / "best.safetensors"
        if not best.is_file():
            raise SertkError(f"no best checkpoint in {best.parent}; did any epoch run?")
        atomic_write(s.exp / "model.safetensors", partial(shutil.copyfile, best))
        log.info("best valid %s %.4f at epoch %d -> %s", s.data.select_metric,
                 s.state["best_ua"], s.state["best_epoch"], s.exp / "model.safetensors")
    return {"best_epoch": s.state["best_epoch"], "best_ua": s.state["best_ua"],
            **s.best_metrics}


def _export_final(s: Session) -> dict[str, Any]:
    """``select: last`` keeps the last epoch; ``select: average`` averages the weights of the
    last ``average_last`` epochs and recomputes the batch-norm statistics on the training set
    (stochastic weight averaging, Izmailov et al. 2018). Both are scored on the validation set
    and written to ``model.safetensors``."""
    out, tc, d = s.exp / "model.safetensors", s.tc, s.data
    if s.info.is_main:
        if tc["select"] == "average":
            _average_checkpoints(s.exp / "checkpoints", int(tc["average_last"]), out)
        else:
            save_weights(s.model, out)
    barrier(s.info)
    load_weights(s.model, out)
    if tc["select"] == "average" and recalibrate_bn(s.model, d.train_set, s.info,
                                                    inputs=d.inputs):
        if s.info.is_main:
            save_weights(s.model, out)
            log.info("recomputed batch-norm statistics of the averaged weights on the "
                     "training set")
    metrics = _validate(s)
    log.info("%s model: valid %s -> %s", tc["select"], _metrics_text(metrics, d), out)
    return {"best_epoch": s.state["epoch"], "best_ua": metrics[d.select_metric], **metrics}


def _average_checkpoints(ckpt_dir: Path, last_n: int, out: Path) -> None:
    files = sorted(ckpt_dir.glob("epoch*.safetensors"), key=lambda p: int(p.stem[5:]))[-last_n:]
    if not files:
        raise SertkError(f"no epoch checkpoints to average in {ckpt_dir}")
    states = [load_file(str(f)) for f in files]
    avg = {k: (sum(st[k].double() for st in states) / len(states)).to(v.dtype)
           if v.is_floating_point() else v for k, v in states[-1].items()}
    save_tensors(avg, out)
    log.info("averaged the weights of epochs %s", ", ".join(f.stem[5:] for f in files))


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


def _append_csv(path: Path, row: dict[str, Any], fields: list[str]) -> None:
    """Add a row, rewriting the file crash-safely (a kill never leaves half a row)."""
    old = ""
    if path.is_file():  # resuming a run: keep the columns its file already has
        with path.open(newline="") as fh:
            old = fh.read()
        fields = next(csv.reader(io.StringIO(old)), None) or fields
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields, extrasaction="ignore")
    if not old:
        writer.writeheader()
    writer.writerow(row)
    atomic_write_text(path, old + buf.getvalue())
