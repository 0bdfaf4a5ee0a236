"""Dimensional emotion: CCC / MSE / Pearson scoring, the CCC loss, and `sertk score --dim`."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from sertk.losses import CCCLoss, batch_ccc, build_loss
from sertk.scoring_dim import ccc, pearson
from tests.conftest import run_sertk


def _ccc_reference(x, y):
    """Lin (1989) from numpy's population covariance matrix."""
    c = np.cov(x, y, bias=True)
    return 2 * c[0, 1] / (c[0, 0] + c[1, 1] + (x.mean() - y.mean()) ** 2)


def test_ccc_against_its_definition():
    rng = np.random.default_rng(0)
    x = rng.normal(size=200)
    y = 0.6 * x + 0.3 + 0.5 * rng.normal(size=200)
    assert ccc(x, y) == pytest.approx(_ccc_reference(x, y), abs=1e-12)
    assert ccc(x, x) == pytest.approx(1.0)
    assert pearson(x, x + 1) == pytest.approx(1.0) and ccc(x, x + 1) < 0.7  # bias is penalised
    pred = torch.tensor(np.stack([x, y, -y], 1))
    target = torch.tensor(np.stack([y, y, y], 1))
    got = batch_ccc(pred, target).numpy()
    assert got == pytest.approx([_ccc_reference(x, y), 1.0, _ccc_reference(-y, y)], abs=1e-6)


def test_ccc_loss_weights_and_training_signal():
    loss = build_loss({"name": "ccc", "weights": [0.7, 0.2, 1.0]}, [])
    assert isinstance(loss, CCCLoss)
    target = torch.randn(64, 3)
    assert loss(target.clone(), target).item() == pytest.approx(1 - 1.9, abs=1e-5)
    torch.manual_seed(0)
    x = torch.randn(256, 8)
    w_true = torch.randn(8, 3)
    y = x @ w_true
    lin = torch.nn.Linear(8, 3)
    opt = torch.optim.Adam(lin.parameters(), lr=0.05)
    first = loss(lin(x), y).item()
    for _ in range(200):
        opt.zero_grad()
        step = loss(lin(x), y)
        step.backward()
        opt.step()
    assert step.item() < first - 1.0
    with pytest.raises(Exception, match="must both be"):
        loss(torch.zeros(4, 2), torch.zeros(4, 2))


def _tables(tmp_path, name, noise, seed):
    rng = np.random.default_rng(seed)
    ref = rng.uniform(1, 5, size=(40, 3))
    hyp = ref + noise * rng.normal(size=ref.shape)
    d = tmp_path / name
    d.mkdir()
    (d / "utt2dim").write_text("".join(f"u{i:02d} {' '.join(map(str, r))}\n"
                                       for i, r in enumerate(ref)))
    (d / "hyp").write_text("".join(f"u{i:02d} {' '.join(map(str, h))}\n"
                                   for i, h in enumerate(hyp)))
    return d


def test_cli_score_dim_and_fold_aggregation(tmp_path):
    outs = []
    for k, noise in enumerate((0.3, 1.5)):
        d = _tables(tmp_path, f"fold{k + 1}", noise, k)
        proc = run_sertk("score", "--dim", "--ref", d / "utt2dim", "--hyp", d / "hyp",
                         "--out-dir", d / "out")
        assert "arousal: CCC" in proc.stdout and "(40 utts)" in proc.stdout
        res = json.loads((d / "out" / "results.json").read_text())
        assert res["task"] == "dimensional" and len(res["CCC"]) == 3
        assert (d / "out" / "scatter.png").stat().st_size > 1000
        outs.append(res)
    assert min(outs[0]["CCC"]) > max(outs[1]["CCC"])  # less noise, higher concordance
    agg = run_sertk("score", "--fold", tmp_path / "fold1/out/results.json", "--fold",
                    tmp_path / "fold2/out/results.json", "--out-dir", tmp_path / "agg")
    assert agg.stdout.startswith("2 folds: arousal: CCC")
    mean = json.loads((tmp_path / "agg" / "results.json").read_text())["CCC"]["mean"]
    assert mean == pytest.approx(np.mean([o["CCC"] for o in outs], 0).tolist())


def test_cli_score_dim_errors(tmp_path):
    d = _tables(tmp_path, "f", 0.3, 0)
    lines = (d / "hyp").read_text().splitlines()
    (d / "short").write_text("\n".join(lines[:-1]) + "\n")
    proc = run_sertk("score", "--dim", "--ref", d / "utt2dim", "--hyp", d / "short",
                     "--out-dir", d / "o", check=False)
    assert proc.returncode == 1 and "have no prediction, e.g. u39" in proc.stderr
    (d / "nan").write_text("\n".join(lines[:-1] + ["u39 nan 1 2"]) + "\n")
    proc = run_sertk("score", "--dim", "--ref", d / "utt2dim", "--hyp", d / "nan",
                     "--out-dir", d / "o", check=False)
    assert proc.returncode == 1 and "utterance u39: NaN" in proc.stderr
    assert "Traceback" not in proc.stderr
