"""Partial initialisation from a user-supplied checkpoint (``init_checkpoint:`` model option).

:func:`read_state_dict` reads a state dict with ``torch.load(weights_only=True)`` or safetensors
(never unpickling arbitrary objects, never downloading). It accepts a bare state dict, the common
containers ``{"model": sd}`` (PANNs, sertk's ``checkpoints/last.pt``), ``{"state_dict": sd}``
and ``{"model_state_dict": sd}``, and strips DDP's ``module.`` prefix; a sertk experiment's
``model.safetensors`` holds ``net.*`` (the network) and ``cmvn.*`` keys, of which the ``net.``
part is used.

:func:`load_matching` copies every tensor whose (renamed) name and shape match the module and
logs what was skipped (e.g. a speaker output layer replaced by the emotion layer).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

log = logging.getLogger(__name__)

CONTAINER_KEYS = ("model", "state_dict", "model_state_dict")


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint file (``.safetensors`` or a ``torch.save`` file)."""
    from sertk.train.checkpoint import load_tensor_file

    path = Path(path)
    obj: object = load_tensor_file(path)  # one SertkError line for an unreadable file
    for key in CONTAINER_KEYS:
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: not a state dict (got {type(obj).__name__})")
    state = {k: v for k, v in obj.items() if isinstance(k, str) and torch.is_tensor(v)}
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    if any(k.startswith("net.") for k in state):  # a sertk EmotionClassifier
        state = {k[len("net."):]: v for k, v in state.items() if k.startswith("net.")}
    return state


@dataclass
class InitReport:
    """What :func:`load_matching` did; every list holds the module's parameter names, except
    ``unused`` (checkpoint names that matched nothing)."""

    loaded: list[str] = field(default_factory=list)
    shape_mismatch: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unused: list[str] = field(default_factory=list)


def load_matching(module: nn.Module, source: str | Path | dict[str, torch.Tensor],
                  rename: Callable[[str], str | None] | None = None,
                  include: Iterable[str] | None = None) -> InitReport:
    """Copy the checkpoint tensors whose name and shape match ``module``'s state dict.

    ``rename`` maps a checkpoint name to the module's name (None drops the tensor);
    ``include`` restricts loading to module names with one of these prefixes. Tensors of the
    module that get no value keep their initialisation; everything skipped is logged.
    """
    state = source if isinstance(source, dict) else read_state_dict(source)
    where = "state dict" if isinstance(source, dict) else str(source)
    prefixes = tuple(include) if include is not None else None
    own = module.state_dict()
    report = InitReport()
    new: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        name = rename(key) if rename is not None else key
        if name is None or name not in own or (prefixes and not name.startswith(prefixes)):
            report.unused.append(key)
        elif own[name].shape != value.shape:
            report.shape_mismatch.append(name)
        else:
            new[name] = value
    with torch.no_grad():
        for name, value in new.items():
            own[name].copy_(value.to(own[name].dtype))
    report.loaded = sorted(new)
    report.missing = sorted(k for k in own if k not in new and k not in report.shape_mismatch
                            and (not prefixes or k.startswith(prefixes)))
    log.info("init_checkpoint %s: loaded %d of %d tensors", where, len(new), len(own))
    if report.shape_mismatch:
        log.info("init_checkpoint: shape differs, kept initialisation: %s",
                 ", ".join(report.shape_mismatch))
    if report.missing:
        log.info("init_checkpoint: not in the checkpoint, kept initialisation: %s",
                 ", ".join(report.missing))
    if report.unused:
        log.info("init_checkpoint: checkpoint tensors not used: %s", ", ".join(report.unused))
    return report


def init_from_checkpoint(module: nn.Module, path: str | Path | None,
                         rename: Callable[[str], str | None] | None = None,
                         include: Iterable[str] | None = None) -> InitReport | None:
    """:func:`load_matching` for a model's ``init_checkpoint`` option.

    A missing file is logged as a warning, not an error: the option stays in the experiment's
    config, and a trained model rebuilt elsewhere for inference (``sertk predict``) gets its
    weights from ``model.safetensors`` right after construction.
    """
    if not path:
        return None
    if not Path(path).is_file():
        log.warning("init_checkpoint %s not found: keeping the random initialisation (expected "
                    "when a trained model is rebuilt for inference, a mistake when training)",
                    path)
        return None
    return load_matching(module, path, rename=rename, include=include)
