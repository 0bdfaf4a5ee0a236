"""Dialogue context (IAAN; ar_gru and maec): each utterance's previous turn by the same speaker
and by the interlocutor, as feature tables of the dump that subsets carry and models read."""

from __future__ import annotations

import kaldiio
import numpy as np
import pytest
import torch

from sertk.data.datadir import DataDir, subset, validate
from sertk.data.dialog import PREV_OTHER, PREV_SELF, previous_turns, write_context_tables
from sertk.data.inputs import build_inputs
from sertk.errors import DataError


def test_previous_turns_of_a_dialogue():
    spk = {"a1": "A", "b2": "B", "a3": "A", "a4": "A", "b5": "B", "c1": "C"}
    dialog = {"a1": "d1 1", "b2": "d1 2", "a3": "d1 3", "a4": "d1 4", "b5": "d1 5",
              "c1": "d2 1"}
    assert previous_turns(dialog, spk) == {
        "a1": (None, None), "b2": (None, "a1"), "a3": ("a1", "b2"), "a4": ("a3", "b2"),
        "b5": ("b2", "a4"), "c1": (None, None)}
    with pytest.raises(DataError, match="dialogue d1 has turn 2 twice"):
        previous_turns({**dialog, "a3": "d1 2"}, spk)
    with pytest.raises(DataError, match="utterance a3: turn 'x' is not an integer"):
        previous_turns({**dialog, "a3": "d1 x"}, spk)


def test_dump_writes_context_tables_that_subsets_keep(dumped, tmp_path):
    all_dir = DataDir(dumped / "all")
    feats = all_dir.table("feats.scp")
    turns = previous_turns(all_dir.table("utt2dialog"), all_dir.utt2spk)
    prev_self, prev_other = all_dir.table(PREV_SELF), all_dir.table(PREV_OTHER)
    assert set(prev_self) == set(prev_other) == set(feats)
    for utt, (s, o) in turns.items():
        assert prev_self[utt] == (feats[s] if s else "-")
        assert prev_other[utt] == (feats[o] if o else "-")
    assert sum(v == "-" for v in prev_other.values()) < len(feats) / 2
    # a fold's test set keeps its contexts, even those of speakers outside it
    test = DataDir(dumped / "fold1" / "test")
    assert test.table(PREV_SELF) == {u: prev_self[u] for u in test.utts}
    validate(dumped / "fold1" / "test", check_audio=False)
    tables = build_inputs(test.path, {PREV_SELF: "context", PREV_OTHER: "context"}, test.utts)
    keys = test.utts[:4]
    x, n = tables[PREV_OTHER].batch(keys)
    for i, k in enumerate(keys):
        want = (kaldiio.load_mat(prev_other[k]) if prev_other[k] != "-"
                else np.zeros((0, 40)))
        assert n[i] == len(want) and np.allclose(x[i, :n[i]].numpy(), want)
        assert not x[i, n[i]:].any()
    assert x.shape[-1] == 40


def test_context_table_errors(dumped, tmp_path):
    sub = subset(dumped / "all", tmp_path / "sub", utts=DataDir(dumped / "all").utts[:6])
    (sub / "utt2dialog").write_text("ghost d9 1\n" + (sub / "utt2dialog").read_text())
    with pytest.raises(DataError, match="1 utterance\\(s\\) without features, first ghost"):
        write_context_tables(sub)
    (sub / "feat_dim").unlink()
    with pytest.raises(DataError, match="no feat_dim"):
        build_inputs(sub, {PREV_SELF: "context"}, DataDir(sub).utts)
    (sub / "utt2dialog").unlink()
    assert write_context_tables(sub) is None  # no dialogues: nothing to write


def test_context_inputs_are_normalised_like_the_features():
    from sertk.features.cmvn import GlobalCMVN
    from sertk.models.classifier import EmotionClassifier

    net = EmotionClassifier("ar_gru", 3, 2, {"hidden": 4, "context": True},
                            cmvn=GlobalCMVN(np.full(3, 2.0), np.full(3, 4.0)))
    seen = {}
    inner = net.net.forward

    def spy(x, lengths, inputs=None):
        seen.update(inputs)
        return inner(x, lengths, inputs=inputs)

    net.net.forward = spy
    ctx = torch.full((1, 2, 3), 6.0)
    net.eval()(torch.full((1, 2, 3), 6.0), torch.tensor([2]),
               inputs={PREV_SELF: (ctx, torch.tensor([2])),
                       PREV_OTHER: (torch.zeros(1, 0, 3), torch.tensor([0]))})
    assert torch.allclose(seen[PREV_SELF][0], torch.ones(1, 2, 3))  # (6 - 2) / 4


def test_context_model_trains_predicts_and_packs(corpus, dumped, tmp_path):
    """ar_gru with the dialogue context through train, predict and pack; sertk infer on wav
    files (no context) is one clear error line."""
    from sertk.train.trainer import train
    from tests.conftest import run_sertk

    cfg = {"model": {"name": "ar_gru", "conf": {"hidden": 4, "att_dim": 4, "fc_dim": 8,
                                                "context": True}},
           "loss": {"name": "ce"}, "optim": {"name": "adam", "lr": 0.003},
           "train": {"epochs": 1, "batch_size": 8, "seed": 0, "crop_frames": 60}}
    exp = tmp_path / "exp"
    res = train(cfg, dumped / "fold1" / "train", dumped / "fold1" / "dev", exp, device="cpu",
                progress=False)
    assert 0.0 <= res["UA"] <= 1.0
    assert "feats_prev_self.scp: 40" in (exp / "config.yaml").read_text()
    run_sertk("predict", "--model", str(exp), "--data", str(dumped / "fold1" / "test"),
              "--out-dir", str(tmp_path / "dec"), "--no-progress")
    n_test = len((dumped / "fold1" / "test" / "utt2spk").read_text().splitlines())
    assert len((tmp_path / "dec" / "hyp.txt").read_text().splitlines()) == n_test
    run_sertk("pack", "--exp", str(exp), "--out", str(tmp_path / "m.zip"))
    key, wav = next(iter(DataDir(corpus).wav_scp.items()))
    scp = tmp_path / "wav.scp"
    scp.write_text(f"{key} {wav}\n")
    bad = run_sertk("infer", "--model", str(tmp_path / "m.zip"), "--wav-scp", str(scp),
                    check=False)
    assert bad.returncode != 0
    assert bad.stderr.strip().splitlines() == [
        "sertk: error: this model reads feats_prev_self.scp, feats_prev_other.scp besides "
        "audio: run `sertk predict` on a data directory that has it"]
