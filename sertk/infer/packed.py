"""Packed models: everything ``sertk infer`` needs, in one zip file.

``model.zip`` holds ``config.yaml`` (training config with ``input_dim`` and ``labels``),
``feats.yaml`` (the front end), ``labels.txt``, ``cmvn.ark`` (Kaldi-format statistics, also
folded into the weights) and ``model.safetensors``. An experiment directory written by
``sertk train`` has the same files and can be loaded directly.

A model's local files travel with it: a model with ``model.conf.tokenizer`` (CTC heads) gets
its tokenizer under ``tokenizer/`` (from ``EXP/tokenizer/``, else the configured path) and the
pack's config points there; a model class with ``portable_conf(conf)`` rewrites its conf for
the pack (e.g. an SSL checkpoint path replaced by the architecture, the weights being in
``model.safetensors``).
"""

from __future__ import annotations

import json
import logging
import tempfile
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
from sertk.infer.manifest import verify, write_manifest
from sertk.models.classifier import EmotionClassifier, members_of
from sertk.models.registry import MODELS
from sertk.text.tokenizer import Tokenizer

log = logging.getLogger(__name__)
REQUIRED = ("config.yaml", "feats.yaml", "labels.txt", "cmvn.ark", "model.safetensors")
OPTIONAL = ("metrics.csv",)
TOKENIZER_DIR = "tokenizer"
SPECTRAL_FRONT_ENDS = ("fbank", "mfcc", "logmel", "spectrogram")
TOKENIZER_FILES = ("tokenizer.yaml", "tokens.txt", "sp.model")


@dataclass
class PackedModel:
    model: EmotionClassifier
    labels: list[str]
    feats: FeatureConfig
    config: dict[str, Any]
    tokenizer: Tokenizer | None = None

    def to(self, device: torch.device | str) -> PackedModel:
        self.model.to(device)
        return self

    @property
    def transcribes(self) -> bool:
        """The network has a ``transcribe`` method (CTC head) and its tokenizer is here."""
        return self.tokenizer is not None and hasattr(self.model.net, "transcribe")

    @torch.no_grad()
    def transcribe(self, feats: list[torch.Tensor], device: torch.device | str = "cpu",
                   chunk: int | None = None, batch_size: int = 16) -> list[str]:
        """Transcripts of ``[T, D]`` feature matrices; ``chunk``: cut each into consecutive
        pieces of that many frames (long audio), transcribed separately and joined."""
        pieces = [(i, f[s:s + (chunk or len(f))]) for i, f in enumerate(feats)
                  for s in range(0, max(1, len(f)), chunk or max(1, len(f)))]
        texts: list[list[str]] = [[] for _ in feats]
        for start in range(0, len(pieces), batch_size):
            batch = pieces[start:start + batch_size]
            x = torch.nn.utils.rnn.pad_sequence([p for _, p in batch], batch_first=True)
            lengths = torch.tensor([len(p) for _, p in batch], device=device)
            ids = self.model.net.transcribe(self.model.cmvn(x.to(device)), lengths)
            for (i, _), seq in zip(batch, ids):
                texts[i].append(self.tokenizer.decode(seq))
        return [" ".join(t for t in parts if t) for parts in texts]


def _tokenizer_source(exp_dir: Path, conf: dict[str, Any]) -> Path | None:
    """The tokenizer directory of an experiment whose model has ``conf["tokenizer"]``:
    ``EXP/tokenizer`` (the trainer's copy), else the configured path; None if neither."""
    if not conf.get("tokenizer"):
        return None
    for path in (exp_dir / TOKENIZER_DIR, Path(str(conf["tokenizer"])).expanduser()):
        if (path / "tokenizer.yaml").is_file():
            return path
    return None


def _pack_config(exp_dir: Path, config: dict[str, Any]) -> tuple[dict[str, Any], Path | None]:
    """The config a pack holds (see the module docstring) and the tokenizer to pack."""
    mcfg = config.get("model") or {}
    conf = dict(mcfg.get("conf") or {})
    builder = MODELS.get(mcfg.get("name", "")).builder
    new = builder.portable_conf(conf) if hasattr(builder, "portable_conf") else dict(conf)
    tokenizer = _tokenizer_source(exp_dir, conf)
    if conf.get("tokenizer"):
        if tokenizer is None:
            raise SertkError(f"cannot pack {exp_dir}: its tokenizer {conf['tokenizer']} "
                             f"(model.conf.tokenizer) is not found, nor {TOKENIZER_DIR}/ in it")
        new["tokenizer"] = TOKENIZER_DIR
    if new == conf:
        return config, tokenizer
    return {**config, "model": {**mcfg, "conf": new}}, tokenizer


def pack(exp_dir: str | Path, out: str | Path, extra: list[str | Path] | None = None,
         corpus: str | None = None) -> Path:
    """Zip the files of a trained experiment directory into ``out``, with a ``manifest.json``
    (checksums and metadata, :mod:`sertk.infer.manifest`; ``corpus``: the training corpus's
    name when the experiment's path does not tell)."""
    exp_dir, out = Path(exp_dir), Path(out)
    missing = [n for n in REQUIRED if not (exp_dir / n).is_file()]
    if missing:
        raise SertkError(f"cannot pack {exp_dir}: missing {', '.join(missing)} (train first)")
    config = yaml.safe_load((exp_dir / "config.yaml").read_text())
    packed_config, tokenizer = _pack_config(exp_dir, config)
    out.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name in (*REQUIRED, *OPTIONAL):
            if name == "config.yaml" and packed_config is not config:
                zf.writestr(name, yaml.safe_dump(packed_config, sort_keys=False))
            elif (exp_dir / name).is_file():
                zf.write(exp_dir / name, name)
        for name in TOKENIZER_FILES:
            if tokenizer is not None and (tokenizer / name).is_file():
                zf.write(tokenizer / name, f"{TOKENIZER_DIR}/{name}")
        for path in sorted((exp_dir / "aux").glob("*.txt")):  # auxiliary vocabularies
            zf.write(path, f"aux/{path.name}")
        for path in extra or []:
            zf.write(path, Path(path).name)
        zf.writestr("meta.json", json.dumps({"format": "sertk-packed-model", "version": 1}))
    write_manifest(out, exp_dir, corpus)  # last: it lists every other member
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
        verify(path)  # against manifest.json; a pack without one is loaded with a warning
        with zipfile.ZipFile(path) as zf:
            return {n: zf.read(n) for n in REQUIRED if n in zf.namelist()}
    except zipfile.BadZipFile:
        raise SertkError(f"{path} is not a packed sertk model (not a zip file)") from None


def _load_tokenizer(path: Path, conf: dict[str, Any]) -> Tokenizer | None:
    """The tokenizer of a model with ``conf["tokenizer"]``: the pack's ``tokenizer/``, or
    for an experiment directory :func:`_tokenizer_source`."""
    if not conf.get("tokenizer"):
        return None
    if path.is_dir():
        source = _tokenizer_source(path, conf)
        if source is None:
            log.warning("%s: tokenizer %s not found: no transcripts", path, conf["tokenizer"])
        return Tokenizer(source) if source else None
    with zipfile.ZipFile(path) as zf, tempfile.TemporaryDirectory() as tmp:
        names = [n for n in zf.namelist() if n.startswith(f"{TOKENIZER_DIR}/")]
        for name in names:
            (Path(tmp) / Path(name).name).write_bytes(zf.read(name))
        return Tokenizer(tmp) if names else None  # read into memory: tmp may go


def _yaml_member(path: Path, files: dict[str, bytes], name: str) -> dict[str, Any]:
    """A YAML member as a mapping; anything else is one error line naming it."""
    try:
        data = yaml.safe_load(files[name])
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "syntax error"
        raise SertkError(f"{path}: {name} is not valid YAML ({problem}{where})") from None
    if not isinstance(data, dict):
        raise SertkError(f"{path}: {name} is not a YAML mapping")
    return data


def _check_front_end_dim(path: Path, feats: FeatureConfig, config: dict[str, Any]) -> None:
    """The front end of feats.yaml must give the features the network was built for."""
    from sertk.features.registry import build_frontend

    # the spectral front ends only: cheap to build, and their features are the whole input
    # (not SSL encoders, openSMILE, waveforms with pasted columns, conversation matrices)
    if feats.name not in SPECTRAL_FRONT_ENDS or "input_dim" not in config:
        return
    dim = build_frontend(feats).dim
    if dim != int(config["input_dim"]):
        raise SertkError(f"{path}: feats.yaml's front end gives {dim}-dim features, the "
                         f"model was trained on {config['input_dim']} (config.yaml input_dim)")


def load_packed(path: str | Path, device: torch.device | str = "cpu") -> PackedModel:
    """Load a packed model (zip), a trained experiment directory or a shipped model by name
    (:func:`shipped_models`)."""
    path = resolve_model(path)
    files = _read_members(path)
    missing = [n for n in REQUIRED if n not in files and n != "cmvn.ark"]
    if missing:
        raise SertkError(f"{path}: not a complete sertk model, missing {', '.join(missing)}")
    config = _yaml_member(path, files, "config.yaml")
    feats = FeatureConfig.from_dict(_yaml_member(path, files, "feats.yaml"))
    _check_front_end_dim(path, feats, config)
    labels = [x for x in files["labels.txt"].decode().split("\n") if x.strip()]
    mcfg = config["model"]
    model = EmotionClassifier(mcfg["name"], int(config["input_dim"]), len(labels),
                              mcfg.get("conf"), aux_classes=config.get("aux_classes"),
                              members=members_of(mcfg), input_sizes=config.get("input_sizes"))
    # mean and std come with the weights; whether to divide by std is a training option
    model.cmvn.norm_vars = norm_vars_of(config)
    try:
        state = load_safetensors(files["model.safetensors"])
    except Exception as exc:  # SafetensorError: not a safetensors file
        why = str(exc).strip().splitlines()[0][:120] if str(exc).strip() else type(exc).__name__
        raise SertkError(f"{path}: model.safetensors is not a readable safetensors file "
                         f"({why})") from None
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise SertkError(f"{path}: weights do not match the model config: "
                         f"{str(exc).splitlines()[0]}") from None
    model.eval().to(device)
    return PackedModel(model, labels, feats, config, _load_tokenizer(path, mcfg.get("conf") or {}))
