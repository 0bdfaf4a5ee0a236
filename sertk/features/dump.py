"""Parallel feature dump to Kaldi ark/scp (``sertk feats dump``).

The data directory is split into ``nj`` parts; each job reads its audio, computes the front end
and writes ``DUMP/data/feats.JOB.ark`` with kaldiio, logging to ``DUMP/log/dump.JOB.log``. The
merged ``DUMP/feats.scp`` and ``utt2num_frames`` sit beside copies of the data directory's
tables, so the dump directory is itself a data directory. A table never points into a partial
ark: a job's scp appears once its ark is complete and synced to disk, the merged ``feats.scp``
(removed when a dump starts) once every job is; a full disk stops the dump with one error
naming the file (``no space left on device writing ...``).
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import shutil
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import kaldiio
import numpy as np
import torch
from tqdm import tqdm

from sertk.atomic import fsync_file, is_enospc, no_space_error
from sertk.config import load_yaml, save_yaml
from sertk.data.audio import load_audio
from sertk.data.datadir import UTT_TABLES, DataDir, validate, write_utt2spk
from sertk.data.dialog import write_context_tables
from sertk.data.kaldi_table import read_table, write_table
from sertk.errors import DataError
from sertk.features.registry import FeatureConfig, build_frontend

log = logging.getLogger(__name__)
COPIED_TABLES = [n for n in UTT_TABLES
                 if n not in ("segments", "feats.scp", "utt2num_frames", "utt2aug")]


@dataclass
class DumpReport:
    num_utts: int = 0
    num_frames: int = 0
    dim: int = 0
    skipped: list[str] = field(default_factory=list)


def compute_features(entry: str, cfg: FeatureConfig, frontend, key: str,
                     start: float = 0.0, end: float | None = None, aug: str | None = None,
                     apply_trim: bool = False) -> np.ndarray:
    """Audio entry -> ``[frames, dim]`` float32 features; errors name the utterance.

    ``aug``: the utterance's ``utt2aug`` entry (waveform augmentations to apply first).
    ``apply_trim``: trim silence as ``cfg.trim`` says (inference on raw audio; in a dump the
    data directory's ``segments`` already did it).
    """
    wav = load_audio(entry, cfg.audio, key=key, start=start, end=end)
    if apply_trim and cfg.trim:
        from sertk.data.trim import speech_span

        s, e = speech_span(wav.numpy(), cfg.sample_rate, **cfg.trim)
        wav = wav[int(s * cfg.sample_rate):int(e * cfg.sample_rate)]
    if aug:
        from sertk.augment.waveform import apply_ops

        wav = apply_ops(wav, cfg.sample_rate, aug, key)
    with torch.no_grad():
        feats = frontend(wav)
    if feats.shape[0] == 0:
        raise DataError(f"utterance {key}: too short for one frame ({wav.numel()} samples at "
                        f"{cfg.sample_rate} Hz): {entry}")
    if not torch.isfinite(feats).all():
        raise DataError(f"utterance {key}: features contain NaN/Inf: {entry}")
    return feats.numpy().astype(np.float32)


_COUNTER = None


def _init_worker(counter) -> None:
    global _COUNTER
    _COUNTER = counter
    torch.set_num_threads(1)


def _job(job: int, items: list[tuple[str, str, float, float | None, str | None]],
         cfg_dict: dict,
         ark: str, scp: str, log_file: str, skip_bad: bool, counter=None
         ) -> tuple[int, list[str]]:
    """One dump job. Its scp appears only once its ark is complete and on disk; a full disk
    is one clear error naming the ark."""
    tmp_scp = f"{scp}.tmp"
    try:
        res = _write_job(job, items, cfg_dict, ark, tmp_scp, log_file, skip_bad, counter)
        fsync_file(ark)
        os.replace(tmp_scp, scp)
        return res
    except OSError as exc:
        if is_enospc(exc):
            raise no_space_error(ark) from exc
        raise
    finally:
        Path(tmp_scp).unlink(missing_ok=True)


def _write_job(job: int, items: list[tuple[str, str, float, float | None, str | None]],
               cfg_dict: dict, ark: str, scp: str, log_file: str, skip_bad: bool, counter=None
               ) -> tuple[int, list[str]]:
    counter = counter if counter is not None else _COUNTER
    cfg = FeatureConfig.from_dict(cfg_dict)
    frontend = build_frontend(cfg)
    skipped: list[str] = []
    lens: list[str] = []
    with open(log_file, "w") as logf, \
            kaldiio.WriteHelper(f"ark,scp:{ark},{scp}") as writer:
        logf.write(f"# dump job {job}: {len(items)} utterances, features {cfg_dict}\n")
        for key, entry, start, end, aug in items:
            try:
                feats = compute_features(entry, cfg, frontend, key, start, end, aug)
            except DataError as exc:
                logf.write(f"ERROR {exc}\n")
                if not skip_bad:
                    raise
                skipped.append(str(exc))
            else:
                writer(key, feats)
                lens.append(f"{key} {feats.shape[0]} {feats.shape[1]}\n")
            if counter is not None:
                with counter.get_lock():
                    counter.value += 1
        logf.write(f"# done: {len(items) - len(skipped)} written, {len(skipped)} skipped\n")
    with open(ark[: -len(".ark")] + ".shape", "w") as fh:
        fh.writelines(lens)
    return job, skipped


def dump(data_dir: str | Path, dump_dir: str | Path, cfg: FeatureConfig, nj: int = 1,
         skip_bad: bool = False, progress: bool = True, job: int | None = None,
         merge: bool = False) -> DumpReport:
    """Compute features for every utterance of ``data_dir`` into ``dump_dir``.

    A bad utterance stops the dump with an error naming it, unless ``skip_bad``: then it is
    left out, listed in ``DUMP/skipped`` and counted in the report and the log.

    As a Kaldi job array (a cluster runs the parts, ``ser.sh --dump_cmd``): ``job`` J
    computes only part J of ``nj`` (``DUMP/data/feats.J.*``, no tables), and ``merge``
    writes the tables from the ``nj`` finished parts; both take the same data directory,
    config and ``nj``, which fix the parts.
    """
    d, jobs = _plan(data_dir, dump_dir, cfg, nj, skip_bad)
    dump_dir = Path(dump_dir).resolve()
    if job is not None:
        return _run_part(dump_dir, jobs, job, progress)
    if merge:
        skipped = _parts_skipped(dump_dir, len(jobs))
    else:
        log.info("dumping %s features for %d utterances of %s with %d jobs (logs: "
                 "%s/log/dump.*.log)", cfg.name, len(d.utts), data_dir, len(jobs), dump_dir)
        skipped = _run_jobs(jobs, len(d.utts), progress)
    return _merge(d, dump_dir, cfg, len(jobs), skipped)


def _run_part(dump_dir: Path, jobs: list[tuple], job: int, progress: bool) -> DumpReport:
    """Part ``job`` of ``jobs`` alone, in one torch thread as the ``--nj`` workers (the
    same features, bit for bit); its skipped utterances go to ``data/skipped.J``."""
    if not 1 <= job <= len(jobs):
        raise DataError(f"--job must be in 1..{len(jobs)}, got {job}")
    items = jobs[job - 1][1]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        skipped = _run_jobs([jobs[job - 1]], len(items), progress)
    finally:
        torch.set_num_threads(threads)
    _write_lines(dump_dir / "data" / f"skipped.{job}", skipped)
    return DumpReport(num_utts=len(items) - len(skipped), skipped=skipped)


def _parts_skipped(dump_dir: Path, nj: int) -> list[str]:
    """The utterances the ``nj`` parts skipped; an error for a part not finished."""
    skipped: list[str] = []
    for j in range(1, nj + 1):
        if not (dump_dir / "data" / f"feats.{j}.scp").is_file():
            raise DataError(f"{dump_dir}: part {j} of {nj} is not finished "
                            f"(no data/feats.{j}.scp; see log/dump.{j}.log)")
        part = dump_dir / "data" / f"skipped.{j}"
        skipped += part.read_text().splitlines() if part.is_file() else []
    return skipped


def _plan(data_dir: str | Path, dump_dir: str | Path, cfg: FeatureConfig, nj: int,
          skip_bad: bool) -> tuple[DataDir, list[tuple]]:
    """The checked data directory and the ``_job`` arguments of its ``nj`` parts; removes
    the tables that point into the arks about to be rewritten."""
    problems = validate(data_dir, check_audio=False, require_labels=False)
    if problems:
        raise DataError(f"{data_dir}: invalid data directory: {problems[0]}")
    d = DataDir(data_dir)
    if not d.has("wav.scp"):
        raise DataError(f"{data_dir}: wav.scp is missing")
    entries = d.audio_entries()
    utts = d.utts
    utt2aug = d.table("utt2aug") if d.has("utt2aug") else {}
    nj = max(1, min(nj, len(utts)))
    dump_dir = Path(dump_dir).resolve()
    (dump_dir / "data").mkdir(parents=True, exist_ok=True)
    (dump_dir / "log").mkdir(parents=True, exist_ok=True)
    bounds = [round(i * len(utts) / nj) for i in range(nj + 1)]
    jobs = []
    for j in range(nj):
        items = []
        for utt in utts[bounds[j]:bounds[j + 1]]:
            _, entry, seg = entries[utt]
            items.append((utt, entry, seg.start if seg else 0.0, seg.end if seg else None,
                          utt2aug.get(utt)))
        jobs.append((j + 1, items, cfg.to_dict(), str(dump_dir / "data" / f"feats.{j + 1}.ark"),
                     str(dump_dir / "data" / f"feats.{j + 1}.scp"),
                     str(dump_dir / "log" / f"dump.{j + 1}.log"), skip_bad))
    for old in ("feats.scp", "utt2num_frames", "feat_dim"):  # they point into the arks
        (dump_dir / old).unlink(missing_ok=True)             # about to be rewritten
    return d, jobs


def _write_lines(path: Path, lines: list[str]) -> None:
    if lines:
        path.write_text("\n".join(lines) + "\n")
    else:
        path.unlink(missing_ok=True)


def _merge(d: DataDir, dump_dir: Path, cfg: FeatureConfig, nj: int, skipped: list[str]
           ) -> DumpReport:
    """The dump directory's tables from its ``nj`` finished parts."""
    scp: dict[str, str] = {}
    shapes: dict[str, str] = {}
    for j in range(1, nj + 1):
        scp.update(read_table(dump_dir / "data" / f"feats.{j}.scp", 2, 2))
        shapes.update(read_table(dump_dir / "data" / f"feats.{j}.shape", 3, 3))
    try:
        _write_dump_dir(d, dump_dir, scp, shapes, cfg)
    except OSError as exc:
        if is_enospc(exc):
            raise no_space_error(f"the tables of {dump_dir}") from exc
        raise
    report = DumpReport(num_utts=len(scp), skipped=skipped)
    report.num_frames = sum(int(v.split()[0]) for v in shapes.values())
    report.dim = int((dump_dir / "feat_dim").read_text())
    _write_lines(dump_dir / "skipped", skipped)
    if skipped:
        log.warning("skipped %d of %d utterances (listed in %s/skipped); first: %s",
                    len(skipped), len(d.utts), dump_dir, skipped[0])
    log.info("wrote %d utterances, %d frames, dim %d to %s/feats.scp", report.num_utts,
             report.num_frames, report.dim, dump_dir)
    return report


def _run_jobs(jobs: list[tuple], total: int, progress: bool) -> list[str]:
    skipped: list[str] = []
    bar = tqdm(total=total, desc="feats dump", unit="utt", disable=not progress)
    if len(jobs) == 1:
        _, sk = _job(*jobs[0], counter=_BarCounter(bar))
        bar.close()
        return sk
    ctx = mp.get_context("spawn")
    counter = ctx.Value("i", 0)
    with ProcessPoolExecutor(max_workers=len(jobs), mp_context=ctx, initializer=_init_worker,
                             initargs=(counter,)) as pool:
        futures = [pool.submit(_job, *job) for job in jobs]
        while not all(f.done() for f in futures):
            bar.n = counter.value
            bar.refresh()
            time.sleep(0.2)
        bar.n = counter.value
        bar.close()
        for f in futures:
            exc = f.exception()
            if exc is not None:
                raise exc
            skipped.extend(f.result()[1])
    return skipped


class _BarCounter:
    """In-process stand-in for a shared counter: advances the progress bar directly."""

    def __init__(self, bar: tqdm):
        self.bar = bar

    class _Lock:
        def __enter__(self) -> None: ...

        def __exit__(self, *args: object) -> None: ...

    def get_lock(self) -> _Lock:
        return self._Lock()

    @property
    def value(self) -> int:
        return self.bar.n

    @value.setter
    def value(self, v: int) -> None:
        self.bar.update(v - self.bar.n)


def _write_dump_dir(d: DataDir, dump_dir: Path, scp: dict[str, str], shapes: dict[str, str],
                    cfg: FeatureConfig) -> None:
    keep = set(scp)
    write_table(dump_dir / "feats.scp", scp)
    write_table(dump_dir / "utt2num_frames", {k: v.split()[0] for k, v in shapes.items()})
    dims = {v.split()[1] for v in shapes.values()}
    (dump_dir / "feat_dim").write_text(f"{dims.pop() if dims else 0}\n")
    for name in [*COPIED_TABLES, *d.utt_tables()[len(UTT_TABLES):]]:
        if d.has(name):
            write_table(dump_dir / name, {k: v for k, v in d.table(name).items() if k in keep})
    write_utt2spk(dump_dir, {u: s for u, s in d.utt2spk.items() if u in keep})
    if (d.path / "trim.yaml").is_file():
        cfg = FeatureConfig.from_dict({**cfg.to_dict(), "trim": load_yaml(d.path / "trim.yaml")})
    save_yaml(cfg.to_dict(), dump_dir / "feats.yaml")
    for extra in ("labels.txt",):
        if (d.path / extra).is_file():
            shutil.copy(d.path / extra, dump_dir / extra)
    write_context_tables(dump_dir)  # with utt2dialog: previous turns' features
