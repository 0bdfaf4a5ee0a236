"""Checkpoints: full training state for ``--resume`` and safetensors weights for deployment.

Everything is loaded with ``torch.load(weights_only=True)`` or safetensors, never unpickled.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from sertk.errors import SertkError


def unwrap(model: nn.Module) -> nn.Module:
    return model.module if hasattr(model, "module") else model


def save_weights(model: nn.Module, path: str | Path) -> None:
    state = {k: v.detach().cpu().contiguous() for k, v in unwrap(model).state_dict().items()}
    tmp = f"{path}.tmp"
    save_file(state, tmp)
    os.replace(tmp, path)


def load_weights(model: nn.Module, path: str | Path) -> None:
    path = Path(path)
    if not path.is_file():
        raise SertkError(f"model weights not found: {path}")
    state = load_file(str(path)) if path.suffix == ".safetensors" else torch.load(
        path, map_location="cpu", weights_only=True)
    missing, unexpected = unwrap(model).load_state_dict(state, strict=False)
    if missing or unexpected:
        raise SertkError(f"{path}: weights do not match the model (missing {missing[:3]}, "
                         f"unexpected {unexpected[:3]})")


def save_state(path: str | Path, state: dict[str, Any]) -> None:
    tmp = f"{path}.tmp"
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_state(path: str | Path) -> dict[str, Any]:
    if not Path(path).is_file():
        raise SertkError(f"no checkpoint to resume from: {path}")
    return torch.load(path, map_location="cpu", weights_only=True)
