"""The four measurements of ``sertk bench``; each returns result rows.

(a) :func:`bench_feats`: ``sertk feats dump`` per front end against a plain one-process loop;
(b) :func:`bench_pipeline`: the fraction of training time ``sertk train`` waits for data
with ``train.num_workers`` 0, 1, 2; (c) :func:`bench_ddp`: samples/s of ``sertk train`` under
torchrun (gloo) with 1 and 2 processes against a plain DDP loop; (d) :func:`bench_infer`: wall
time and peak RSS of ``sertk infer`` against a plain one-file-at-a-time loop.
"""

from __future__ import annotations

import csv
import json
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

from sertk.bench.common import PLAIN, SERTK, Row, run_child
from sertk.config import save_yaml

# sertk feature configs (as conf/feats/{fbank80,mfcc40,logmel64,spectrogram129}.yaml); the
# plain loop computes each with the same parameters (sertk.bench.plain.frontend)
FRONT_ENDS = {
    "fbank": {"num_mel_bins": 80, "frame_length": 25, "frame_shift": 10, "dither": 0.0},
    "mfcc": {"num_ceps": 40, "num_mel_bins": 40, "frame_length": 25, "frame_shift": 10,
             "dither": 0.0},
    "logmel": {"n_mels": 64, "frame_length": 25, "frame_shift": 10, "n_fft": 512,
               "f_min": 20, "f_max": 8000, "window": "hann", "log": "ln"},
    "spectrogram": {"frame_length": 16, "frame_shift": 8, "n_fft": 256, "max_freq": 8062.5,
                    "window": "hamming"},
}
QUICK_FRONT_ENDS = ("fbank",)
# light_sernet at its published size (conf/model/light_sernet.yaml); --quick: a tiny one
MODEL_CONF: dict = {}
QUICK_MODEL_CONF = {"path_channels": 4, "lflb_channels": [8, 8, 8, 8], "final_channels": 16}


@dataclass
class Setup:
    """Where the bench works and how big the run is."""

    data: Path  # Kaldi data dir of the audio
    work: Path
    epochs: int
    quick: bool
    runs: dict[tuple[int, int], Path] = field(default_factory=dict)  # (workers, nproc) -> exp

    @property
    def model_conf(self) -> dict:
        return QUICK_MODEL_CONF if self.quick else MODEL_CONF

    @property
    def logs(self) -> Path:
        return self.work / "logs"

    @property
    def num_files(self) -> int:
        return len((self.data / "wav.scp").read_text().splitlines())


def _feats_conf(s: Setup, name: str) -> Path:
    path = s.work / "conf" / f"{name}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    save_yaml({"name": name, "sample_rate": 16000, "channel": None, **FRONT_ENDS[name]}, path)
    return path


def _dump(s: Setup, name: str, nj: int) -> tuple[float, int]:
    """``sertk feats dump``: seconds and frames."""
    out = s.work / "dump" / f"{name}_nj{nj}"
    child = run_child([*SERTK, "feats", "dump", str(s.data), str(out), "--conf",
                       str(_feats_conf(s, name)), "--nj", str(nj), "--no-progress"],
                      s.logs, f"feats_sertk_{name}_nj{nj}")
    m = re.search(r"(\d+) utterances, (\d+) frames", child.stdout)
    return child.seconds, int(m.group(2)) if m else -1


def _plain_dump(s: Setup, name: str) -> tuple[float, int]:
    child = run_child([*PLAIN, "feats", name, str(s.data / "wav.scp"),
                       str(s.work / "plain" / name)], s.logs, f"feats_plain_{name}")
    return child.seconds, int(json.loads(child.stdout.splitlines()[-1])["frames"])


def bench_feats(s: Setup) -> list[Row]:
    """(a) Feature dump: seconds for the corpus, sertk (1 job, and 2 for fbank) vs plain."""
    n, rows = s.num_files, []
    for name in QUICK_FRONT_ENDS if s.quick else FRONT_ENDS:
        sec, frames = _dump(s, name, 1)
        psec, pframes = _plain_dump(s, name)
        note = f"{n / sec:.1f} vs {n / psec:.1f} files/s"
        if frames != pframes:
            note += f"; frames differ: {frames} vs {pframes}"
        rows.append(Row("feature dump", f"{name}, 1 job", "s", sec, psec, note=note))
    if s.quick:
        return rows
    sec2, _ = _dump(s, "fbank", 2)
    rows.append(Row("feature dump", "fbank, 2 jobs (`--nj 2`)", "s", sec2, note=(
        f"{n / sec2:.1f} files/s")))
    if _has_knf():
        psec, _ = _plain_dump(s, "fbank_knf")
        rows.append(Row("feature dump", "fbank, 1 job vs kaldi-native-fbank", "s", rows[0].sertk,
                        psec, note=f"plain: {n / psec:.1f} files/s"))
    return rows


def _has_knf() -> bool:
    import importlib.util

    return importlib.util.find_spec("kaldi_native_fbank") is not None


def train_dump(s: Setup) -> Path:
    """The fbank dump that the training benchmarks read (made by :func:`bench_feats`, else
    here)."""
    out = s.work / "dump" / "fbank_nj1"
    if not (out / "feats.scp").is_file():
        _dump(s, "fbank", 1)
    return out


def _train_config(s: Setup, workers: int) -> Path:
    path = s.work / "conf" / f"train_w{workers}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    save_yaml({"model": {"name": "light_sernet", "conf": s.model_conf}, "loss": {"name": "ce"},
               "optim": {"name": "adam", "lr": 0.001},
               "train": {"epochs": s.epochs, "batch_size": 16, "select": "last",
                         "num_workers": workers, "seed": 0, "amp": False}}, path)
    return path


def _last_epoch(exp: Path) -> dict[str, str]:
    with (exp / "metrics.csv").open(newline="") as fh:
        return list(csv.DictReader(fh))[-1]


def _threads(s: Setup, nproc: int) -> str:
    """Threads per process: the cores shared equally (one each with --quick, where timings
    are no more than a smoke test and a loaded machine would make idle threads spin)."""
    return "1" if s.quick else str(max(1, (os.cpu_count() or 1) // nproc))


def _train_run(s: Setup, workers: int, nproc: int) -> Path:
    """``sertk train`` on the fbank dump (under torchrun for several processes), cores
    shared equally (OMP_NUM_THREADS = cores / processes); the experiment directory. A run
    made for one part is reused by another."""
    if (workers, nproc) in s.runs:
        return s.runs[workers, nproc]
    exp = s.work / "exp" / f"train_w{workers}_p{nproc}"
    launcher = SERTK if nproc == 1 else [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
        str(nproc), "-m", "sertk.cli.main"]
    run_child([*launcher, "train", "--config", str(_train_config(s, workers)), "--train",
               str(train_dump(s)), "--exp", str(exp), "--device", "cpu", "--no-progress"],
              s.logs, exp.name, env={"OMP_NUM_THREADS": _threads(s, nproc)})
    s.runs[workers, nproc] = exp
    return exp


def bench_pipeline(s: Setup) -> list[Row]:
    """(b) ``sertk train``'s fraction of training time blocked on the DataLoader (last
    epoch) with 0, 1 and 2 workers."""
    rows = []
    for workers in (0, 1, 2):
        last = _last_epoch(_train_run(s, workers, 1))
        rows.append(Row("training data", f"data wait, num_workers {workers}", "fraction",
                        float(last["data_wait"]),
                        note=f"epoch {last['epoch']}: {float(last['seconds']):.1f} s"))
    return rows


def _sertk_ddp(s: Setup, nproc: int) -> float:
    return s.num_files / float(_last_epoch(_train_run(s, 0, nproc))["seconds"])


def _plain_ddp(s: Setup, dump: Path, nproc: int) -> float:
    out = s.work / "plain" / f"ddp_{nproc}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    child = run_child([*PLAIN, "ddp", str(dump / "feats.scp"), str(dump / "utt2emo"), str(out),
                       "--nproc", str(nproc), "--threads", _threads(s, nproc), "--epochs",
                       str(s.epochs), "--conf", json.dumps(s.model_conf)],
                      s.logs, f"ddp_plain_{nproc}", env={"OMP_NUM_THREADS": _threads(s, nproc)})
    return float(json.loads(child.stdout.splitlines()[-1])["samples_per_s"])


def bench_ddp(s: Setup) -> list[Row]:
    """(c) Training samples/s (last epoch) with 1 and 2 gloo processes, cores shared equally
    (OMP_NUM_THREADS = cores / processes), and the 2-process / 1-process scaling."""
    dump, rows = train_dump(s), []
    for nproc in (1, 2):
        rows.append(Row("DDP (gloo)", f"{nproc} process{'es' if nproc > 1 else ''}",
                        "samples/s", _sertk_ddp(s, nproc), _plain_ddp(s, dump, nproc),
                        better="higher", note=f"{_threads(s, nproc)} thread(s) each"))
    rows.append(Row("DDP (gloo)", "scaling, 2 processes / 1", "×",
                    rows[1].sertk / rows[0].sertk, rows[1].plain / rows[0].plain,
                    better="higher"))
    return rows


def bench_infer(s: Setup, model: str) -> list[Row]:
    """(d) ``sertk infer --wav-list`` against the plain loop: wall seconds (start-up and
    model loading included) and peak RSS of the process; label agreement in the note."""
    wav_list = s.work / "wav.list"
    wav_list.write_text("".join(line.split(maxsplit=1)[1] + "\n" for line in
                                (s.data / "wav.scp").read_text().splitlines()))
    out, pout = s.work / "infer_sertk.jsonl", s.work / "infer_plain.jsonl"
    child = run_child([*SERTK, "infer", "--model", model, "--wav-list", str(wav_list), "--out",
                       str(out), "--no-progress"], s.logs, "infer_sertk")
    plain = run_child([*PLAIN, "infer", model, str(wav_list), str(pout)], s.logs, "infer_plain")
    labels = [json.loads(x)["label"] for x in out.read_text().splitlines()]
    plabels = [json.loads(x)["label"] for x in pout.read_text().splitlines()]
    same = sum(a == b for a, b in zip(labels, plabels))
    n = s.num_files
    return [Row("inference", f"`sertk infer`, {n} files", "s", child.seconds, plain.seconds,
                note=f"{n / child.seconds:.1f} vs {n / plain.seconds:.1f} files/s; same label "
                     f"for {same}/{n} files"),
            Row("inference", "peak RSS", "MiB", child.max_rss_mb, plain.max_rss_mb)]
