"""rajan_self_cross (papers.md section 17): multimodal forward/backward for cross and self fusion,
padding invariance of every modality input, uni-modal configs, input errors, the extra input
tables, a short training run and the shipped config."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import yaml

import sertk.models.rajan_self_cross  # noqa: F401  (registers the model)
from sertk import models
from sertk.errors import SertkError
from sertk.models.rajan_self_cross import RajanSelfCross
from tests.model_checks import check_forward_backward, check_padding_invariance
from tests.multimodal_checks import check_invariance as _check_invariance
from tests.multimodal_checks import forward_backward as _forward_backward
from tests.multimodal_checks import one_thread as _one_thread  # noqa: F401 (autouse)

ROOT = Path(__file__).resolve().parents[1]
TEXT, VIDEO = "text", "feats_video.scp"
AUDIO_DIM, VOCAB, VIDEO_DIM, CLASSES = 5, 20, 7, 3
SIZES = {TEXT: VOCAB, VIDEO: VIDEO_DIM}
SMALL = {"gru_hidden": 4, "heads": 2, "audio_max_len": 12, "audio_conv_len": 5,
         "video_max_len": 6, "video_conv_len": 4, "text_max_len": 10, "embedding_dim": 6,
         "fc_dim": 8}
NO_CONV = {"audio_max_len": None, "audio_conv_len": None, "video_max_len": None,
           "video_conv_len": None}
TRI = ("audio", "text", "video")


def _net(modalities=TRI, **conf) -> RajanSelfCross:
    torch.manual_seed(0)
    return models.build("rajan_self_cross", input_dim=AUDIO_DIM, num_classes=CLASSES,
                        input_sizes=SIZES, modalities=modalities, **{**SMALL, **conf})


def _batch(b: int = 3, seed: int = 1):
    """Padded audio, text and video of ``b`` utterances (padding: zeros / token 0)."""
    g = torch.Generator().manual_seed(seed)
    a_len = torch.tensor([10, 7, 3, 9][:b])
    t_len = torch.tensor([6, 1, 4, 8][:b])
    v_len = torch.tensor([5, 2, 4, 3][:b])
    feats = torch.randn(b, int(a_len.max()), AUDIO_DIM, generator=g)
    tokens = torch.randint(1, VOCAB, (b, int(t_len.max())), generator=g)
    video = torch.randn(b, int(v_len.max()), VIDEO_DIM, generator=g)
    for i in range(b):
        feats[i, a_len[i]:] = 0.0
        tokens[i, t_len[i]:] = 0
        video[i, v_len[i]:] = 0.0
    return feats, a_len, {TEXT: (tokens, t_len), VIDEO: (video, v_len)}


# ---------------------------------------------------------------- multimodal


@pytest.mark.parametrize("fusion", ["cross", "self", "cross_plus_self"])
@pytest.mark.parametrize("modalities", [("audio", "text"), TRI])
def test_forward_backward_multimodal(fusion, modalities):
    net = _net(modalities, fusion=fusion)
    _forward_backward(net, *_batch())
    pairs = len(modalities) * (len(modalities) - 1)
    assert len(net.cross) == (0 if fusion == "self" else pairs)
    assert len(net.self_att) == (0 if fusion == "cross" else len(modalities))


@pytest.mark.parametrize("conf", [{}, NO_CONV], ids=["conv", "no_conv"])
@pytest.mark.parametrize("fusion", ["cross", "self"])
@pytest.mark.parametrize("modality", TRI)
def test_padding_invariance_each_modality(modality, fusion, conf):
    _check_invariance(_net(TRI, fusion=fusion, **conf), *_batch(), modality)


def test_padding_invariance_bimodal_and_no_stats_pooling():
    net = _net(("audio", "text"), fusion="cross", stats_pooling=False, **NO_CONV)
    feats, lengths, inputs = _batch()
    inputs = {TEXT: inputs[TEXT]}
    _forward_backward(net, feats, lengths, inputs)
    for modality in ("audio", "text"):
        _check_invariance(net, feats, lengths, inputs, modality)


def test_inputs_longer_than_max_len_are_cut():
    net = _net(TRI, fusion="cross", audio_max_len=6, text_max_len=3, video_max_len=3).eval()
    feats, lengths, inputs = _batch()
    tokens, t_len = inputs[TEXT]
    with torch.no_grad():
        ref = net(feats, lengths, inputs)
        cut = net(feats[:, :6], lengths.clamp(max=6),
                  {TEXT: (tokens[:, :3], t_len.clamp(max=3)),
                   VIDEO: (inputs[VIDEO][0][:, :3], inputs[VIDEO][1].clamp(max=3))})
    torch.testing.assert_close(cut, ref)


def test_empty_video_sequence_is_accepted():
    net = _net(TRI, fusion="self", **NO_CONV).eval()
    feats, lengths, inputs = _batch()
    video, v_len = inputs[VIDEO]
    v_len = v_len.clone()
    v_len[1] = 0
    with torch.no_grad():
        out = net(feats, lengths, {**inputs, VIDEO: (video, v_len)})
    assert torch.isfinite(out).all()


# ---------------------------------------------------------------- uni-modal


@pytest.mark.parametrize("fusion", ["cross", "self"])
def test_text_only_ignores_audio(fusion):
    net = _net(("text",), fusion=fusion)
    assert net.fusion == "self" and len(net.cross) == 0 and list(net.self_att) == ["text"]
    feats, lengths, inputs = _batch()
    inputs = {TEXT: inputs[TEXT]}
    _forward_backward(net, feats, lengths, inputs)
    _check_invariance(net, feats, lengths, inputs, "text")
    with torch.no_grad():
        other = net(torch.randn(3, 2, 11), torch.tensor([2, 1, 2]), inputs)
        torch.testing.assert_close(other, net(feats, lengths, inputs))


@pytest.mark.parametrize("conf", [{}, NO_CONV], ids=["conv", "no_conv"])
def test_audio_only(conf):
    net = _net(("audio",), fusion="cross", **conf)
    feats, lengths, _ = _batch()
    check_forward_backward(net, feats, lengths, CLASSES)
    check_padding_invariance(net, feats, lengths)


def test_video_only():
    net = _net(("video",))
    feats, lengths, inputs = _batch()
    inputs = {VIDEO: inputs[VIDEO]}
    _forward_backward(net, feats, lengths, inputs)
    _check_invariance(net, feats, lengths, inputs, "video")


# ---------------------------------------------------------------- errors and tables


def test_missing_input_is_a_clear_error():
    feats, lengths, inputs = _batch()
    net = _net(TRI)
    with pytest.raises(SertkError, match=r"rajan_self_cross needs the text input"):
        net(feats, lengths)
    with pytest.raises(SertkError, match=r"needs the feats_video.scp input \(modalities "
                                         r"audio, text, video\)"):
        net(feats, lengths, {TEXT: inputs[TEXT]})


@pytest.mark.parametrize("modalities", [(), ("audio", "speech"), "audio", ("text", "text")])
def test_bad_modalities(modalities):
    with pytest.raises(SertkError, match="modalities"):
        _net(modalities)
    with pytest.raises(SertkError, match="modalities"):
        RajanSelfCross.input_tables_for({"modalities": modalities})


@pytest.mark.parametrize("conf, match", [
    ({"fusion": "late"}, "fusion"), ({"heads": 3}, "divisible"),
    ({"audio_max_len": None}, "audio_conv_len needs audio_max_len"),
    ({"embedding_path": "glove.txt"}, "embedding_path needs model.conf.tokenizer"),
    ({"fc_activation": "tanh"}, "fc_activation")])
def test_bad_options(conf, match):
    with pytest.raises(SertkError, match=match):
        _net(TRI, **conf)


def test_input_tables_for():
    tables = RajanSelfCross.input_tables_for
    assert tables({}) == {TEXT: "tokens"}
    assert tables(None) == {TEXT: "tokens"}
    assert tables({"modalities": ["audio"]}) == {}
    assert tables({"modalities": ["video", "audio"]}) == {VIDEO: "feats"}
    assert tables({"modalities": list(TRI), "fusion": "cross"}) == {TEXT: "tokens",
                                                                    VIDEO: "feats"}


def test_default_build_and_sizes():
    net = models.build("rajan_self_cross", input_dim=80, num_classes=4)
    assert net.modalities == ("audio", "text")
    assert net.encoders["text"].embedding.num_embeddings == 256
    assert net.encoders["audio"].gru.input_size == 80
    video = models.build("rajan_self_cross", input_dim=80, num_classes=4,
                         modalities=["video"], input_sizes={TEXT: 9})
    assert video.encoders["video"].gru.input_size == 512
    assert video.encoders["video"].conv.in_channels == 32


# ---------------------------------------------------------------- training and config


def test_loss_decreases_on_a_tiny_batch():
    net = _net(TRI, fusion="cross", attention_dropout=0.0, embedding_dropout=0.0)
    feats, lengths, inputs = _batch(4)
    target = torch.tensor([0, 1, 2, 1])
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    net.train()
    losses = []
    for _ in range(25):
        opt.zero_grad()
        loss = F.cross_entropy(net(feats, lengths, inputs), target)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses


def test_shipped_config_builds_and_runs():
    cfg = yaml.safe_load((ROOT / "conf/model/rajan_self_cross.yaml").read_text())
    assert {"feats", "model", "loss", "optim", "scheduler", "train"} <= set(cfg)
    conf = cfg["model"]["conf"]
    torch.manual_seed(0)
    net = models.build(cfg["model"]["name"], input_dim=120, num_classes=4,
                       input_sizes={TEXT: 50, VIDEO: 16}, **conf)
    assert set(RajanSelfCross.input_tables_for(conf)) == {TEXT, VIDEO}
    feats = torch.randn(2, 40, 120)
    inputs = {TEXT: (torch.randint(1, 50, (2, 7)), torch.tensor([7, 3])),
              VIDEO: (torch.randn(2, 5, 16), torch.tensor([5, 2]))}
    net.eval()
    with torch.no_grad():
        out = net(feats, torch.tensor([40, 25]), inputs)
    assert out.shape == (2, 4) and torch.isfinite(out).all()


def test_modality_dropout_zeroes_one_modality_per_dropped_sample():
    from sertk.models.layers import ModalityDropout

    torch.manual_seed(0)
    drop = ModalityDropout(0.6).train()
    enc = {m: torch.ones(400, 3, 2) for m in ("audio", "text", "video")}
    out = drop(enc)
    alive = torch.stack([out[m].flatten(1).all(1) for m in enc], 1)  # [B, 3]
    dead = torch.stack([~out[m].flatten(1).any(1) for m in enc], 1)
    assert (alive | dead).all()  # a modality is kept or zeroed whole
    assert (dead.sum(1) <= 1).all()  # never more than one, so one always remains
    assert 0.5 < dead.any(1).float().mean() < 0.7
    assert all(0.1 < dead[:, i].float().mean() < 0.3 for i in range(3))
    assert drop.eval()(enc) is enc and ModalityDropout(0.6).train()({"a": enc["audio"]})
    with pytest.raises(SertkError, match=r"modality_dropout must be in \[0, 1\), got 1"):
        ModalityDropout(1)


def test_modality_dropout_in_the_model_trains_and_is_off_in_eval():
    net = _net(("audio", "text"), modality_dropout=0.5)
    feats, lengths, inputs = _batch()
    net.eval()
    a = net(feats, lengths, inputs)
    assert torch.equal(a, net(feats, lengths, inputs))
    _forward_backward(net.train(), feats, lengths, inputs)
