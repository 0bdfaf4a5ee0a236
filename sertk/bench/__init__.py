"""``sertk bench``: sertk's hot paths measured side by side with the plain code a user would
write, in one run, on one corpus: feature dump per front end, the training data pipeline,
DDP scaling and inference throughput and memory. sertk is always run through its public
command line (a child process per measurement), so the figures are those of the installed
version; the plain baselines live in :mod:`sertk.bench.plain`.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from sertk.bench.common import Row, corpus_datadir, machine, markdown_table, synthetic_corpus
from sertk.bench.parts import Setup, bench_ddp, bench_feats, bench_infer, bench_pipeline
from sertk.errors import SertkError

PARTS = ("feats", "pipeline", "ddp", "infer")
DEFAULT_MODEL = "ravdess_cnn_asp_ref"


@dataclass
class BenchReport:
    rows: list[Row]
    machine: dict[str, str]
    corpus: str
    seconds: float
    parts: list[str] = field(default_factory=list)
    load: tuple[float, float] = (0.0, 0.0)  # 1-minute load average at the start and the end

    def markdown(self) -> str:
        m = self.machine
        return (f"Corpus: {self.corpus}\n\nMachine: {m['cpu']}, {m['cores']} cores, "
                f"{m['memory']}; Python {m['python']}, torch {m['torch']}, torchaudio "
                f"{m['torchaudio']}, sertk {m['sertk']}; 1-minute load average "
                f"{self.load[0]:.1f} at the start, {self.load[1]:.1f} at the end (other "
                f"processes compete for the cores above {m['cores']})\n\n"
                f"{markdown_table(self.rows)}\n\n"
                f"sertk / plain: a ratio below 1 means sertk takes less (time, memory), above 1 "
                f"that it gives more (samples/s). Total bench time {self.seconds:.0f} s.\n")


def run_bench(corpus: Path | None = None, synthetic: int | None = None, quick: bool = False,
              max_files: int | None = None, parts: list[str] | None = None,
              model: str = DEFAULT_MODEL, work_dir: Path | None = None,
              progress: Callable[[str], None] | None = None) -> BenchReport:
    """Run the chosen ``parts`` (all by default) on ``corpus`` (a directory of audio files,
    at most ``max_files`` of them) or ``synthetic`` generated files; intermediate files go to
    ``work_dir`` (default: a temporary directory, removed afterwards)."""
    parts = list(parts or PARTS)
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        raise SertkError(f"unknown bench part(s) {', '.join(unknown)}; choose from "
                         f"{', '.join(PARTS)}")
    if (corpus is None) == (synthetic is None):
        raise SertkError("give exactly one of --corpus DIR and --synthetic N")
    t0, load0 = time.perf_counter(), os.getloadavg()[0]
    work = Path(work_dir or tempfile.mkdtemp(prefix="sertk_bench_"))
    say = progress or (lambda _: None)
    try:
        if corpus is not None:
            data, what = corpus_datadir(Path(corpus), work, max_files), str(corpus)
        else:
            data, what = synthetic_corpus(int(synthetic), work), "synthetic (sertk.data.synth)"
        s = Setup(data, work, epochs=1 if quick else 2, quick=quick)
        what = f"{what}, {s.num_files} files"
        steps = {"feats": lambda: bench_feats(s), "pipeline": lambda: bench_pipeline(s),
                 "ddp": lambda: bench_ddp(s), "infer": lambda: bench_infer(s, model)}
        rows: list[Row] = []
        for part in PARTS:
            if part in parts:
                say(f"bench: {part} ...")
                rows += steps[part]()
        return BenchReport(rows, machine(), what, time.perf_counter() - t0, parts,
                           (load0, os.getloadavg()[0]))
    finally:
        if work_dir is None:
            shutil.rmtree(work, ignore_errors=True)
