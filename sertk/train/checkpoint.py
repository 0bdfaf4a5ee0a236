"""Checkpoints: full training state for ``--resume`` and safetensors weights for deployment.

Everything is loaded with ``torch.load(weights_only=True)`` or safetensors, never unpickled.
Every file is written crash-safely (a temporary file, fsync, rename: :mod:`sertk.atomic`), so
a kill leaves the previous version or the new one. ``save_state`` keeps the previous
``last.pt`` as ``last.prev.pt``; ``load_last_state`` falls back to it when ``last.pt`` cannot
be read (truncated or corrupt). The state carries the random number generators of python,
numpy and torch (as tensors and plain values), restored by ``restore_rng_state``.
"""

from __future__ import annotations

import csv
import io
import logging
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from sertk.atomic import atomic_path, atomic_write_text
from sertk.errors import SertkError

log = logging.getLogger(__name__)
STATE_KEYS = ("model", "optimizer", "scheduler", "scaler", "state")


def unwrap(model: nn.Module) -> nn.Module:
    return model.module if hasattr(model, "module") else model


def save_weights(model: nn.Module, path: str | Path) -> None:
    state = {k: v.detach().cpu().contiguous() for k, v in unwrap(model).state_dict().items()}
    save_tensors(state, path)


def save_tensors(state: dict[str, torch.Tensor], path: str | Path) -> None:
    """A safetensors file, written crash-safely."""
    with atomic_path(path) as tmp:
        save_file(state, str(tmp))


def _unreadable(path: Path, exc: Exception) -> str:
    """One line for a weights file that cannot be read (never torch's advice to unpickle)."""
    import pickle

    if isinstance(exc, pickle.UnpicklingError):
        return (f"{path}: holds objects other than tensors, which sertk does not unpickle "
                "(save weights with safetensors or torch.save of a state dict)")
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return f"{path}: not a readable weights file ({first[:160]})"


def load_tensor_file(path: str | Path) -> Any:
    """A ``.safetensors`` file, or a ``torch.save`` file loaded with ``weights_only=True``;
    an unreadable or pickled-object file is a one-line :class:`SertkError`."""
    path = Path(path)
    if not path.is_file():
        raise SertkError(f"weights file not found: {path}")
    try:
        if path.suffix == ".safetensors":
            return load_file(str(path))
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # SafetensorError, UnpicklingError, a truncated zip, ...
        raise SertkError(_unreadable(path, exc)) from None


def load_weights(model: nn.Module, path: str | Path) -> None:
    path = Path(path)
    if not path.is_file():
        raise SertkError(f"model weights not found: {path}")
    state = load_tensor_file(path)
    missing, unexpected = unwrap(model).load_state_dict(state, strict=False)
    if missing or unexpected:
        raise SertkError(f"{path}: weights do not match the model (missing {missing[:3]}, "
                         f"unexpected {unexpected[:3]})")


def prev_path(path: str | Path) -> Path:
    """``last.pt`` -> ``last.prev.pt``: the state saved before the current one."""
    path = Path(path)
    return path.with_name(f"{path.stem}.prev{path.suffix}")


def save_state(path: str | Path, state: dict[str, Any]) -> None:
    """``torch.save`` crash-safely; the previous file stays as ``prev_path(path)`` (a hard
    link, so that ``path`` itself never disappears)."""
    path = Path(path)
    if path.is_file():
        with atomic_path(prev_path(path)) as tmp:
            try:
                os.link(path, tmp)
            except OSError:
                import shutil

                shutil.copyfile(path, tmp)
    with atomic_path(path) as tmp, open(tmp, "wb", buffering=0) as fh:
        torch.save(state, fh)  # unbuffered: a full disk surfaces as ENOSPC, not a late flush


def load_state(path: str | Path) -> dict[str, Any]:
    if not Path(path).is_file():
        raise SertkError(f"no checkpoint to resume from: {path}")
    return load_tensor_file(path)


def load_last_state(path: str | Path) -> tuple[dict[str, Any], Path] | None:
    """The training state of ``path`` (``last.pt``), or of ``last.prev.pt`` with a warning
    when ``path`` is missing, truncated or corrupt; None when neither exists. Raises a
    ``SertkError`` naming both files when none of them can be read."""
    errors = []
    for p in (Path(path), prev_path(path)):
        if not p.is_file():
            continue
        try:
            ck = torch.load(p, map_location="cpu", weights_only=True)
            if not isinstance(ck, dict) or not set(STATE_KEYS) <= set(ck):
                raise ValueError(f"not a training state (keys {sorted(ck)[:5]})")
        except Exception as exc:  # truncated zip, bad pickle, wrong content
            why = _unreadable(p, exc)
            errors.append(why)
            log.warning("cannot read checkpoint %s", why)
            continue
        if errors:
            log.warning("resuming from the previous checkpoint %s instead", p)
        return ck, p
    if errors:
        raise SertkError("no usable checkpoint to resume from: " + "; ".join(errors) +
                         f"; remove {Path(path).parent} to start over")
    return None


def rng_state() -> dict[str, Any]:
    """The generators of python, numpy and torch as tensors and plain values (loadable with
    ``weights_only=True``)."""
    version, words, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    out = {"python": {"version": version, "state": torch.tensor(words, dtype=torch.int64),
                      "gauss": gauss},
           "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)),
                     "pos": int(pos), "has_gauss": int(has_gauss), "cached": float(cached)},
           "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        out["cuda"] = torch.cuda.get_rng_state_all()
    return out


def restore_rng_state(st: dict[str, Any] | None) -> None:
    """Undo ``rng_state`` (a no-op for checkpoints written before it existed)."""
    if not st:
        return
    py = st["python"]
    random.setstate((py["version"], tuple(int(w) for w in py["state"].tolist()), py["gauss"]))
    n = st["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"],
                         n["has_gauss"], n["cached"]))
    torch.set_rng_state(st["torch"])
    if "cuda" in st and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(st["cuda"])


def truncate_metrics(path: str | Path, last_epoch: int) -> int:
    """Keep the rows of a metrics CSV up to ``last_epoch`` (the epoch a resumed run starts
    after), dropping those of epochs a killed run wrote but did not checkpoint; returns the
    number of rows dropped."""
    path = Path(path)
    if not path.is_file():
        return 0
    with path.open(newline="") as fh:
        rows = list(csv.reader(fh))
    if not rows:
        return 0
    head, body = rows[0], rows[1:]
    col = head.index("epoch") if "epoch" in head else 0

    def keep(row: list[str]) -> bool:
        try:
            return len(row) == len(head) and int(row[col]) <= last_epoch
        except ValueError:
            return False

    kept = [r for r in body if keep(r)]
    if len(kept) != len(body):
        buf = io.StringIO()
        csv.writer(buf).writerows([head, *kept])
        atomic_write_text(path, buf.getvalue())
    return len(body) - len(kept)
