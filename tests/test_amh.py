"""amh (papers.md section 22): multimodal forward/backward, padding invariance of every
modality input, the hop schedule and its weights, uni-modal configs, input errors, the extra
input tables, a short training run and the shipped config."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

import sertk.models.amh  # noqa: F401  (registers the model)
from sertk import models
from sertk.errors import SertkError
from sertk.models.amh import AMH, hop_schedule
from tests.model_checks import check_forward_backward, check_padding_invariance
from tests.multimodal_checks import check_invariance as _check_invariance
from tests.multimodal_checks import check_loss_decreases, check_modality_dropout
from tests.multimodal_checks import forward_backward as _forward_backward
from tests.multimodal_checks import one_thread as _one_thread  # noqa: F401 (autouse)

ROOT = Path(__file__).resolve().parents[1]
TEXT, VIDEO = "text", "feats_video.scp"
AUDIO_DIM, VOCAB, VIDEO_DIM, CLASSES, HIDDEN = 5, 20, 7, 3, 6
SIZES = {TEXT: VOCAB, VIDEO: VIDEO_DIM}
SMALL = {"gru_hidden": HIDDEN, "embedding_dim": 4, "hops": 4}
TRI = ("audio", "text", "video")


def _net(modalities=TRI, **conf) -> AMH:
    torch.manual_seed(0)
    return models.build("amh", input_dim=AUDIO_DIM, num_classes=CLASSES, input_sizes=SIZES,
                        modalities=modalities, **{**SMALL, **conf})


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


@pytest.mark.parametrize("share_hops", [True, False])
@pytest.mark.parametrize("modalities", [("audio", "text"), ("text", "video"), TRI])
def test_forward_backward_multimodal(modalities, share_hops):
    net = _net(modalities, share_hops=share_hops, hops=6)
    _forward_backward(net, *_batch())
    assert len(net.attention) == (len(modalities) if share_hops else 6)
    context = (len(modalities) - 1) * HIDDEN  # W is (M - 1) d x d: 2d x d tri-modal
    assert all(w.weight.shape == (HIDDEN, context) and w.bias is None
               for w in net.attention.values())
    assert net.output.in_features == len(modalities) * HIDDEN


@pytest.mark.parametrize("modality", TRI)
def test_padding_invariance_each_modality(modality):
    _check_invariance(_net(TRI), *_batch(), modality)


def test_padding_invariance_bimodal():
    net = _net(("audio", "text"), share_hops=False, hops=3)
    feats, lengths, inputs = _batch()
    inputs = {TEXT: inputs[TEXT]}
    for modality in ("audio", "text"):
        _check_invariance(net, feats, lengths, inputs, modality)


def test_hop_schedule_cycles_video_audio_text():
    assert hop_schedule(TRI, 7) == ["video", "audio", "text", "video", "audio", "text",
                                    "video"]
    assert hop_schedule(("text", "audio"), 3) == ["audio", "text", "audio"]
    assert hop_schedule(("text", "video"), 2) == ["video", "text"]
    assert hop_schedule(("audio",), 5) == []
    net = _net(("video", "text", "audio"), hops=4, share_hops=False)
    assert net.modalities == TRI  # canonical order, whatever the config's
    assert net.hop_keys == ["hop1_video", "hop2_audio", "hop3_text", "hop4_video"]


def test_hops_change_parameters_or_output():
    feats, lengths, inputs = _batch()
    count = {}
    outs = {}
    for hops in (1, 3, 6):
        for share in (True, False):
            net = _net(TRI, hops=hops, share_hops=share).eval()
            count[hops, share] = sum(p.numel() for p in net.parameters())
            with torch.no_grad():
                outs[hops, share] = net(feats, lengths, inputs)
    w = 2 * HIDDEN * HIDDEN  # one attention matrix, 2d x d
    assert count[3, True] - count[1, True] == 2 * w  # W_A and W_T added
    assert count[6, True] == count[3, True]  # shared: repeated hops reuse them
    assert count[6, False] - count[1, False] == 5 * w  # one W per hop
    # same parameters (shared), more hops: the output differs
    assert not torch.allclose(outs[3, True], outs[6, True])
    # hop 1 is the same module either way: the same output
    torch.testing.assert_close(outs[1, True], outs[1, False])


def test_empty_video_sequence_is_accepted():
    net = _net(TRI).eval()
    feats, lengths, inputs = _batch()
    video, v_len = inputs[VIDEO]
    v_len = v_len.clone()
    v_len[1] = 0
    with torch.no_grad():
        out = net(feats, lengths, {**inputs, VIDEO: (video, v_len)})
    assert torch.isfinite(out).all()


def test_inputs_longer_than_max_len_are_cut():
    net = _net(TRI, audio_max_len=6, text_max_len=3, video_max_len=3).eval()
    feats, lengths, inputs = _batch()
    tokens, t_len = inputs[TEXT]
    with torch.no_grad():
        ref = net(feats, lengths, inputs)
        cut = net(feats[:, :6], lengths.clamp(max=6),
                  {TEXT: (tokens[:, :3], t_len.clamp(max=3)),
                   VIDEO: (inputs[VIDEO][0][:, :3], inputs[VIDEO][1].clamp(max=3))})
    torch.testing.assert_close(cut, ref)


# ---------------------------------------------------------------- uni-modal


def test_audio_only():
    net = _net(("audio",), hops=5)
    assert net.schedule == [] and len(net.attention) == 0
    assert net.output.in_features == HIDDEN
    feats, lengths, _ = _batch()
    check_forward_backward(net, feats, lengths, CLASSES)
    check_padding_invariance(net, feats, lengths)


def test_text_only_ignores_audio():
    net = _net(("text",))
    assert list(net.encoders) == ["text"] and len(net.attention) == 0
    feats, lengths, inputs = _batch()
    inputs = {TEXT: inputs[TEXT]}
    _forward_backward(net, feats, lengths, inputs)
    _check_invariance(net, feats, lengths, inputs, "text")
    with torch.no_grad():
        other = net(torch.randn(3, 2, 11), torch.tensor([2, 1, 2]), inputs)
        torch.testing.assert_close(other, net(feats, lengths, inputs))


# ---------------------------------------------------------------- errors and tables


def test_missing_input_is_a_clear_error():
    feats, lengths, inputs = _batch()
    net = _net(TRI)
    with pytest.raises(SertkError, match=r"amh needs the text input"):
        net(feats, lengths)
    with pytest.raises(SertkError, match=r"needs the feats_video.scp input \(modalities "
                                         r"audio, text, video\)"):
        net(feats, lengths, {TEXT: inputs[TEXT]})


@pytest.mark.parametrize("modalities", [(), ("audio", "speech"), "audio", ("text", "text")])
def test_bad_modalities(modalities):
    with pytest.raises(SertkError, match="amh modalities"):
        _net(modalities)
    with pytest.raises(SertkError, match="amh modalities"):
        AMH.input_tables_for({"modalities": modalities})


@pytest.mark.parametrize("conf, match", [
    ({"hops": 0}, "hops must be a positive integer"), ({"hops": 2.5}, "hops"),
    ({"hops": True}, "hops"), ({"dropout": 1.0}, r"dropout must be in \[0, 1\)"),
    ({"gru_hidden": 0}, "gru_hidden"), ({"text_max_len": 0}, "text_max_len"),
    ({"embedding_path": "glove.txt"}, "embedding_path needs model.conf.tokenizer"),
    ({"modality_dropout": 1.0}, "modality_dropout")])
def test_bad_options(conf, match):
    with pytest.raises(SertkError, match=match):
        _net(TRI, **conf)


def test_input_tables_for():
    tables = AMH.input_tables_for
    assert tables({}) == {TEXT: "tokens"}
    assert tables(None) == {TEXT: "tokens"}
    assert tables({"modalities": ["audio"]}) == {}
    assert tables({"modalities": ["video", "audio"]}) == {VIDEO: "feats"}
    assert tables({"modalities": list(TRI), "hops": 3}) == {TEXT: "tokens", VIDEO: "feats"}


def test_default_build_and_sizes():
    net = models.build("amh", input_dim=80, num_classes=4)
    assert net.modalities == ("audio", "text")
    assert net.schedule == ["audio", "text"] * 3 + ["audio"]  # 7 hops
    assert net.encoders["text"].embedding.num_embeddings == 256
    assert net.encoders["text"].embedding.padding_idx == 0
    assert net.encoders["audio"].gru.input_size == 80
    assert net.encoders["audio"].gru.hidden_size == 128
    video = models.build("amh", input_dim=80, num_classes=4, modalities=["video"])
    assert video.encoders["video"].gru.input_size == 512


# ---------------------------------------------------------------- training and config


def test_loss_decreases_on_a_tiny_batch():
    net = _net(TRI, dropout=0.0)
    feats, lengths, inputs = _batch(4)
    check_loss_decreases(net, feats, lengths, inputs, torch.tensor([0, 1, 2, 1]), lr=1e-2)


def test_modality_dropout_trains_and_is_off_in_eval():
    net = _net(TRI, modality_dropout=0.5)
    feats, lengths, inputs = _batch()
    check_modality_dropout(net, feats, lengths, inputs)


def test_shipped_config_builds_and_runs():
    cfg = yaml.safe_load((ROOT / "conf/model/amh.yaml").read_text())
    assert {"feats", "model", "loss", "optim", "scheduler", "train"} <= set(cfg)
    assert {"epochs", "batch_size", "grad_clip", "patience", "seed"} <= set(cfg["train"])
    conf = cfg["model"]["conf"]
    assert conf["modality_dropout"] == 0.0 and conf["tokenizer"] is None
    torch.manual_seed(0)
    net = models.build(cfg["model"]["name"], input_dim=120, num_classes=4,
                       input_sizes={TEXT: 60}, **conf)
    assert set(AMH.input_tables_for(conf)) == {TEXT, VIDEO}
    assert len(net.schedule) == conf["hops"] and len(net.attention) == 3
    feats = torch.randn(2, 40, 120)
    inputs = {TEXT: (torch.randint(1, 60, (2, 7)), torch.tensor([7, 3])),
              VIDEO: (torch.randn(2, 5, 512), torch.tensor([5, 2]))}
    net.eval()
    with torch.no_grad():
        out = net(feats, torch.tensor([40, 25]), inputs)
    assert out.shape == (2, 4) and torch.isfinite(out).all()
