"""mtl_msf (Atmaja & Akagi 2020): the 3-layer LSTM regressor, its multitask CCC loss, and the
multistage SVR late fusion (sertk/fusion_svr.py, bin/svr_fusion.py)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from sertk import models
from sertk.errors import SertkError
from sertk.fusion_svr import FusionConfig, fuse, load_inputs, select_top
from sertk.losses import build_loss
from sertk.scoring_dim import ccc
from tests.conftest import REPO, run_sertk
from tests.model_checks import check_forward_backward, check_padding_invariance

PAPER_WEIGHTS = [0.7, 0.2, 1.0]


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny LSTMs: intra-op threads only add contention (18x slower on a busy 2-core box)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _ccc_numpy(x: np.ndarray, y: np.ndarray) -> float:
    """Lin (1989) from numpy's population covariance matrix."""
    c = np.cov(x, y, bias=True)
    return float(2 * c[0, 1] / (c[0, 0] + c[1, 1] + (x.mean() - y.mean()) ** 2))


@pytest.mark.parametrize("pooling", ["mean", "last"])
def test_forward_backward_and_padding_invariance(pooling):
    torch.manual_seed(0)
    net = models.build("mtl_msf", input_dim=25, num_classes=3, hidden=[12, 8, 6],
                       pooling=pooling)
    assert [lstm.hidden_size for lstm in net.lstm.layers] == [12, 8, 6]
    lengths = torch.tensor([13, 9, 4])
    x = torch.randn(3, 13, 25)
    check_forward_backward(net, x, lengths, num_classes=3)
    check_padding_invariance(net, x, lengths, extra_frames=7)


def test_paper_sizes_and_bad_options():
    net = models.build("mtl_msf", input_dim=25, num_classes=3)
    assert [lstm.hidden_size for lstm in net.lstm.layers] == [256, 128, 64]
    assert net.lstm.dropout.p == 0.4 and net.out.out_features == 3
    with pytest.raises(SertkError, match="pooling must be mean or last"):
        models.build("mtl_msf", input_dim=25, num_classes=3, pooling="max")


def _tiny_batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    lengths = torch.tensor([12, 10, 9, 8, 7, 6, 5, 4, 11, 12, 3, 9])
    x = torch.randn(12, 12, 6, generator=g)
    mask = (torch.arange(12)[None] < lengths[:, None]).unsqueeze(-1).float()
    mean = (x * mask).sum(1) / lengths[:, None]
    target = torch.tanh(mean @ torch.randn(6, 3, generator=g))  # a learnable function
    return x, lengths, target


def test_ccc_loss_decreases_and_matches_numpy():
    torch.manual_seed(0)
    x, lengths, target = _tiny_batch()
    net = models.build("mtl_msf", input_dim=6, num_classes=3, hidden=[16, 12, 8])
    loss_fn = build_loss({"name": "ccc", "weights": PAPER_WEIGHTS}, [])
    net.eval()
    with torch.no_grad():
        pred = net(x, lengths)
        before = float(loss_fn(pred, target))
    want = 1 - sum(w * _ccc_numpy(pred[:, d].double().numpy(), target[:, d].double().numpy())
                   for d, w in enumerate(PAPER_WEIGHTS))
    assert before == pytest.approx(want, abs=1e-5)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(60):
        net.train()
        opt.zero_grad()
        loss_fn(net(x, lengths), target).backward()
        opt.step()
    net.eval()
    with torch.no_grad():
        after = float(loss_fn(net(x, lengths), target))
    assert after < before - 0.5, (before, after)  # best possible: 1 - 1.9 = -0.9


def _synthetic(seed: int = 0, n_dev: int = 300, n_test: int = 200):
    """A known target and two noisy, differently biased 'models' of it."""
    rng = np.random.default_rng(seed)
    y_dev, y_test = rng.normal(size=(n_dev, 3)), rng.normal(size=(n_test, 3))

    def models_of(y):
        a = y + rng.normal(size=y.shape)
        b = 0.5 * y + 0.4 + 0.5 * rng.normal(size=y.shape)
        return np.stack([a, b], axis=1)  # [N, S, K]

    return y_dev, models_of(y_dev), y_test, models_of(y_test)


def test_svr_fusion_beats_each_input():
    y_dev, dev, y_test, test = _synthetic()
    stages = fuse(dev, y_dev, test, FusionConfig(stages=2, folds=5))
    assert len(stages) == 2 and stages[-1].test.shape == (200, 3)
    for d in range(3):
        fused = ccc(stages[-1].test[:, d], y_test[:, d])
        inputs = [ccc(test[:, s, d], y_test[:, d]) for s in range(2)]
        assert fused > max(inputs) + 0.02, (d, fused, inputs)
        assert stages[0].dev_ccc[d] > max(ccc(dev[:, s, d], y_dev[:, d]) for s in range(2))


def test_top_keeps_the_best_systems():
    y_dev, dev, _, _ = _synthetic()
    noise = np.random.default_rng(1).normal(size=(len(y_dev), 1, 3))
    with_noise = np.concatenate([dev[:, :1], noise, dev[:, 1:]], axis=1)
    assert select_top(with_noise, y_dev, 2) == [0, 2]
    assert select_top(with_noise, y_dev, 0) == [0, 1, 2]


def _write(path, keys, values) -> str:
    path.write_text("".join(f"{k} {' '.join(f'{v:.6f}' for v in row)}\n"
                            for k, row in zip(keys, values)))
    return str(path)


def _fusion_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "bin" / "svr_fusion.py"), *args],
                          capture_output=True, text=True, cwd=REPO)


def test_svr_fusion_cli_end_to_end(tmp_path):
    y_dev, dev, y_test, test = _synthetic()
    dk = [f"dev{i:03d}" for i in range(len(y_dev))]
    tk = [f"test{i:03d}" for i in range(len(y_test))]
    ref = _write(tmp_path / "dev_utt2dim", dk, y_dev)
    test_ref = _write(tmp_path / "test_utt2dim", tk, y_test)
    args = []
    for s in range(2):
        args += ["--system", _write(tmp_path / f"m{s}_dev", dk, dev[:, s]),
                 _write(tmp_path / f"m{s}_test", tk[::-1], test[::-1, s])]  # any order
    out = tmp_path / "fused"
    proc = _fusion_cli("--ref", ref, *args, "--stages", "2", "--C", "1", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "stage 2: dev CCC (cross-fitted) arousal" in proc.stdout
    summary = json.loads((out / "fusion.json").read_text())
    assert summary["config"]["kernel"] == "rbf" and len(summary["stages"]) == 2
    assert len((out / "dev_hyp.txt").read_text().splitlines()) == len(dk)
    run_sertk("score", "--dim", "--ref", test_ref, "--hyp", out / "hyp.txt",
              "--out-dir", tmp_path / "score")
    res = json.loads((tmp_path / "score" / "results.json").read_text())
    for d in range(3):
        assert res["CCC"][d] > max(ccc(test[:, s, d], y_test[:, d]) for s in range(2))


def test_mismatched_utterances_are_clear_errors(tmp_path):
    y_dev, dev, y_test, test = _synthetic(n_dev=20, n_test=10)
    dk = [f"dev{i:02d}" for i in range(20)]
    tk = [f"test{i:02d}" for i in range(10)]
    ref = _write(tmp_path / "ref", dk, y_dev)
    a = (_write(tmp_path / "a_dev", dk, dev[:, 0]), _write(tmp_path / "a_test", tk, test[:, 0]))
    b_test = _write(tmp_path / "b_test", tk[:9], test[:9, 1])  # test09 missing
    b_dev = _write(tmp_path / "b_dev", [*dk, "dev99"], np.vstack([dev[:, 1], dev[:1, 1]]))
    with pytest.raises(SertkError, match=f"{b_test}: no prediction for utterance test09 of "
                                         f"{a[1]}"):
        load_inputs(ref, [a, (a[0], b_test)])
    with pytest.raises(SertkError, match=f"{b_dev}: utterance dev99 is not in {ref}"):
        load_inputs(ref, [a, (b_dev, a[1])])
    proc = _fusion_cli("--ref", ref, "--system", *a, "--system", a[0], b_test,
                       str(tmp_path / "out"))
    assert proc.returncode == 1
    assert proc.stderr.strip() == (f"svr_fusion.py: error: {b_test}: no prediction for "
                                   f"utterance test09 of {a[1]} (1 missing)")


def test_rmsprop_optimizer_from_config():
    """The paper's optimiser: ``optim: {name: rmsprop}`` (conf/model/mtl_msf.yaml)."""
    from sertk.train.schedule import build_optimizer

    p = [torch.nn.Parameter(torch.zeros(3))]
    opt = build_optimizer(p, {"name": "rmsprop", "lr": 5e-4})
    assert isinstance(opt, torch.optim.RMSprop) and opt.defaults["lr"] == 5e-4
    assert opt.defaults["alpha"] == 0.99 and opt.defaults["momentum"] == 0.0
    with pytest.raises(SertkError, match="rmsprop"):
        build_optimizer(p, {"name": "lamb"})
