"""Data directories of augmented copies (``sertk data augment``) and of noise/RIR collections
(``sertk data from-dir``, ``sertk data musan``). See :mod:`sertk.augment.waveform`."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

from sertk.data.audio import probe_audio
from sertk.data.datadir import UTT_TABLES, DataDir, write_utt2spk
from sertk.data.kaldi_table import write_table
from sertk.errors import DataError

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".sph", ".aiff", ".aif", ".au")


def from_dir(audio_dir: str | Path, out: str | Path) -> Path:
    """A data dir of every audio file under ``audio_dir`` (key = relative path, '/'->'-');
    each file is its own speaker; ``utt2dur`` from the headers."""
    root = Path(audio_dir)
    if not root.is_dir():
        raise DataError(f"directory not found: {root}")
    wav = {}
    for dirpath, _, files in os.walk(root):
        for name in files:
            if name.lower().endswith(AUDIO_EXTENSIONS):
                full = Path(dirpath) / name
                key = str(full.relative_to(root).with_suffix("")).replace(os.sep, "-")
                wav[key] = str(full.resolve())
    if not wav:
        raise DataError(f"no audio files under {root}")
    out = Path(out)
    write_table(out / "wav.scp", wav)
    write_table(out / "utt2dur", {k: f"{probe_audio(v, k):.3f}" for k, v in wav.items()})
    write_utt2spk(out, {k: k for k in wav})
    return out


def musan(root: str | Path, out: str | Path) -> list[Path]:
    """MUSAN layout (``noise/``, ``music/``, ``speech/`` sub-trees) -> one data dir each."""
    made = []
    for part in ("noise", "music", "speech"):
        if (Path(root) / part).is_dir():
            made.append(from_dir(Path(root) / part, Path(out) / part))
    if not made:
        raise DataError(f"{root}: no noise/, music/ or speech/ folder (MUSAN layout)")
    return made


def _prefixed(d: DataDir, prefix: str) -> tuple[dict[str, str], dict[str, str]]:
    """New utterance and speaker ids with ``prefix`` (Kaldi's sp0.9- convention)."""
    return ({u: prefix + u for u in d.utts},
            {s: prefix + s for s in set(d.utt2spk.values())})


def augment(src: str | Path, dst: str | Path, kind: str, factors: list[float] | None = None,
            source: str | Path | None = None, snrs: list[float] | None = None,
            prefix: str | None = None, seed: int = 0) -> Path:
    """Write ``dst``: copies of ``src`` with an operation appended to each ``utt2aug`` entry.

    * ``speed``: one copy per factor, prefix ``sp{f}-`` (1.0 allowed, as Kaldi's 3-way);
    * ``noise``: one copy per SNR with a random recording of the data dir ``source`` and a
      random offset, prefix ``{prefix or 'noise'}{snr}-``;
    * ``reverb``: one copy with a random RIR of ``source``, prefix ``{prefix or 'reverb'}-``.
    """
    d = DataDir(src)
    rng = random.Random(seed)
    old_aug = d.table("utt2aug") if d.has("utt2aug") else {}
    if kind == "speed":
        variants = [(f"sp{float(f)}-", {"op": "speed", "factor": float(f)})
                    for f in factors or []]
        if not variants:
            raise DataError("augment speed: give --factors")
    elif kind in ("noise", "reverb"):
        if source is None:
            raise DataError(f"augment {kind}: give --source (a data dir of noises or RIRs)")
        src_dir = DataDir(source)
        keys = sorted(src_dir.wav_scp)
        durs = src_dir.table("utt2dur") if src_dir.has("utt2dur") else {}
        if kind == "noise":
            variants = [(f"{prefix or 'noise'}{snr:g}-", {"op": "noise", "snr": float(snr)})
                        for snr in snrs or []]
            if not variants:
                raise DataError("augment noise: give --snrs")
        else:
            variants = [(f"{prefix or 'reverb'}-", {"op": "reverb"})]
    else:
        raise DataError(f"unknown augmentation kind {kind!r}: speed, noise or reverb")
    tables: dict[str, dict[str, str]] = {}
    utt2spk: dict[str, str] = {}
    wav: dict[str, str] = {}
    segments = d.segments()
    for pre, template in variants:
        umap, smap = _prefixed(d, pre)
        for utt in d.utts:
            op = dict(template)
            if kind in ("noise", "reverb"):
                key = keys[rng.randrange(len(keys))]
                op.update(src=str(Path(source).resolve()), key=key)
                if kind == "noise":
                    op["offset"] = round(rng.uniform(0, float(durs.get(key, 0.0))), 3)
            ops = json.loads(old_aug[utt]) if utt in old_aug else []
            tables.setdefault("utt2aug", {})[umap[utt]] = json.dumps(ops + [op],
                                                                     separators=(",", ":"))
            utt2spk[umap[utt]] = smap[d.utt2spk[utt]]
            for name in UTT_TABLES:
                if name in ("utt2spk", "feats.scp", "utt2num_frames", "utt2aug") or \
                        not d.has(name):
                    continue
                value = d.table(name)[utt]
                if name == "segments":
                    reco, start, end = value.split()
                    value = f"{pre}{reco} {start} {end}"
                elif name == "utt2dur" and kind == "speed":
                    value = f"{float(value) / op['factor']:.3f}"
                elif name == "utt2dialog":  # the copies form a copy of the conversation
                    value = f"{pre}{value}"
                tables.setdefault(name, {})[umap[utt]] = value
            if segments is None:
                wav[umap[utt]] = d.wav_scp[utt]
        if segments is not None:
            for reco, entry in d.wav_scp.items():
                wav[pre + reco] = entry
    dst = Path(dst)
    dst.mkdir(parents=True, exist_ok=True)
    for name, tab in tables.items():
        write_table(dst / name, tab)
    write_table(dst / "wav.scp", wav)
    write_utt2spk(dst, utt2spk)
    return dst
