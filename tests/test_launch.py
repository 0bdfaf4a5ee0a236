"""bin/launch.sh, the recipes' local $train_cmd (Kaldi run.pl semantics)."""

from __future__ import annotations

import subprocess
from pathlib import Path

LAUNCH = Path(__file__).resolve().parents[1] / "bin" / "launch.sh"


def _launch(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(LAUNCH), *args], cwd=cwd, capture_output=True, text=True)


def _output(log: Path) -> list[str]:
    """The command's own output: the log without launch.sh's '#' header and footer lines."""
    return [line for line in log.read_text().splitlines() if not line.startswith("# ")]


def test_arguments_reach_the_command_unchanged(tmp_path: Path) -> None:
    # JSON overrides (braces, quotes, commas), spaces and glob characters must not be
    # re-interpreted by the shell that runs the job (a regression: `--train_args
    # '--override augment=[{"name":"mixup"}]'` used to arrive brace-expanded and unquoted)
    (tmp_path / "x1").touch()
    args = ['augment=[{"name":"mixup","alpha":0.4}]', "two words", "x*", "$HOME", "a;b"]
    r = _launch(str(tmp_path / "log"), "printf", "%s\\n", *args, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert _output(tmp_path / "log") == args


def test_escaped_pipe_joins_commands(tmp_path: Path) -> None:
    r = _launch(str(tmp_path / "log"), "echo", "abc", "|", "tr", "a-z", "A-Z", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert _output(tmp_path / "log") == ["ABC"]


def test_job_array_and_failures(tmp_path: Path) -> None:
    r = _launch("JOB=1:3", str(tmp_path / "log.JOB"), "sh", "-c", "echo job JOB; [ JOB != 2 ]",
                cwd=tmp_path)
    assert r.returncode == 1
    assert "1 of 3 job(s) failed" in r.stderr and "log.2" in r.stderr
    for j in (1, 2, 3):
        text = (tmp_path / f"log.{j}").read_text()
        assert f"job {j}" in text
        assert f"exit {1 if j == 2 else 0}" in text.splitlines()[-1]


_CHILD = """
import os, subprocess, sys, time
grandchild = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
with open(sys.argv[1] + ".tmp", "w") as fh:
    fh.write(f"{os.getpid()} {grandchild.pid}\\n")
os.replace(sys.argv[1] + ".tmp", sys.argv[1])
time.sleep(600)
"""


def _running(pid: int) -> bool:
    """The process exists and is not a zombie (an exited child its parent has not reaped)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _wait_for(pred, timeout: float) -> bool:
    import time

    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.05)
    return pred()


def _stop_launcher(tmp_path: Path, sig) -> tuple[int, list[int], str]:
    """Start launch.sh with two jobs (a python child with a python grandchild each), signal
    the launcher; returns its exit status, the pids still running 5 s later, its stderr."""
    import os
    import signal
    import sys

    (tmp_path / "child.py").write_text(_CHILD)
    launcher = subprocess.Popen([str(LAUNCH), "JOB=1:2", str(tmp_path / "log.JOB"),
                                 sys.executable, str(tmp_path / "child.py"),
                                 str(tmp_path / "pids.JOB")],
                                cwd=tmp_path, stderr=(tmp_path / "stderr").open("w"),
                                # as from a terminal: a shell started by a non-interactive
                                # one in the background (CI) inherits SIGINT ignored, and bash
                                # cannot trap a signal ignored on entry
                                preexec_fn=lambda: [signal.signal(s, signal.SIG_DFL) for s in
                                                    (signal.SIGINT, signal.SIGTERM,
                                                     signal.SIGHUP)])
    pid_files = [tmp_path / f"pids.{j}" for j in (1, 2)]
    pids: list[int] = []
    try:
        assert _wait_for(lambda: all(f.is_file() for f in pid_files), 60), "jobs did not start"
        pids = [int(p) for f in pid_files for p in f.read_text().split()]
        assert all(_running(p) for p in pids)
        # each job is a process group of its own, not the launcher's
        assert os.getpgid(pids[0]) != os.getpgid(launcher.pid)
        launcher.send_signal(sig)
        rc = launcher.wait(timeout=30)
        _wait_for(lambda: not any(_running(p) for p in pids), 5)
        return rc, [p for p in pids if _running(p)], (tmp_path / "stderr").read_text()
    finally:
        for p in pids:  # leave nothing behind, whatever happened
            if _running(p):
                os.kill(p, signal.SIGKILL)
        if launcher.poll() is None:
            launcher.kill()


def test_killing_the_launcher_ends_the_jobs_and_their_children(tmp_path: Path) -> None:
    # a cluster's or a user's `kill` of the launcher used to leave the training running
    import signal

    rc, left, err = _stop_launcher(tmp_path, signal.SIGTERM)
    assert left == [], f"still running after the launcher was killed: {left}"
    assert rc == -signal.SIGTERM  # dies of the signal: the calling script sees 143
    assert "received SIGTERM: stopped 2 job(s)" in err
    for j in (1, 2):
        assert "# killed: launcher received SIGTERM" in (tmp_path / f"log.{j}").read_text()


def test_ctrl_c_on_the_launcher_ends_the_jobs(tmp_path: Path) -> None:
    import signal

    rc, left, _ = _stop_launcher(tmp_path, signal.SIGINT)
    assert left == [] and rc == -signal.SIGINT
