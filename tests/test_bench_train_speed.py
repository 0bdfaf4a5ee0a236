"""``bench/train_speed.py``: a tiny run end to end in a child process (one small CNN config,
2 timed steps of a batch of 2 x 0.5 s), and its one-line error for an unknown model."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.conftest import REPO

SCRIPT = REPO / "bench" / "train_speed.py"
MODEL = "cnn_asp_small"  # Conv2d: channels_last applies
VARIANTS = ["fp32", "bf16", "channels_last"]
HAS_BF16 = torch.cpu._is_avx512_bf16_supported()


def _run(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True,
                          timeout=120, env=env, cwd=REPO)


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> tuple[subprocess.CompletedProcess, Path]:
    out = tmp_path_factory.mktemp("train_speed") / "table.md"
    res = _run("--models", MODEL, "--steps", "2", "--warmup", "1", "--seconds", "0.5",
               "--batch", "2", "--threads", "1", "--variants", ",".join(VARIANTS),
               "--out", str(out))
    assert res.returncode == 0, res.stderr
    return res, out


@pytest.fixture(scope="module")
def rows(run) -> dict[str, list[str]]:
    """variant -> [utt/s, ratio, loss diff, note] of the model's rows."""
    lines = [x for x in run[0].stdout.splitlines() if x.startswith(f"| `{MODEL}` |")]
    table = {_cells(x)[1]: _cells(x)[2:] for x in lines}
    assert len(table) == len(lines) == len(VARIANTS), run[0].stdout
    return table


def test_header_and_out_file(run):
    res, out = run
    header = res.stdout.splitlines()[0]
    assert f"torch {torch.__version__}, 1 threads" in header
    assert "load average" in header and "before" in header and "after" in header
    assert out.read_text() == res.stdout
    assert "| model | variant | utt/s | ratio vs fp32 | loss diff | note |" in res.stdout


@pytest.mark.parametrize("variant", ["fp32", "channels_last"])
def test_fp32_rows(rows, variant):
    utt_s, ratio, diff, _ = rows[variant]
    assert float(utt_s) > 0 and float(ratio.rstrip("x")) > 0
    # same weights, same batch, no dropout in the first step: only float32 rounding differs
    assert float(diff) < 1e-4
    if variant == "fp32":
        assert ratio == "1.00x" and float(diff) == 0


@pytest.mark.skipif(not HAS_BF16, reason="no native bfloat16 on this CPU: the trainer's "
                    "autocast_dtype falls back to float32 and the bench prints no bf16 number")
def test_bf16_row(rows):
    utt_s, ratio, diff, _ = rows["bf16"]
    assert float(utt_s) > 0 and float(ratio.rstrip("x")) > 0
    assert 0 < float(diff) < 0.1  # autocast really ran in bfloat16, with a small error


def test_unknown_model_one_line_error():
    res = _run("--models", "no_such_model", "--steps", "1", "--warmup", "1")
    assert res.returncode != 0
    assert "Traceback" not in res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "no_such_model" in lines[0], res.stderr
    assert res.stdout == ""


def _bench_module(monkeypatch):
    spec = importlib.util.spec_from_file_location("train_speed", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "train_speed", module)  # for its dataclasses
    spec.loader.exec_module(module)
    return module


def test_compile_failure_is_a_note_not_a_number(monkeypatch):
    bench = _bench_module(monkeypatch)
    case = bench.load_case(MODEL, batch=2, seconds=0.5)

    def broken(model, **kwargs):
        raise RuntimeError("no C++ compiler | here\nsecond line")

    monkeypatch.setattr(torch, "compile", broken)
    row = bench.run_variant(case, "compile", steps=1, warmup=1)
    assert row.utt_s is None and row.loss is None
    assert row.note == "failed: RuntimeError: no C++ compiler / here"
    line = bench.table([bench.run_variant(case, "fp32", steps=1, warmup=1), row])[-1]
    assert line == f"| `{MODEL}` | compile | – | – | – | {row.note} |"
