"""Front-end options against independent references: deltas vs torchaudio, a hand-computed
mu-law, sliding/utterance/per-speaker CMVN, fixed length, and the shipped feature configs."""

from __future__ import annotations

import math

import kaldiio
import numpy as np
import pytest
import torch
import torchaudio.functional as AF

from sertk.data.datadir import DataDir
from sertk.features import FEATURES, FeatureConfig, build_frontend
from sertk.features.cmvn import apply_cmvn, compute_speaker_stats
from sertk.features.postprocess import deltas, fix_length, sliding_cmvn, utterance_cmvn
from sertk.features.spectrogram import mu_law
from tests.conftest import REPO


@pytest.mark.parametrize("window", [1, 2, 3])
def test_deltas_match_torchaudio(window):
    x = torch.randn(57, 13, dtype=torch.float64)
    ref = AF.compute_deltas(x.T[None], win_length=2 * window + 1, mode="replicate")[0].T
    torch.testing.assert_close(deltas(x, window), ref)


def test_mu_law_hand_computed():
    x = torch.tensor([-1.0, -0.5, 0.0, 0.25, 1.0], dtype=torch.float64)
    expected = [-1.0, -math.log(1 + 127.5) / math.log(256), 0.0,
                math.log(1 + 63.75) / math.log(256), 1.0]
    torch.testing.assert_close(mu_law(x, 255.0), torch.tensor(expected, dtype=torch.float64))
    fe = build_frontend(FeatureConfig.load(REPO / "conf/feats/spectrogram400_mulaw.yaml"))
    out = fe(0.1 * torch.randn(16000))
    assert out.shape[1] == 400
    assert out.min() == pytest.approx(-1.0) and out.max() == pytest.approx(1.0)


def test_sliding_cmvn_matches_kaldi_definition():
    x = torch.randn(40, 3, dtype=torch.float64) * 3 + 1
    win = 11
    out = sliding_cmvn(x, win, norm_vars=True)
    for t in range(40):  # Kaldi apply-cmvn-sliding --center=true, window kept inside
        start = min(max(t - win // 2, 0), 40 - win)
        chunk = x[start:start + win]
        ref = (x[t] - chunk.mean(0)) / chunk.std(0, unbiased=False)
        torch.testing.assert_close(out[t], ref)
    short = torch.randn(5, 2, dtype=torch.float64)  # shorter than the window: all frames
    torch.testing.assert_close(sliding_cmvn(short, 11), short - short.mean(0))


def test_utterance_cmvn_and_fixed_length():
    x = torch.randn(30, 4) * 5 + 2
    y = utterance_cmvn(x, norm_vars=True)
    torch.testing.assert_close(y.mean(0), torch.zeros(4), atol=1e-5, rtol=0)
    torch.testing.assert_close(y.std(0, unbiased=False), torch.ones(4), atol=1e-4, rtol=0)
    assert fix_length(x, 120).shape == (120, 4) and torch.equal(fix_length(x, 120)[:30], x)
    assert torch.equal(fix_length(x, 10), x[:10])


@pytest.mark.parametrize("conf, dim, frames", [
    ("logmel26_deltas", 78, None), ("mfcc40_deltas", 120, None),
    ("mfcc20_120frames", 20, 120), ("logmel64_cnn14", 64, None), ("logmel64", 64, None)])
def test_literature_configs(conf, dim, frames):
    fe = build_frontend(FeatureConfig.load(REPO / "conf" / "feats" / f"{conf}.yaml"))
    out = fe(0.1 * torch.randn(24000))
    assert fe.dim == dim and out.shape[1] == dim and torch.isfinite(out).all()
    if frames:
        assert out.shape[0] == frames
    if conf == "logmel26_deltas":  # static | delta | delta-delta blocks
        torch.testing.assert_close(out[:, 26:52], deltas(out[:, :26], 2))


def test_logmel_centred_frame_count_and_db():
    fe = FEATURES.build("logmel", n_mels=64, frame_length=32, frame_shift=10, center=True,
                        log="db")
    out = fe(0.1 * torch.randn(16000))
    assert out.shape == (16000 // 160 + 1, 64)


def test_per_speaker_cmvn(dumped, tmp_path):
    src = dumped / "fold1" / "train"
    compute_speaker_stats(src, tmp_path / "cmvn_spk.ark")
    out = apply_cmvn(src, tmp_path / "norm", tmp_path / "cmvn_spk.ark", per_speaker=True)
    d = DataDir(out)
    reader = kaldiio.load_scp(str(out / "feats.scp"))
    for utts in d.table("spk2utt").values():
        allf = np.concatenate([reader[u] for u in utts.split()])
        np.testing.assert_allclose(allf.mean(0), 0, atol=1e-3)
        np.testing.assert_allclose(allf.std(0), 1, atol=1e-3)
    assert d.utt2emo == DataDir(src).utt2emo
