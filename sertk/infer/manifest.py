"""``manifest.json`` of a packed model: what it is, and a checksum of every member.

``sertk pack`` adds it as the last member of the zip::

    {"format": "sertk-pack-manifest", "version": 1, "sertk_version": "0.1.0",
     "model": "light_sernet", "task": "categorical", "classes": ["angry", ...],
     "front_end": {"name": "fbank", "sample_rate": 16000, "dim": 40, "config": ...},
     "corpus": "ravdess", "train_data": "dump/fbank40/fold1/train",
     "result": {"dev": {"epoch": 12, "UA": 0.61, ...}, "test": {"UA": 0.58, ...}},
     "members": {"config.yaml": {"sha256": "...", "size": 833}, ...}}

``corpus`` is the ``--corpus`` given to ``sertk pack``, else the recipe the experiment lives
in (``egs/<corpus>/...``, from the experiment's path or the training data's path in its
``train.log``), else null. ``result.dev`` is the best validation row of ``metrics.csv``,
``result.test`` the experiment's ``decode_test/results.json`` (recipe stage 4), when present.

:func:`verify` checks a zip against its manifest: a member changed, added or removed is a
:class:`SertkError` of one line naming the pack and the member. A zip without a manifest
(packed before manifests existed) loads with a warning; an experiment directory is not checked.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import math
import re
import zipfile
from pathlib import Path
from typing import Any

import yaml

from sertk.errors import SertkError

log = logging.getLogger(__name__)
MANIFEST = "manifest.json"
FORMAT = "sertk-pack-manifest"
VERSION = 1
_TRAIN_LOG_RE = re.compile(r"\btrain (\S+): \d+ items")
_TEST_KEYS = ("task", "num_utts", "UA", "WA", "macro_F1", "dims", "CCC")


def _sha256(fh) -> str:
    h = hashlib.sha256()
    for block in iter(lambda: fh.read(1 << 20), b""):
        h.update(block)
    return h.hexdigest()


def _zip_members(zf: zipfile.ZipFile) -> list[zipfile.ZipInfo]:
    return [i for i in zf.infolist() if not i.is_dir() and i.filename != MANIFEST]


def _finite(value: str | None) -> float | None:
    try:
        x = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def dev_result(metrics_csv: Path | str) -> dict[str, Any] | None:
    """The best validation row of ``metrics.csv`` (a path, or its text): the last row marked
    ``best`` that has validation metrics, ``{"epoch": n, "UA": .., "WA": .., "macro_F1": ..}``
    (or the CCCs of a dimensional model); None without validation data."""
    if isinstance(metrics_csv, Path):
        if not metrics_csv.is_file():
            return None
        metrics_csv = metrics_csv.read_text()
    rows = list(csv.DictReader(io.StringIO(metrics_csv)))
    scored = []
    for row in rows:
        metrics = {k[len("valid_"):]: _finite(v) for k, v in row.items()
                   if k and k.startswith("valid_") and k != "valid_loss"}
        metrics = {k: v for k, v in metrics.items() if v is not None}
        if metrics:
            epoch = _finite(row.get("epoch"))
            scored.append((str(row.get("best", "")).strip() == "1",
                           {**({"epoch": int(epoch)} if epoch is not None else {}), **metrics}))
    best = [m for flag, m in scored if flag] or [m for _, m in scored]
    return best[-1] if best else None


def test_result(results_json: Path) -> dict[str, Any] | None:
    """The headline numbers of a scored test set (``results.json`` of ``sertk score``)."""
    if not results_json.is_file():
        return None
    try:
        res = json.loads(results_json.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    out = {k: res[k] for k in _TEST_KEYS if k in res}
    return out if any(k in out for k in ("UA", "CCC")) else None


def _corpus_of(path: Path) -> str | None:
    """``<name>`` of a path under ``egs/<name>/``."""
    parts = path.parts
    for i, part in enumerate(parts[:-1]):
        if part == "egs" and parts[i + 1] != "TEMPLATE":
            return parts[i + 1]
    return None


def _train_data(exp_dir: Path) -> str | None:
    """The training data directory named in the experiment's ``train.log`` (last run)."""
    log_file = exp_dir / "train.log"
    if not log_file.is_file():
        return None
    found = _TRAIN_LOG_RE.findall(log_file.read_text(errors="replace"))
    return found[-1] if found else None


def provenance(exp_dir: Path, corpus: str | None = None) -> dict[str, Any]:
    """``corpus``, ``train_data`` and ``result`` of an experiment directory (see the module
    docstring). ``train_data`` is relative to the recipe directory when it lies in one."""
    exp_dir = Path(exp_dir).resolve()
    train = _train_data(exp_dir)
    train_path = None
    if train:
        train_path = Path(train) if Path(train).is_absolute() else None
        # a recipe passes paths relative to its directory (egs/<corpus>/<recipe>)
        recipe = next((p for p in exp_dir.parents if p.parent.parent.name == "egs"), None)
        if train_path is None and recipe is not None:
            train_path = recipe / train
    corpus = corpus or _corpus_of(exp_dir) or (_corpus_of(train_path) if train_path else None)
    if train_path is not None:
        recipe = next((p for p in train_path.parents if p.parent.parent.name == "egs"), None)
        train = str(train_path.relative_to(recipe)) if recipe is not None else str(train_path)
    result = {k: v for k, v in (("dev", dev_result(exp_dir / "metrics.csv")),
                                ("test", test_result(exp_dir / "decode_test" / "results.json")))
              if v is not None}
    return {"corpus": corpus, "train_data": train, "result": result or None}


def describe(config: dict[str, Any], feats: dict[str, Any], labels: list[str]
             ) -> dict[str, Any]:
    """What a pack holds, from its ``config.yaml``, ``feats.yaml`` and labels."""
    front_end = {"name": feats.get("name"), "sample_rate": int(feats.get("sample_rate", 16000)),
                 "dim": config.get("input_dim")}
    if isinstance(config.get("feats"), str):
        front_end["config"] = config["feats"]
    if feats.get("trim"):
        front_end["trim"] = feats["trim"]
    if feats.get("speaker_cmvn"):
        front_end["speaker_cmvn"] = True
    train = config.get("train") or {}
    return {"model": (config.get("model") or {}).get("name"),
            "task": config.get("task", "categorical"), "classes": list(labels),
            "front_end": front_end, "select": train.get("select")}


def write_manifest(path: str | Path, exp_dir: str | Path | None = None,
                   corpus: str | None = None) -> dict[str, Any]:
    """Append ``manifest.json`` to the pack ``path`` (every other member's sha256 and size,
    and the metadata of the module docstring; ``exp_dir``: where provenance comes from).
    Replacing an existing manifest is not supported: pack again."""
    from sertk.version import __version__

    path = Path(path)
    with zipfile.ZipFile(path) as zf:
        if MANIFEST in zf.namelist():
            raise SertkError(f"{path} already has a {MANIFEST}")
        members = {}
        for info in _zip_members(zf):
            with zf.open(info) as fh:
                members[info.filename] = {"sha256": _sha256(fh), "size": info.file_size}
        config = yaml.safe_load(zf.read("config.yaml"))
        feats = yaml.safe_load(zf.read("feats.yaml"))
        labels = [x for x in zf.read("labels.txt").decode().split("\n") if x.strip()]
        dev = dev_result(zf.read("metrics.csv").decode()) \
            if "metrics.csv" in zf.namelist() else None
    prov = provenance(Path(exp_dir), corpus) if exp_dir is not None else \
        {"corpus": corpus, "train_data": None, "result": {"dev": dev} if dev else None}
    manifest = {"format": FORMAT, "version": VERSION, "sertk_version": __version__,
                **describe(config, feats, labels), **prov, "members": members}
    with zipfile.ZipFile(path, "a", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(MANIFEST, json.dumps(manifest, indent=2) + "\n")
    return manifest


def read_manifest(path: Path, zf: zipfile.ZipFile) -> dict[str, Any] | None:
    """The pack's manifest, None if it has none; a SertkError if it is unreadable."""
    if MANIFEST not in zf.namelist():
        return None
    try:
        manifest = json.loads(zf.read(MANIFEST))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise SertkError(f"{path}: {MANIFEST} is not valid JSON ({exc}): the pack is damaged "
                         "or was altered") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("members"), dict):
        raise SertkError(f"{path}: {MANIFEST} has no \"members\" table: the pack is damaged "
                         "or was altered")
    return manifest


def check(path: Path, zf: zipfile.ZipFile, manifest: dict[str, Any]
          ) -> tuple[dict[str, str], list[str]]:
    """The status of every member (``ok``, ``changed``, ``missing``, ``not in manifest``) and
    one phrase per problem."""
    listed: dict[str, Any] = manifest["members"]
    present = {i.filename: i for i in _zip_members(zf)}
    status: dict[str, str] = {}
    for name in sorted(set(listed) | set(present)):
        if name not in present:
            status[name] = "missing"
        elif name not in listed:
            status[name] = "not in manifest"
        else:
            with zf.open(present[name]) as fh:
                ok = _sha256(fh) == (listed[name] or {}).get("sha256")
            status[name] = "ok" if ok else "changed"
    problems = [f"{n} {'does not match its sha256' if s == 'changed' else s}"
                for n, s in status.items() if s != "ok"]
    return status, problems


def problem_message(path: Path, problems: list[str]) -> str:
    return (f"{path}: pack verification failed: {'; '.join(problems)} (against its "
            f"{MANIFEST}): the pack was altered or damaged; pack the experiment again")


def verify(path: Path) -> dict[str, Any] | None:
    """Check a zip against its manifest; return the manifest (None, with a warning, for a
    pack without one). A changed, added or missing member is a one-line SertkError."""
    with zipfile.ZipFile(path) as zf:
        manifest = read_manifest(path, zf)
        if manifest is None:
            log.warning("%s: no %s (packed by an older sertk): its members are not verified",
                        path, MANIFEST)
            return None
        _, problems = check(path, zf, manifest)
    if problems:
        raise SertkError(problem_message(path, problems))
    return manifest


def info(path: Path) -> dict[str, Any]:
    """Everything ``sertk pack-info`` prints: the manifest's metadata (for a pack without one,
    or an experiment directory, what its files tell), every member with its size and status,
    and ``verified`` (True, False, or None without a manifest)."""
    if path.is_dir():
        from sertk.infer.packed import REQUIRED

        config = yaml.safe_load((path / "config.yaml").read_text()) \
            if (path / "config.yaml").is_file() else {}
        feats = yaml.safe_load((path / "feats.yaml").read_text()) \
            if (path / "feats.yaml").is_file() else {}
        labels = (path / "labels.txt").read_text().split() \
            if (path / "labels.txt").is_file() else []
        members = [{"name": n, "size": (path / n).stat().st_size, "status": "not checked"}
                   for n in REQUIRED if (path / n).is_file()]
        return {"path": str(path), "kind": "experiment directory", "sertk_version": None,
                **describe(config or {}, feats or {}, labels), **provenance(path),
                "members": members, "verified": None, "problems": []}
    try:
        zf = zipfile.ZipFile(path)
    except zipfile.BadZipFile:
        raise SertkError(f"{path} is not a packed sertk model (not a zip file)") from None
    with zf:
        manifest = read_manifest(path, zf)
        sizes = {i.filename: i.file_size for i in _zip_members(zf)}
        if manifest is None:
            names = zf.namelist()
            config = yaml.safe_load(zf.read("config.yaml")) if "config.yaml" in names else {}
            feats = yaml.safe_load(zf.read("feats.yaml")) if "feats.yaml" in names else {}
            labels = zf.read("labels.txt").decode().split() if "labels.txt" in names else []
            dev = dev_result(zf.read("metrics.csv").decode()) \
                if "metrics.csv" in names else None
            meta = {"sertk_version": None, **describe(config or {}, feats or {}, labels),
                    "corpus": None, "train_data": None, "result": {"dev": dev} if dev else None}
            status, problems = {n: "not checked" for n in sizes}, []
        else:
            meta = {k: v for k, v in manifest.items()
                    if k not in ("members", "format", "version")}
            status, problems = check(path, zf, manifest)
    listed = (manifest or {}).get("members") or {}
    members = [{"name": n, "size": sizes.get(n, (listed.get(n) or {}).get("size")),
                "status": s} for n, s in status.items()]
    return {"path": str(path), "kind": "packed model", **meta, "members": members,
            "verified": None if manifest is None else not problems, "problems": problems}


def _size(n: int | None) -> str:
    if n is None:
        return "?"
    if n < 1024:
        return f"{n} B"
    return f"{n / 1024:.1f} KB" if n < 1024**2 else f"{n / 1024**2:.1f} MB"


def _metrics(res: dict[str, Any]) -> str:
    parts = []
    for key, name in (("UA", "UA"), ("WA", "WA"), ("macro_F1", "macro-F1"), ("CCC", "CCC")):
        val = res.get(key)
        if isinstance(val, list):
            parts.append(f"{name} " + " ".join(f"{v:.3f}" for v in val))
        elif isinstance(val, (int, float)):
            parts.append(f"{name} {100 * val:.2f}" if key != "CCC" else f"{name} {val:.3f}")
    if "epoch" in res:
        parts.append(f"(epoch {res['epoch']})")
    if "num_utts" in res:
        parts.append(f"({res['num_utts']} utts)")
    return " ".join(parts)


def format_info(res: dict[str, Any]) -> str:
    """The text of ``sertk pack-info``."""
    fe = res.get("front_end") or {}
    front = f"{fe.get('name')}, {fe.get('dim')} dims at {fe.get('sample_rate')} Hz"
    if fe.get("config"):
        front += f" ({fe['config']})"
    if fe.get("trim"):
        front += ", silence trimmed"
    if fe.get("speaker_cmvn"):
        front += ", per-speaker CMVN"
    result = res.get("result") or {}
    results = "; ".join(f"{part} {_metrics(result[part])}" for part in ("dev", "test")
                        if part in result) or "not recorded"
    corpus = res.get("corpus") or "unknown"
    if res.get("train_data"):
        corpus += f" (training data {res['train_data']})"
    classes = res.get("classes") or []
    lines = [f"{res['path']} ({res['kind']})",
             f"  sertk version  {res.get('sertk_version') or 'unknown (no manifest)'}",
             f"  model          {res.get('model')} ({res.get('task')})",
             f"  classes        {len(classes)}: {' '.join(classes)}",
             f"  front end      {front}",
             f"  corpus         {corpus}",
             f"  result         {results}",
             "  members"]
    width = max([len(m["name"]) for m in res["members"]] + [4])
    for m in res["members"]:
        lines.append(f"    {m['name'].ljust(width)}  {_size(m['size']).rjust(9)}  {m['status']}")
    if res["verified"] is None:
        lines.append("  checksums      not verified ("
                     + ("no manifest.json: packed by an older sertk)"
                        if res["kind"] == "packed model" else "an experiment directory)"))
    else:
        status = f"all {len(res['members'])} members verify" if res["verified"] else \
            "FAILED: " + "; ".join(res["problems"])
        lines.append(f"  checksums      {status}")
    return "\n".join(lines)
