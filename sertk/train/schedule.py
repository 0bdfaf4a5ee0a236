"""Optimisers and learning-rate schedules built from the ``optim:``/``scheduler:`` config."""

from __future__ import annotations

import math
from typing import Any

import torch

from sertk.errors import SertkError


def build_optimizer(params, cfg: dict[str, Any]) -> torch.optim.Optimizer:
    """``optim:`` config: ``name`` adam | adamw | sgd | adadelta | rmsprop, ``lr``,
    ``weight_decay``, ``betas`` (adam/adamw), ``momentum`` (sgd, rmsprop), ``nesterov`` (sgd),
    ``rho`` (adadelta), ``alpha`` (rmsprop's smoothing; PyTorch's default 0.99). A key set
    to null is unset (``--override optim.momentum=null`` when switching SGD to Adam)."""
    cfg = {k: v for k, v in (cfg or {}).items() if v is not None}
    name = cfg.pop("name", "adam").lower()
    lr = float(cfg.pop("lr", 1e-3))
    wd = float(cfg.pop("weight_decay", 0.0))
    if name in ("adam", "adamw"):
        cls = torch.optim.Adam if name == "adam" else torch.optim.AdamW
        opt = cls(params, lr=lr, weight_decay=wd, betas=tuple(cfg.pop("betas", (0.9, 0.999))))
    elif name == "sgd":
        opt = torch.optim.SGD(params, lr=lr, weight_decay=wd,
                              momentum=float(cfg.pop("momentum", 0.9)),
                              nesterov=bool(cfg.pop("nesterov", False)))
    elif name == "adadelta":
        opt = torch.optim.Adadelta(params, lr=lr, weight_decay=wd,
                                   rho=float(cfg.pop("rho", 0.9)))
    elif name == "rmsprop":
        opt = torch.optim.RMSprop(params, lr=lr, weight_decay=wd,
                                  alpha=float(cfg.pop("alpha", 0.99)),
                                  momentum=float(cfg.pop("momentum", 0.0)))
    else:
        raise SertkError(f"unknown optimizer {name!r}; known: adam, adamw, sgd, adadelta, "
                         "rmsprop")
    if cfg:
        raise SertkError(f"unknown options for optimizer {name!r}: {', '.join(sorted(cfg))}")
    return opt


def build_scheduler(opt: torch.optim.Optimizer, cfg: dict[str, Any] | None, epochs: int,
                    steps_per_epoch: int) -> tuple[Any, str]:
    """Return ``(scheduler or None, "epoch" | "step")``.

    * ``none``
    * ``exp_step``: constant until ``start_epoch``, then ``lr *= exp(rate)`` every ``step``
      epochs, the first decay at ``start_epoch`` (LIGHT-SERNET: start 50, step 20, rate -0.15).
    * ``onecycle``: ``torch.optim.lr_scheduler.OneCycleLR`` with ``max_lr`` (default the lr),
      ``pct_start``, stepped every batch.
    * ``cosine``: cosine annealing to ``eta_min`` over all steps, optional ``warmup_steps``.
    """
    cfg = dict(cfg or {"name": "none"})
    name = cfg.pop("name", "none")
    if name == "none":
        return None, "epoch"
    if name == "exp_step":
        start, step, rate = int(cfg.get("start_epoch", 50)), int(cfg.get("step", 20)), float(
            cfg.get("rate", -0.15))

        def factor(epoch: int) -> float:
            return 1.0 if epoch < start else math.exp(rate * ((epoch - start) // step + 1))

        return torch.optim.lr_scheduler.LambdaLR(opt, factor), "epoch"
    if name == "onecycle":
        base = opt.param_groups[0]["lr"]
        return torch.optim.lr_scheduler.OneCycleLR(
            opt, max_lr=float(cfg.get("max_lr", base)), total_steps=epochs * steps_per_epoch,
            pct_start=float(cfg.get("pct_start", 0.3)),
            div_factor=float(cfg.get("div_factor", 25.0)),
            final_div_factor=float(cfg.get("final_div_factor", 1e4))), "step"
    if name == "cosine":
        total = epochs * steps_per_epoch
        warm = int(cfg.get("warmup_steps", 0))
        floor = float(cfg.get("eta_min", 0.0)) / opt.param_groups[0]["lr"]

        def cos(step: int) -> float:
            if step < warm:
                return (step + 1) / warm
            p = (step - warm) / max(1, total - warm)
            return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(p, 1.0)))

        return torch.optim.lr_scheduler.LambdaLR(opt, cos), "step"
    raise SertkError(f"unknown scheduler {name!r}; known: none, exp_step, onecycle, cosine")
