"""``ca_mser`` (Zou et al., ICASSP 2022; papers.md section 16): the three views computed from
the waveform rows, their frame rates and alignment, co-attention, segments, view ablations,
padding invariance, a short training run, local checkpoints and the shipped config.

Everything is generated here (random encoders, noise and tones); no pretrained weights.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
import yaml

import sertk.models.ca_mser  # noqa: F401  (registers the model)
from sertk import models
from sertk.errors import SertkError
from sertk.features.ssl import save_ssl_encoder
from sertk.models.ca_mser import CAMSER, preemphasis
from sertk.models.mtl_w2v2_ctc import random_encoder
from tests.conftest import REPO
from tests.model_checks import check_forward_backward, check_padding_invariance

# wav2vec 2.0 of 2 layers of 32 dims; CNN strides 5 * 4 * 4 = 80 samples: 2 frames per row
TINY_W2V = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                intermediate_size=64, conv_dim=[16, 16, 16], conv_kernel=[10, 4, 4],
                conv_stride=[5, 4, 4], num_conv_pos_embeddings=8,
                num_conv_pos_embedding_groups=4, hidden_dropout=0.0, attention_dropout=0.0,
                activation_dropout=0.0, feat_proj_dropout=0.0, layerdrop=0.0)
SEGMENT = 40  # rows: 0.4 s segments
SMALL = dict(segment=SEGMENT, n_mfcc=13, n_mels=20, lstm_hidden=8, image_size=[64, 64],
             cnn_channels=[4, 4, 4, 4, 4], embed_dim=8, w2e_dim=8, hidden=[8],
             encoder_config=TINY_W2V)
ROW = 160


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny models run faster on one intra-op thread on the shared 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _net(seed: int = 0, **conf) -> CAMSER:
    torch.manual_seed(seed)
    return models.build("ca_mser", input_dim=ROW, num_classes=4, **{**SMALL, **conf})


def _batch(*rows: int, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    x = 0.1 * torch.randn(len(rows), max(rows), ROW,
                          generator=torch.Generator().manual_seed(seed))
    for i, n in enumerate(rows):
        x[i, n:] = 0.0
    return x, torch.tensor(rows)


def test_forward_backward_and_padding_invariance():
    net = _net()
    # 90 rows: three segments (0-40, 40-80 and 50-90); 40: exactly one; 13: one, padded
    x, lengths = _batch(90, 40, 13)
    check_forward_backward(net, x, lengths, 4)
    check_padding_invariance(net, x, lengths, extra_frames=7, atol=1e-4, rtol=1e-4)
    assert all(not p.requires_grad for p in net.encoder.encoder.feature_extractor.parameters())


def test_segments_shorter_than_one_wav2vec_frame():
    """80 samples (2 rows of 40) give no wav2vec 2.0 frame: x''_w is 0, alone or batched."""
    torch.manual_seed(0)
    net = models.build("ca_mser", input_dim=40, num_classes=4, **SMALL)
    x = 0.1 * torch.randn(2, 30, 40)
    lengths = torch.tensor([30, 2])
    assert net.encoder.num_frames(lengths * 40).tolist()[1] == 0
    check_padding_invariance(net, x, lengths, extra_frames=3, atol=1e-4, rtol=1e-4)
    wave, samples, _ = net.segments(x[1:, :2], lengths[1:])
    with torch.no_grad():
        emb = net.embeddings(wave, samples)
    assert float(emb["w2v2"].abs().sum()) == 0.0 and float(emb["attention"].abs().sum()) == 0


def test_view_shapes_rates_and_alignment():
    net = _net().eval()
    x, lengths = _batch(40, 13)
    wave, samples, owner = net.segments(x, lengths)
    assert wave.shape == (2, SEGMENT * ROW) and samples.tolist() == [6400, 2080]
    assert owner.tolist() == [0, 1] and float(wave[1, 2080:].abs().sum()) == 0.0
    spectral = preemphasis(wave, 0.97) * (torch.arange(wave.shape[1]) < samples[:, None])
    with torch.no_grad():
        # MFCC and spectrogram: one frame per 10 ms row, `segment` frames per segment
        mfcc, m_frames = net.mfcc.features(spectral, samples)
        spec, s_frames = net.spec.features(spectral, samples)
        assert mfcc.shape == (2, SEGMENT, 13) and m_frames.tolist() == [40, 13]
        assert spec.shape == (2, 200, SEGMENT) and s_frames.tolist() == [40, 13]
        assert float(mfcc[1, 13:].abs().sum()) == 0.0 and float(spec[1, :, 13:].abs().sum()) == 0
        # frame t of the segment is frame t of the utterance alone (centred on sample 160 t)
        alone = net.mfcc.mfcc(spectral[1:, :2080])[0, :, :13].T
        torch.testing.assert_close(mfcc[1, :13], F.normalize(alone, dim=-1))
        # wav2vec 2.0: T'_w frames per segment (80-sample hop here), one weight each
        emb = net.embeddings(wave, samples)
    t_w = int(net.encoder.num_frames(torch.tensor([SEGMENT * ROW]))[0])
    assert net.w2v2_frames == t_w == 79 and net.coatt.f_att.out_features == t_w
    assert net.coatt.f_att.in_features == 16  # x'_m + x'_s
    att = emb["attention"]
    valid = int(net.encoder.num_frames(torch.tensor([2080]))[0])
    assert att.shape == (2, t_w) and valid == 25
    assert (att[1, valid:] == 0).all() and (att[1, :valid] > 0).all()
    torch.testing.assert_close(att.sum(-1), torch.ones(2))  # softmax over the valid frames
    assert emb["mfcc"].shape == emb["spec"].shape == (2, 8) and emb["w2v2"].shape == (2, 32)


def test_spectrogram_frames_follow_the_rows():
    """A 1 kHz tone in rows 20-23 (samples 3200-3839) peaks in frames 20-23 of its bin and
    reaches frames 19-25 (frame t: 640 samples centred on sample 160 t), no others."""
    net = _net().eval()
    t = torch.arange(SEGMENT * ROW) / 16000
    wave = 1e-3 * torch.randn(1, SEGMENT * ROW, generator=torch.Generator().manual_seed(0))
    burst = (t >= 20 * 0.01) & (t < 24 * 0.01)
    wave = wave + burst * torch.sin(2 * math.pi * 1000 * t)
    with torch.no_grad():
        spec, _ = net.spec.features(wave, torch.tensor([SEGMENT * ROW]))
    tone = spec[0, 1000 // 20]  # 20 Hz bins
    assert 20 <= int(tone.argmax()) <= 23
    loud = (tone > tone.median() + 2).nonzero().flatten().tolist()
    assert set(range(20, 24)) <= set(loud) <= set(range(19, 26)), loud


def test_long_inputs_average_segment_posteriors():
    net = _net().eval()
    x, lengths = _batch(90)
    with torch.no_grad():
        out = net(x, lengths)[0]
        parts = [net(x[:, s:e], torch.tensor([e - s])) for s, e in ((0, 40), (40, 80), (50, 90))]
        one = net(x[:, :40], torch.tensor([40]))
    ref = torch.cat(parts).softmax(-1).mean(0).log()
    torch.testing.assert_close(out, ref)
    assert not torch.allclose(one.logsumexp(-1), torch.zeros(1))  # a single segment: logits


@pytest.mark.parametrize("views", [["mfcc"], ["spec"], ["w2v2"], ["mfcc", "w2v2"],
                                   ["spec", "w2v2"], ["mfcc", "spec"]])
def test_view_ablations(views):
    net = _net(views=views)
    assert (net.mfcc is not None) == ("mfcc" in views)
    assert (net.spec is not None) == ("spec" in views)
    assert (net.encoder is not None) == ("w2v2" in views)
    x, lengths = _batch(45, 20)
    check_forward_backward(net, x, lengths, 4)
    check_padding_invariance(net, x, lengths, extra_frames=5, atol=1e-4, rtol=1e-4)
    if views == ["w2v2"]:  # no query: the mean over the valid frames
        assert net.coatt.f_att is None
        wave, samples, owner = net.segments(x, lengths)
        assert owner.tolist() == [0, 0, 1]  # 45 rows: windows 0-40 and 5-45
        with torch.no_grad():
            att = net.embeddings(wave, samples)["attention"][-1]
        n = int(net.encoder.num_frames(torch.tensor([20 * ROW]))[0])
        assert torch.allclose(att[:n], torch.full((n,), 1 / n)) and (att[n:] == 0).all()


@pytest.mark.parametrize("norm", ["relu", "none"])
def test_attention_norms_mask_padded_frames(norm):
    net = _net(attention_norm=norm)
    x, lengths = _batch(40, 13)
    check_padding_invariance(net, x, lengths, extra_frames=5, atol=1e-4, rtol=1e-4)
    wave, samples, _ = net.segments(x, lengths)
    with torch.no_grad():
        att = net.embeddings(wave, samples)["attention"]
    assert (att[1, 25:] == 0).all()
    if norm == "relu":
        assert (att >= 0).all()


@pytest.mark.parametrize("conf, match", [
    ({"views": []}, "views must be"),
    ({"views": ["mfcc", "text"]}, "views must be"),
    ({"views": ["mfcc", "mfcc"]}, "views must be"),
    ({"attention_norm": "sigmoid"}, "attention_norm must be"),
    ({"image_size": [32, 32]}, "too small for AlexNet"),
    ({"cnn_channels": [4, 4, 4]}, "cnn_channels must be"),
    ({"n_mfcc": 30}, "exceeds n_mels"),
])
def test_bad_options_are_clear_errors(conf, match):
    with pytest.raises(SertkError, match=match):
        _net(**conf)
    with pytest.raises(SertkError, match="shorter than one wav2vec 2.0 frame"):
        models.build("ca_mser", input_dim=20, num_classes=4, **{**SMALL, "segment": 1})


def test_loss_decreases_on_a_tiny_batch():
    net = _net(seed=3, lstm_dropout=0.0, dropout=0.0)  # dropout off: a steady decrease
    x, lengths = _batch(40, 32, 21, 40, seed=5)
    target = torch.tensor([0, 1, 2, 3])
    opt = torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr=1e-2)
    net.train()
    losses = []
    for _ in range(30):
        opt.zero_grad()
        loss = F.cross_entropy(net(x, lengths), target)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses


def test_local_checkpoints_load_and_pack_portably(tmp_path):
    torch.manual_seed(5)
    saved = random_encoder(TINY_W2V)
    ckpt = save_ssl_encoder(saved, tmp_path / "w2v2", "wav2vec2")
    torch.manual_seed(6)
    alexnet = {"features.0.weight": torch.randn(4, 3, 11, 11), "features.0.bias": torch.randn(4),
               "features.10.weight": torch.randn(4, 4, 3, 3),
               "classifier.1.weight": torch.randn(10, 144)}  # not ours: ignored
    torch.save(alexnet, tmp_path / "alexnet.pth")
    # the checkpoint wins over the shipped-style encoder_config
    net = _net(encoder=str(ckpt), alexnet_checkpoint=str(tmp_path / "alexnet.pth"))
    loaded, ref = net.encoder.encoder.state_dict(), saved.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in ref.items())
    assert torch.equal(net.spec.cnn.features[0].weight, alexnet["features.0.weight"])
    assert torch.equal(net.spec.cnn.features[10].weight, alexnet["features.10.weight"])

    conf = {**SMALL, "encoder": str(ckpt), "alexnet_checkpoint": str(tmp_path / "alexnet.pth")}
    portable = CAMSER.portable_conf(conf)
    assert portable["encoder"] is None and portable["alexnet_checkpoint"] is None
    # normalize null: the checkpoint's (no preprocessor_config.json: off), now explicit
    assert portable["encoder_config"]["hidden_size"] == 32 and portable["normalize"] is False
    rebuilt = models.build("ca_mser", input_dim=ROW, num_classes=4, **portable)
    rebuilt.load_state_dict(net.state_dict())
    x, lengths = _batch(50, 17)
    net.eval()
    rebuilt.eval()
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(x, lengths), net(x, lengths))


def test_shipped_config_builds_and_runs():
    cfg = yaml.safe_load((REPO / "conf/model/ca_mser.yaml").read_text())
    assert {"feats", "model", "cmvn", "loss", "optim", "scheduler", "train"} <= set(cfg)
    assert cfg["feats"] == "conf/feats/waveform16k.yaml" and cfg["loss"]["name"] == "ce"
    conf = cfg["model"]["conf"]
    assert cfg["train"]["segment"][0] == cfg["train"]["eval_segment"][0] == conf["segment"]
    assert conf["views"] == ["mfcc", "spec", "w2v2"] and conf["encoder"] is None
    torch.manual_seed(0)
    net = models.build(cfg["model"]["name"], input_dim=160, num_classes=4, **conf)
    assert net.w2v2_frames == 149 and net.mfcc.frames == net.spec.frames == 300
    assert net.spec.bins == 200 and net.encoder.dim == 256
    x = 0.05 * torch.randn(2, 100, 160)  # 1 s of audio, the second utterance 0.7 s
    net.eval()
    with torch.no_grad():
        out = net(x, torch.tensor([100, 70]))
    assert out.shape == (2, 4) and torch.isfinite(out).all()
