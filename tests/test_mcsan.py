"""mcsan (papers.md section 19): bi-modal forward/backward, padding invariance of each modality
input (through the pooling conv blocks), uni-modal fallbacks, input errors, the extra input
tables, a short training run and the shipped config."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import yaml

import sertk.models.mcsan  # noqa: F401  (registers the model)
from sertk import models
from sertk.errors import SertkError
from sertk.models.layers.masking import MaskedMaxPool1d
from sertk.models.mcsan import MCSAN
from tests.model_checks import check_forward_backward, check_padding_invariance
from tests.multimodal_checks import check_invariance as _check_invariance
from tests.multimodal_checks import check_loss_decreases
from tests.multimodal_checks import forward_backward as _forward_backward
from tests.multimodal_checks import one_thread as _one_thread  # noqa: F401 (autouse)

ROOT = Path(__file__).resolve().parents[1]
TEXT = "text"
AUDIO_DIM, VOCAB, CLASSES = 5, 20, 3
SIZES = {TEXT: VOCAB}
SMALL = {"conv_channels": [6, 6], "lstm_hidden": 8, "heads": 2, "ffn_dim": 16,
         "embedding_dim": 6, "fc_dim": 8}
BI = ("audio", "text")


def _net(modalities=BI, **conf) -> MCSAN:
    torch.manual_seed(0)
    return models.build("mcsan", input_dim=AUDIO_DIM, num_classes=CLASSES, input_sizes=SIZES,
                        modalities=modalities, **{**SMALL, **conf})


def _batch(b: int = 3, seed: int = 1):
    """Padded audio and text of ``b`` utterances (padding: zeros / token 0)."""
    g = torch.Generator().manual_seed(seed)
    a_len = torch.tensor([11, 7, 1, 9][:b])
    t_len = torch.tensor([6, 1, 4, 8][:b])
    feats = torch.randn(b, int(a_len.max()), AUDIO_DIM, generator=g)
    tokens = torch.randint(1, VOCAB, (b, int(t_len.max())), generator=g)
    for i in range(b):
        feats[i, a_len[i]:] = 0.0
        tokens[i, t_len[i]:] = 0
    return feats, a_len, {TEXT: (tokens, t_len)}


# ---------------------------------------------------------------- bi-modal


@pytest.mark.parametrize("conf", [{}, {"num_layers": 2, "positional": False}],
                         ids=["paper", "two_layers_no_pos"])
def test_forward_backward_bimodal(conf):
    net = _net(BI, **conf)
    _forward_backward(net, *_batch())
    assert net.cross is not None and list(net.self_att) == ["audio", "text"]
    assert net.classifier[0].in_features == 4 * SMALL["lstm_hidden"]


@pytest.mark.parametrize("conf", [{}, {"conv_channels": []},
                                  {"pool_kernel": 2, "pool_stride": 2},
                                  {"pool_kernel": 4, "pool_stride": 3, "conv_kernel": 5}],
                         ids=["paper", "no_conv", "pool2", "pool4_stride3"])
@pytest.mark.parametrize("modality", BI)
def test_padding_invariance_each_modality(modality, conf):
    _check_invariance(_net(BI, **conf), *_batch(), modality)


@pytest.mark.parametrize("kernel, stride", [(3, 2), (2, 2), (1, 1), (4, 3), (5, 1)])
def test_masked_max_pool_lengths_and_padding(kernel, stride):
    pool = MaskedMaxPool1d(kernel, stride)
    x = torch.randn(3, 4, 12)
    lengths = torch.tensor([12, 5, 1])
    y, new = pool(x, lengths)
    for i, n in enumerate(lengths.tolist()):
        alone = F.max_pool1d(x[i:i + 1, :, :n], kernel, stride, kernel // 2)
        assert alone.shape[2] == int(new[i]) >= 1
        torch.testing.assert_close(y[i:i + 1, :, :int(new[i])], alone)
        assert not y[i, :, int(new[i]):].any()
    if (kernel, stride) == (3, 2):  # the paper's blocks: T -> ceil(T / 2)
        assert new.tolist() == [6, 3, 1]


def test_audio_longer_than_max_len_is_cut():
    net = _net(BI, audio_max_len=6, text_max_len=3).eval()
    feats, lengths, inputs = _batch()
    tokens, t_len = inputs[TEXT]
    with torch.no_grad():
        ref = net(feats, lengths, inputs)
        cut = net(feats[:, :6], lengths.clamp(max=6), {TEXT: (tokens[:, :3], t_len.clamp(max=3))})
    torch.testing.assert_close(cut, ref)


def test_default_build_dims():
    net = models.build("mcsan", input_dim=40, num_classes=4)
    assert net.modalities == ("audio", "text")
    audio = net.encoders["audio"]
    assert [c.conv.out_channels for c in audio.convs] == [128, 128]
    assert audio.convs[0].conv.in_channels == 40 and audio.convs[0].conv.kernel_size == (3,)
    assert audio.lstm.lstm.hidden_size == 128 and audio.lstm.lstm.bidirectional
    assert net.encoders["text"].embedding.num_embeddings == 256
    assert net.encoders["text"].embedding.embedding_dim == 300
    layer = net.cross.audio[0]
    assert len(net.cross.audio) == 1 and layer.attention.heads == 8
    assert layer.ffn[0].out_features == 512
    assert net.classifier[0].in_features == 512 and net.classifier[0].out_features == 128


# ---------------------------------------------------------------- uni-modal


def test_text_only_ignores_audio():
    net = _net(("text",))
    assert net.cross is None and list(net.self_att) == ["text"]
    assert net.classifier[0].in_features == SMALL["lstm_hidden"]
    feats, lengths, inputs = _batch()
    _forward_backward(net, feats, lengths, inputs)
    _check_invariance(net, feats, lengths, inputs, "text")
    with torch.no_grad():
        other = net(torch.randn(3, 2, 11), torch.tensor([2, 1, 2]), inputs)
        torch.testing.assert_close(other, net(feats, lengths, inputs))


def test_audio_only():
    net = _net(("audio",))
    assert net.cross is None and list(net.self_att) == ["audio"]
    feats, lengths, _ = _batch()
    check_forward_backward(net, feats, lengths, CLASSES)
    check_padding_invariance(net, feats, lengths)


# ---------------------------------------------------------------- errors and tables


def test_missing_text_input_is_a_clear_error():
    feats, lengths, _ = _batch()
    net = _net(BI)
    with pytest.raises(SertkError, match=r"model mcsan needs the text input \(modalities "
                                         r"audio, text\)"):
        net(feats, lengths)
    with pytest.raises(SertkError, match="needs the text input"):
        net(feats, lengths, {"feats_video.scp": (feats, lengths)})


@pytest.mark.parametrize("modalities", [(), ("audio", "video"), "audio", ("text", "text"),
                                        None])
def test_bad_modalities(modalities):
    with pytest.raises(SertkError, match="mcsan modalities"):
        _net(modalities)
    with pytest.raises(SertkError, match="mcsan modalities"):
        MCSAN.input_tables_for({"modalities": modalities})


@pytest.mark.parametrize("conf, match", [
    ({"heads": 3}, "divisible by heads 3"),
    ({"embedding_path": "glove.txt"}, "embedding_path needs model.conf.tokenizer"),
    ({"conv_channels": 128}, "conv_channels must be a list"),
    ({"conv_channels": [6, 0]}, r"conv_channels\[1\] must be a positive"),
    ({"pool_stride": 0}, "pool_stride must be a positive"),
    ({"audio_max_len": 0}, "audio_max_len must be a positive"),
    ({"num_layers": 0}, "num_layers must be a positive"),
    ({"modality_dropout": 1.0}, "modality_dropout must be in")])
def test_bad_options(conf, match):
    with pytest.raises(SertkError, match=match):
        _net(BI, **conf)


def test_input_tables_for():
    tables = MCSAN.input_tables_for
    assert tables({}) == {TEXT: "tokens"}
    assert tables(None) == {TEXT: "tokens"}
    assert tables({"modalities": ["audio"]}) == {}
    assert tables({"modalities": ["text"]}) == {TEXT: "tokens"}
    assert tables({"modalities": ["text", "audio"], "heads": 4}) == {TEXT: "tokens"}


# ---------------------------------------------------------------- training and config


def test_loss_decreases_on_a_tiny_batch():
    net = _net(BI, dropout=0.0, fc_dropout=0.0)
    feats, lengths, inputs = _batch(4)
    check_loss_decreases(net, feats, lengths, inputs, torch.tensor([0, 1, 2, 1]), lr=1e-2)


def test_modality_dropout_in_the_model_trains_and_is_off_in_eval():
    net = _net(BI, modality_dropout=0.5)
    feats, lengths, inputs = _batch()
    net.eval()
    with torch.no_grad():
        assert torch.equal(net(feats, lengths, inputs), net(feats, lengths, inputs))
    _forward_backward(net, feats, lengths, inputs)


def test_shipped_config_builds_and_runs():
    cfg = yaml.safe_load((ROOT / "conf/model/mcsan.yaml").read_text())
    assert {"feats", "model", "loss", "optim", "scheduler", "train"} <= set(cfg)
    assert (ROOT / cfg["feats"]).is_file()
    conf = cfg["model"]["conf"]
    assert {"tokenizer", "modality_dropout"} <= set(conf)
    torch.manual_seed(0)
    net = models.build(cfg["model"]["name"], input_dim=40, num_classes=4,
                       input_sizes={TEXT: 60}, **conf)
    assert MCSAN.input_tables_for(conf) == {TEXT: "tokens"}
    feats = torch.randn(2, 40, 40)
    inputs = {TEXT: (torch.randint(1, 60, (2, 7)), torch.tensor([7, 3]))}
    net.eval()
    with torch.no_grad():
        out = net(feats, torch.tensor([40, 25]), inputs)
    assert out.shape == (2, 4) and torch.isfinite(out).all()
