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
