"""Helpers for the corpus recipe tests (egs/<corpus>/ser1): fixture releases, running the
recipe's local/data.sh and ./run.sh, and checking the folds against the recipe's table.

A fixture release mirrors the real one's layout and naming with a handful of short generated
files; nothing here needs ../shared.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import soundfile as sf

from sertk.data.datadir import DataDir
from sertk.data.release import TableRow, read_table
from tests.conftest import REPO

EGS = REPO / "egs"


def recipe_dir(corpus: str) -> Path:
    return EGS / corpus / "ser1"


def table(corpus: str) -> list[TableRow]:
    """The rows of the recipe's compressed EmoBox table (local/emobox.tsv.gz)."""
    return read_table(recipe_dir(corpus) / "local" / "emobox.tsv.gz")


def write_audio(path: Path, seconds: float = 0.6, sr: int = 16000, channels: int = 1,
                subtype: str = "PCM_16", fmt: str | None = None, seed: int = 0) -> Path:
    """A short noisy tone (any rate, channel count, sample format or container)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    x = 0.3 * np.sin(2 * np.pi * (120 + 40 * (seed % 7)) * t) + 0.05 * rng.standard_normal(t.size)
    data = np.stack([x] * channels, axis=1) if channels > 1 else x
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, data.astype(np.float32), sr, subtype=subtype, format=fmt)
    return path


def pick(rows: Iterable[TableRow], speaker_of, per_speaker: int = 2,
         folds: Iterable[str] | None = None) -> list[TableRow]:
    """``per_speaker`` rows of every speaker (``speaker_of(row)``), in table order; with
    ``folds``, only rows of those test folds (and never-tested rows)."""
    keep, count = [], {}
    wanted = set(folds) if folds is not None else None
    for row in rows:
        if wanted is not None and row.fold not in wanted and row.fold != "-":
            continue
        spk = speaker_of(row)
        if count.get(spk, 0) < per_speaker:
            count[spk] = count.get(spk, 0) + 1
            keep.append(row)
    return keep


def bash(cmd: str, cwd: Path, check: bool = True, env: dict | None = None,
         timeout: int = 900) -> subprocess.CompletedProcess:
    import os

    proc = subprocess.run(["bash", "-c", cmd], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})
    if check:
        assert proc.returncode == 0, f"{cmd}\n{proc.stdout[-3000:]}\n{proc.stderr[-4000:]}"
    return proc


def run_data(corpus: str, datadir: Path, corpus_root: Path, opts: str = "",
             check: bool = True) -> subprocess.CompletedProcess:
    """``local/data.sh --datadir DATADIR --corpus_root ROOT OPTS`` in the recipe directory."""
    return bash(f". ./path.sh && local/data.sh --datadir '{datadir}' --corpus_root "
                f"'{corpus_root}' {opts}", recipe_dir(corpus), check=check)


def run_to_stage2(corpus: str, tmp: Path, corpus_root: Path, data_opts: str = ""
                  ) -> subprocess.CompletedProcess:
    """``./run.sh --stop_stage 2`` (data preparation and feature dump) on a fixture release,
    named by the recipe's environment variable ``<CORPUS>_ROOT`` (paths may hold spaces)."""
    return bash(f"./run.sh --stop_stage 2 --nj 1 --datadir '{tmp}/data' --dumpdir '{tmp}/dump' "
                f"--expdir '{tmp}/exp' --local_data_opts '{data_opts}'", recipe_dir(corpus),
                env={f"{corpus.upper()}_ROOT": str(corpus_root)})


def report(datadir: Path) -> list[tuple[str, str, str]]:
    """The release report's ``(kind, file, reason)`` lines (missing, extra, skipped)."""
    path = datadir / "local" / "all_release_report.txt"
    return [tuple(line.split("\t", 2)) for line in path.read_text().splitlines()]


def check_folds(datadir: Path, present: list[TableRow], speaker_independent: bool) -> None:
    """The folds hold exactly the table's test keys; train + dev are the rest; dev speakers are
    never test speakers (nor are training speakers when ``speaker_independent``)."""
    folds = sorted(p.name for p in (datadir / "folds").iterdir())
    assert folds == sorted({r.fold for r in present} - {"-"}), folds
    keys = {r.key for r in present}
    for fold in folds:
        parts = {s: DataDir(datadir / "folds" / fold / s) for s in ("train", "dev", "test")}
        got = {s: set(d.table("utt2key").values()) for s, d in parts.items()}
        spk = {s: set(d.utt2spk.values()) for s, d in parts.items()}
        test = {r.key for r in present if r.fold == fold}
        assert got["test"] == test, fold
        assert got["train"] | got["dev"] == keys - test, fold
        assert not got["train"] & got["dev"], fold
        assert got["dev"], fold
        if speaker_independent:
            assert not (spk["train"] | spk["dev"]) & spk["test"], fold
        elif spk["dev"] - spk["train"]:  # dev by speakers: none of them tested in this fold
            assert not spk["dev"] & spk["test"], fold


def check_loso(datadir: Path) -> None:
    """Leave-one-speaker-out: one fold per speaker, tested on that speaker only."""
    spks = sorted(set(DataDir(datadir / "all").utt2spk.values()))
    folds = sorted(p.name for p in (datadir / "folds").iterdir())
    assert folds == sorted(f"fold_{s}" for s in spks)
    for s in spks:
        test = DataDir(datadir / "folds" / f"fold_{s}" / "test")
        assert set(test.utt2spk.values()) == {s}
        for part in ("train", "dev"):
            assert s not in set(DataDir(datadir / "folds" / f"fold_{s}" / part).utt2spk.values())
