"""Front ends, the parallel feature dump (round trip through kaldiio) and CMVN."""

from __future__ import annotations

import kaldiio
import numpy as np
import pytest
import torch
import torchaudio.compliance.kaldi as ta_kaldi

from sertk.data.audio import load_audio
from sertk.data.datadir import DataDir, validate
from sertk.features import FEATURES, FeatureConfig, build_frontend
from sertk.features.cmvn import GlobalCMVN, compute_global_stats
from sertk.features.dump import dump
from tests.conftest import REPO


@pytest.mark.parametrize("conf", ["fbank80", "fbank40", "mfcc40_light_sernet", "spectrogram400"])
def test_shipped_feature_configs_build(conf):
    cfg = FeatureConfig.load(REPO / "conf" / "feats" / f"{conf}.yaml")
    fe = build_frontend(cfg)
    out = fe(0.1 * torch.randn(16000))
    assert out.shape[1] == fe.dim and out.shape[0] > 0 and torch.isfinite(out).all()


def test_spectrogram_matches_definition():
    fe = build_frontend(FeatureConfig.load(REPO / "conf" / "feats" / "spectrogram400.yaml"))
    assert fe.dim == 400
    x = torch.randn(16000, dtype=torch.float64).float()
    out = fe(x)
    assert out.shape == (1 + (16000 - 640) // 160, 400)
    frame = x[160 * 7:160 * 7 + 640].double()
    frame = frame - frame.mean()
    win = torch.hamming_window(640, periodic=False, dtype=torch.float64)
    power = torch.fft.rfft(frame * win, n=1600).abs() ** 2
    np.testing.assert_allclose(out[7].double().numpy(), torch.log(power[:400]).numpy(),
                               rtol=1e-4, atol=1e-4)


def test_fbank_is_kaldi_scaled():
    fe = FEATURES.build("fbank", num_mel_bins=23)
    x = 0.1 * torch.randn(8000)
    ref = ta_kaldi.fbank(x[None] * 32768, num_mel_bins=23, dither=0.0)
    assert torch.allclose(fe(x), ref)


def test_dump_round_trip_and_parallel_equal(corpus, tmp_path):
    cfg = FeatureConfig.load(REPO / "conf" / "feats" / "fbank40.yaml")
    rep1 = dump(corpus, tmp_path / "nj1", cfg, nj=1, progress=False)
    rep2 = dump(corpus, tmp_path / "nj3", cfg, nj=3, progress=False)
    assert rep1.num_utts == rep2.num_utts == len(DataDir(corpus).utts)
    assert rep1.dim == 40 and rep1.num_frames == rep2.num_frames
    fe = build_frontend(cfg)
    one = kaldiio.load_scp(str(tmp_path / "nj1" / "feats.scp"))
    three = kaldiio.load_scp(str(tmp_path / "nj3" / "feats.scp"))
    d = DataDir(corpus)
    u2n = DataDir(tmp_path / "nj3").table("utt2num_frames")
    for utt in d.utts[::7]:
        direct = fe(load_audio(d.wav_scp[utt], cfg.audio, utt)).numpy()
        np.testing.assert_array_equal(one[utt], direct)
        np.testing.assert_array_equal(three[utt], direct)
        assert int(u2n[utt]) == direct.shape[0]
    # the dump dir is itself a valid data dir with the labels
    assert validate(tmp_path / "nj3", check_audio=False) == []
    assert DataDir(tmp_path / "nj3").utt2emo == d.utt2emo


def test_global_cmvn_stats(dumped, tmp_path):
    scp = dumped / "fold1" / "train" / "feats.scp"
    stats = compute_global_stats(scp, tmp_path / "cmvn.ark")
    allf = np.concatenate([m for _, m in kaldiio.load_scp_sequential(str(scp))])
    loaded = kaldiio.load_mat(str(tmp_path / "cmvn.ark"))
    np.testing.assert_allclose(loaded, stats)
    assert stats.shape == (2, 41) and stats[0, -1] == allf.shape[0]
    norm = GlobalCMVN.from_file(tmp_path / "cmvn.ark")(torch.from_numpy(allf)).double()
    np.testing.assert_allclose(norm.mean(0).numpy(), 0, atol=1e-4)
    np.testing.assert_allclose(norm.std(0, unbiased=False).numpy(), 1, atol=1e-3)


def test_feats_list_cli():
    from tests.conftest import run_sertk

    out = run_sertk("feats", "list").stdout
    for name in ("fbank", "mfcc", "spectrogram", "opensmile", "ssl", "leaf", "ssl_encoder",
                 "specaugment", "vtlp", "copypaste", "speed", "noise", "reverb", "mixup"):
        assert name in out


def test_resampling_an_odd_rate_is_fast_and_band_limited(tmp_path):
    """TESS is 24414 Hz: 12207:8000 polyphase would build a ~400 MB kernel per file; the FFT
    path keeps what lies below 8 kHz and removes what lies above."""
    import math
    import time

    import soundfile as sf

    sr = 24414
    t = np.arange(2 * sr) / sr
    x = np.sin(2 * math.pi * 440 * t) + 0.5 * np.sin(2 * math.pi * 9500 * t)
    sf.write(tmp_path / "a.wav", (0.5 * x).astype(np.float32), sr, subtype="FLOAT")
    start = time.time()
    y = load_audio(str(tmp_path / "a.wav")).numpy()
    assert time.time() - start < 2.0
    t16 = np.arange(y.shape[-1]) / 16000
    assert y.shape[-1] == 32000
    assert np.abs(y - 0.5 * np.sin(2 * math.pi * 440 * t16))[400:-400].max() < 0.01
