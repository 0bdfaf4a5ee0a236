"""``sertk train-meta``: low-resource SER from labelled source corpora (Chopra et al.,
Meta-learning for low-resource speech emotion recognition, ICASSP 2021; papers.md section 21).

Stage 1 learns an initialisation of the network (``meta_ser``; ``fomaml`` and ``transfer`` take
any registered model) from the source corpora, each a dump directory, with ``method``:

* ``fomaml`` (MetaSER): every source corpus is a task, split (stratified) into
  :math:`T_i^{train}` and :math:`T_i^{val}`. An episode draws tasks (``meta.tasks_per_episode``,
  default all sources) and, per task, an N-way K-shot support set from :math:`T_i^{train}` and a
  query set (``query_shots`` per class, default K) from :math:`T_i^{val}`. A copy of the network
  takes ``inner_steps`` SGD steps on the support set, giving :math:`\\theta'_i`; the gradient of
  the query loss at :math:`\\theta'_i` (first order: second-order terms dropped) is summed over
  the tasks and one Adam step at the meta lr applies it to :math:`\\theta`. One episode is one
  meta-update. Paper: 8 inner steps, inner lr 2e-4, meta lr 1e-6, at most 1e4 episodes, meta
  batch k x 4 classes.
* ``transfer`` (TransSER): supervised training on each source in turn (the order given), each
  until its validation loss stops improving.
* ``multitask`` (MultiSER): the LSTM body shared and one copy of the dense head per source,
  trained jointly on batches taken round-robin from the sources (the paper's alternation
  against catastrophic forgetting); the target's head starts as the mean of the source heads.

The baselines' pre-training follows the paper: batch 64, cyclic (triangular) lr between 2e-5
and 1e-4, at most 1000 epochs "or until validation loss converges".

Stage 2 fine-tunes on the target with sertk's normal trainer (:mod:`sertk.train.trainer`) from
that initialisation (``model.conf.init_checkpoint``): every layer for ``fomaml``, the dense
layers only for the baselines (``model.conf.finetune``, set per method in the config's
``methods:``). The target's training data can be cut to a stratified ``target.fraction`` (the
paper's data-fraction study) or ``target.shots`` utterances per class (k-shot). The result is
an ordinary experiment directory (``config.yaml``, ``labels.txt``, ``cmvn.ark``, ``feats.yaml``,
``model.safetensors``, ``metrics.csv``, ``train.log``) for ``sertk predict`` / ``sertk pack``;
stage 1 writes ``EXP/pretrain/{init.safetensors,metrics.csv}`` and logs to ``EXP/train.log``.

Labels: the paper keeps the four emotions every corpus has (angry, happy, neutral, sad) and
drops the other classes. ``labels:`` is that set (default: the target training set's labels);
utterances of other labels are dropped from every corpus, and output unit i is always label i
(no per-episode relabelling, since every task shares the classes), so the head learned on the
sources is the target's head. A source may lack some labels: its episodes use those it has
(at least two).

Not in the paper, chosen here: each corpus is normalised with its own global CMVN (the sources
here, the target by the trainer from its training data); sources are held in memory
(the paper's input is 120 x 20 MFCC, ~10 KB per utterance); the query loss is averaged over
tasks' utterances and summed over tasks (the paper's sum); every ``meta.eval_every`` episodes
the mean query loss after adaptation is logged and, with ``meta.select: best``, the
meta-parameters of the best window are kept (``meta.patience`` windows without improvement
stop early); pre-training uses Adam, early stopping after ``pretrain.patience`` epochs and the
weights of the best validation loss; validation splits are 20 % of each source (stratified,
at least the query shots per class).
"""

from __future__ import annotations

import copy
import csv
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from sertk.config import deep_update
from sertk.data.datadir import DataDir, subset
from sertk.data.dataset import FeatsDataset
from sertk.errors import SertkError
from sertk.features.cmvn import GlobalCMVN, accumulate, norm_vars_of, stats_to_mean_std
from sertk.logging_utils import setup_logging
from sertk.models.classifier import build_net
from sertk.train.checkpoint import save_weights

log = logging.getLogger(__name__)

METHODS = ("fomaml", "transfer", "multitask")
DEFAULTS: dict[str, dict[str, Any]] = {
    "sources": {"valid_fraction": 0.2},
    "meta": {"episodes": 10000, "shots": 5, "query_shots": None, "ways": None,
             "tasks_per_episode": None, "inner_steps": 8, "inner_lr": 2.0e-4,
             "meta_lr": 1.0e-6, "grad_clip": None, "eval_every": 100, "select": "best",
             "patience": None},
    "pretrain": {"epochs": 1000, "batch_size": 64, "base_lr": 2.0e-5, "max_lr": 1.0e-4,
                 "step_size_epochs": 4, "patience": 20, "grad_clip": 5.0},
    "target": {"fraction": 1.0, "shots": None},
}
CSV_FIELDS = ["stage", "step", "lr", "train_loss", "train_acc", "valid_loss", "valid_acc",
              "seconds", "best"]


# ----------------------------------------------------------------------------- configuration
def resolve_method(cfg: dict[str, Any], method: str | None = None) -> dict[str, Any]:
    """The config for ``method`` (default ``cfg['method']``): ``methods[method]`` merged in and
    the ``methods`` table dropped."""
    method = method or cfg.get("method") or "fomaml"
    if method not in METHODS:
        raise SertkError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    per = (cfg.get("methods") or {}).get(method) or {}
    out = deep_update({k: v for k, v in cfg.items() if k != "methods"}, per)
    out["method"] = method
    return out


def section(cfg: dict[str, Any], name: str) -> dict[str, Any]:
    """``cfg[name]`` over its defaults; unknown keys are an error."""
    sec = {**DEFAULTS[name], **(cfg.get(name) or {})}
    unknown = set(sec) - set(DEFAULTS[name])
    if unknown:
        raise SertkError(f"unknown {name} options: {', '.join(sorted(unknown))}")
    return sec


# ----------------------------------------------------------------------------- source corpora
@dataclass
class Corpus:
    """A labelled corpus in memory: normalised features, label indices (into the shared label
    list) and a stratified split, ``train``/``valid``: class -> utterance indices."""

    name: str
    feats: list[torch.Tensor]
    targets: list[int]
    train: dict[int, list[int]]
    valid: dict[int, list[int]]

    @property
    def classes(self) -> list[int]:
        return sorted(self.train)

    def indices(self, part: str) -> list[int]:
        return sorted(i for idx in getattr(self, part).values() for i in idx)


@dataclass
class Batch:
    feats: torch.Tensor
    lengths: torch.Tensor
    targets: torch.Tensor


def labelled_utts(path: Path, labels: list[str], role: str) -> dict[str, str]:
    """``utt -> label`` of the utterances of a dump dir whose label is in ``labels``."""
    d = DataDir(path)
    if not d.has("utt2emo"):
        raise SertkError(f"{role} {path}: no utt2emo (emotion labels are needed)")
    if not d.has("feats.scp"):
        raise SertkError(f"{role} {path}: no feats.scp (run `sertk feats dump`)")
    scp = d.table("feats.scp")
    keep = {u: lab for u, lab in d.utt2emo.items() if lab in labels and u in scp}
    if not keep:
        raise SertkError(f"{role} {path}: no utterance labelled with one of {' '.join(labels)}")
    dropped = len(scp) - len(keep)
    if dropped:
        log.info("%s %s: %d of %d utterances dropped (label not in %s or missing)", role, path,
                 dropped, len(scp), " ".join(labels))
    return keep


def split_class(idx: list[int], fraction: float, min_train: int, min_valid: int,
                rng: np.random.Generator) -> tuple[list[int], list[int]]:
    """Shuffle one class's utterances into (train, valid): ``round(fraction * n)`` held out,
    at least ``min_valid`` and leaving at least ``min_train``."""
    idx = [int(i) for i in rng.permutation(idx)]
    n_valid = min(max(round(fraction * len(idx)), min_valid), len(idx) - min_train)
    return sorted(idx[n_valid:]), sorted(idx[:n_valid])


def load_corpus(path: str | Path, labels: list[str], name: str, norm_vars: bool,
                valid_fraction: float, min_train: int, min_valid: int,
                rng: np.random.Generator) -> Corpus:
    """Read a source dump dir, normalise it with its own CMVN and split it per class.

    Every class needs ``min_train + min_valid`` utterances (K support + K_q query shots)."""
    path = Path(path)
    utt2lab = labelled_utts(path, labels, "source")
    ds = FeatsDataset(path, None)
    pos = {k: i for i, k in enumerate(ds.keys)}
    keys = sorted(utt2lab)
    mats = [ds.load(pos[k]) for k in keys]
    mean, std = stats_to_mean_std(accumulate(mats))
    cmvn = GlobalCMVN(mean, std, norm_vars)
    feats = [cmvn(torch.from_numpy(np.array(m, dtype=np.float32))) for m in mats]
    targets = [labels.index(utt2lab[k]) for k in keys]
    by_class: dict[int, list[int]] = {}
    for i, t in enumerate(targets):
        by_class.setdefault(t, []).append(i)
    if len(by_class) < 2:
        raise SertkError(f"source {path}: only one of the labels ({labels[targets[0]]}); a "
                         "source needs at least two")
    for c, idx in sorted(by_class.items()):
        if len(idx) < min_train + min_valid:
            raise SertkError(
                f"source {path}: class {labels[c]} has {len(idx)} utterances; an episode needs "
                f"{min_train + min_valid} ({min_train} support shots + {min_valid} query "
                "shots); lower meta.shots / meta.query_shots or drop the class from labels")
    parts = {c: split_class(idx, valid_fraction, max(min_train, 1), min_valid, rng)
             for c, idx in by_class.items()}
    corpus = Corpus(name, feats, targets, {c: p[0] for c, p in parts.items()},
                    {c: p[1] for c, p in parts.items() if p[1]})
    log.info("source %s (%s): %d utterances (%d train, %d valid); %s", name, path, len(keys),
             len(corpus.indices("train")), len(corpus.indices("valid")),
             ", ".join(f"{labels[c]} {len(i)}" for c, i in sorted(by_class.items())))
    return corpus


def make_batch(corpus: Corpus, idx: list[int], device: torch.device) -> Batch:
    feats = [corpus.feats[i] for i in idx]
    return Batch(nn.utils.rnn.pad_sequence(feats, batch_first=True).to(device),
                 torch.tensor([f.shape[0] for f in feats], device=device),
                 torch.tensor([corpus.targets[i] for i in idx], device=device))


# ----------------------------------------------------------------------------- episodes
@dataclass(frozen=True)
class Episode:
    """One task's N-way K-shot support set (from the training split) and query set (from the
    validation split): utterance indices into the corpus, class by class."""

    corpus: int
    classes: tuple[int, ...]
    support: tuple[int, ...]
    query: tuple[int, ...]


def episode_classes(corpus: Corpus) -> list[int]:
    """Classes an episode can draw: those with both support and query utterances."""
    return [c for c in corpus.classes if corpus.valid.get(c)]


def sample_episode(corpus: Corpus, index: int, ways: int | None, shots: int, query_shots: int,
                   rng: np.random.Generator) -> Episode:
    """``ways`` classes (None: every class of the corpus), ``shots`` support and
    ``query_shots`` query utterances of each, without replacement."""
    present = episode_classes(corpus)
    n = len(present) if ways is None else int(ways)
    classes = sorted(int(c) for c in rng.choice(present, size=n, replace=False))
    support = [int(i) for c in classes for i in rng.choice(corpus.train[c], shots, False)]
    query = [int(i) for c in classes for i in rng.choice(corpus.valid[c], query_shots, False)]
    return Episode(index, tuple(classes), tuple(support), tuple(query))


# ----------------------------------------------------------------------------- FOMAML
def trainable(model: nn.Module) -> list[nn.Parameter]:
    return [p for p in model.parameters() if p.requires_grad]


def adapt(model: nn.Module, support: Batch, steps: int, lr: float
          ) -> tuple[nn.Module, float, float]:
    """Inner loop: ``steps`` plain SGD steps on the support set, applied to a deep copy of
    ``model`` (which is left unchanged). Returns the adapted copy and the support loss and
    accuracy of the last step."""
    fast = copy.deepcopy(model)
    fast.train()
    opt = torch.optim.SGD(trainable(fast), lr=lr, momentum=0.0)
    loss, acc = torch.tensor(float("nan")), float("nan")
    for _ in range(steps):
        logits = fast(support.feats, support.lengths)
        loss = F.cross_entropy(logits.float(), support.targets)
        acc = float((logits.argmax(-1) == support.targets).float().mean())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return fast, float(loss.detach()), acc


def first_order_grads(model: nn.Module, tasks: list[tuple[Batch, Batch]], steps: int, lr: float
                      ) -> tuple[list[torch.Tensor | None], dict[str, float]]:
    """FOMAML's meta-gradient: the sum over tasks of the query loss's gradient at the adapted
    weights :math:`\\theta'_i` (None for parameters no query loss reaches), one entry per
    trainable parameter of ``model``; and the mean support/query loss and accuracy."""
    total: list[torch.Tensor | None] = [None] * len(trainable(model))
    stats = np.zeros(4)
    for support, query in tasks:
        fast, s_loss, s_acc = adapt(model, support, steps, lr)
        logits = fast(query.feats, query.lengths)
        loss = F.cross_entropy(logits.float(), query.targets)
        grads = torch.autograd.grad(loss, trainable(fast), allow_unused=True)
        total = [g if t is None else t if g is None else t + g for t, g in zip(total, grads)]
        q_acc = float((logits.argmax(-1) == query.targets).float().mean())
        stats += (s_loss, s_acc, float(loss.detach()), q_acc)
    stats /= max(1, len(tasks))
    return total, dict(zip(("train_loss", "train_acc", "valid_loss", "valid_acc"), stats))


def meta_step(model: nn.Module, optimizer: torch.optim.Optimizer,
              tasks: list[tuple[Batch, Batch]], steps: int, lr: float,
              grad_clip: float | None = None) -> dict[str, float]:
    """One meta-update: :math:`\\theta \\leftarrow \\theta - \\eta \\sum_i \\nabla
    L_{T_i^{val}}(\\theta'_i)` through ``optimizer`` (Adam in the paper). Parameters without a
    gradient keep ``grad`` None and are not touched."""
    grads, stats = first_order_grads(model, tasks, steps, lr)
    optimizer.zero_grad(set_to_none=True)
    for p, g in zip(trainable(model), grads):
        p.grad = g
    if grad_clip:
        nn.utils.clip_grad_norm_(trainable(model), float(grad_clip))
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return stats


def _choose_tasks(corpora: list[Corpus], per_episode: int | None,
                  rng: np.random.Generator) -> list[int]:
    if per_episode is None or int(per_episode) >= len(corpora):
        return list(range(len(corpora)))
    return sorted(int(i) for i in rng.choice(len(corpora), int(per_episode), replace=False))


def check_episodes(corpora: list[Corpus], mc: dict[str, Any], labels: list[str]) -> None:
    """Each source must offer ``meta.ways`` classes with support and query utterances."""
    need = 2 if mc["ways"] is None else int(mc["ways"])
    for c in corpora:
        have = episode_classes(c)
        if len(have) < need:
            raise SertkError(f"source {c.name}: {len(have)} classes usable in episodes "
                             f"({' '.join(labels[i] for i in have) or 'none'}); meta.ways needs "
                             f"{need}")


def run_fomaml(net: nn.Module, corpora: list[Corpus], mc: dict[str, Any], device: torch.device,
               seed: int, progress: bool, csv_path: Path) -> dict[str, Any]:
    """Meta-train ``net`` in place (first-order MAML, Adam outer loop, SGD inner loop)."""
    rng = np.random.default_rng([seed, 17])
    torch.manual_seed(seed)
    opt = torch.optim.Adam(trainable(net), lr=float(mc["meta_lr"]))
    shots, q_shots = int(mc["shots"]), int(mc["query_shots"] or mc["shots"])
    window: list[dict[str, float]] = []
    best: dict[str, Any] = {"loss": float("inf"), "episode": 0, "state": None, "bad": 0}
    t0 = time.time()
    bar = tqdm(range(1, int(mc["episodes"]) + 1), desc="fomaml", unit="episode",
               disable=not progress, leave=False)
    for episode in bar:
        tasks = []
        for i in _choose_tasks(corpora, mc["tasks_per_episode"], rng):
            ep = sample_episode(corpora[i], i, mc["ways"], shots, q_shots, rng)
            tasks.append((make_batch(corpora[i], list(ep.support), device),
                          make_batch(corpora[i], list(ep.query), device)))
        window.append(meta_step(net, opt, tasks, int(mc["inner_steps"]), float(mc["inner_lr"]),
                                mc["grad_clip"]))
        bar.set_postfix(query_loss=f"{window[-1]['valid_loss']:.3f}")
        if episode % int(mc["eval_every"]) and episode != int(mc["episodes"]):
            continue
        mean = {k: float(np.mean([w[k] for w in window])) for k in window[0]}
        improved = mean["valid_loss"] < best["loss"]
        if improved:
            best.update(loss=mean["valid_loss"], episode=episode, bad=0,
                        state=copy.deepcopy(net.state_dict()))
        else:
            best["bad"] += 1
        _log_row(csv_path, "fomaml", episode, float(mc["meta_lr"]), mean, t0, improved)
        window, t0 = [], time.time()
        if mc["patience"] is not None and best["bad"] >= int(mc["patience"]):
            log.info("fomaml: no query-loss improvement in %d windows; stopping", best["bad"])
            break
    bar.close()
    if mc["select"] == "best" and best["state"] is not None:
        net.load_state_dict(best["state"])
        log.info("fomaml: keeping the meta-parameters of episode %d (query loss %.4f)",
                 best["episode"], best["loss"])
    return {"episodes": episode, "best_episode": best["episode"], "query_loss": best["loss"]}


# ----------------------------------------------------------------------------- baselines
class MultiHead(nn.Module):
    """MultiSER's pre-training network: the body (``encode``) of ``net`` shared, one copy of
    its ``head`` per source corpus (all starting from the same weights)."""

    def __init__(self, net: nn.Module, num_heads: int):
        super().__init__()
        if not (hasattr(net, "encode") and isinstance(getattr(net, "head", None), nn.Module)):
            raise SertkError("method multitask needs a model with encode() and a head "
                             "module (meta_ser)")
        self.net = net
        self.heads = nn.ModuleList(copy.deepcopy(net.head) for _ in range(num_heads))

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor, corpus: int) -> torch.Tensor:
        return self.heads[corpus](self.net.encode(feats, lengths))

    @torch.no_grad()
    def merge_heads(self) -> None:
        """The target's initial head: the mean of the source heads' weights."""
        merged = {k: torch.stack([h.state_dict()[k].float() for h in self.heads]).mean(0)
                  for k in self.net.head.state_dict()}
        self.net.head.load_state_dict(merged)


Forward = Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor]


@torch.no_grad()
def validation_loss(model: nn.Module, fwd: Forward, corpora: list[Corpus],
                    device: torch.device) -> tuple[float, float]:
    """Mean cross-entropy and accuracy over the corpora's validation splits (NaN if none)."""
    model.eval()
    loss_sum, correct, n = 0.0, 0, 0
    for ci, c in enumerate(corpora):
        idx = c.indices("valid")
        for start in range(0, len(idx), 256):
            b = make_batch(c, idx[start:start + 256], device)
            logits = fwd(b.feats, b.lengths, ci).float()
            loss_sum += float(F.cross_entropy(logits, b.targets, reduction="sum"))
            correct += int((logits.argmax(-1) == b.targets).sum())
            n += len(b.targets)
    return (loss_sum / n, correct / n) if n else (float("nan"), float("nan"))


def _batches(idx: list[int], batch_size: int, count: int, rng: np.random.Generator
             ) -> list[list[int]]:
    """``count`` batches from successive shuffles of ``idx`` (a pass ends with a short one)."""
    out: list[list[int]] = []
    while len(out) < count:
        perm = [int(i) for i in rng.permutation(idx)]
        out.extend(perm[s:s + batch_size] for s in range(0, len(perm), batch_size))
    return out[:count]


def _round_robin(corpora: list[Corpus], batch_size: int, rng: np.random.Generator
                 ) -> list[tuple[int, list[int]]]:
    """An epoch's batches: one from each corpus in turn, until the largest corpus has been
    seen once (smaller corpora are reshuffled and repeated)."""
    rounds = max(-(-len(c.indices("train")) // batch_size) for c in corpora)
    per = [_batches(c.indices("train"), batch_size, rounds, rng) for c in corpora]
    return [(ci, per[ci][r]) for r in range(rounds) for ci in range(len(corpora))]


def fit(model: nn.Module, fwd: Forward, corpora: list[Corpus], pc: dict[str, Any],
        device: torch.device, seed: int, progress: bool, csv_path: Path, stage: str
        ) -> dict[str, Any]:
    """Supervised pre-training on ``corpora`` (round-robin batches), Adam with a triangular
    cyclic lr, until the validation loss has not improved for ``patience`` epochs; the weights
    of the best validation loss are kept."""
    rng = np.random.default_rng([seed, 29])
    bs, params = int(pc["batch_size"]), trainable(model)
    steps = len(corpora) * max(-(-len(c.indices("train")) // bs) for c in corpora)
    opt = torch.optim.Adam(params, lr=float(pc["base_lr"]))
    sched = torch.optim.lr_scheduler.CyclicLR(
        opt, float(pc["base_lr"]), float(pc["max_lr"]),
        step_size_up=max(1, int(pc["step_size_epochs"]) * steps), cycle_momentum=False)
    best: dict[str, Any] = {"loss": float("inf"), "epoch": 0, "state": None, "bad": 0}
    bar = tqdm(range(1, int(pc["epochs"]) + 1), desc=stage, unit="epoch",
               disable=not progress, leave=False)
    for epoch in bar:
        t0, lr = time.time(), opt.param_groups[0]["lr"]
        model.train()
        sums = np.zeros(3)
        for ci, idx in _round_robin(corpora, bs, rng):
            b = make_batch(corpora[ci], idx, device)
            logits = fwd(b.feats, b.lengths, ci).float()
            loss = F.cross_entropy(logits, b.targets)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if pc["grad_clip"]:
                nn.utils.clip_grad_norm_(params, float(pc["grad_clip"]))
            opt.step()
            sched.step()
            sums += (float(loss.detach()) * len(idx), int((logits.argmax(-1) == b.targets).sum()),
                     len(idx))
        v_loss, v_acc = validation_loss(model, fwd, corpora, device)
        improved = not v_loss >= best["loss"]  # NaN (no validation data): keep the last
        if improved:
            best.update(loss=v_loss, epoch=epoch, bad=0, state=copy.deepcopy(model.state_dict()))
        else:
            best["bad"] += 1
        row = {"train_loss": sums[0] / sums[2], "train_acc": sums[1] / sums[2],
               "valid_loss": v_loss, "valid_acc": v_acc}
        _log_row(csv_path, stage, epoch, lr, row, t0, improved)
        bar.set_postfix(valid_loss=f"{v_loss:.3f}")
        if pc["patience"] is not None and best["bad"] >= int(pc["patience"]):
            break
    bar.close()
    model.load_state_dict(best["state"])
    log.info("%s: keeping epoch %d (valid loss %.4f)", stage, best["epoch"], best["loss"])
    return {"epochs": epoch, "best_epoch": best["epoch"], "valid_loss": best["loss"]}


def run_transfer(net: nn.Module, corpora: list[Corpus], pc: dict[str, Any],
                 device: torch.device, seed: int, progress: bool, csv_path: Path
                 ) -> list[dict[str, Any]]:
    """TransSER: pre-train on each source in turn."""
    def fwd(feats: torch.Tensor, lengths: torch.Tensor, _: int) -> torch.Tensor:
        return net(feats, lengths)

    torch.manual_seed(seed)
    return [fit(net, fwd, [c], pc, device, seed + i, progress, csv_path, f"transfer:{c.name}")
            for i, c in enumerate(corpora)]


def run_multitask(net: nn.Module, corpora: list[Corpus], pc: dict[str, Any],
                  device: torch.device, seed: int, progress: bool, csv_path: Path
                  ) -> dict[str, Any]:
    """MultiSER: shared body, a head per source, round-robin batches; heads merged after."""
    torch.manual_seed(seed)
    multi = MultiHead(net, len(corpora)).to(device)
    res = fit(multi, multi.forward, corpora, pc, device, seed, progress, csv_path, "multitask")
    multi.merge_heads()
    return res


# ----------------------------------------------------------------------------- target
def select_target(utt2lab: dict[str, str], tc: dict[str, Any], rng: np.random.Generator,
                  path: Path) -> list[str]:
    """The target training utterances used: ``target.shots`` per class, or a stratified
    ``target.fraction`` (at least one utterance per class), or all."""
    by_class: dict[str, list[str]] = {}
    for u, lab in sorted(utt2lab.items()):
        by_class.setdefault(lab, []).append(u)
    keep: list[str] = []
    for lab, utts in sorted(by_class.items()):
        if tc["shots"] is not None:
            if len(utts) < int(tc["shots"]):
                raise SertkError(f"target {path}: class {lab} has {len(utts)} utterances, "
                                 f"fewer than target.shots {tc['shots']}")
            n = int(tc["shots"])
        else:
            n = max(1, round(float(tc["fraction"]) * len(utts)))
        keep.extend(str(u) for u in rng.choice(utts, size=n, replace=False))
    return sorted(keep)


def prepare_target(train_dir: Path, valid_dir: Path | None, labels: list[str],
                   tc: dict[str, Any], seed: int, out: Path) -> tuple[Path, Path | None]:
    """Dump dirs of the target data the fine-tuning sees: utterances of other labels dropped,
    the training set cut to ``target.shots`` / ``target.fraction``."""
    if not 0.0 < float(tc["fraction"]) <= 1.0:
        raise SertkError(f"target.fraction must be in (0, 1], got {tc['fraction']}")
    utt2lab = labelled_utts(train_dir, labels, "target training set")
    keep = select_target(utt2lab, tc, np.random.default_rng([seed, 41]), train_dir)
    n_all = len(DataDir(train_dir).table("feats.scp"))
    if len(keep) < n_all:
        train_dir = subset(train_dir, out / "target_train", utts=keep)
    log.info("target training set: %d utterances (%s)", len(keep), train_dir)
    if valid_dir is not None:
        v_keep = labelled_utts(valid_dir, labels, "target validation set")
        if len(v_keep) < len(DataDir(valid_dir).table("feats.scp")):
            valid_dir = subset(valid_dir, out / "target_valid", utts=sorted(v_keep))
    return train_dir, valid_dir


# ----------------------------------------------------------------------------- driver
def feat_dim(path: Path) -> int:
    if (path / "feat_dim").is_file():
        return int((path / "feat_dim").read_text())
    return int(FeatsDataset(path, None)[0][1].shape[1])


def _log_row(path: Path, stage: str, step: int, lr: float, m: dict[str, float], t0: float,
             best: bool) -> None:
    row = {"stage": stage, "step": step, "lr": f"{lr:.3e}",
           **{k: f"{m[k]:.4f}" for k in ("train_loss", "train_acc", "valid_loss", "valid_acc")},
           "seconds": f"{time.time() - t0:.1f}", "best": int(best)}
    new = not path.is_file()
    with path.open("a", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=CSV_FIELDS)
        if new:
            writer.writeheader()
        writer.writerow(row)
    log.info("%s %d: train loss %.4f acc %.4f | valid loss %.4f acc %.4f | lr %.2e%s", stage,
             step, m["train_loss"], m["train_acc"], m["valid_loss"], m["valid_acc"], lr,
             " *best*" if best else "")


def pretrain(cfg: dict[str, Any], sources: list[Path], labels: list[str], input_dim: int,
             exp: Path, device: torch.device, progress: bool) -> tuple[Path, dict[str, Any]]:
    """Stage 1: load the sources, learn the initialisation with ``cfg['method']``, write it to
    ``EXP/pretrain/init.safetensors``."""
    method, seed = cfg["method"], int(cfg.get("seed", 0))
    mc, pc, sc = section(cfg, "meta"), section(cfg, "pretrain"), section(cfg, "sources")
    if mc["select"] not in ("best", "last"):
        raise SertkError(f"meta.select must be best or last, got {mc['select']!r}")
    if int(mc["episodes"]) < 1 or int(mc["eval_every"]) < 1 or int(pc["epochs"]) < 1:
        raise SertkError("meta.episodes, meta.eval_every and pretrain.epochs must be >= 1")
    shots, q_shots = (int(mc["shots"]), int(mc["query_shots"] or mc["shots"])) \
        if method == "fomaml" else (1, 0)
    rng = np.random.default_rng([seed, 5])
    corpora = [load_corpus(p, labels, f"source{i + 1}", norm_vars_of(cfg),
                           float(sc["valid_fraction"]), shots, q_shots, rng)
               for i, p in enumerate(sources)]
    missing = set(range(len(labels))) - {c for corpus in corpora for c in corpus.classes}
    if missing:
        log.warning("no source has %s: their outputs are only learnt on the target",
                    " ".join(labels[i] for i in sorted(missing)))
    mcfg = cfg["model"]
    conf = {k: v for k, v in (mcfg.get("conf") or {}).items() if k != "finetune"}
    torch.manual_seed(seed)
    net = build_net(mcfg["name"], input_dim, len(labels), conf).to(device)
    out = exp / "pretrain"
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.csv").unlink(missing_ok=True)
    log.info("%s pre-training of %s on %d sources", method, mcfg["name"], len(corpora))
    if method == "fomaml":
        check_episodes(corpora, mc, labels)
        res: Any = run_fomaml(net, corpora, mc, device, seed, progress, out / "metrics.csv")
    elif method == "transfer":
        res = run_transfer(net, corpora, pc, device, seed, progress, out / "metrics.csv")
    else:
        res = run_multitask(net, corpora, pc, device, seed, progress, out / "metrics.csv")
    save_weights(net, out / "init.safetensors")
    return out / "init.safetensors", {"method": method, "result": res}


def train_meta(cfg: dict[str, Any], sources: list[str | Path], target_train: str | Path,
               target_valid: str | Path | None, exp_dir: str | Path, method: str | None = None,
               device: str | None = None, progress: bool = True) -> dict[str, Any]:
    """Pre-train on ``sources`` with ``method`` (default ``cfg['method']``), then fine-tune
    on the target with :func:`sertk.train.trainer.train`; returns the fine-tuning's metrics
    plus ``pretrain`` (stage 1's summary)."""
    from sertk.train.trainer import train

    cfg = resolve_method(cfg, method)
    exp = Path(exp_dir)
    exp.mkdir(parents=True, exist_ok=True)
    setup_logging(exp / "train.log")
    (exp / "cmvn.ark").unlink(missing_ok=True)  # the trainer would reuse a previous run's
    if not sources:
        raise SertkError("give at least one source corpus (--source)")
    if "name" not in (cfg.get("model") or {}):
        raise SertkError("training config needs model.name")
    sources, t_train = [Path(s) for s in sources], Path(target_train)
    t_valid = Path(target_valid) if target_valid else None
    labels = list(cfg.get("labels") or DataDir(t_train).labels())
    dims = {str(p): feat_dim(p) for p in [*sources, t_train]}
    if len(set(dims.values())) > 1:
        raise SertkError("feature dimensions differ: " + ", ".join(
            f"{p} {d}" for p, d in dims.items()))
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    log.info("train-meta: method %s, labels %s, sources %s, target %s, device %s",
             cfg["method"], " ".join(labels), " ".join(map(str, sources)), t_train, dev)
    init, summary = pretrain(cfg, sources, labels, dims[str(t_train)], exp, dev, progress)
    t_train, t_valid = prepare_target(t_train, t_valid, labels, section(cfg, "target"),
                                      int(cfg.get("seed", 0)), exp / "data")
    ft = copy.deepcopy(cfg)
    ft["labels"] = labels
    ft["model"]["conf"] = {**(ft["model"].get("conf") or {}),
                           "init_checkpoint": str(init.resolve())}
    res = train(ft, t_train, t_valid, exp, device=str(dev), progress=progress)
    return {**res, "pretrain": summary}
