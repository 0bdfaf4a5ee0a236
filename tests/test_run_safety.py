"""Run safety: one run per experiment directory (EXP/.lock), SIGKILL and rerun with --resume
giving bit-identical weights, crash-safe checkpoints with a fallback for a corrupt last.pt, and
a full disk (ENOSPC, on a real small tmpfs) as one clear error."""

from __future__ import annotations

import csv
import importlib.util
import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import kaldiio
import pytest
import torch
import yaml
from safetensors.torch import load_file

from sertk.errors import SertkError
from tests.conftest import REPO, SERTK, TINY_CONFIG, run_sertk

TIMING = ("seconds", "data_wait")  # columns that differ between runs of the same training


def _train_cmd(cfg: Path, dumped: Path, exp: Path, *extra: str) -> list[str]:
    return [*SERTK, "train", "--config", str(cfg), "--train", str(dumped / "fold1" / "train"),
            "--valid", str(dumped / "fold1" / "dev"), "--exp", str(exp), "--device", "cpu",
            "--no-progress", *extra]


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1"}


def _rows(exp: Path) -> list[dict[str, str]]:
    with (exp / "metrics.csv").open(newline="") as fh:
        return [{k: v for k, v in r.items() if k not in TIMING} for r in csv.DictReader(fh)]


def _wait_for(pred, timeout: float, poll: float = 0.01) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(poll)
    return pred()


def _csv_epochs(exp: Path) -> int:
    try:
        return max(0, len((exp / "metrics.csv").read_text().splitlines()) - 1)
    except FileNotFoundError:
        return 0


@pytest.fixture(scope="module")
def kill_setup(dumped, tmp_path_factory):
    """A 4-epoch tiny training with SpecAugment (the batch generator) and its uninterrupted
    result, run through the CLI as a recipe runs it."""
    root = tmp_path_factory.mktemp("safety")
    cfg = root / "tiny.yaml"
    cfg.write_text(yaml.safe_dump({
        **TINY_CONFIG, "train": {**TINY_CONFIG["train"], "epochs": 4, "batch_size": 6},
        "augment": [{"name": "specaugment", "time_width": 5, "freq_width": 5}]}))
    straight = root / "straight"
    proc = subprocess.run(_train_cmd(cfg, dumped, straight), capture_output=True, text=True,
                          env=_env(), timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return cfg, straight


@pytest.mark.parametrize("point", ["first_checkpoint", "second_epoch_row"])
def test_sigkill_and_rerun_gives_bit_identical_weights(kill_setup, dumped, tmp_path, point):
    """Kill -9 the training mid-run, rerun the same command with --resume (as stage 3 of
    egs/TEMPLATE/ser1/ser.sh does when checkpoints/last.pt exists) until it finishes: the final
    weights are bit-identical to an uninterrupted run, and metrics.csv has each epoch once."""
    cfg, straight = kill_setup
    exp = tmp_path / "exp"
    rng = random.Random(f"issue18-{point}")
    proc = subprocess.Popen(_train_cmd(cfg, dumped, exp), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=_env())
    try:
        if point == "first_checkpoint":
            ready = _wait_for(lambda: (exp / "checkpoints" / "last.pt").is_file(), 600)
            delay = rng.uniform(0.0, 0.3)
        else:  # right after the epoch-2 row: often before its last.pt is written
            ready = _wait_for(lambda: _csv_epochs(exp) >= 2, 600, poll=0.002)
            delay = rng.uniform(0.0, 0.02)
        assert ready, "training did not reach the kill point"
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        rc = proc.wait()
    assert rc == -signal.SIGKILL, f"the run ended before the kill ({point}, {delay:.3f} s)"
    assert not (exp / "model.safetensors").is_file()
    killed_rows = _csv_epochs(exp)
    assert (exp / ".lock").read_text().startswith("pid: ")  # left behind by the dead run
    for _ in range(3):  # the recipe's rerun: --resume whenever last.pt exists
        extra = ["--resume"] if (exp / "checkpoints" / "last.pt").is_file() else []
        rerun = subprocess.run(_train_cmd(cfg, dumped, exp, *extra), capture_output=True,
                               text=True, env=_env(), timeout=900)
        assert rerun.returncode == 0, rerun.stderr[-3000:]
        if (exp / "model.safetensors").is_file():
            break
    log = (exp / "train.log").read_text()
    assert "taking over a stale lock" in log and "resumed from" in log
    assert (exp / "model.safetensors").read_bytes() == \
        (straight / "model.safetensors").read_bytes(), f"{point}: killed after {delay:.3f} s"
    a, b = load_file(str(straight / "model.safetensors")), load_file(str(exp / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert _rows(exp) == _rows(straight), f"killed with {killed_rows} row(s) written"
    assert (exp / ".lock").read_text() == ""  # a clean end empties the lock


def test_a_second_run_on_the_same_exp_dir_stops_at_once(dumped, tmp_path):
    exp = tmp_path / "exp"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom sertk.train.lock import acquire\n"
         "acquire(sys.argv[1]); print('locked', flush=True); time.sleep(600)", str(exp),
         "--marker-arg"], stdout=subprocess.PIPE, text=True, cwd=REPO)
    try:
        assert holder.stdout.readline().strip() == "locked"
        cfg = tmp_path / "tiny.yaml"
        cfg.write_text(yaml.safe_dump(TINY_CONFIG))
        t0 = time.monotonic()
        proc = subprocess.run(_train_cmd(cfg, dumped, exp, "--resume"), capture_output=True,
                              text=True, env=_env(), timeout=300)
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 1, proc.stderr
        assert len(lines) == 1 and lines[0].startswith("sertk: error: "), proc.stderr
        msg = lines[0]
        assert f"{exp} is in use by another run: pid {holder.pid} on " \
               f"{socket.gethostname()}" in msg and "--marker-arg" in msg, msg
        assert time.monotonic() - t0 < 120
        assert not (exp / "metrics.csv").exists()  # it did not start training
    finally:
        holder.kill()
        holder.wait()


def test_under_torchrun_every_rank_stops_when_the_exp_dir_is_locked(dumped, tmp_path):
    # only rank 0 takes the lock; rank 1 must not be left waiting in a collective
    from sertk.train.lock import exp_lock

    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(yaml.safe_dump(TINY_CONFIG))
    exp = tmp_path / "exp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
           "2", *_train_cmd(cfg, dumped, exp)[1:]]
    with exp_lock(exp):
        proc = subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=600)
    assert proc.returncode != 0
    assert "is in use by another run: pid " in proc.stderr
    assert "see rank 0's error" in proc.stderr  # rank 1 stopped too


def test_stale_lock_is_reported_and_taken_over(tmp_path, caplog):
    from sertk.train import lock

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    exp = tmp_path / "exp"
    exp.mkdir()
    (exp / ".lock").write_text(f"pid: {dead.pid}\nhost: {socket.gethostname()}\n"
                               "started: 2026-01-01T00:00:00+00:00\ncommand: sertk train x\n")
    with caplog.at_level("WARNING", logger="sertk.train.lock"):
        with lock.exp_lock(exp):
            info = lock.read_info(exp / ".lock")
            assert info["pid"] == str(os.getpid()) and info["host"] == socket.gethostname()
            assert info["command"] and info["started"]
            with lock.exp_lock(exp):  # re-entrant: train-meta around the trainer
                pass
            assert lock.read_info(exp / ".lock")["pid"] == str(os.getpid())
    assert f"taking over a stale lock of pid {dead.pid} on {socket.gethostname()}" in caplog.text
    assert "exited" in caplog.text
    assert (exp / ".lock").read_text() == ""


def _train_dirs(dumped: Path) -> tuple[Path, Path]:
    return dumped / "fold1" / "train", dumped / "fold1" / "dev"


def test_corrupt_last_checkpoint_falls_back_to_the_previous_one(dumped, tmp_path):
    from sertk.train.trainer import train

    tr, dv = _train_dirs(dumped)
    cfg = {**TINY_CONFIG, "train": {**TINY_CONFIG["train"], "epochs": 3}}
    train(cfg, tr, dv, tmp_path / "straight", device="cpu", progress=False)
    exp = tmp_path / "exp"
    train({**cfg, "train": {**cfg["train"], "epochs": 2}}, tr, dv, exp, device="cpu",
          progress=False)
    last, prev = exp / "checkpoints" / "last.pt", exp / "checkpoints" / "last.prev.pt"
    assert torch.load(prev, weights_only=True)["state"]["epoch"] == 1
    data = last.read_bytes()
    last.write_bytes(data[: len(data) // 2])  # a torn write
    train(cfg, tr, dv, exp, resume=True, device="cpu", progress=False)
    log = (exp / "train.log").read_text()
    assert f"cannot read checkpoint {last}" in log
    assert f"resuming from the previous checkpoint {prev}" in log
    assert "after epoch 1" in log and "dropped 1 row(s) of epochs after 1" in log
    assert _rows(exp) == _rows(tmp_path / "straight")  # epoch 2 once, no duplicate
    if importlib.util.find_spec("tensorboard") is not None:  # epoch 2's first try hidden
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

        acc = EventAccumulator(str(exp / "tensorboard"))
        acc.Reload()
        assert [(e.step, e.value) for e in acc.Scalars("valid/loss")] == \
            [(int(r["epoch"]), pytest.approx(float(r["valid_loss"]))) for r in _rows(exp)]
    assert (exp / "model.safetensors").read_bytes() == \
        (tmp_path / "straight" / "model.safetensors").read_bytes()
    # neither checkpoint readable: a clear error, not a traceback
    for p in (last, prev):
        p.write_bytes(b"PK\x03\x04 not a checkpoint")
    with pytest.raises(SertkError, match="no usable checkpoint to resume from: .*last.pt.*"
                                         "last.prev.pt.*remove .*checkpoints to start over"):
        train(cfg, tr, dv, exp, resume=True, device="cpu", progress=False)


def test_truncate_metrics_keeps_checkpointed_epochs(tmp_path):
    from sertk.train.checkpoint import truncate_metrics

    path = tmp_path / "metrics.csv"
    path.write_bytes(b"epoch,lr,best\r\n1,0.1,1\r\n2,0.1,0\r\n3,0.1,1\r\n4,0.")  # torn row
    assert truncate_metrics(path, 2) == 2
    assert path.read_bytes() == b"epoch,lr,best\r\n1,0.1,1\r\n2,0.1,0\r\n"
    assert truncate_metrics(path, 2) == 0


def test_rng_state_round_trips_through_a_weights_only_checkpoint(tmp_path):
    import numpy as np

    from sertk.train.checkpoint import load_state, restore_rng_state, rng_state, save_state

    random.seed(5)
    np.random.seed(5)
    torch.manual_seed(5)
    np.random.standard_normal()  # a cached gaussian in numpy's state
    save_state(tmp_path / "s.pt", {"rng": rng_state()})
    expect = (random.random(), np.random.standard_normal(), torch.rand(3))
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    restore_rng_state(load_state(tmp_path / "s.pt")["rng"])  # weights_only=True
    got = (random.random(), np.random.standard_normal(), torch.rand(3))
    assert got[:2] == expect[:2] and torch.equal(got[2], expect[2])


@pytest.fixture
def small_tmpfs(tmp_path):
    """A 1 MiB tmpfs mounted in tmp_path (needs root, or CAP_SYS_ADMIN)."""
    mnt = tmp_path / "tmpfs"
    mnt.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs to produce ENOSPC (needs root): "
                    f"{proc.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def _fill(mnt: Path, leave: int) -> None:
    """Fill the file system but ``leave`` bytes (roughly)."""
    free = os.statvfs(mnt).f_bavail * os.statvfs(mnt).f_frsize
    with open(mnt / "filler", "wb") as fh:
        fh.write(b"\0" * max(0, free - leave))


def test_feature_dump_on_a_full_disk_is_one_clear_error(corpus, small_tmpfs):
    dump_dir = small_tmpfs / "dump"
    dump_dir.mkdir()
    (dump_dir / "feats.scp").write_text("stale data/feats.1.ark:10\n")  # an earlier dump's
    proc = run_sertk("feats", "dump", corpus, dump_dir, "--conf",
                     REPO / "conf" / "feats" / "fbank40.yaml", "--nj", "2", "--no-progress",
                     check=False)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1
    assert lines[-1].startswith("sertk: error: no space left on device writing "
                                f"{dump_dir}/data/feats."), proc.stderr
    assert lines[-1].endswith(".ark") and "Traceback" not in proc.stderr
    # no table points at a partial ark: no feats.scp; the scp of a job that finished before
    # the disk filled up reads back whole, the failed job left none
    assert not (dump_dir / "feats.scp").exists()
    failed = lines[-1].rsplit("/", 1)[1][:-len(".ark")]
    assert not (dump_dir / "data" / f"{failed}.scp").exists()
    for scp in (dump_dir / "data").glob("feats.*.scp"):
        assert all(m.shape[1] == 40 for _, m in kaldiio.load_scp_sequential(str(scp)))


def test_checkpoint_on_a_full_disk_is_one_clear_error_and_keeps_the_old_one(small_tmpfs):
    from sertk.train.checkpoint import load_state, save_state, save_tensors

    last = small_tmpfs / "last.pt"
    save_state(last, {"x": torch.zeros(10)})
    _fill(small_tmpfs, 16 * 1024)
    big = {"x": torch.ones(64 * 1024)}  # 256 KiB
    with pytest.raises(SertkError, match=f"^no space left on device writing {last}$"):
        save_state(last, big)
    with pytest.raises(SertkError, match="^no space left on device writing .*w.safetensors$"):
        save_tensors(big, small_tmpfs / "w.safetensors")
    assert torch.equal(load_state(last)["x"], torch.zeros(10))  # the old one is intact
    assert sorted(p.name for p in small_tmpfs.iterdir()) == ["filler", "last.prev.pt",
                                                             "last.pt"]  # no temp files



def test_kaldi_table_on_a_full_disk_is_one_clear_error_and_keeps_the_old_one(small_tmpfs):
    from sertk.data.kaldi_table import read_table, write_table

    table = small_tmpfs / "utt2spk"
    write_table(table, {"u1": "s1"})
    _fill(small_tmpfs, 16 * 1024)
    big = {f"utt{i:06d}": "speaker" * 10 for i in range(8000)}  # about 600 KiB
    with pytest.raises(SertkError, match=f"^no space left on device writing {table}$"):
        write_table(table, big)
    assert read_table(table) == {"u1": "s1"}
    assert sorted(p.name for p in small_tmpfs.iterdir()) == ["filler", "utt2spk"]
