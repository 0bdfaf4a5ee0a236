"""Packed models: everything ``sertk infer`` needs, in one zip file.

``model.zip`` holds ``config.yaml`` (training config with ``input_dim`` and ``labels``),
``feats.yaml`` (the front end), ``labels.txt``, ``cmvn.ark`` (Kaldi-format statistics, also
folded into the weights) and ``model.safetensors``. An experiment directory written by
``sertk train`` has the same files and can be loaded directly.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml
from safetensors.torch import load as load_safetensors

from sertk.errors import SertkError
from sertk.features.cmvn import norm_vars_of
from sertk.features.registry import FeatureConfig
from sertk.models.classifier import EmotionClassifier, members_of

REQUIRED = ("config.yaml", "feats.yaml", "labels.txt", "cmvn.ark", "model.safetensors")
OPTIONAL = ("metrics.csv",)


@dataclass
class PackedModel:
    model: EmotionClassifier
    labels: list[str]
    feats: FeatureConfig
    config: dict[str, Any]

    def to(self, device: torch.device | str) -> PackedModel:
        self.model.to(device)
        return self


def pack(exp_dir: str | Path, out: str | Path, extra: list[str | Path] | None = None) -> Path:
    """Zip the files of a trained experiment directory into ``out``."""
    exp_dir, out = Path(exp_dir), Path(out)
    missing = [n for n in REQUIRED if not (exp_dir / n).is_file()]
    if missing:
        raise SertkError(f"cannot pack {exp_dir}: missing {', '.join(missing)} (train first)")
    out.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name in (*REQUIRED, *OPTIONAL):
            if (exp_dir / name).is_file():
                zf.write(exp_dir / name, name)
        for path in extra or []:
            zf.write(path, Path(path).name)
        zf.writestr("meta.json", json.dumps({"format": "sertk-packed-model", "version": 1}))
    return out


PRETRAINED_DIR = Path(__file__).resolve().parents[1] / "pretrained"


def shipped_models() -> list[str]:
    """Names of the packed models that ship with sertk (``sertk/pretrained/<name>.zip``)."""
    return sorted(p.stem for p in PRETRAINED_DIR.glob("*.zip"))


def resolve_model(path: str | Path) -> Path:
    """A packed model, an experiment directory, or the name of a shipped model."""
    path = Path(path)
    if path.exists():
        return path
    shipped = PRETRAINED_DIR / f"{path}.zip"
    if path.name == str(path) and shipped.is_file():
        return shipped
    names = ", ".join(shipped_models()) or "none"
    raise SertkError(f"model not found: {path} (not a file or directory, nor the name of a "
                     f"shipped model: {names})")


def _read_members(path: Path) -> dict[str, bytes]:
    if path.is_dir():
        return {n: (path / n).read_bytes() for n in REQUIRED if (path / n).is_file()}
    try:
        with zipfile.ZipFile(path) as zf:
            return {n: zf.read(n) for n in REQUIRED if n in zf.namelist()}
    except zipfile.BadZipFile:
        raise SertkError(f"{path} is not a packed sertk model (not a zip file)") from None


def load_packed(path: str | Path, device: torch.device | str = "cpu") -> PackedModel:
    """Load a packed model (zip), a trained experiment directory or a shipped model by name
    (:func:`shipped_models`)."""
    path = resolve_model(path)
    files = _read_members(path)
    missing = [n for n in REQUIRED if n not in files and n != "cmvn.ark"]
    if missing:
        raise SertkError(f"{path}: not a complete sertk model, missing {', '.join(missing)}")
    config = yaml.safe_load(files["config.yaml"])
    feats = FeatureConfig.from_dict(yaml.safe_load(files["feats.yaml"]))
    labels = [x for x in files["labels.txt"].decode().split("\n") if x.strip()]
    mcfg = config["model"]
    model = EmotionClassifier(mcfg["name"], int(config["input_dim"]), len(labels),
                              mcfg.get("conf"), aux_classes=config.get("aux_classes"),
                              members=members_of(mcfg))
    # mean and std come with the weights; whether to divide by std is a training option
    model.cmvn.norm_vars = norm_vars_of(config)
    state = load_safetensors(files["model.safetensors"])
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise SertkError(f"{path}: weights do not match the model config: "
                         f"{str(exc).splitlines()[0]}") from None
    model.eval().to(device)
    return PackedModel(model, labels, feats, config)
