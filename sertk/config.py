"""YAML configuration files: loading, merging command-line overrides, saving."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from sertk.errors import SertkError


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping; a missing or malformed file is a :class:`SertkError`."""
    path = Path(path)
    if not path.is_file():
        raise SertkError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise SertkError(f"cannot parse YAML config {path}: {yaml_error_line(exc)}") from None
    except UnicodeDecodeError:
        raise SertkError(f"config {path} is not UTF-8 text") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise SertkError(f"config {path} must be a YAML mapping, got {type(data).__name__}")
    return data


def save_yaml(data: dict[str, Any], path: str | Path) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(yaml.safe_dump(data, sort_keys=False))


def deep_update(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """Return a copy of ``base`` with ``update`` merged in recursively."""
    out = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_update(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def apply_overrides(cfg: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``a.b.c=value`` overrides (value parsed as YAML) to a nested config."""
    cfg = copy.deepcopy(cfg)
    for item in overrides:
        if "=" not in item:
            raise SertkError(f"override must look like key.sub=value, got {item!r}")
        key, raw = item.split("=", 1)
        node = cfg
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise SertkError(f"override {item!r}: {part} is not a mapping")
        node[parts[-1]] = yaml.safe_load(raw)
    return cfg


def yaml_error_line(exc: yaml.YAMLError) -> str:
    """A YAML error on one line: the problem and where it is (PyYAML's own message spans
    several lines, with the offending line quoted)."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None)
    if problem and mark is not None:
        context = getattr(exc, "context", None)
        return (f"{problem} at line {mark.line + 1}, column {mark.column + 1}"
                + (f" ({context})" if context else ""))
    return " ".join(str(exc).split())


# ------------------------------------------------------------------- training-config checks
# What `sertk train` reads; anything else would be silently ignored (a typo such as `trian:`).
TRAIN_TOP_KEYS = ("model", "loss", "optim", "scheduler", "train", "augment", "cmvn", "task",
                  "dims", "labels", "feats", "input_dim", "aux_classes", "input_sizes")
MODEL_KEYS = ("name", "conf", "members")
# option -> expected type: int, num (a number), bool, str, pair (two integers), nums (a list
# of numbers); "?" also allows null. The trainer converts with int()/float(), so "5" and "1e-4"
# (which YAML reads as strings) pass, as they would in training.
TRAIN_TYPES = {
    "epochs": "int", "batch_size": "int", "valid_batch_size": "int", "repeat": "int",
    "average_last": "int", "seed": "int", "num_workers": "int", "max_frames": "int?",
    "crop_frames": "int?", "patience": "int?", "bucket_pools": "int?", "grad_clip": "num?",
    "crop_pad": "str", "select": "str", "batch_crop": "bool", "save_initial": "bool",
    "channels_last": "bool", "segment": "pair?", "eval_segment": "pair?",
}
OPTIM_TYPES = {"name": "str", "lr": "num", "weight_decay": "num?", "momentum": "num?",
               "rho": "num?", "alpha": "num?", "nesterov": "bool?", "betas": "nums?"}
SCHEDULER_TYPES = {
    "none": {},
    "exp_step": {"start_epoch": "int", "step": "int", "rate": "num"},
    "onecycle": {"max_lr": "num", "pct_start": "num", "div_factor": "num",
                 "final_div_factor": "num"},
    "cosine": {"warmup_steps": "int", "eta_min": "num"},
}
LOSS_TYPES = {"name": "str", "label_smoothing": "num", "gamma": "num", "class_weights": "bool",
              "weights": "nums"}
_TYPE_NAMES = {"int": "an integer", "num": "a number", "bool": "true or false",
               "str": "a string", "pair": "a list of two integers",
               "nums": "a list of numbers"}


def _is_type(value: Any, kind: str) -> bool:
    if isinstance(value, bool):
        return kind == "bool"
    if kind == "int":
        try:
            return float(value) == int(float(value))
        except (TypeError, ValueError, OverflowError):
            return False
    if kind == "num":
        try:
            float(value)
        except (TypeError, ValueError):
            return False
        return True
    if kind == "str":
        return isinstance(value, str)
    if kind == "pair":
        return isinstance(value, (list, tuple)) and len(value) == 2 and \
            all(_is_type(v, "int") for v in value)
    if kind == "nums":
        return isinstance(value, (list, tuple)) and all(_is_type(v, "num") for v in value)
    return False


def check_types(section: dict[str, Any], types: dict[str, str], where: str) -> None:
    """Every option of ``section`` named in ``types`` has that type (others are not checked)."""
    for key, value in section.items():
        kind = types.get(key)
        if kind is None or (kind.endswith("?") and value is None):
            continue
        if not _is_type(value, kind.rstrip("?")):
            raise SertkError(f"{where}.{key} must be {_TYPE_NAMES[kind.rstrip('?')]}"
                             + (" or null" if kind.endswith("?") else "")
                             + f", got {value!r}")


def _mapping(cfg: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    value = cfg.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise SertkError(f"{where}: {key} must be a mapping (key: value lines), got "
                         f"{value!r}")
    return value


def check_train_config(cfg: dict[str, Any], where: str = "training config") -> None:
    """Reject a training config that the trainer would partly ignore (an unknown top-level or
    model key) or crash on (a section that is not a mapping, an option of the wrong type),
    with one line naming the option. Unknown options inside ``train``, ``optim`` and ``loss``
    are the trainer's own errors."""
    unknown = sorted(set(cfg) - set(TRAIN_TOP_KEYS))
    if unknown:
        raise SertkError(f"{where}: unknown top-level key(s) {', '.join(unknown)} (known: "
                         f"{', '.join(TRAIN_TOP_KEYS)})")
    model = _mapping(cfg, "model", where)
    unknown = sorted(set(model) - set(MODEL_KEYS))
    if unknown:
        raise SertkError(f"{where}: unknown model key(s) {', '.join(unknown)} (known: "
                         f"{', '.join(MODEL_KEYS)}; network options go under model.conf)")
    _mapping(model, "conf", f"{where}: model")
    check_types(_mapping(cfg, "train", where), TRAIN_TYPES, f"{where}: train")
    check_types(_mapping(cfg, "optim", where), OPTIM_TYPES, f"{where}: optim")
    check_types(_mapping(cfg, "loss", where), LOSS_TYPES, f"{where}: loss")
    check_types(_mapping(cfg, "cmvn", where), {"norm_vars": "bool"}, f"{where}: cmvn")
    sched = _mapping(cfg, "scheduler", where)
    types = SCHEDULER_TYPES.get(str(sched.get("name", "none")))
    if types is not None:  # an unknown name is the scheduler builder's error
        # another scheduler's options are left over when a recipe overrides scheduler.name
        # (they are ignored); an option of no scheduler is a typo
        known = {k for opts in SCHEDULER_TYPES.values() for k in opts}
        unknown = sorted(set(sched) - {"name"} - known)
        if unknown:
            raise SertkError(f"{where}: unknown scheduler option(s) {', '.join(unknown)} "
                             f"(known for {sched.get('name', 'none')}: "
                             f"{', '.join(types) or 'none'})")
        check_types(sched, types, f"{where}: scheduler")
    if cfg.get("augment") is not None and not isinstance(cfg["augment"], list):
        raise SertkError(f"{where}: augment must be a list of {{name: ...}} entries, got "
                         f"{cfg['augment']!r}")


def check_conf_types(conf: dict[str, Any], builder: Any, where: str) -> None:
    """A text value for an option of ``conf`` whose builder default is a number or a bool
    (``channels: four``, ``dropout: 0.3.``) is an error naming it; it would otherwise fail deep
    inside the network, or not at all. Only text is refused: some options take a number or a
    list (per-layer values)."""
    import inspect

    params: dict[str, inspect.Parameter] = {}
    # a class passes **kwargs to its bases' __init__ (e.g. Fbank -> _KaldiFrontEnd): their
    # parameters count too
    for fn in ([c.__init__ for c in builder.__mro__ if "__init__" in vars(c)]
               if inspect.isclass(builder) else [builder]):
        try:
            for name, p in inspect.signature(fn).parameters.items():
                params.setdefault(name, p)
        except (TypeError, ValueError):
            continue
    for key, value in conf.items():
        p = params.get(key)
        if p is None or p.default is inspect.Parameter.empty or p.default is None \
                or not isinstance(value, str):
            continue
        if isinstance(p.default, bool):
            kind = "bool"
        elif isinstance(p.default, (int, float)):
            kind = "num"
        else:
            continue
        if not _is_type(value, kind):
            raise SertkError(f"{where}{' ' if where.endswith(':') else '.'}{key} must be "
                             f"{_TYPE_NAMES[kind]} (default "
                             f"{p.default!r}), got {value!r}")

