"""Training: a real 2-process gloo DDP run, resume equivalence, metrics CSV, best checkpoint."""

from __future__ import annotations

import csv
import os
import socket
import subprocess
import sys

import torch
import torch.multiprocessing as mp
import yaml
from safetensors.torch import load_file

from tests.conftest import TINY_CONFIG


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, world: int, port: int, queue) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      LOCAL_RANK=str(rank), WORLD_SIZE=str(world))
    torch.set_num_threads(1)
    import torch.distributed as dist

    from sertk.models.classifier import EmotionClassifier
    from sertk.train.distributed import cleanup, init_distributed

    info = init_distributed("cpu")
    torch.manual_seed(0)  # same initial weights on both ranks
    model = EmotionClassifier("light_sernet", 40, 4, TINY_CONFIG["model"]["conf"])
    ddp = torch.nn.parallel.DistributedDataParallel(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    before = torch.cat([p.detach().flatten() for p in model.parameters()]).clone()
    torch.manual_seed(100 + rank)  # different data on each rank
    x, lengths = torch.randn(3, 30, 40), torch.tensor([30, 22, 9])
    loss = torch.nn.functional.cross_entropy(ddp(x, lengths), torch.tensor([0, 1, rank]))
    loss.backward()
    opt.step()
    after = torch.cat([p.detach().flatten() for p in model.parameters()])
    gathered = [torch.zeros_like(after) for _ in range(world)]
    dist.all_gather(gathered, after)
    queue.put((rank, info.world_size, bool((after - before).abs().max() > 0),
               float(max((g - after).abs().max() for g in gathered))))
    cleanup(info)


def test_ddp_gloo_step_keeps_ranks_in_sync():
    ctx = mp.get_context("spawn")
    queue = ctx.SimpleQueue()
    mp.start_processes(_ddp_worker, args=(2, _free_port(), queue), nprocs=2,
                       start_method="spawn")
    results = sorted(queue.get() for _ in range(2))
    for rank, world, changed, max_diff in results:
        assert world == 2 and changed
        assert max_diff == 0.0, f"rank {rank} diverged by {max_diff}"


def test_torchrun_two_process_training(dumped, tmp_path):
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(yaml.safe_dump({**TINY_CONFIG, "train": {**TINY_CONFIG["train"],
                                                            "epochs": 1}}))
    exp = tmp_path / "exp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
           "2", "-m", "sertk.cli.main", "train", "--config", str(cfg), "--train",
           str(dumped / "fold1" / "train"), "--valid", str(dumped / "fold1" / "dev"), "--exp",
           str(exp), "--device", "cpu", "--no-progress"]
    proc = subprocess.run(cmd, capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = (exp / "train.log").read_text()
    assert "2 process(es) on cpu" in log
    assert (exp / "model.safetensors").is_file()
    rows = list(csv.DictReader((exp / "metrics.csv").open()))
    assert len(rows) == 1 and 0.0 <= float(rows[0]["valid_UA"]) <= 1.0


def test_resume_continues_exactly(dumped, tmp_path):
    from sertk.train.trainer import train

    cfg = {**TINY_CONFIG, "train": {**TINY_CONFIG["train"], "epochs": 3},
           "augment": [{"name": "specaugment", "time_width": 5, "freq_width": 5}]}
    tr, dv = dumped / "fold1" / "train", dumped / "fold1" / "dev"
    train(cfg, tr, dv, tmp_path / "straight", device="cpu", progress=False)
    short = {**cfg, "train": {**cfg["train"], "epochs": 2}}
    train(short, tr, dv, tmp_path / "resumed", device="cpu", progress=False)
    train(cfg, tr, dv, tmp_path / "resumed", resume=True, device="cpu", progress=False)

    def rows(d):
        return [{k: v for k, v in r.items() if k not in ("seconds", "data_wait")}  # timings
                for r in csv.DictReader((d / "metrics.csv").open())]

    assert len(rows(tmp_path / "straight")) == 3
    assert rows(tmp_path / "straight") == rows(tmp_path / "resumed")
    a = load_file(str(tmp_path / "straight" / "checkpoints" / "best.safetensors"))
    b = load_file(str(tmp_path / "resumed" / "checkpoints" / "best.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # the experiment dir is complete for predict/pack
    for name in ("config.yaml", "labels.txt", "cmvn.ark", "feats.yaml", "model.safetensors",
                 "train.log"):
        assert (tmp_path / "resumed" / name).is_file(), name


def test_select_last_and_average(dumped, tmp_path):
    from sertk.train.trainer import train

    tr, dv = dumped / "fold1" / "train", dumped / "fold1" / "dev"
    base = {**TINY_CONFIG, "train": {**TINY_CONFIG["train"], "epochs": 3}}
    train({**base, "train": {**base["train"], "select": "last"}}, tr, dv, tmp_path / "last",
          device="cpu", progress=False)
    last = load_file(str(tmp_path / "last" / "model.safetensors"))
    ck = torch.load(tmp_path / "last" / "checkpoints" / "last.pt", weights_only=True)["model"]
    assert all(torch.equal(last[k], ck[k]) for k in last)
    res = train({**base, "train": {**base["train"], "select": "average", "average_last": 2}},
                tr, dv, tmp_path / "avg", device="cpu", progress=False)
    assert 0.0 <= res["best_ua"] <= 1.0
    files = sorted(p.name for p in (tmp_path / "avg" / "checkpoints").glob("epoch*"))
    assert files == ["epoch2.safetensors", "epoch3.safetensors"]
    e2, e3 = (load_file(str(tmp_path / "avg" / "checkpoints" / f)) for f in files)
    avg = load_file(str(tmp_path / "avg" / "model.safetensors"))
    key = "net.out.weight"
    torch.testing.assert_close(avg[key], (e2[key] + e3[key]) / 2)


def test_batch_crop_collate_gives_padding_free_batches(dumped):
    import numpy as np

    from sertk.data.dataset import FeatsDataset
    from sertk.train.trainer import _train_collate

    ds = FeatsDataset(dumped / "fold1" / "train", ["angry", "happy", "neutral", "sad"])
    items = [ds[i] for i in range(5)]
    shortest = min(f.shape[0] for _, f, _ in items)
    batch = _train_collate(None, True, ds, np.random.default_rng(0), items)
    assert batch["lengths"].tolist() == [shortest] * 5
    for (key, f, _), crop in zip(items, batch["feats"]):
        # each crop is a window of its utterance
        starts = [s for s in range(f.shape[0] - shortest + 1)
                  if torch.equal(f[s:s + shortest], crop)]
        assert starts, key


def test_save_initial_and_compare_weights(dumped, tmp_path):
    from sertk.train.trainer import train
    from tests.conftest import run_sertk

    cfg = {**TINY_CONFIG, "train": {**TINY_CONFIG["train"], "epochs": 1, "save_initial": True}}
    train(cfg, dumped / "fold1" / "train", dumped / "fold1" / "dev", tmp_path / "e",
          device="cpu", progress=False)
    init = tmp_path / "e" / "checkpoints" / "initial.safetensors"
    out = run_sertk("models", "compare-weights", init, tmp_path / "e" / "model.safetensors")
    rows = [line.split() for line in out.stdout.splitlines()]
    assert rows and all(float(d) > 0 for _, d in rows)  # every layer moved in training
    same = run_sertk("models", "compare-weights", init, init)
    assert all(float(line.split()[1]) == 0.0 for line in same.stdout.splitlines())


def test_bn_init_residual_counts_running_statistic_updates():
    from sertk.train.evaluate import bn_init_residual

    net = torch.nn.Sequential(torch.nn.Conv1d(1, 2, 3), torch.nn.BatchNorm1d(2),
                              torch.nn.BatchNorm1d(2, momentum=None))
    assert bn_init_residual(net) == (1.0, 0)
    for _ in range(10):
        net(torch.randn(4, 1, 20))
    residual, updates = bn_init_residual(net)
    assert updates == 10 and abs(residual - 0.9 ** 10) < 1e-12
    assert bn_init_residual(torch.nn.Linear(2, 2)) == (0.0, 0)


def test_short_training_warns_that_batch_norm_statistics_are_unsettled(trained):
    # the tiny fixture model trains a handful of steps: its running statistics still hold
    # much of their initial values, which the log says (semantic_fusion's eval-mode scale)
    log_text = (trained / "train.log").read_text()
    assert "batch-norm running statistics come from only" in log_text


def test_optimizer_options_set_to_null_are_unset_and_unknown_ones_are_errors():
    import pytest
    import torch

    from sertk.errors import SertkError
    from sertk.train.schedule import build_optimizer

    params = [torch.nn.Parameter(torch.zeros(2))]
    opt = build_optimizer(params, {"name": "adam", "lr": 0.01, "momentum": None})
    assert isinstance(opt, torch.optim.Adam) and opt.param_groups[0]["lr"] == 0.01
    with pytest.raises(SertkError, match="unknown options for optimizer 'adam': momentum"):
        build_optimizer(params, {"name": "adam", "momentum": 0.9})
