"""The training pipeline of issue 13: uniformly shuffled batches, fixed-length training crops
(short items tiled), bfloat16 autocast and channels-last convolutions, and a recipe that trains
on train + dev, two folds side by side, with one dev speaker and utterances under 1 s."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from sertk.data.dataset import FeatsDataset
from sertk.data.sampler import BucketBatchSampler
from tests.conftest import REPO
from tests.test_recipes import bash

LABELS = ["angry", "happy", "neutral", "sad"]


def test_uniform_batches_mix_lengths_and_change_every_epoch():
    # duration correlated with the class, as in acted corpora; fewer items than one pool
    lengths = [100 + 50 * (i % 4) + (7 * i) % 13 for i in range(96)]
    bucketed = BucketBatchSampler(lengths, 8, shuffle=True, seed=0, bucket_pools=50)
    uniform = BucketBatchSampler(lengths, 8, shuffle=True, seed=0, bucket_pools=0)

    def pairs(sampler, epoch):
        sampler.set_epoch(epoch)
        return {(i, j) for b in sampler for i in b for j in b if i < j}

    def kept(sampler):  # share of the pairs batched together in epoch 1 that are again in 2
        return len(pairs(sampler, 1) & pairs(sampler, 2)) / len(pairs(sampler, 1))

    def spread(sampler):
        return np.mean([np.ptp([lengths[i] for i in b]) for b in sampler])

    for s in (bucketed, uniform):
        assert sorted(i for b in s for i in b) == list(range(96))
    # a pool larger than the set sorts the whole set: nearly the same batches every epoch
    assert kept(bucketed) > 0.3 and kept(uniform) < 0.2
    assert spread(uniform) > 3 * spread(bucketed)


def test_repeat_crop_tiles_short_items_to_the_crop_length(dumped):
    train = dumped / "fold1" / "train"
    n = min(FeatsDataset(train, LABELS).lengths)
    crop = n + 37  # longer than the shortest utterance
    ds = FeatsDataset(train, LABELS, crop_frames=crop, crop_pad="repeat", seed=1)
    masked = FeatsDataset(train, LABELS, crop_frames=crop, crop_pad="mask", seed=1)
    i = int(np.argmin(ds.lengths))
    key, feats, _ = ds[i]
    full = torch.from_numpy(np.array(ds.load(i)))
    assert feats.shape[0] == crop == ds.effective_length(i)
    assert torch.equal(feats[:n], full) and torch.equal(feats[n:crop], full[:crop - n])
    assert masked[i][1].shape[0] == n == masked.effective_length(i)
    for j in range(len(ds)):  # long items: a window of exactly crop frames
        assert ds[j][1].shape[0] == crop
    with pytest.raises(Exception, match="crop_pad"):
        FeatsDataset(train, LABELS, crop_frames=crop, crop_pad="zeros")


def test_autocast_dtype_choices():
    from sertk.errors import SertkError
    from sertk.train.trainer import autocast_dtype

    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert autocast_dtype(True, cpu) is None and autocast_dtype(False, cuda) is None
    assert autocast_dtype(True, cuda) == torch.float16
    assert autocast_dtype("bf16", cuda) == torch.bfloat16
    native = torch.cpu._is_avx512_bf16_supported()
    assert autocast_dtype("bf16", cpu) == (torch.bfloat16 if native else None)
    with pytest.raises(SertkError, match="train.amp"):
        autocast_dtype("fp8", cpu)


def test_bf16_channels_last_training_gives_a_float32_model(dumped, tmp_path):
    from safetensors.torch import load_file

    from sertk.train.trainer import train

    cfg = {"model": {"name": "cnn_asp", "conf": {"channels": [8, 8], "freq_pool": "flatten",
                                                 "att_hidden": 0, "embed_dim": 0}},
           "optim": {"name": "adamw", "lr": 0.003},
           "train": {"epochs": 2, "batch_size": 8, "seed": 3, "crop_frames": 120,
                     "crop_pad": "repeat", "bucket_pools": 0, "select": "last",
                     "amp": "bf16", "channels_last": True}}
    res = train(cfg, dumped / "fold1" / "train", dumped / "fold1" / "dev", tmp_path / "e",
                device="cpu", progress=False)
    assert 0.0 <= res["best_ua"] <= 1.0
    weights = load_file(str(tmp_path / "e" / "model.safetensors"))
    assert all(w.dtype == torch.float32 for w in weights.values() if w.is_floating_point())


def test_channels_last_model_computes_the_same_function():
    from sertk.models.classifier import EmotionClassifier

    torch.manual_seed(0)
    a = EmotionClassifier("cnn_asp", 40, 4, {"channels": [8, 16], "freq_pool": "flatten"})
    b = EmotionClassifier("cnn_asp", 40, 4, {"channels": [8, 16], "freq_pool": "flatten"})
    b.load_state_dict(a.state_dict())
    b = b.to(memory_format=torch.channels_last)
    a.eval(), b.eval()
    x, lengths = torch.randn(3, 57, 40), torch.tensor([57, 40, 21])
    torch.testing.assert_close(a(x, lengths), b(x, lengths), rtol=1e-4, atol=1e-5)


def test_recipe_short_utterances_one_dev_speaker_train_on_dev_two_folds(tmp_path):
    """Utterances of 0.3-0.9 s (shorter than the 300-frame crop), one dev speaker, training on
    train + dev, two folds trained side by side: the recipe runs and beats chance."""
    recipe = REPO / "egs" / "mini_emo" / "ser1"
    dirs = f"--datadir {tmp_path}/data --dumpdir {tmp_path}/dump --expdir {tmp_path}/exp"
    proc = bash(f"./run.sh {dirs} --progress false --stop_stage 6 --tag short "
                "--local_data_opts '--folds 2 --dev_speakers 1 --min_dur 0.3 --max_dur 0.9' "
                "--train_config conf/model/cnn_asp_ref.yaml "
                "--feats_config conf/feats/logmel64.yaml --train_on_dev true --fold_jobs 2 "
                "--train_args '--override train.epochs=6 "
                "--override model.conf.channels=[16,16,32,32]'",
                recipe)
    out = proc.stdout + proc.stderr
    assert "fold1: train 168, dev 24, test 48" in out  # one dev speaker of 24 utterances
    assert "fold1 train_dev set: 192 utterances" in out
    m = re.search(r"2 folds: UA ([\d.]+)", out)
    assert m and float(m.group(1)) > 40.0, out[-3000:]  # chance is 25
    durs = [float(v.split()[1]) for v in (tmp_path / "data" / "all" / "utt2dur").read_text()
            .splitlines()]
    assert max(durs) < 1.0
    for f in ("fold1", "fold2"):
        assert (tmp_path / "exp" / "short" / f / "decode_test" / "confusion.png").is_file()
    # stage 6: a final model on all 10 speakers, no validation set
    assert "stage 6 done" in out and "(240 utterances of 10 speakers)" in out
    from sertk.infer.packed import load_packed

    final = load_packed(tmp_path / "exp" / "short" / "final" / "model.zip")
    assert final.labels == ["angry", "happy", "neutral", "sad"]


def test_training_without_validation_set_needs_last_or_average(dumped, tmp_path):
    import csv

    from sertk.errors import SertkError
    from sertk.train.trainer import train

    cfg = {"model": {"name": "cnn_asp", "conf": {"channels": [8, 8]}},
           "optim": {"name": "adam", "lr": 0.003},
           "train": {"epochs": 2, "batch_size": 8, "seed": 3}}
    with pytest.raises(SertkError, match="select: last or average"):
        train(cfg, dumped / "fold1" / "train", None, tmp_path / "a", device="cpu",
              progress=False)
    cfg["train"]["select"] = "average"
    train(cfg, dumped / "fold1" / "train", None, tmp_path / "b", device="cpu", progress=False)
    rows = list(csv.DictReader((tmp_path / "b" / "metrics.csv").open()))
    assert len(rows) == 2 and rows[0]["valid_UA"] == "nan"
    assert (tmp_path / "b" / "model.safetensors").is_file()


def test_selection_on_validation_utterances_that_are_trained_on_is_refused(dumped, tmp_path):
    from sertk.errors import SertkError
    from sertk.train.trainer import train

    cfg = {"model": {"name": "cnn_asp", "conf": {"channels": [8, 8]}},
           "optim": {"name": "adam", "lr": 0.003},
           "train": {"epochs": 1, "batch_size": 8, "seed": 3, "select": "best"}}
    fold = dumped / "fold1"
    with pytest.raises(SertkError, match="validation utterances are training utterances"):
        train(cfg, fold / "train", fold / "train", tmp_path / "a", device="cpu", progress=False)
    cfg["train"]["select"] = "last"  # a fixed budget may monitor seen data
    train(cfg, fold / "train", fold / "train", tmp_path / "b", device="cpu", progress=False)
    cfg["train"]["select"] = "best"  # disjoint sets: selection is fine
    train(cfg, fold / "train", fold / "dev", tmp_path / "c", device="cpu", progress=False)
    assert (tmp_path / "c" / "model.safetensors").is_file()


def test_every_pipeline_difference_row_trains(dumped, tmp_path):
    """local/pipeline_diffs.sh's rows (issue 13's paired table): each one's training
    overrides, applied to conf/model/cnn_asp_ref.yaml, give a config the trainer runs."""
    import shlex

    import yaml

    from sertk.config import apply_overrides
    from sertk.train.trainer import train

    recipe = REPO / "egs" / "ravdess" / "ser1"
    out = bash("local/pipeline_diffs.sh --dry_run true --expdir /nonexistent", recipe).stdout
    commands = [shlex.split(ln) for ln in out.splitlines() if ln.startswith("./run.sh")]
    assert len(commands) >= 9 and all("--tag" in c for c in commands)
    base = yaml.safe_load((recipe / "conf" / "model" / "cnn_asp_ref.yaml").read_text())
    base["model"]["conf"]["channels"] = [8, 8, 8, 8]
    base["train"].update(epochs=1, amp=False, channels_last=False)
    tried = 0
    for cmd in commands:
        if "--train_args" not in cmd:
            continue
        # ser.sh passes $train_args unquoted: split on whitespace, quotes kept (not shlex)
        overrides = cmd[cmd.index("--train_args") + 1].split()[1::2]
        cfg = apply_overrides(base, overrides)
        tag = cmd[cmd.index("--tag") + 1]
        res = train(cfg, dumped / "fold1" / "train", dumped / "fold1" / "dev", tmp_path / tag,
                    device="cpu", progress=False)
        assert 0.0 <= res["best_ua"] <= 1.0, tag
        tried += 1
    assert tried >= 6


def test_ensemble_members_differ_and_evaluation_averages_posteriors(dumped, tmp_path):
    from sertk.infer.packed import load_packed, pack
    from sertk.models.classifier import EmotionClassifier
    from sertk.models.info import info
    from sertk.train.trainer import train

    conf = {"channels": [8, 8], "freq_pool": "flatten"}
    torch.manual_seed(0)
    m = EmotionClassifier("cnn_asp", 40, 4, conf, members=3)
    a, b = (m.net.members[i].out.weight for i in (0, 1))
    assert not torch.equal(a, b)  # each member has its own initialisation
    x, lengths = torch.randn(2, 50, 40), torch.tensor([50, 31])
    assert m(x, lengths).shape == (3, 2, 4)  # training: one set of logits per member
    m.eval()
    mean_post = torch.stack([torch.softmax(k(m.cmvn(x), lengths), -1)
                             for k in m.net.members]).mean(0)
    torch.testing.assert_close(m(x, lengths).exp(), mean_post)

    cfg = {"model": {"name": "cnn_asp", "members": 2, "conf": conf},
           "optim": {"name": "adam", "lr": 0.003},
           "train": {"epochs": 2, "batch_size": 8, "seed": 3, "select": "last"}}
    exp = tmp_path / "ens"
    res = train(cfg, dumped / "fold1" / "train", dumped / "fold1" / "dev", exp, device="cpu",
                progress=False)
    assert 0.0 <= res["best_ua"] <= 1.0
    packed = load_packed(pack(exp, tmp_path / "ens.zip"))
    assert len(packed.model.net.members) == 2
    torch.testing.assert_close(packed.model(x, lengths).exp().sum(-1), torch.ones(2))
    one = info(str(REPO / "conf" / "model" / "cnn_asp_ref.yaml"))
    (tmp_path / "ens.yaml").write_text(
        (REPO / "conf" / "model" / "cnn_asp_ref.yaml").read_text().replace(
            "  name: cnn_asp\n", "  name: cnn_asp\n  members: 3\n").replace(
            "feats: conf/", f"feats: {REPO}/conf/"))
    three = info(str(tmp_path / "ens.yaml"))
    assert three["params"] == 3 * one["params"]
    assert abs(three["mflops"] - 3 * one["mflops"]) < 0.01 * three["mflops"]
