"""Shared pieces of ``sertk bench``: timed child processes, the corpus to measure on, the
machine's description and the result rows."""

from __future__ import annotations

import math
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from sertk.errors import SertkError

SERTK = [sys.executable, "-m", "sertk.cli.main"]
PLAIN = [sys.executable, "-m", "sertk.bench.plain"]
EMOTIONS = ["angry", "happy", "neutral", "sad"]


# a small process between the bench and the measured one: a child forked from a large process
# (the bench has torch loaded) would count the parent's pages in its own peak RSS
_RUSAGE = """import os, sys
pid = os.fork()
if pid == 0:
    os.execvp(sys.argv[2], sys.argv[2:])
_, status, ru = os.wait4(pid, 0)
with open(sys.argv[1], "w") as fh:
    fh.write(f"{ru.ru_maxrss} {ru.ru_utime + ru.ru_stime}")
sys.exit(os.waitstatus_to_exitcode(status))
"""


@dataclass
class Child:
    """A finished child process: wall seconds, peak resident memory (MiB) and output."""

    seconds: float
    max_rss_mb: float
    stdout: str
    stderr: str


def run_child(cmd: list[str], log_dir: Path, name: str, env: dict[str, str] | None = None,
              cwd: Path | None = None) -> Child:
    """Run ``cmd`` to the end; its own peak RSS (with its descendants') comes from
    ``os.wait4`` in a small intermediate process. Output goes to ``log_dir/name.{out,err}``;
    a failure raises :class:`SertkError` with the end of its stderr."""
    log_dir.mkdir(parents=True, exist_ok=True)
    out, err, usage = (log_dir / f"{name}.{x}" for x in ("out", "err", "rusage"))
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    with out.open("w") as fo, err.open("w") as fe:
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-S", "-c", _RUSAGE, str(usage), *cmd],
                              stdout=fo, stderr=fe, env=full_env, cwd=cwd)
        seconds = time.perf_counter() - t0
    maxrss_kb, cpu = usage.read_text().split()
    with (log_dir / "times.tsv").open("a") as fh:  # wall, CPU seconds and peak RSS of each
        fh.write(f"{name}\t{seconds:.2f}\t{float(cpu):.2f}\t{int(maxrss_kb) / 1024:.0f}\n")
    if proc.returncode != 0:
        tail = "\n".join(err.read_text().splitlines()[-15:])
        raise SertkError(f"bench step {name} failed ({' '.join(cmd[:6])} ...; exit "
                         f"{proc.returncode}; log {err}):\n{tail}")
    return Child(seconds, int(maxrss_kb) / 1024, out.read_text(), err.read_text())


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict[str, str]:
    """CPU model, core count, memory and software versions of this machine."""
    import torch
    import torchaudio

    from sertk.version import __version__

    mem = ""
    try:
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f"{kb / 2**20:.0f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    return {"cpu": cpu_model(), "cores": str(os.cpu_count()), "memory": mem,
            "python": platform.python_version(), "torch": torch.__version__,
            "torchaudio": torchaudio.__version__, "sertk": __version__,
            "threads": str(torch.get_num_threads())}


def synthetic_corpus(n: int, work: Path) -> Path:
    """``n`` synthetic utterances (:mod:`sertk.data.synth`, 1.5-2.5 s; every fifth speaker's
    files 2-channel 24 kHz FLAC) as a Kaldi data dir ``work/data``."""
    from sertk.data.datadir import subset
    from sertk.data.synth import make_corpus

    if n < 2:
        raise SertkError(f"--synthetic needs at least 2 files, got {n}")
    spk = max(1, min(10, n // 8))
    per = math.ceil(n / (len(EMOTIONS) * spk))
    full = make_corpus(work / "wav", work / "data_full", num_speakers=spk,
                       utts_per_emotion=per, seed=0)
    keys = (full / "utt2spk").read_text().split()[::2]
    return subset(full, work / "data", utts=_spread(sorted(keys), n))


def _spread(keys: list[str], n: int | None) -> list[str]:
    """``n`` keys spread evenly over the sorted list (all of them when n is None)."""
    if n is None or n >= len(keys):
        return keys
    step = len(keys) / n
    return [keys[int(i * step)] for i in range(n)]


def corpus_datadir(corpus: Path, work: Path, max_files: int | None) -> Path:
    """A Kaldi data dir ``work/data`` of the audio files under ``corpus`` (at most
    ``max_files``, spread evenly): speaker = the file's directory; the emotion labels, needed
    only to run the training benchmarks, are assigned in turn (timing, not accuracy)."""
    from sertk.data.datadir import write_utt2spk
    from sertk.data.kaldi_table import write_table
    from sertk.infer.recognizer import inputs_from_dir

    items = dict(inputs_from_dir(corpus))
    files = {}
    for key in _spread(sorted(items), max_files):
        spk = Path(items[key]).parent.name or "spk"
        files[key if key.startswith(spk) else f"{spk}-{key}"] = (spk, items[key])
    d = work / "data"
    d.mkdir(parents=True, exist_ok=True)
    keys = sorted(files)
    write_table(d / "wav.scp", {k: files[k][1] for k in keys})
    write_utt2spk(d, {k: files[k][0] for k in keys})
    write_table(d / "utt2emo", {k: EMOTIONS[i % len(EMOTIONS)] for i, k in enumerate(keys)})
    return d


@dataclass
class Row:
    """One line of the results table: ``sertk`` and ``plain`` in ``unit`` (None: not
    measured); ``better`` is "lower" or "higher"."""

    part: str
    case: str
    unit: str
    sertk: float | None
    plain: float | None = None
    better: str = "lower"
    note: str = ""

    @property
    def ratio(self) -> float | None:
        if self.sertk is None or not self.plain:
            return None
        return self.sertk / self.plain


def _fmt(x: float | None) -> str:
    if x is None:
        return "–"
    if x == 0 or abs(x) >= 100:
        return f"{x:.0f}"
    return f"{x:.3g}" if abs(x) < 1 else f"{x:.1f}"


def markdown_table(rows: list[Row]) -> str:
    """The rows as a markdown table; ratio = sertk / plain."""
    lines = ["| part | case | sertk | plain | sertk / plain | unit (better) | note |",
             "|---|---|---:|---:|---:|---|---|"]
    for r in rows:
        ratio = f"{r.ratio:.2f}×" if r.ratio is not None else "–"
        lines.append(f"| {r.part} | {r.case} | {_fmt(r.sertk)} | {_fmt(r.plain)} | {ratio} | "
                     f"{r.unit} ({r.better}) | {r.note} |")
    return "\n".join(lines)
