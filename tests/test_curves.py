"""Training curves (EXP/curves.png, TensorBoard events), the data-waiting fraction in
metrics.csv, and the per-fold figure of ``sertk plot curves``."""

from __future__ import annotations

import copy
import csv
import importlib.util
import re

import pytest

from sertk.train.curves import WaitTimer, plot_folds
from tests.conftest import TINY_CONFIG, run_sertk

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _train(dumped, exp, workers=0):
    from sertk.train.trainer import train

    cfg = copy.deepcopy(TINY_CONFIG)
    cfg["train"]["num_workers"] = workers
    train(cfg, dumped / "fold1" / "train", dumped / "fold1" / "dev", exp, device="cpu",
          progress=False)
    return list(csv.DictReader((exp / "metrics.csv").open()))


@pytest.fixture(scope="module")
def two_runs(dumped, tmp_path_factory):
    root = tmp_path_factory.mktemp("curves")
    return {name: (root / name, _train(dumped, root / name, workers))
            for name, workers in (("fold1", 0), ("fold2", 1))}


def test_run_writes_curves_and_data_wait(two_runs):
    for exp, rows in two_runs.values():
        png = exp / "curves.png"
        assert png.read_bytes()[:8] == PNG_MAGIC and png.stat().st_size > 5000
        assert len(rows) == TINY_CONFIG["train"]["epochs"]
        for r in rows:
            assert 0.0 <= float(r["data_wait"]) <= 1.0
        log = (exp / "train.log").read_text()
        assert re.search(r"\| [0-9.]+s \(data wait \d+%\)", log)


def test_data_wait_is_measured():
    """The timer counts the time blocked in next(), not the time spent by the consumer."""
    import time

    def slow():
        for i in range(3):
            time.sleep(0.05)
            yield i

    timer = WaitTimer()
    for _ in timer.wrap(slow()):
        time.sleep(0.05)
    assert 0.35 < timer.fraction < 0.65
    assert timer.wait == pytest.approx(0.15, abs=0.05)


def test_per_fold_figure(two_runs, tmp_path):
    out = tmp_path / "curves.png"
    dirs = [exp for exp, _ in two_runs.values()]
    res = run_sertk("plot", "curves", *dirs, tmp_path / "missing", "--out", out,
                    "--title", "tiny")
    assert "curves of 2 run(s): fold1 fold2" in res.stdout
    assert out.read_bytes()[:8] == PNG_MAGIC
    assert "missing: no metrics.csv rows" in res.stderr
    bad = run_sertk("plot", "curves", tmp_path / "missing", "--out", out, check=False)
    assert bad.returncode == 1 and "has a metrics.csv" in bad.stderr
    assert plot_folds(dirs[:1], tmp_path / "one.png") == dirs[:1]


@pytest.mark.skipif(importlib.util.find_spec("tensorboard") is None,
                    reason="tensorboard is not installed")
def test_tensorboard_events(two_runs):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    exp, rows = two_runs["fold1"]
    events = list((exp / "tensorboard").glob("events.out.tfevents.*"))
    assert len(events) == 1
    acc = EventAccumulator(str(exp / "tensorboard"))
    acc.Reload()
    assert {"train/loss", "valid/UA", "misc/data_wait"} <= set(acc.Tags()["scalars"])
    ua = acc.Scalars("valid/UA")
    assert [e.step for e in ua] == [1, 2]
    assert [e.value for e in ua] == pytest.approx([float(r["valid_UA"]) for r in rows])


@pytest.mark.skipif(importlib.util.find_spec("tensorboard") is None,
                    reason="tensorboard is not installed")
def test_a_fresh_run_replaces_the_earlier_runs_events(dumped, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from sertk.train.trainer import train

    _train(dumped, tmp_path)
    one = {**TINY_CONFIG, "train": {**TINY_CONFIG["train"], "epochs": 1}}
    train(one, dumped / "fold1" / "train", dumped / "fold1" / "dev", tmp_path, device="cpu",
          progress=False)
    assert len(list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))) == 1
    acc = EventAccumulator(str(tmp_path / "tensorboard"))
    acc.Reload()
    assert [e.step for e in acc.Scalars("valid/UA")] == [1]
