"""bin/slurm.sh and bin/srun_torchrun.sh on a real single-node Slurm cluster.

The session fixture starts the cluster with tools/slurm/start_cluster.sh (which installs
Debian's slurm-wlm and munge when missing) and stops it afterwards; the tests skip only where
Slurm cannot be installed (not root, or apt-get fails: exit status 77).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import kaldiio
import numpy as np
import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.slurm
SLURM_SH = REPO / "bin" / "slurm.sh"
RECIPE = REPO / "egs" / "mini_emo" / "ser1"
CLUSTER_DIR = "/tmp/sertk-slurm"


@pytest.fixture(scope="session")
def slurm_env() -> dict[str, str]:
    """Environment for Slurm clients: SLURM_CONF of a running single-node cluster."""
    start = subprocess.run([str(REPO / "tools" / "slurm" / "start_cluster.sh"), CLUSTER_DIR],
                           capture_output=True, text=True, timeout=600)
    if start.returncode == 77:
        pytest.skip(f"Slurm cannot be installed here: {start.stderr.strip()}")
    assert start.returncode == 0, start.stderr
    was_running = "already running" in start.stderr
    conf = start.stdout.strip().splitlines()[-1].split("=", 1)[1]
    env = {**os.environ, "SLURM_CONF": conf, "OMP_NUM_THREADS": "1",
           "PATH": f"{REPO / 'bin'}:{os.environ['PATH']}"}
    yield env
    if not was_running:
        subprocess.run([str(REPO / "tools" / "slurm" / "stop_cluster.sh"), CLUSTER_DIR],
                       capture_output=True, timeout=60)


def _slurm(env: dict, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(SLURM_SH), *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


def _bash(cmd: str, env: dict, cwd: Path) -> subprocess.CompletedProcess:
    proc = subprocess.run(["bash", "-c", cmd], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, f"{cmd}\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
    return proc


def test_job_array_runs_each_index_as_a_task(slurm_env, tmp_path):
    args = ['{"name":"mixup","alpha":0.4}', "two words", "x*"]
    r = _slurm(slurm_env, "--mem", "100M", "JOB=1:2", "log/t.JOB.log", "sh", "-c",
               'echo "task $SLURM_ARRAY_TASK_ID of job JOB"; printf "%s\\n" "$@"', "sh", *args,
               "|", "tr", "a-z", "A-Z", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    for j in (1, 2):
        lines = (tmp_path / "log" / f"t.{j}.log").read_text().splitlines()
        assert lines[0].startswith("# sh -c") and lines[0].endswith("tr a-z A-Z")
        assert re.match(rf"# started at .* Slurm job \d+_{j}$", lines[1]), lines[1]
        assert lines[2:-1] == [f"TASK {j} OF JOB {j}", *(a.upper() for a in args)]
        assert re.match(r"# ended \(exit 0\) at .*, elapsed \d+ s$", lines[-1]), lines[-1]


def test_failing_task_is_named_and_fails_the_launcher(slurm_env, tmp_path):
    r = _slurm(slurm_env, "--max-jobs-run", "2", "JOB=1:3", "log.JOB", "sh", "-c",
               "echo job JOB; [ JOB != 2 ]", cwd=tmp_path)
    assert r.returncode == 1
    assert "1 of 3 job(s) failed" in r.stderr and "see log.2:" in r.stderr
    for j in (1, 2, 3):
        text = (tmp_path / f"log.{j}").read_text()
        assert f"job {j}" in text
        assert f"exit {1 if j == 2 else 0}" in text.splitlines()[-1]


def test_options_come_from_the_config(slurm_env, tmp_path):
    conf = tmp_path / "slurm.conf"
    conf.write_text("command sbatch --export=ALL\ndefault num_threads=2\n"
                    "option num_threads=* --cpus-per-task=$0  # threads\noption gpu=0\n")
    r = _slurm(slurm_env, "--config", str(conf), "--gpu", "0", "log",
               "sh", "-c", "echo cpus=$SLURM_CPUS_PER_TASK omp=$OMP_NUM_THREADS", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "cpus=2 omp=1" in (tmp_path / "log").read_text()  # the caller's OMP_NUM_THREADS
    r = _slurm(slurm_env, "--config", str(conf), "--mem", "1G", "log2", "true", cwd=tmp_path)
    assert r.returncode == 1 and "option --mem is not in" in r.stderr
    assert not (tmp_path / "log2").exists()


def test_terminating_the_launcher_cancels_its_jobs(slurm_env, tmp_path):
    proc = subprocess.Popen([str(SLURM_SH), "JOB=1:2", "log.JOB", "sleep", "300"],
                            cwd=tmp_path, env=slurm_env, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while not all((tmp_path / f"log.{j}").exists() for j in (1, 2)):
        assert time.time() < deadline and proc.poll() is None, "tasks did not start"
        time.sleep(0.2)
    job = re.search(r"Slurm job (\d+)_", (tmp_path / "log.1").read_text()).group(1)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 143
    assert f"cancelled Slurm job {job}" in proc.stderr.read()
    deadline = time.time() + 30
    while subprocess.run(["squeue", "-h", "-j", job], env=slurm_env, capture_output=True,
                         text=True).stdout.strip():
        assert time.time() < deadline, "the job is still queued or running"
        time.sleep(0.5)


def test_mini_recipe_dump_and_two_process_training_on_slurm(slurm_env, tmp_path):
    dirs = (f"--datadir {tmp_path}/data --dumpdir {tmp_path}/dump --expdir {tmp_path}/exp "
            "--progress false --local_data_opts '--speakers 6 --utts_per_emotion 3'")
    # data preparation and the feature dump (--nj 2: two processes) as one Slurm job
    _bash(f"slurm.sh --num_threads 2 {tmp_path}/prep.log ./run.sh {dirs} --stop_stage 2",
          slurm_env, RECIPE)
    assert "Slurm job" in (tmp_path / "prep.log").read_text().splitlines()[1]
    dump = tmp_path / "dump" / "fbank40" / "all"
    ref = dict(kaldiio.load_scp(str(dump / "feats.scp")))
    assert len(ref) == 72 and (dump / "log" / "dump.2.log").is_file()
    # the recipe's stage 2 again, the dump as a Slurm job array of --nj 2 parts (Kaldi style:
    # --dump_cmd, which cmd.sh sets for the Slurm backend), then the merge
    _bash(f"./run.sh {dirs} --stage 2 --stop_stage 2 --nj 2 --dumpdir {tmp_path}/dump2 "
          "--dump_cmd 'slurm.sh --mem 200M'", slurm_env, RECIPE)
    dump2 = tmp_path / "dump2" / "fbank40" / "all"
    for j in (1, 2):
        assert "Slurm job" in (dump2 / "log" / f"dump_task.{j}.log").read_text().splitlines()[1]
    got = dict(kaldiio.load_scp(str(dump2 / "feats.scp")))
    assert got.keys() == ref.keys()
    assert all(np.array_equal(got[u], ref[u]) for u in ref)
    # training: train_cmd=slurm.sh, --num_nodes 1: srun + torchrun with 2 gloo processes
    train_args = ("--override train.epochs=2 --override train.batch_size=8 "
                  "--override train.crop_frames=null")
    _bash(f"./run.sh {dirs} --stage 3 --stop_stage 3 --nproc 2 --num_nodes 1 "
          f"--train_cmd 'slurm.sh --num_threads 2' --train_args '{train_args}'",
          slurm_env, RECIPE)
    exp = tmp_path / "exp" / "light_sernet_mini" / "fold1"
    log = (exp / "logs" / "stage3.log").read_text()
    assert log.startswith("# srun_torchrun.sh --num_nodes 1 --nproc_per_node 2")
    assert "Slurm job" in log.splitlines()[1] and "# ended (exit 0)" in log.splitlines()[-1]
    assert "--rdzv_backend c10d" in log
    assert "2 process(es) on cpu" in (exp / "train.log").read_text()
    assert (exp / "model.safetensors").is_file() and (exp / ".done").is_file()


def test_cmd_sh_selects_the_backend(tmp_path):
    show = ". ./cmd.sh && echo \"$train_cmd|$decode_cmd\""
    local = _bash(show, {**os.environ, "SERTK_CMD_BACKEND": ""}, RECIPE).stdout.strip()
    assert local == "launch.sh|launch.sh"
    slurm = _bash(show, {**os.environ, "SERTK_CMD_BACKEND": "slurm"}, RECIPE).stdout.strip()
    train, decode = slurm.split("|")
    assert train.startswith("slurm.sh --gpu 1") and decode.startswith("slurm.sh")
