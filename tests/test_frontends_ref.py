"""Front ends against reference implementations: sertk's Kaldi fbank/MFCC against
kaldi-native-fbank, the opensmile front end against direct ``opensmile.Smile`` calls, and the
LEAF layer's shapes, gradients, initialisation and padding invariance.

The RAVDESS check runs only when ``../shared/corpora/ravdess`` exists.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from sertk.data.audio import AudioConfig, load_audio
from sertk.data.synth import STYLES, make_speakers, synthesize
from sertk.errors import SertkError
from sertk.features import FEATURES, FeatureConfig, build_frontend

REPO = Path(__file__).resolve().parents[1]
RAVDESS = Path(__file__).resolve().parents[2] / "shared/corpora/ravdess"
SR = 16000


@pytest.fixture(scope="module")
def speech(tmp_path_factory) -> torch.Tensor:
    """2.5 s of synthetic speech (a male and a female utterance), written to a 16-bit wav and
    read back, so the features see real audio I/O and 16-bit quantisation."""
    rng = np.random.default_rng(7)
    spk = make_speakers(2, seed=3)
    wav = np.concatenate([synthesize(STYLES["angry"], spk[1], rng, SR, 1.3),
                          synthesize(STYLES["sad"], spk[0], rng, SR, 1.2)])
    path = tmp_path_factory.mktemp("ref") / "utt.wav"
    sf.write(path, wav, SR, subtype="PCM_16")
    x, sr = sf.read(path, dtype="float32")
    assert sr == SR and x.ndim == 1
    return torch.from_numpy(x)


# --------------------------------------------------------------------- Kaldi vs kaldi-native-fbank

def _knf():
    return pytest.importorskip("kaldi_native_fbank")


def _frame_opts(opts) -> None:
    fo = opts.frame_opts
    fo.samp_freq = float(SR)
    fo.dither = 0.0
    fo.snip_edges = True
    fo.frame_length_ms = 25.0
    fo.frame_shift_ms = 10.0
    fo.window_type = "povey"
    fo.preemph_coeff = 0.97
    fo.remove_dc_offset = True
    fo.round_to_power_of_two = True
    opts.mel_opts.low_freq = 20.0
    opts.mel_opts.high_freq = 0.0


def knf_fbank(wav: torch.Tensor, num_bins: int) -> np.ndarray:
    knf = _knf()
    opts = knf.FbankOptions()
    _frame_opts(opts)
    opts.mel_opts.num_bins = num_bins
    opts.use_energy = False
    return _run_knf(knf.OnlineFbank(opts), wav)


def knf_mfcc(wav: torch.Tensor, energy_floor: float) -> np.ndarray:
    knf = _knf()
    opts = knf.MfccOptions()
    _frame_opts(opts)
    opts.mel_opts.num_bins = 23
    opts.num_ceps = 13
    opts.use_energy = True
    opts.raw_energy = True
    opts.cepstral_lifter = 22.0
    opts.energy_floor = energy_floor
    return _run_knf(knf.OnlineMfcc(opts), wav)


def _run_knf(online, wav: torch.Tensor) -> np.ndarray:
    online.accept_waveform(SR, (wav.numpy().astype(np.float64) * 32768.0).tolist())
    online.input_finished()
    return np.stack([online.get_frame(i) for i in range(online.num_frames_ready)])


@pytest.mark.parametrize("bins", [40, 80])
def test_fbank_matches_kaldi_native_fbank(speech, bins):
    ours = FEATURES.build("fbank", sample_rate=SR, num_mel_bins=bins)(speech).numpy()
    ref = knf_fbank(speech, bins)
    assert ours.shape == ref.shape == (248, bins)
    diff = np.abs(ours - ref)
    # measured: 7.2e-5 (40 bins), 9.2e-4 (80 bins) on log energies of 2.9 to 26. The 80-bin
    # maximum is in mel bin 1 of a frame whose peak bin is 19 nats (83 dB) stronger: float32
    # FFT rounding in both implementations (against a float64 run of torchaudio, the largest
    # deviations are 4.5e-4 for sertk and 5.6e-4 for kaldi-native-fbank). Bins within 10 nats
    # of their frame's peak -- measured: 7.2e-5 (40 bins), 1.8e-4 (80 bins).
    assert diff.max() < 2e-3
    strong = ref >= ref.max(axis=1, keepdims=True) - 10.0
    assert diff[strong].max() < 5e-4


def test_mfcc_matches_kaldi_native_fbank(speech):
    # sertk uses Kaldi's default energy_floor 0.0 (torchaudio's own default is 1.0)
    ours = FEATURES.build("mfcc", sample_rate=SR)(speech).numpy()
    ref = knf_mfcc(speech, energy_floor=0.0)
    assert ours.shape == ref.shape == (248, 13)
    # measured: 2.7e-4
    assert np.abs(ours - ref).max() < 1e-3
    # digital silence: the energy floor decides C0 (Kaldi: log of the tiny epsilon energy)
    silence = torch.cat([torch.zeros(4000), speech[:4000]])
    s_ours = FEATURES.build("mfcc", sample_rate=SR)(silence).numpy()
    np.testing.assert_allclose(s_ours, knf_mfcc(silence, energy_floor=0.0), rtol=0, atol=2e-3)


@pytest.mark.skipif(not RAVDESS.is_dir(), reason=f"RAVDESS not found at {RAVDESS}")
def test_kaldi_frontends_match_on_ravdess():
    files = sorted(RAVDESS.rglob("*.flac"))
    if not files:
        pytest.skip(f"no FLAC files under {RAVDESS}")
    # 48 kHz FLAC -> 16 kHz through sertk's own loader (torchaudio resampling)
    wav = load_audio(str(files[0]), AudioConfig(SR))
    ours = FEATURES.build("fbank", sample_rate=SR, num_mel_bins=80)(wav).numpy()
    ref = knf_fbank(wav, 80)
    assert ours.shape == ref.shape
    diff = np.abs(ours - ref)
    # Bins more than 10 nats (43 dB) below the frame's strongest bin hold < 5e-5 of its energy
    # and are dominated by float32 FFT rounding in both implementations: over 72 RAVDESS files
    # the worst of them differed by 1.0e-2 (mel bin 2 of a loud frame), the rest by 3.1e-4.
    strong = ref >= ref.max(axis=1, keepdims=True) - 10.0
    # measured on Actor_01/03-01-01-01-01-01-01.flac: 1.3e-4 (strong bins), 3.8e-4 (all)
    assert diff[strong].max() < 1e-3
    assert diff.max() < 2e-2
    # RAVDESS has digital silence: with Kaldi's energy_floor 0 (sertk's default) its log
    # energy (C0) is log(FLT_EPSILON) = -15.94; torchaudio's own default 1.0 would give 0.
    mfcc = FEATURES.build("mfcc", sample_rate=SR)(wav).numpy()
    # measured: 5.3e-4 (worst of 72 files: 2.0e-3; MFCCs mix the weak bins in)
    assert np.abs(mfcc - knf_mfcc(wav, energy_floor=0.0)).max() < 3e-3
    floor1 = FEATURES.build("mfcc", sample_rate=SR, energy_floor=1.0)(wav).numpy()
    assert np.abs(floor1 - knf_mfcc(wav, energy_floor=1.0)).max() < 3e-3


# ----------------------------------------------------------------------------------- openSMILE

DIMS = [("eGeMAPSv02", "lld", False, 25), ("eGeMAPSv02", "functionals", False, 88),
        ("GeMAPSv01b", "lld", False, 18), ("GeMAPSv01b", "functionals", False, 62),
        ("emobase", "lld", False, 26), ("emobase", "lld", True, 52),
        ("emobase", "functionals", False, 988), ("ComParE_2016", "lld", False, 65),
        ("ComParE_2016", "lld", True, 130), ("ComParE_2016", "functionals", False, 6373)]
CONFIGS = {"egemaps_lld": 25, "compare2016_lld": 130, "emobase_lld": 26,
           "egemaps_functionals": 88}


@pytest.fixture(scope="module")
def smile():
    smile = pytest.importorskip("opensmile")
    import sertk.features.opensmile_fe  # noqa: F401  (registers "opensmile")

    return smile


@pytest.mark.parametrize("feature_set,level,deltas,dim", DIMS)
def test_opensmile_dims(smile, speech, feature_set, level, deltas, dim):
    fe = FEATURES.build("opensmile", sample_rate=SR, feature_set=feature_set, level=level,
                        deltas_lld=deltas)
    assert fe.dim == dim == len(fe.feature_names)
    y = fe(speech[:SR])
    assert y.dtype == torch.float32 and y.shape[1] == dim
    if level == "functionals":
        assert y.shape == (1, dim)
    else:
        assert 90 <= y.shape[0] <= 100  # 1 s at a 10 ms hop
    assert torch.isfinite(y).all()


@pytest.mark.parametrize("feature_set,level,deltas", [("emobase", "lld", True),
                                                      ("ComParE_2016", "lld", False),
                                                      ("eGeMAPSv02", "lld", False),
                                                      ("eGeMAPSv02", "functionals", False)])
def test_opensmile_equals_direct_call(smile, speech, feature_set, level, deltas):
    x = speech[:int(1.5 * SR)]
    fe = FEATURES.build("opensmile", sample_rate=SR, feature_set=feature_set, level=level,
                        deltas_lld=deltas)
    fs = getattr(smile.FeatureSet, feature_set)
    fl = smile.FeatureLevel.Functionals if level == "functionals" \
        else smile.FeatureLevel.LowLevelDescriptors
    ref = smile.Smile(feature_set=fs, feature_level=fl).process_signal(x.numpy(), SR).to_numpy()
    if deltas:
        de = smile.Smile(feature_set=fs, feature_level=smile.FeatureLevel
                         .LowLevelDescriptors_Deltas).process_signal(x.numpy(), SR).to_numpy()
        assert de.shape[0] == ref.shape[0] + 2  # openSMILE's two flush rows, dropped by sertk
        ref = np.concatenate([ref, de[:ref.shape[0]]], axis=1)
    np.testing.assert_array_equal(fe(x).numpy(), ref.astype(np.float32))


def test_opensmile_deltas_are_regression_of_llds(smile, speech):
    from sertk.features.postprocess import deltas

    y = FEATURES.build("opensmile", feature_set="emobase", deltas_lld=True)(speech[:SR])
    lld, de = y[:, :26].double(), y[:, 26:].double()
    torch.testing.assert_close(de, deltas(lld, 2), rtol=1e-4, atol=1e-3)


def test_opensmile_errors(smile, monkeypatch):
    with pytest.raises(SertkError, match="unknown feature_set"):
        FEATURES.build("opensmile", feature_set="IS99")
    with pytest.raises(SertkError, match="unknown level"):
        FEATURES.build("opensmile", level="frames")
    with pytest.raises(SertkError, match="no LLD deltas"):
        FEATURES.build("opensmile", feature_set="eGeMAPSv02", deltas_lld=True)
    with pytest.raises(SertkError, match="needs level: lld"):
        FEATURES.build("opensmile", feature_set="emobase", level="functionals",
                       deltas_lld=True)
    fe = FEATURES.build("opensmile", feature_set="emobase")
    with pytest.raises(SertkError, match="NaN features for a 0.006 s signal"):
        fe(torch.zeros(100))
    monkeypatch.setitem(sys.modules, "opensmile", None)  # import opensmile -> ImportError
    with pytest.raises(SertkError, match=r"pip install sertk\[opensmile\]"):
        FEATURES.build("opensmile")


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_opensmile_configs_load(smile, speech, name):
    cfg = FeatureConfig.load(REPO / "conf" / "feats" / f"{name}.yaml")
    assert (cfg.name, cfg.sample_rate, cfg.channel) == ("opensmile", 16000, None)
    fe = build_frontend(cfg)
    assert fe.dim == CONFIGS[name]
    y = fe(speech[:SR])
    assert y.shape[1] == CONFIGS[name]
    if cfg.params["level"] == "functionals":
        assert y.shape[0] == 1


# ---------------------------------------------------------------------------------------- LEAF

from sertk.models.layers.leaf import SPCEN, Leaf, ema  # noqa: E402


@pytest.mark.parametrize("stride_ms,frames", [(10.0, (50, 32)), (30.0, (17, 11))])
def test_leaf_shapes_and_frame_lengths(speech, stride_ms, frames):
    leaf = Leaf(stride_ms=stride_ms)
    wav = speech[:8000].repeat(2, 1)
    feats, flen = leaf(wav, torch.tensor([8000, 5000]))
    assert feats.shape == (2, frames[0], 40)
    assert flen.tolist() == list(frames)  # ceil(len / stride), stride 160 or 480 samples
    assert torch.isfinite(feats).all()
    assert (feats[1, frames[1]:] == 0).all() and (feats[1, :frames[1]] != 0).any()
    full, flen_full = leaf(wav)
    assert flen_full.tolist() == [frames[0]] * 2


def test_leaf_gradients_reach_all_parameters(speech):
    leaf = Leaf(n_filters=16)
    feats, flen = leaf(speech[:6000].repeat(2, 1), torch.tensor([6000, 4000]))
    (feats ** 2).sum().backward()
    names = {n for n, _ in leaf.named_parameters()}
    assert names == {"filterbank.center", "filterbank.sigma", "pooling.width",
                     "compression.alpha", "compression.delta", "compression.root",
                     "compression.smooth"}
    for name, p in leaf.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert (p.grad != 0).all(), name  # every channel of every parameter


def test_leaf_silence_is_finite():
    feats, _ = Leaf(n_filters=8)(torch.zeros(2, 3000))
    assert torch.isfinite(feats).all()
    out = SPCEN(4)(torch.zeros(1, 4, 20))  # without LEAF's 1e-5 floor on the pooled energies
    assert torch.isfinite(out).all() and (out == 0).all()


@pytest.mark.parametrize("sr", [16000, 8000])
def test_leaf_gabor_init_on_mel_scale(sr):
    fb = Leaf(sample_rate=sr).filterbank
    centres = fb.center_hz
    assert (centres.diff() > 0).all()
    assert centres[0] > 0 and centres[-1] < sr / 2
    assert 90 < centres[0] < 120  # first HTK-mel centre above 60 Hz (106 Hz at 16 kHz)
    assert (fb.sigma.diff() < 0).all()  # wider bands higher up -> shorter filters


def test_ema_matches_loop():
    torch.manual_seed(0)
    x = torch.rand(2, 4, 150, dtype=torch.float64)
    s = torch.tensor([0.0, 0.04, 0.5, 1.0], dtype=torch.float64)
    m, ref = x[..., 0], []
    for t in range(x.shape[-1]):
        m = s * x[..., t] + (1 - s) * m
        ref.append(m)
    for chunk in (1, 7, 64, 200):  # 150 is no multiple of 7 or 64
        torch.testing.assert_close(ema(x, s, chunk), torch.stack(ref, -1), rtol=1e-6,
                                   atol=1e-6)


def test_leaf_padding_invariance(speech):
    """The valid frames of a short utterance in a padded batch equal the frames of the
    utterance alone. No frame is excluded: the layer zeroes samples at or beyond each length
    before the Gabor conv and after the squared modulus, so the zero padding of the conv and of
    the pooling when run alone and the masked batch padding give identical inputs to every
    valid frame, and sPCEN's smoother is causal. The padding here is noise, not zeros."""
    leaf = Leaf()
    short, long_ = 5037, 9000
    wav = speech[1000:1000 + long_].repeat(2, 1)
    wav[1, short:] = 0.3 * torch.randn(long_ - short)
    with torch.no_grad():
        batch, flen = leaf(wav, torch.tensor([long_, short]))
        alone, flen1 = leaf(wav[1:, :short])
        whole, _ = leaf(wav[:1])
    assert flen.tolist() == [57, 32] and flen1.tolist() == [32] and alone.shape[1] == 32
    assert (batch[1, :32] - alone[0]).abs().max() < 1e-5
    assert (batch[0] - whole[0]).abs().max() < 1e-5
