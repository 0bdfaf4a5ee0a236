"""``sertk train-meta`` (Chopra et al., ICASSP 2021): first-order MAML updates, N-way K-shot
episodes, and fomaml / transfer / multitask end to end on tiny synthetic corpora."""

from __future__ import annotations

import copy
import csv
import shutil

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml
from safetensors.torch import load_file
from torch import nn

from sertk.cli.main import main as sertk_main
from sertk.config import apply_overrides, load_yaml
from sertk.data.synth import make_corpus
from sertk.errors import SertkError
from sertk.features import FeatureConfig
from sertk.features.dump import dump
from sertk.infer.packed import load_packed
from sertk.infer.recognizer import predict_dump
from sertk.models.meta_ser import MetaSER
from sertk.train.meta import (
    Batch,
    Corpus,
    first_order_grads,
    meta_step,
    resolve_method,
    sample_episode,
    split_class,
    train_meta,
    trainable,
)
from tests.conftest import REPO
from tests.model_checks import check_forward_backward, check_padding_invariance

CONFIG = REPO / "conf" / "model" / "meta_ser.yaml"
TINY = ["model.conf.hidden=8", "model.conf.fc_dim=8", "meta.episodes=3", "meta.shots=2",
        "meta.query_shots=1", "meta.eval_every=2", "meta.inner_steps=2", "meta.inner_lr=0.05",
        "meta.meta_lr=0.01", "pretrain.epochs=2", "pretrain.batch_size=8",
        "pretrain.base_lr=0.001", "pretrain.max_lr=0.01", "target.shots=3",
        "train.epochs=2", "train.batch_size=8", "train.patience=null", "optim.lr=0.01"]


def cli(*args) -> None:
    """Run the sertk CLI in this process (a subprocess would re-import torch: seconds)."""
    sertk_main([str(a) for a in args])


def tiny_config(method: str, *extra: str) -> dict:
    return apply_overrides(resolve_method(load_yaml(CONFIG), method), [*TINY, *extra])


@pytest.fixture(scope="module")
def corpora(dumped, tmp_path_factory) -> dict:
    """Source 1: the shared synthetic corpus's fold-1 training speakers (4 emotions); source 2:
    another synthetic corpus (seed 7) with 3 emotions; target: fold 1's dev and test speakers."""
    root = tmp_path_factory.mktemp("meta")
    make_corpus(root / "wav", root / "data", num_speakers=2, utts_per_emotion=3, seed=7,
                emotions=["angry", "happy", "sad"], duration=(0.6, 0.9))
    dump(root / "data", root / "src2", FeatureConfig.load(REPO / "conf/feats/fbank40.yaml"),
         nj=1, progress=False)
    fold = dumped / "fold1"
    return {"sources": [fold / "train", root / "src2"], "train": fold / "dev",
            "valid": fold / "test", "root": root}


def _batch(n: int, dim: int, classes: int, seed: int) -> Batch:
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(3, 9, (n,), generator=g)
    return Batch(torch.randn(n, 9, dim, generator=g), lengths,
                 torch.randint(0, classes, (n,), generator=g))


class WithUnused(nn.Module):
    """meta_ser plus a parameter no loss reaches and a frozen one."""

    def __init__(self):
        super().__init__()
        self.net = MetaSER(5, 3, hidden=6, fc_dim=4)
        self.unused = nn.Linear(2, 2)
        self.frozen = nn.Parameter(torch.ones(3), requires_grad=False)

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.net(feats, lengths) * self.frozen


def _manual_first_order(model: nn.Module, tasks: list, steps: int, lr: float) -> list:
    """Reference: plain SGD on a copy, then the query gradient at the adapted weights."""
    total = None
    for support, query in tasks:
        fast = copy.deepcopy(model)
        params = trainable(fast)
        for _ in range(steps):
            loss = F.cross_entropy(fast(support.feats, support.lengths), support.targets)
            grads = torch.autograd.grad(loss, params, allow_unused=True)
            with torch.no_grad():
                for p, g in zip(params, grads):
                    if g is not None:
                        p -= lr * g
        loss = F.cross_entropy(fast(query.feats, query.lengths), query.targets)
        g = torch.autograd.grad(loss, params, allow_unused=True)
        total = g if total is None else [a if b is None else a + b for a, b in zip(total, g)]
    return list(total)


def test_meta_ser_network_forward_backward_and_padding():
    torch.manual_seed(0)
    net = MetaSER(20, 4, hidden=8, fc_dim=8)
    x, lengths = torch.randn(3, 12, 20), torch.tensor([12, 7, 3])
    check_forward_backward(net, x, lengths, num_classes=4)
    check_padding_invariance(net, x, lengths, extra_frames=5)
    frozen = MetaSER(20, 4, hidden=8, fc_dim=8, finetune="dense")
    assert not any(p.requires_grad for p in frozen.lstm.parameters())
    assert all(p.requires_grad for p in frozen.head.parameters())


def test_fomaml_inner_loop_on_a_copy_and_first_order_outer_step():
    torch.manual_seed(0)
    model = WithUnused()
    tasks = [(_batch(6, 5, 3, s), _batch(3, 5, 3, s + 10)) for s in (1, 2)]
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    grads, stats = first_order_grads(model, tasks, steps=3, lr=0.5)
    for n, p in model.named_parameters():  # the inner loop adapted copies only
        torch.testing.assert_close(p, before[n], rtol=0, atol=0)
    assert all(p.grad is None for p in model.parameters())
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    want = _manual_first_order(model, tasks, steps=3, lr=0.5)
    for n, g, w in zip(names, grads, want):
        if n.startswith("unused"):
            assert g is None and w is None
        else:
            torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-6)
    assert 0.0 <= stats["valid_acc"] <= 1.0 and stats["valid_loss"] > 0
    # the outer step applies exactly the summed first-order gradient (SGD lr 1 to see it)
    meta_step(model, torch.optim.SGD(trainable(model), lr=1.0), tasks, steps=3, lr=0.5)
    for n, p in model.named_parameters():
        if n.startswith("unused") or n == "frozen":
            torch.testing.assert_close(p, before[n], rtol=0, atol=0)
        else:
            torch.testing.assert_close(p, before[n] - want[names.index(n)], rtol=1e-4,
                                       atol=1e-6)
    # Adam (the paper's outer optimiser) leaves parameters without gradient alone too
    unused = model.unused.weight.detach().clone()
    meta_step(model, torch.optim.Adam(trainable(model), lr=0.1), tasks, steps=1, lr=0.5)
    torch.testing.assert_close(model.unused.weight, unused, rtol=0, atol=0)


def test_episodes_are_n_way_k_shot_with_disjoint_support_and_query():
    rng = np.random.default_rng(0)
    targets = [c for c in range(4) for _ in range(10)]
    train, valid = {}, {}
    for c in range(4):
        train[c], valid[c] = split_class([i for i, t in enumerate(targets) if t == c], 0.2,
                                         min_train=3, min_valid=3, rng=rng)
        assert len(valid[c]) == 3 and len(train[c]) == 7
        assert not set(train[c]) & set(valid[c])
    corpus = Corpus("c", [torch.zeros(2, 1)] * 40, targets, train, valid)
    for _ in range(20):
        ep = sample_episode(corpus, 0, ways=3, shots=3, query_shots=2, rng=rng)
        assert len(ep.classes) == 3 and len(ep.support) == 9 and len(ep.query) == 6
        assert not set(ep.support) & set(ep.query)
        assert len(set(ep.support)) == 9 and len(set(ep.query)) == 6
        for c in ep.classes:
            assert sorted(targets[i] for i in ep.support).count(c) == 3
            assert {i for i in ep.support if targets[i] == c} <= set(train[c])
            assert {i for i in ep.query if targets[i] == c} <= set(valid[c])
    assert sample_episode(corpus, 0, None, 1, 1, rng).classes == (0, 1, 2, 3)


def _check_exp(exp, method: str, target_dir, labels: list[str]) -> dict:
    for name in ("config.yaml", "labels.txt", "cmvn.ark", "feats.yaml", "model.safetensors",
                 "metrics.csv", "train.log", "pretrain/init.safetensors",
                 "pretrain/metrics.csv"):
        assert (exp / name).is_file(), name
    cfg = yaml.safe_load((exp / "config.yaml").read_text())
    assert cfg["method"] == method and cfg["labels"] == labels and "methods" not in cfg
    packed = load_packed(exp)
    assert packed.labels == labels
    hyp = predict_dump(packed, target_dir, exp / "decode", progress=False)
    assert set(hyp) == set((target_dir / "utt2emo").read_text().split()[::2])
    assert set(hyp.values()) <= set(labels)
    return cfg


def test_fomaml_cli_end_to_end_and_predict(corpora, tmp_path, capsys):
    exp = tmp_path / "fomaml"
    args = ["train-meta", "--config", CONFIG, "--target-train", corpora["train"],
            "--target-valid", corpora["valid"], "--exp", exp, "--method", "fomaml",
            "--shots", "2", "--device", "cpu", "--no-progress"]
    for src in corpora["sources"]:
        args += ["--source", src]
    for o in TINY:
        args += ["--override", o]
    cli(*args)
    assert capsys.readouterr().out.startswith("fomaml: best valid UA ")
    cfg = _check_exp(exp, "fomaml", corpora["valid"], ["angry", "happy", "neutral", "sad"])
    assert cfg["optim"]["name"] == "sgd" and cfg["model"]["conf"]["finetune"] == "all"
    rows = list(csv.DictReader((exp / "pretrain" / "metrics.csv").open()))
    assert [(r["stage"], r["step"]) for r in rows] == [("fomaml", "2"), ("fomaml", "3")]
    assert len((exp / "data" / "target_train" / "utt2emo").read_text().splitlines()) == 12
    init = load_file(str(exp / "pretrain" / "init.safetensors"))
    final = load_file(str(exp / "model.safetensors"))
    assert not any(torch.equal(final[f"net.{k}"], v) for k, v in init.items())  # all tuned
    cli("predict", "--model", exp, "--data", corpora["valid"], "--out-dir", tmp_path / "pred",
        "--no-progress")
    assert capsys.readouterr().out == f"{tmp_path / 'pred'}: 24 utterances\n"


@pytest.mark.parametrize("method", ["transfer", "multitask"])
def test_baselines_end_to_end_dense_fine_tuning(corpora, tmp_path, method):
    labels = ["angry", "happy", "sad"] if method == "multitask" else \
        ["angry", "happy", "neutral", "sad"]
    exp = tmp_path / method
    res = train_meta(tiny_config(method, f"labels={labels}"), corpora["sources"],
                     corpora["train"], corpora["valid"], exp, device="cpu", progress=False)
    assert 0.0 <= res["best_ua"] <= 1.0 and res["pretrain"]["method"] == method
    valid = exp / "data" / "target_valid" if method == "multitask" else corpora["valid"]
    _check_exp(exp, method, valid, labels)
    stages = {r["stage"] for r in csv.DictReader((exp / "pretrain" / "metrics.csv").open())}
    assert stages == ({"transfer:source1", "transfer:source2"} if method == "transfer"
                      else {"multitask"})
    init = load_file(str(exp / "pretrain" / "init.safetensors"))
    final = load_file(str(exp / "model.safetensors"))
    for k, v in init.items():  # LSTM frozen, dense layers fine-tuned
        same = torch.equal(final[f"net.{k}"], v)
        assert same if k.startswith("lstm.") else not same, k


def test_source_errors_are_clear(corpora, tmp_path, capsys):
    unlabelled = tmp_path / "unlabelled"
    shutil.copytree(corpora["sources"][1], unlabelled)
    (unlabelled / "utt2emo").unlink()
    with pytest.raises(SertkError, match=r"source .*unlabelled: no utt2emo"):
        train_meta(tiny_config("fomaml"), [corpora["sources"][0], unlabelled],
                   corpora["train"], corpora["valid"], tmp_path / "e1", device="cpu",
                   progress=False)
    with pytest.raises(SertkError, match=r"class angry has 6 utterances; an episode needs 11 "
                                         r"\(10 support shots \+ 1 query"):
        train_meta(tiny_config("fomaml", "meta.shots=10"), corpora["sources"],
                   corpora["train"], corpora["valid"], tmp_path / "e2", device="cpu",
                   progress=False)
    with pytest.raises(SystemExit) as exit_info:
        cli("train-meta", "--config", CONFIG, "--source", unlabelled, "--target-train",
            corpora["train"], "--exp", tmp_path / "e3", "--no-progress")
    assert exit_info.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("sertk: error: source ") and "no utt2emo" in err[-1]


def test_recipe_trains_meta_ser_from_named_source_corpora(tmp_path):
    """ser.sh --meta_sources: stage 3 is train-meta on the named dump dirs, fine-tuned on each
    fold; stage 4 scores it like any model; a source without features is one clear line."""
    import subprocess

    src = []
    for seed in (3, 4):
        make_corpus(tmp_path / f"wav{seed}", tmp_path / f"data{seed}", num_speakers=2,
                    utts_per_emotion=3, seed=seed, duration=(0.6, 0.9))
        dump(tmp_path / f"data{seed}", tmp_path / f"src{seed}",
             FeatureConfig.load(REPO / "conf/feats/fbank40.yaml"), nj=1, progress=False)
        src.append(str(tmp_path / f"src{seed}"))
    recipe = REPO / "egs" / "mini_emo" / "ser1"
    dirs = f"--datadir {tmp_path}/data --dumpdir {tmp_path}/dump --expdir {tmp_path}/exp"
    tiny = " ".join(f"--override {o}" for o in TINY if not o.startswith("target."))
    base = (f"./run.sh {dirs} --progress false --stop_stage 4 "
            "--local_data_opts '--speakers 6 --utts_per_emotion 2' "
            "--feats_config conf/feats/fbank40.yaml --train_config conf/model/meta_ser.yaml "
            f"--tag meta_mini --train_args '{tiny}'")
    bad = subprocess.run(["bash", "-c", f"{base} --meta_sources '{src[0]} {tmp_path}/none'"],
                         cwd=recipe, capture_output=True, text=True, timeout=600)
    assert bad.returncode != 0
    assert f"meta source {tmp_path}/none: no feats.scp" in bad.stderr
    proc = subprocess.run(["bash", "-c", f"{base} --meta_sources '{' '.join(src)}'"],
                          cwd=recipe, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    exp = tmp_path / "exp" / "meta_mini"
    rows = list(csv.DictReader((exp / "fold1" / "pretrain" / "metrics.csv").open()))
    assert {r["stage"] for r in rows} == {"fomaml"}
    log = (exp / "fold1" / "train.log").read_text()
    assert all(s in log for s in src)
    assert "| **mean ± std** |" in (exp / "RESULTS.md").read_text()
    assert (exp / "fold1" / "decode_test" / "results.json").is_file()
