"""Augmentations: bookkeeping, label rules, reproducibility under a seed, and identity at
inference."""

from __future__ import annotations

import json

import kaldiio
import numpy as np
import pytest
import soundfile as sf
import torch

from sertk.augment import Batch, build_augment
from sertk.augment.copypaste import CopyPaste
from sertk.augment.vtlp import vtlp
from sertk.augment.waveform import add_noise, reverberate, speed
from sertk.data.augment_dir import augment, from_dir, musan
from sertk.data.datadir import DataDir, combine, validate
from sertk.data.kaldi_table import read_table
from sertk.features import FeatureConfig
from sertk.features.dump import dump
from sertk.losses import build_loss
from tests.conftest import REPO, TINY_CONFIG

FBANK40 = REPO / "conf" / "feats" / "fbank40.yaml"


def _dominant_hz(x: torch.Tensor, sr: int) -> float:
    spec = torch.fft.rfft(x * torch.hann_window(x.numel()))
    return float(spec.abs().argmax()) * sr / x.numel()


def test_speed_changes_length_and_pitch():
    sr = 16000
    sine = torch.sin(2 * torch.pi * 440 * torch.arange(sr) / sr)
    fast = speed(sine, 1.1)
    assert fast.numel() == pytest.approx(sr / 1.1, abs=2)
    assert _dominant_hz(fast, sr) == pytest.approx(484, abs=3)
    assert torch.equal(speed(sine, 1.0), sine)


def test_noise_snr_and_reverb_power():
    g = torch.Generator().manual_seed(0)
    wav, noise = torch.randn(8000, generator=g), torch.randn(3000, generator=g)
    for snr in (0.0, 5.0, 10.0):
        out = add_noise(wav, noise, snr, offset=100)
        added = (out - wav).double()
        measured = 10 * torch.log10(wav.double().square().mean() / added.square().mean())
        assert float(measured) == pytest.approx(snr, abs=1e-3)
    delta = torch.zeros(50)
    delta[0] = 1.0
    torch.testing.assert_close(reverberate(wav, delta), wav, atol=1e-5, rtol=1e-5)
    rir = torch.exp(-torch.arange(800) / 100.0) * torch.randn(800, generator=g)
    out = reverberate(wav, rir)
    assert out.numel() == wav.numel()
    assert float(out.square().mean()) == pytest.approx(float(wav.square().mean()), rel=1e-4)


@pytest.fixture(scope="module")
def noise_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("musan")
    rng = np.random.default_rng(0)
    for part, n in (("noise/free-sound", 2), ("music/fma", 2), ("speech/us-gov", 1)):
        (root / part).mkdir(parents=True)
        for k in range(n):
            sf.write(root / part / f"{part.split('/')[0]}-{k}.wav",
                     (0.1 * rng.standard_normal(24000)).astype(np.float32), 16000)
    musan(root, root / "data")
    rirs = root / "rirs"
    rirs.mkdir()
    for k in range(2):
        r = np.exp(-np.arange(1600) / 200.0) * rng.standard_normal(1600)
        sf.write(rirs / f"rir{k}.wav", r.astype(np.float32), 16000)
    from_dir(rirs, root / "data" / "rirs")
    return root / "data"


def test_augmented_data_dirs_and_dump(corpus, noise_dirs, tmp_path):
    assert sorted(p.name for p in noise_dirs.iterdir()) == ["music", "noise", "rirs", "speech"]
    sp = augment(corpus, tmp_path / "sp", "speed", factors=[0.9, 1.0, 1.1])
    d, base = DataDir(sp), DataDir(corpus)
    assert len(d.utts) == 3 * len(base.utts)
    u = base.utts[0]
    assert d.utt2spk[f"sp0.9-{u}"] == f"sp0.9-{base.utt2spk[u]}"
    assert d.utt2emo[f"sp1.1-{u}"] == base.utt2emo[u]
    # the copies form a copy of each conversation, so their contexts are copies too
    assert d.table("utt2dialog")[f"sp0.9-{u}"] == "sp0.9-" + base.table("utt2dialog")[u]
    assert validate(sp, check_audio=False) == []
    noisy = augment(corpus, tmp_path / "noise", "noise", source=noise_dirs / "music",
                    snrs=[0, 5, 10], prefix="music", seed=3)
    again = augment(corpus, tmp_path / "noise2", "noise", source=noise_dirs / "music",
                    snrs=[0, 5, 10], prefix="music", seed=3)
    assert read_table(noisy / "utt2aug") == read_table(again / "utt2aug")  # seeded
    op = json.loads(read_table(noisy / "utt2aug")[f"music5-{u}"])
    assert op[0]["op"] == "noise" and op[0]["snr"] == 5.0
    rev = augment(sp, tmp_path / "rev", "reverb", source=noise_dirs / "rirs", seed=1)
    chained = json.loads(read_table(rev / "utt2aug")[f"reverb-sp0.9-{u}"])
    assert [o["op"] for o in chained] == ["speed", "reverb"]
    # the dump applies the operations
    all_dir = combine(tmp_path / "all", [corpus, sp, noisy])
    rep = dump(all_dir, tmp_path / "dump", FeatureConfig.load(FBANK40), nj=2, progress=False)
    assert rep.num_utts == 7 * len(base.utts)
    feats = kaldiio.load_scp(str(tmp_path / "dump" / "feats.scp"))
    np.testing.assert_array_equal(feats[f"sp1.0-{u}"], feats[u])
    prev = read_table(tmp_path / "dump" / "feats_prev_other.scp")
    own = {k: v for k, v in prev.items() if k.startswith("sp0.9-") and v != "-"}
    scp = read_table(tmp_path / "dump" / "feats.scp")
    assert own and all(v in {scp[x] for x in scp if x.startswith("sp0.9-")}
                       for v in own.values())
    n, n09 = feats[u].shape[0], feats[f"sp0.9-{u}"].shape[0]
    assert n09 == pytest.approx(n / 0.9, abs=3)
    assert not np.allclose(feats[f"music0-{u}"], feats[u])
    assert not (tmp_path / "dump" / "utt2aug").exists()


def test_vtlp_identity_and_shift():
    x = torch.zeros(4, 100)
    x[:, 40] = 1.0
    torch.testing.assert_close(vtlp(x, 1.0), x)
    up = vtlp(x, 1.1)
    assert int(up[0].argmax()) == 44  # energy at bin 40 moves to ~ 40 * 1.1
    batch_aug, _ = build_augment([{"name": "vtlp", "low": 0.9, "high": 1.1}])
    b = Batch(torch.randn(2, 30, 100), torch.tensor([30, 20]), torch.tensor([0, 1]), 2)
    a1 = batch_aug(b, torch.Generator().manual_seed(1)).feats
    a2 = batch_aug(b, torch.Generator().manual_seed(1)).feats
    assert torch.equal(a1, a2) and torch.equal(a1[1, 20:], b.feats[1, 20:])


def test_mixup_soft_labels_and_loss():
    batch_aug, _ = build_augment([{"name": "mixup", "alpha": 0.4}])
    b = Batch(torch.randn(6, 10, 3), torch.tensor([10, 9, 8, 7, 6, 5]),
              torch.tensor([0, 1, 2, 0, 1, 2]), 3)
    m = batch_aug(b, torch.Generator().manual_seed(0))
    assert m.targets.shape == (6, 3)
    torch.testing.assert_close(m.targets.sum(-1), torch.ones(6))
    assert torch.equal(m.feats, batch_aug(b, torch.Generator().manual_seed(0)).feats)
    logits = torch.randn(6, 3)
    ce = build_loss({"name": "ce"}, [2, 2, 2])(logits, m.targets)
    manual = -(m.targets * torch.log_softmax(logits, -1)).sum(-1).mean()
    torch.testing.assert_close(ce, manual)
    focal0 = build_loss({"name": "focal", "gamma": 0.0}, [2, 2, 2])(logits, m.targets)
    torch.testing.assert_close(focal0, manual)


class _ConstDataset:
    """Every utterance's frames hold its label index; labels as in a SER training set."""

    labels = ["angry", "happy", "neutral", "sad"]

    def __init__(self):
        self.targets = [0, 0, 1, 1, 2, 2, 3, 3]
        self.rng = np.random.default_rng(0)

    def indices_by_label(self):
        out = {}
        for i, t in enumerate(self.targets):
            out.setdefault(t, []).append(i)
        return out

    def load(self, i):
        return np.full((50 + 10 * i, 2), float(self.targets[i]), dtype=np.float32)

    def random_chunk(self, mat, frames):
        return mat[:frames] if frames and mat.shape[0] > frames else mat


def _items(ds):
    return [(f"u{i}", torch.from_numpy(ds.load(i)), t) for i, t in enumerate(ds.targets)]


@pytest.mark.parametrize("mode", ["n_cp", "se_cp"])
def test_copypaste_label_rules(mode):
    ds = _ConstDataset()
    cp = CopyPaste(mode=mode, p=1.0, chunk_frames=40)
    out = cp(_items(ds), ds, np.random.default_rng(0))
    for (_, feats, label), (_, _, orig_label) in zip(out, _items(ds)):
        assert label == orig_label  # the emotion dictates the label
        assert feats.shape[0] == 80  # two 40-frame chunks
        values = set(feats[:, 0].tolist())
        allowed = {float(label), 2.0} if mode == "n_cp" else {float(label)}
        assert values <= allowed and float(label) in values | {2.0}
        if mode == "n_cp":
            assert 2.0 in values  # a neutral partner was joined


def test_copypaste_batch_fraction_and_reproducibility():
    ds = _ConstDataset()
    cp = CopyPaste(mode="n_se_cp", p=0.8)
    rng = np.random.default_rng(5)
    schemes = [cp.choose(rng) for _ in range(4000)]
    assert schemes.count(None) / 4000 == pytest.approx(0.2, abs=0.02)
    assert schemes.count("n_cp") / 4000 == pytest.approx(0.4, abs=0.02)
    a = cp(_items(ds), ds, np.random.default_rng(1))
    b = cp(_items(ds), ds, np.random.default_rng(1))
    assert all(torch.equal(x[1], y[1]) for x, y in zip(a, b))


def test_training_with_all_augmentations_is_reproducible_and_inference_is_clean(
        dumped, tmp_path):
    from safetensors.torch import load_file

    from sertk.infer.packed import load_packed
    from sertk.infer.recognizer import predict_dump
    from sertk.train.trainer import train

    cfg = {**TINY_CONFIG, "train": {**TINY_CONFIG["train"], "epochs": 1, "segment": [60, 30],
                                    "eval_segment": [60, 20]},
           "augment": [{"name": "specaugment", "time_width": 5, "freq_width": 5,
                        "time_warp": 3},
                       {"name": "vtlp", "p": 0.5}, {"name": "mixup", "p": 0.5},
                       {"name": "copypaste", "mode": "n_se_cp", "chunk_frames": 80}]}
    tr, dv = dumped / "fold1" / "train", dumped / "fold1" / "dev"
    for run in ("a", "b"):
        train(cfg, tr, dv, tmp_path / run, device="cpu", progress=False)
    wa = load_file(str(tmp_path / "a" / "model.safetensors"))
    wb = load_file(str(tmp_path / "b" / "model.safetensors"))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    # inference applies no augmentation: two predictions are identical
    packed = load_packed(tmp_path / "a")
    h1 = predict_dump(packed, dumped / "fold1" / "test", tmp_path / "p1", progress=False)
    h2 = predict_dump(packed, dumped / "fold1" / "test", tmp_path / "p2", progress=False)
    assert h1 == h2
    assert (tmp_path / "p1" / "posteriors.jsonl").read_text() == \
        (tmp_path / "p2" / "posteriors.jsonl").read_text()


def test_segment_dataset_and_test_time_averaging(dumped):
    from sertk.data.dataset import FeatsDataset
    from sertk.data.segments import windows
    from sertk.models.classifier import EmotionClassifier
    from sertk.train.evaluate import segment_posteriors

    labels = ["angry", "happy", "neutral", "sad"]
    ds = FeatsDataset(dumped / "fold1" / "train", labels, segment=(60, 30))
    full = FeatsDataset(dumped / "fold1" / "train", labels)
    assert len(ds) == sum(len(windows(n, 60, 30)) for n in full.lengths)
    key, seg, label = ds[1]
    assert seg.shape[0] <= 60 and label == full.targets[full.keys.index(key)]
    assert windows(250, 100, 40) == [(0, 100), (40, 140), (80, 180), (120, 220), (150, 250)]
    model = EmotionClassifier("light_sernet", 40, 4, TINY_CONFIG["model"]["conf"]).eval()
    x = torch.from_numpy(np.array(full.load(0)))[None]
    n = torch.tensor([x.shape[1]])
    post = segment_posteriors(model, x, n, (60, 20), "cpu")
    with torch.no_grad():
        manual = torch.stack([torch.softmax(model(x[:, s:e], torch.tensor([e - s])), -1)[0]
                              for s, e in windows(x.shape[1], 60, 20)]).mean(0)
    torch.testing.assert_close(post[0], manual, atol=1e-6, rtol=1e-5)
