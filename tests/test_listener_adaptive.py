"""listener_adaptive (Ando et al., ICASSP 2021): adaptive variants, the majority estimate, the
weighted listener loss, and the listener-dependent / majority scoring."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from sertk.errors import SertkError
from sertk.models import build
from sertk.models.listener_adaptive import TABLE, ListenerAdaptive, listener_pair_weights
from sertk.scoring_listeners import (
    listener_pairs,
    score_listener_task,
    score_majority_task,
    summary_lines,
)
from tests.model_checks import check_forward_backward, check_padding_invariance

TINY = {"channels": [4, 4, 4], "lstm_hidden": 8, "att_dim": 8, "fc_dims": [8, 8],
        "listener_dim": 3}
VARIANTS = [["afc"], ["alstm"], ["acnn"], ["afc", "alstm", "acnn"]]


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models: one thread is faster, and much faster on a busy machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny(adapt: list[str] | str = "afc", listeners: int = 3, classes: int = 4,
         **kw) -> ListenerAdaptive:
    return build("listener_adaptive", input_dim=24, num_classes=classes,
                 aux_classes={TABLE: listeners}, adapt=adapt, **{**TINY, **kw})


def batch() -> tuple[torch.Tensor, torch.Tensor]:
    return torch.randn(3, 30, 24), torch.tensor([30, 19, 6])


@pytest.mark.parametrize("adapt", VARIANTS, ids="+".join)
def test_variants_train_are_padding_invariant_and_listener_specific(adapt):
    torch.manual_seed(0)
    net = tiny(adapt)
    x, lengths = batch()
    check_forward_backward(net, x, lengths, num_classes=4)
    check_padding_invariance(net, x, lengths, extra_frames=13)
    with torch.no_grad():
        post = net.listener_posteriors(x, lengths)
        assert post.shape == (3, 3, 4)
        assert (post[:, 0] - post[:, 1]).abs().max() > 1e-4  # other code, other posterior
        net.embed.weight[1] = net.embed.weight[0]  # listener 1 gets listener 0's code
        same = net.listener_posteriors(x, lengths)
    torch.testing.assert_close(same[:, 1], same[:, 0])
    torch.testing.assert_close(same[:, 2], post[:, 2])


def test_majority_output_is_log_mean_of_listener_posteriors():
    torch.manual_seed(0)
    net = tiny(["afc", "acnn"]).eval()
    x, lengths = batch()
    with torch.no_grad():
        out, post = net(x, lengths), net.listener_posteriors(x, lengths)
    torch.testing.assert_close(out.exp(), post.mean(1))
    torch.testing.assert_close(torch.softmax(out, -1), post.mean(1))
    assert net.emotion_loss_weight == 0.0 and net.select_on_valid
    assert tiny(majority_weight=0.5).emotion_loss_weight == 0.5


def test_pair_weights_follow_the_formula():
    counts = torch.tensor([[3.0, 1.0, 0.0], [0.0, 2.0, 2.0]])  # N = 8, n(l) = 4, 4
    # w(l, c) = n(l) / n(l, c) * N / n(l); an empty cell divides by 1
    expected = torch.tensor([[4 / 3 * 2, 4 / 1 * 2, 4 / 1 * 2], [4 / 1 * 2, 4 / 2 * 2, 4 / 2 * 2]])
    torch.testing.assert_close(listener_pair_weights(counts), expected)
    # unequal listeners: n(l) = 2, 6, N = 8
    counts = torch.tensor([[1.0, 1.0, 0.0], [0.0, 2.0, 4.0]])
    expected = torch.tensor([[2 / 1 * 4, 2 / 1 * 4, 2 * 4], [6 * 4 / 3, 6 / 2 * 4 / 3,
                                                               6 / 4 * 4 / 3]])
    torch.testing.assert_close(listener_pair_weights(counts), expected)


def test_auxiliary_loss_ignores_missing_labels_and_is_weighted():
    torch.manual_seed(0)
    counts = [[3, 1, 0], [0, 2, 2]]
    net = tiny(listeners=2, classes=3, listener_class_counts=counts).eval()
    x, lengths = torch.randn(2, 20, 24), torch.tensor([20, 11])
    with torch.no_grad():
        net(x, lengths)
        logp = net._last_logp.clone()
        target = torch.tensor([[0, 2], [1, -1]])
        loss = net.auxiliary_loss({TABLE: target})
    # labelled pairs (utt, listener, class) and their hand-computed weights
    pairs = [(0, 0, 0, 8 / 3), (0, 1, 2, 4.0), (1, 0, 1, 8.0)]
    nll = [-float(logp[b, li, c]) for b, li, c, _ in pairs]
    w = [p[3] for p in pairs]
    assert float(loss) == pytest.approx(np.dot(w, nll) / sum(w), rel=1e-5)
    # no label at all: zero, still connected to the graph
    net.train()
    net(x, lengths)
    empty = net.auxiliary_loss({TABLE: torch.full((2, 2), -1)})
    assert float(empty.detach()) == 0.0 and empty.requires_grad
    torch.testing.assert_close(net.listener_counts, torch.tensor(counts, dtype=torch.float32))


def test_counts_accumulate_from_training_batches_only():
    torch.manual_seed(0)
    net = tiny(listeners=2, classes=3)
    x, lengths = torch.randn(2, 20, 24), torch.tensor([20, 11])
    target = torch.tensor([[0, 2], [0, -1]])
    net(x, lengths)
    net.auxiliary_loss({TABLE: target}).backward()
    expected = torch.tensor([[2.0, 0, 0], [0, 0, 1]])
    torch.testing.assert_close(net.listener_counts, expected)
    net.eval()
    with torch.no_grad():
        net(x, lengths)
        net.auxiliary_loss({TABLE: target})
    torch.testing.assert_close(net.listener_counts, expected)  # validation does not count
    assert "listener_counts" in net.state_dict()


def test_loss_decreases_on_a_fixed_batch():
    torch.manual_seed(0)
    net = tiny(listeners=3, classes=3, dropout=0.0)
    x, lengths = torch.randn(4, 20, 24), torch.tensor([20, 17, 12, 8])
    target = torch.tensor([[0, 1, -1], [2, 2, 1], [-1, 0, 0], [1, -1, 2]])
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    losses = []
    for _ in range(25):
        opt.zero_grad()
        net(x, lengths)
        loss = net.auxiliary_loss({TABLE: target})
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.5 * losses[0], losses


def test_bad_options_are_one_line_errors():
    with pytest.raises(SertkError, match="adapt must name one or more of afc, alstm, acnn"):
        tiny(["afc", "xfc"])
    with pytest.raises(SertkError, match="listener_class_counts must be 2 rows"):
        tiny(listeners=2, classes=3, listener_class_counts=[[1, 2, 3]])
    net = tiny(listeners=2)
    net(*batch())
    with pytest.raises(SertkError, match="do not match the model's 2 listeners"):
        net.auxiliary_loss({TABLE: torch.zeros(3, 5, dtype=torch.long)})


# ---------------------------------------------------------------------------- scoring
LABELS = ["ang", "hap", "neu"]
LISTENERS = ["A", "B", "other"]


def hand_posteriors() -> dict[str, np.ndarray]:
    """Two utterances, posteriors [listener A, B, other] x [ang, hap, neu]."""
    return {"u1": np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6]]),
            "u2": np.array([[0.1, 0.1, 0.8], [0.3, 0.3, 0.4], [0.5, 0.4, 0.1]])}


def test_listener_pairs_map_unseen_to_other_and_count_skips():
    refs = {"u1": [("A", "ang"), ("B", "ang"), ("C", "neu"), ("A", "hap")],
            "u2": [("A", "neu"), ("B", "fru"), ("D", "ang")],
            "u3": [("A", "hap")]}
    pairs = listener_pairs(refs, LISTENERS, LABELS, utts_with_feats={"u1", "u2"})
    assert list(zip(pairs.utts, pairs.slots, pairs.labels)) == [
        ("u1", 0, 0), ("u1", 1, 0), ("u1", 2, 2), ("u2", 0, 2), ("u2", 2, 0)]
    assert pairs.mapped_to_other == 2
    assert pairs.skipped == Counter(repeated_label=1, label_not_in_model=1, no_features=1)
    no_other = listener_pairs(refs, ["A", "B"], LABELS, utts_with_feats={"u1", "u2"})
    assert no_other.skipped["unseen_listener"] == 2 and no_other.mapped_to_other == 0


def test_listener_and_majority_tasks_on_hand_made_posteriors():
    refs = {"u1": [("A", "ang"), ("B", "ang"), ("C", "neu")],
            "u2": [("A", "neu"), ("D", "ang")]}
    post = hand_posteriors()
    res = score_listener_task(post, listener_pairs(refs, LISTENERS, LABELS), LISTENERS, LABELS)
    # hyps: u1/A ang (ok), u1/B hap (ref ang), u1/other neu (ok), u2/A neu (ok),
    # u2/other ang (ok): ang recall 2/3, neu 2/2 -> UA 5/6; WA 4/5
    assert res["num_pairs"] == 5
    assert res["UA"] == pytest.approx(5 / 6) and res["WA"] == pytest.approx(4 / 5)
    assert res["per_listener"]["B"] == {"num_pairs": 1, "UA": 0.0, "WA": 0.0}
    assert res["per_listener"]["A"]["UA"] == pytest.approx(1.0)
    assert res["mapped_to_other"] == 2 and res["skipped"] == {}
    # majority: u1 mean [1/3, 0.4, 4/15] -> hap; u2 mean [0.3, 4/15, 13/30] -> neu
    maj = score_majority_task(post, {"u1": "hap", "u2": "ang"}, LABELS)
    assert maj["WA"] == pytest.approx(0.5) and maj["UA"] == pytest.approx(0.5)
    lines = summary_lines({"listener_dependent": res, "majority": maj})
    assert lines[0].startswith("listener-dependent: UA 83.33  WA 80.00")
    assert "5 pairs; 2 mapped to other; skipped: none" in lines[0]
    assert lines[1].startswith("majority: UA 50.00  WA 50.00")


def test_score_listeners_on_an_experiment_dir(tmp_path, capsys):
    """A hand-made experiment directory and dump directory, scored by bin/score_listeners.py
    as the model itself would: listener posteriors for the pairs, mean for the majority."""
    import importlib.util

    import kaldiio
    import yaml

    from sertk.models.classifier import EmotionClassifier
    from sertk.train.checkpoint import save_weights

    torch.manual_seed(0)
    conf = {"adapt": ["afc"], **TINY}
    model = EmotionClassifier("listener_adaptive", 24, 3, conf, aux_classes={TABLE: 3}).eval()
    exp, dump = tmp_path / "exp", tmp_path / "dump"
    (exp / "aux").mkdir(parents=True)
    dump.mkdir()
    save_weights(model, exp / "model.safetensors")
    (exp / "config.yaml").write_text(yaml.safe_dump(
        {"model": {"name": "listener_adaptive", "conf": conf}, "input_dim": 24,
         "aux_classes": {TABLE: 3}}))
    (exp / "feats.yaml").write_text("name: fbank\nnum_mel_bins: 24\n")
    (exp / "labels.txt").write_text("\n".join(LABELS) + "\n")
    (exp / "aux" / f"{TABLE}.txt").write_text("\n".join(LISTENERS) + "\n")
    feats = {f"u{i}": np.random.default_rng(i).normal(size=(12 + 5 * i, 24)).astype(np.float32)
             for i in range(4)}
    with kaldiio.WriteHelper(f"ark,scp:{dump}/feats.ark,{dump}/feats.scp") as w:
        for utt, mat in feats.items():
            w(utt, mat)
    (dump / "utt2spk").write_text("".join(f"{u} s\n" for u in feats))
    (dump / "utt2emo").write_text("u0 ang\nu1 hap\nu2 neu\nu3 ang\n")
    (dump / TABLE).write_text("u0 A:ang B:hap\nu1 A:hap Z:neu\nu2 B:neu A:fru\nu3 C:ang\n")
    spec = importlib.util.spec_from_file_location("score_listeners",
                                                  Path(__file__).parents[1] / "bin" /
                                                  "score_listeners.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    assert script.main([str(exp), str(dump), str(tmp_path / "res.json")]) == 0
    printed = capsys.readouterr().out.splitlines()
    res = json.loads((tmp_path / "res.json").read_text())
    assert printed == summary_lines(res)
    with torch.no_grad():
        post = {u: model.net.listener_posteriors(model.cmvn(torch.from_numpy(m)[None]),
                                                 torch.tensor([len(m)]))[0].numpy()
                for u, m in feats.items()}
    refs = {"u0": [("A", "ang"), ("B", "hap")], "u1": [("A", "hap"), ("Z", "neu")],
            "u2": [("B", "neu"), ("A", "fru")], "u3": [("C", "ang")]}
    expected = score_listener_task(post, listener_pairs(refs, LISTENERS, LABELS), LISTENERS,
                                   LABELS)
    ld = res["listener_dependent"]
    assert ld["num_pairs"] == 6 and ld["mapped_to_other"] == 2
    assert ld["skipped"] == {"label_not_in_model": 1}
    assert ld["confusion"] == expected["confusion"] and ld["UA"] == expected["UA"]
    majority = score_majority_task(post, {"u0": "ang", "u1": "hap", "u2": "neu", "u3": "ang"},
                                   LABELS)
    assert res["majority"]["confusion"] == majority["confusion"]
    assert script.main([str(exp), str(dump / "nope"), str(tmp_path / "x.json")]) == 1
    assert "score_listeners.py: error: data directory not found" in capsys.readouterr().err
    # fold aggregation, as recipe stage 4 runs it
    other = tmp_path / "res2.json"
    second = dict(res, listener_dependent=dict(ld, UA=ld["UA"] + 0.1))
    other.write_text(json.dumps(second))
    assert script.main(["--aggregate", str(tmp_path / "agg.json"), str(tmp_path / "res.json"),
                        str(other)]) == 0
    agg = json.loads((tmp_path / "agg.json").read_text())
    assert agg["num_folds"] == 2
    assert agg["listener_dependent"]["UA"]["mean"] == pytest.approx(ld["UA"] + 0.05)
    assert agg["listener_dependent"]["UA"]["std"] == pytest.approx(0.05)
    assert capsys.readouterr().out.startswith("2 folds, listener-dependent: UA ")
    assert script.main(["--aggregate", str(tmp_path / "a.json"), str(tmp_path / "no.json")]) == 1
    assert "cannot read listener results" in capsys.readouterr().err


def test_recipe_scores_both_tasks_per_fold_and_over_folds(tmp_path):
    """Recipe stage 4 runs bin/score_listeners.py for a listener-adaptive model: per-fold
    listeners.json and the fold aggregation in RESULTS.md (synthetic listeners L1-L4)."""
    import subprocess

    recipe = Path(__file__).parents[1] / "egs" / "mini_emo" / "ser1"
    dirs = f"--datadir {tmp_path}/data --dumpdir {tmp_path}/dump --expdir {tmp_path}/exp"
    cmd = (f"./run.sh {dirs} --progress false --stop_stage 4 --tag la_mini "
           "--local_data_opts '--speakers 6 --utts_per_emotion 2' "
           "--feats_config conf/feats/fbank40.yaml "
           "--train_config conf/model/listener_adaptive.yaml "
           "--train_args '--override train.epochs=1 --override model.conf.listener_min_utts=10 "
           "--override model.conf.lstm_hidden=16 --override model.conf.fc_dims=[16,16]'")
    proc = subprocess.run(["bash", "-c", cmd], cwd=recipe, capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    exp = tmp_path / "exp" / "la_mini"
    res = json.loads((exp / "fold1" / "decode_test" / "listeners.json").read_text())
    assert res["listener_dependent"]["num_pairs"] > 16 and res["majority"]["num_utts"] == 16
    assert (exp / "fold1" / "aux" / f"{TABLE}.txt").read_text().split() == ["L1", "L2", "L3",
                                                                           "L4"]
    text = (exp / "RESULTS.md").read_text()
    assert "1 folds, listener-dependent: UA " in text and "1 folds, majority: UA " in text
