"""The dimensional task (``task: dimensional``: utt2dim regression, CCC selection, predict /
infer / score) and the auxiliary target tables of every kind (sertk.train.targets)."""

from __future__ import annotations

import copy
import csv
import json

import numpy as np
import pytest
import torch

from sertk.data.datadir import DataDir
from sertk.data.kaldi_table import write_table
from sertk.errors import DataError, SertkError
from sertk.scoring_dim import ccc as np_ccc
from sertk.train.evaluate import dims_from_sums
from sertk.train.targets import build_targets, dim_names, listener_targets
from tests.conftest import TINY_CONFIG, run_sertk

DIM_CONFIG = {**copy.deepcopy(TINY_CONFIG), "task": "dimensional",
              "loss": {"name": "ccc", "weights": [0.4, 0.4, 0.2]}}
DIM_CONFIG["train"]["epochs"] = 3


def _dir(tmp_path, **tables):
    write_table(tmp_path / "utt2spk", {u: "s1" for u in ("u1", "u2", "u3")})
    for name, table in tables.items():
        write_table(tmp_path / name, table)
    return DataDir(tmp_path)


def test_synthetic_corpus_has_dimensions_driven_by_emotion_and_simulated_listeners(corpus):
    d = DataDir(corpus)
    dims = {u: np.array([float(v) for v in r.split()]) for u, r in d.table("utt2dim").items()}
    assert set(dims) == set(d.utts)
    by_emo = {e: np.mean([dims[u] for u, lab in d.utt2emo.items() if lab == e], 0)
              for e in ("sad", "angry", "happy")}
    assert by_emo["angry"][0] > by_emo["sad"][0] + 0.8     # arousal
    assert by_emo["happy"][1] > by_emo["angry"][1] + 0.8   # valence
    listeners = listener_targets(d, "utt2listener_emo", sorted(set(d.utt2emo.values())))
    assert listeners.vocab == ["L1", "L2", "L3", "L4"]
    votes = listeners.batch(d.utts)
    truth = torch.tensor([listeners_label_index(d, u) for u in d.utts])
    agree = [(votes[:, j][votes[:, j] >= 0] == truth[votes[:, j] >= 0]).float().mean()
             for j in range(4)]
    assert agree[0] > agree[3]  # L1 is the most reliable listener, L4 the least


def listeners_label_index(d: DataDir, utt: str) -> int:
    return sorted(set(d.utt2emo.values())).index(d.utt2emo[utt])


def test_class_vector_and_listener_targets(tmp_path):
    d = _dir(tmp_path, utt2gender={"u1": "f", "u2": "m"},
             utt2dim={"u1": "1 2 3", "u2": "4 5 6"},
             utt2listener_emo={"u1": "A:sad B:happy", "u2": "A:odd A:happy C:sad",
                               "u3": "B:sad"})
    g = build_targets(d, "utt2gender", "class", {}, [])
    assert g.vocab == ["f", "m"] and g.batch(["u2", "u3", "u1"]).tolist() == [1, -1, 0]
    v = build_targets(d, "utt2dim", "vector", {}, [])
    out = v.batch(["u2", "u3"])
    assert v.size == 3 and out[0].tolist() == [4, 5, 6] and torch.isnan(out[1]).all()
    lis = build_targets(d, "utt2listener_emo", "listeners", {"listener_min_utts": 2},
                        ["happy", "sad"])
    # A and B label two utterances each; C only one: pooled as "other"; A's unknown "odd"
    # label is passed over for its next one
    assert lis.vocab == ["A", "B", "other"]
    assert lis.batch(["u1", "u2", "u3"]).tolist() == [[1, 0, -1], [0, -1, 1], [-1, 1, -1]]


def test_token_targets_and_bad_tables(tmp_path):
    from sertk.text.tokenizer import train_tokenizer

    (tmp_path / "d").mkdir()
    d = _dir(tmp_path / "d", text={"u1": "hello there", "u2": "the end"},
             utt2dim={"u1": "1 2 3", "u2": "1 nan 3"}, utt2listener_emo={"u1": "A-sad"})
    tok = tmp_path / "tok"
    train_tokenizer(d.path / "text", tok, kind="char")
    t = build_targets(d, "text", "tokens", {"tokenizer": str(tok)}, [])
    ids, lengths = t.batch(["u2", "u3"])
    assert lengths.tolist() == [7, 0] and ids.shape == (2, 7) and (ids[1] == 0).all()
    with pytest.raises(SertkError, match="model.conf.tokenizer"):
        build_targets(d, "text", "tokens", {}, [])
    with pytest.raises(DataError, match="u2: NaN"):
        build_targets(d, "utt2dim", "vector", {}, [])
    with pytest.raises(DataError, match="'A-sad' is not listener:label"):
        build_targets(d, "utt2listener_emo", "listeners", {}, ["sad"])
    with pytest.raises(SertkError, match="needs utt2gender"):
        build_targets(d, "utt2gender", "class", {}, [])
    with pytest.raises(SertkError, match="do not match the 2 columns"):
        dim_names({"dims": ["a", "v", "d"]}, 2)


def test_ccc_from_sums_matches_numpy():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(50, 3)), rng.normal(size=(50, 3))
    y[:, 0] = 0.8 * x[:, 0] + 0.1
    sums = np.stack([np.ones_like(x).sum(0), x.sum(0), y.sum(0), (x * x).sum(0),
                     (y * y).sum(0), (x * y).sum(0)])
    res = dims_from_sums(sums, ["a", "v", "d"])
    for i, n in enumerate("avd"):
        assert res[f"CCC_{n}"] == pytest.approx(np_ccc(x[:, i], y[:, i]), abs=1e-9)
        assert res[f"MSE_{n}"] == pytest.approx(((x[:, i] - y[:, i]) ** 2).mean())
        assert res[f"Pearson_{n}"] == pytest.approx(np.corrcoef(x[:, i], y[:, i])[0, 1])


def test_dimensional_training_predict_score_and_infer(dumped, corpus, tmp_path):
    from sertk.train.trainer import train

    exp = tmp_path / "exp"
    res = train(DIM_CONFIG, dumped / "fold1" / "train", dumped / "fold1" / "dev", exp,
                device="cpu", progress=False)
    rows = list(csv.DictReader((exp / "metrics.csv").open()))
    assert len(rows) == 3 and "valid_CCC_valence" in rows[0] and "valid_UA" not in rows[0]
    assert res["best_ua"] == pytest.approx(max(float(r["valid_CCC"]) for r in rows), abs=1e-4)
    assert float(rows[-1]["train_loss"]) < float(rows[0]["train_loss"])
    assert (exp / "labels.txt").read_text().split() == ["arousal", "valence", "dominance"]
    assert "best valid CCC" in (exp / "train.log").read_text()
    run_sertk("predict", "--model", str(exp), "--data", str(dumped / "fold1" / "test"),
              "--out-dir", str(tmp_path / "dec"), "--no-progress")
    hyp = (tmp_path / "dec" / "hyp.txt").read_text().splitlines()
    assert len(hyp) == 24 and len(hyp[0].split()) == 4
    out = run_sertk("score", "--dim", "--ref", str(dumped / "fold1" / "test" / "utt2dim"),
                    "--hyp", str(tmp_path / "dec" / "hyp.txt"), "--out-dir",
                    str(tmp_path / "score")).stdout
    assert "arousal: CCC" in out and (tmp_path / "score" / "scatter.png").is_file()
    wav = DataDir(corpus).wav_scp["spk01_happy_00"]
    (tmp_path / "list").write_text(wav + "\n")
    rec = json.loads(run_sertk("infer", "--model", str(exp), "--wav-list",
                               str(tmp_path / "list"), "--no-progress").stdout)
    assert set(rec["dims"]) == {"arousal", "valence", "dominance"} and "label" not in rec


def test_dimensional_task_needs_a_regression_loss_and_utt2dim(dumped, tmp_path):
    from sertk.train.trainer import train

    bad = {**DIM_CONFIG, "loss": {"name": "ce"}}
    with pytest.raises(SertkError, match="loss ce does not fit task dimensional"):
        train(bad, dumped / "fold1" / "train", None, tmp_path / "e1", device="cpu",
              progress=False)
    with pytest.raises(SertkError, match="loss ccc does not fit task categorical"):
        train({**TINY_CONFIG, "loss": {"name": "ccc"}}, dumped / "fold1" / "train", None,
              tmp_path / "e2", device="cpu", progress=False)


def test_svr_fusion_folds_fuses_two_recipe_runs(dumped, tmp_path):
    """bin/svr_fusion_folds.sh on two dimensional runs laid out as a recipe's exp/<tag>."""
    import os
    import subprocess
    import sys

    from sertk.train.trainer import train
    from tests.conftest import REPO

    roots = []
    for seed in (1, 2):
        exp = tmp_path / f"exp{seed}" / "fold1"
        cfg = {**DIM_CONFIG, "train": {**DIM_CONFIG["train"], "seed": seed}}
        train(cfg, dumped / "fold1" / "train", dumped / "fold1" / "dev", exp, device="cpu",
              progress=False)
        run_sertk("predict", "--model", str(exp), "--data", str(dumped / "fold1" / "test"),
                  "--out-dir", str(exp / "decode_test"), "--no-progress")
        roots.append(f"{exp.parent}={dumped}")
    env = {**os.environ,
           "PATH": f"{REPO / 'bin'}:{os.path.dirname(sys.executable)}:{os.environ['PATH']}"}
    script = str(REPO / "bin" / "svr_fusion_folds.sh")
    out = tmp_path / "fused"
    proc = subprocess.run([script, "--stages", "2", str(out), *roots], capture_output=True,
                          text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "stage 2: dev CCC (cross-fitted)" in proc.stdout
    assert (tmp_path / "exp1" / "fold1" / "decode_dev" / "hyp.txt").is_file()
    hyp = (out / "fold1" / "hyp.txt").read_text().splitlines()
    assert len(hyp) == 24 and len(hyp[0].split()) == 4
    table = (out / "RESULTS.md").read_text()
    assert "CCC arousal" in table and "svr_fusion_folds.sh --stages 2" in table
    assert "| fold1 |" in table  # rows named by fold
    bad = subprocess.run([script, str(out), roots[0], f"{tmp_path / 'nope'}={dumped}"],
                         capture_output=True, text=True, env=env)
    assert bad.returncode == 1
    assert bad.stderr.strip() == f"svr_fusion_folds.sh: no experiment directory {tmp_path / 'nope'}"
