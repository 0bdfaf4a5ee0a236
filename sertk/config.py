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
        raise SertkError(f"cannot parse YAML config {path}: {exc}") from None
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
