"""mscnn_spu_att (papers.md section 9): multimodal forward/backward for every attention mode,
padding invariance of the audio, text and x-vector inputs (incl. the 'same' convs near an
utterance's end), the attention weights, uni-modal fallbacks (audio = mscnn_spu), input
errors, the extra input tables, a short training run and the shipped config."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

import sertk.models.mscnn  # noqa: F401  (registers the models)
from sertk import models
from sertk.errors import SertkError
from sertk.models.info import info
from sertk.models.layers import lengths_to_mask
from sertk.models.mscnn import MSCNNSPUAtt, MultiScaleCNN
from tests.model_checks import check_forward_backward, check_padding_invariance
from tests.multimodal_checks import check_invariance as _check_invariance
from tests.multimodal_checks import check_loss_decreases, check_modality_dropout
from tests.multimodal_checks import forward_backward as _forward_backward
from tests.multimodal_checks import one_thread as _one_thread  # noqa: F401 (autouse)
from tests.multimodal_checks import pad_more as _pad_more

ROOT = Path(__file__).resolve().parents[1]
TEXT, XVEC = "text", "feats_xvector.scp"
AUDIO_DIM, VOCAB, XVEC_DIM, CLASSES, CH, EMB = 5, 20, 6, 3, 4, 7
SIZES = {TEXT: VOCAB, XVEC: XVEC_DIM}
SMALL = {"channels": CH, "embedding_dim": EMB, "audio_kernel_sizes": [1, 2, 3],
         "text_kernel_sizes": [1, 2, 3]}
BI = ("audio", "text")


def _net(modalities=BI, **conf) -> MSCNNSPUAtt:
    torch.manual_seed(0)
    return models.build("mscnn_spu_att", input_dim=AUDIO_DIM, num_classes=CLASSES,
                        input_sizes=SIZES, modalities=modalities, **{**SMALL, **conf})


def _batch(b: int = 3, seed: int = 1):
    """Padded audio, text and x-vectors of ``b`` utterances (padding: zeros / token 0)."""
    g = torch.Generator().manual_seed(seed)
    a_len = torch.tensor([10, 7, 3, 9][:b])
    t_len = torch.tensor([6, 1, 4, 8][:b])
    x_len = torch.tensor([1, 1, 2, 1][:b])
    feats = torch.randn(b, int(a_len.max()), AUDIO_DIM, generator=g)
    tokens = torch.randint(1, VOCAB, (b, int(t_len.max())), generator=g)
    xvec = torch.randn(b, int(x_len.max()), XVEC_DIM, generator=g)
    for i in range(b):
        feats[i, a_len[i]:] = 0.0
        tokens[i, t_len[i]:] = 0
        xvec[i, x_len[i]:] = 0.0
    return feats, a_len, {TEXT: (tokens, t_len), XVEC: (xvec, x_len)}


# ---------------------------------------------------------------- multimodal


@pytest.mark.parametrize("conf", [
    {}, {"attention": "joint"}, {"attention": "none"}, {"xvector": True},
    {"attention": "joint", "text_kernel_sizes": [2, 4], "fc_dim": 8, "swem": False}])
def test_forward_backward_bimodal(conf):
    net = _net(**conf)
    _forward_backward(net, *_batch())


def test_fused_width_per_attention_mode():
    spu_a = spu_t = 3 * 3 * CH  # 3 kernel sizes x (max, avg, std) x channels
    swem = 2 * EMB
    width = {m: _net(attention=m).classifier[-1].in_features
             for m in ("per_scale", "joint", "none")}
    assert width["none"] == spu_a + spu_t + swem
    assert width["per_scale"] == width["joint"] == width["none"] + 3 * 3 * CH  # + S
    joint = _net(attention="joint")
    assert isinstance(joint.project, torch.nn.Identity)  # equal widths: no projection
    uneven = _net(attention="joint", text_kernel_sizes=[2, 4])
    assert uneven.project.weight.shape == (2 * CH, 3 * CH) and uneven.project.bias is None
    assert _net(xvector=True).classifier[-1].in_features == width["per_scale"] + XVEC_DIM
    assert _net(swem=False).classifier[-1].in_features == width["per_scale"] - swem


@pytest.mark.parametrize("attention", ["per_scale", "joint"])
@pytest.mark.parametrize("table", ["audio", TEXT])
def test_padding_invariance(attention, table):
    net = _net(attention=attention, audio_kernel_sizes=[1, 2, 5], text_kernel_sizes=[2, 3, 4])
    feats, lengths, inputs = _batch()
    _check_invariance(net, feats, lengths, {TEXT: inputs[TEXT]}, table)


@pytest.mark.parametrize("table", ["audio", TEXT, XVEC])
def test_padding_invariance_with_xvector(table):
    _check_invariance(_net(xvector=True), *_batch(), table)


def test_same_convs_near_the_end_see_only_zeros():
    """A 'same' conv's output at an utterance's last frames is that of the utterance alone,
    whatever lies in the batch padding (odd and even kernels: PyTorch puts the extra step of
    an even kernel after the frame)."""
    torch.manual_seed(0)
    cnn = MultiScaleCNN(AUDIO_DIM, CH, [1, 2, 3, 4, 5, 6]).eval()
    x = torch.randn(2, 12, AUDIO_DIM)
    lengths = torch.tensor([12, 5])
    x[1, 5:] = 1e3  # garbage padding
    with torch.no_grad():
        batched = cnn(x, lengths_to_mask(lengths))
        alone = cnn(x[1:, :5], lengths_to_mask(lengths[1:]))
        for b, a in zip(batched, alone):
            torch.testing.assert_close(b[1, :5], a[0])
            assert torch.equal(b[1, 5:], torch.zeros_like(b[1, 5:]))  # padding zeroed
        # and alone = the utterance followed by explicit zeros (what 'same' padding gives)
        zeros = torch.cat([x[1:, :5], torch.zeros(1, 4, AUDIO_DIM)], dim=1)
        for a, z in zip(alone, cnn(zeros, torch.ones(1, 9, dtype=torch.bool))):
            torch.testing.assert_close(a[0], z[0, :5])


@pytest.mark.parametrize("attention, groups", [("per_scale", 3), ("joint", 1)])
def test_attention_weights_sum_to_one_over_real_tokens(attention, groups):
    net = _net(attention=attention).eval()
    feats, lengths, inputs = _batch()
    tokens, t_len = inputs[TEXT]
    with torch.no_grad():
        net(feats, lengths, {TEXT: (_pad_more(tokens, t_len, 4), t_len)})
    w = net.attention_weights
    assert w.shape == (3, groups, 3, tokens.shape[1] + 4)  # [B, G, (max, avg, std), L]
    real = lengths_to_mask(t_len, w.shape[-1])[:, None, None, :]
    assert torch.equal(w.masked_select(~real), torch.zeros(int((~real).sum()) * groups * 3))
    torch.testing.assert_close(w.sum(-1), torch.ones(3, groups, 3))
    assert torch.all(w[1, ..., 0] == 1.0)  # one token: all the weight
    assert _net(attention="none").attention_weights is None


def test_attention_follows_the_paper_formula():
    """per_scale: s_k = softmax_k(e_gamma^T h_k) of audio branch i over text branch i."""
    net = _net().eval()
    feats, lengths, inputs = _batch(1)
    tokens, t_len = inputs[TEXT]
    with torch.no_grad():
        net(feats, lengths, inputs)
        mask = lengths_to_mask(lengths)
        e = net.audio_cnn.pooled(feats, mask)[0]  # [S, 3, C]
        emb = net.embedding(tokens)
        h = net.text_cnn(emb, lengths_to_mask(t_len))
        for i in range(3):
            ref = torch.softmax(e[i] @ h[i][0].T, dim=-1)  # [3, L]
            torch.testing.assert_close(net.attention_weights[0, i], ref)


# ---------------------------------------------------------------- uni-modal


def test_audio_only_is_mscnn_spu():
    net = _net(("audio",), attention="joint")
    assert net.attention == "none" and not hasattr(net, "text_cnn")
    ref = models.build("mscnn_spu", input_dim=AUDIO_DIM, num_classes=CLASSES,
                       kernel_sizes=[1, 2, 3], channels=CH)
    ref.load_state_dict({k.replace("audio_cnn.", "convs.").replace("classifier.1.", "out."): v
                         for k, v in net.state_dict().items()})
    feats, lengths, _ = _batch()
    check_forward_backward(net, feats, lengths, CLASSES)
    out = check_padding_invariance(net, feats, lengths)
    ref.eval()
    with torch.no_grad():
        torch.testing.assert_close(out, ref(feats, lengths))


def test_text_only_ignores_audio():
    net = _net(("text",))
    assert not hasattr(net, "audio_cnn") and net.attention == "none"
    assert net.classifier[-1].in_features == 3 * 3 * CH + 2 * EMB
    feats, lengths, inputs = _batch()
    inputs = {TEXT: inputs[TEXT]}
    _forward_backward(net, feats, lengths, inputs)
    _check_invariance(net, feats, lengths, inputs, TEXT)
    with torch.no_grad():
        other = net(torch.randn(3, 2, 11), torch.tensor([2, 1, 2]), inputs)
        torch.testing.assert_close(other, net(feats, lengths, inputs))


def test_xvector_rows_are_averaged_and_used():
    net = _net(xvector=True).eval()
    feats, lengths, inputs = _batch()
    x, n = inputs[XVEC]
    with torch.no_grad():
        out = net(feats, lengths, inputs)
        mean = torch.stack([x[i, :n[i]].mean(0) for i in range(3)])[:, None]
        one_row = net(feats, lengths, {**inputs, XVEC: (mean, torch.ones(3, dtype=torch.long))})
        other = net(feats, lengths, {**inputs, XVEC: (x + 1.0, n)})
    torch.testing.assert_close(one_row, out)
    assert not torch.allclose(other, out)


# ---------------------------------------------------------------- errors and tables


def test_missing_input_is_a_clear_error():
    feats, lengths, inputs = _batch()
    with pytest.raises(SertkError, match=r"^model mscnn_spu_att needs the text input "
                                         r"\(modalities audio, text\)$"):
        _net()(feats, lengths)
    with pytest.raises(SertkError, match=r"needs the feats_xvector.scp input \(xvector: true\)"):
        _net(xvector=True)(feats, lengths, {TEXT: inputs[TEXT]})
    with pytest.raises(SertkError, match=r"feats_xvector.scp must be \[B, n, 6\], got"):
        wrong = (torch.randn(3, 1, 4), inputs[XVEC][1])
        _net(xvector=True)(feats, lengths, {**inputs, XVEC: wrong})


@pytest.mark.parametrize("modalities", [(), ("audio", "video"), "audio", ("text", "text")])
def test_bad_modalities(modalities):
    with pytest.raises(SertkError, match="mscnn_spu_att modalities"):
        _net(modalities)
    with pytest.raises(SertkError, match="mscnn_spu_att modalities"):
        MSCNNSPUAtt.input_tables_for({"modalities": modalities})


@pytest.mark.parametrize("conf, match", [
    ({"attention": "mha"}, "attention must be one of per_scale, joint, none"),
    ({"text_kernel_sizes": [1, 2]}, "per_scale pairs the audio and text kernel sizes one to "
                                    r"one, but there are 3 and 2 \(use attention: joint\)"),
    ({"audio_kernel_sizes": []}, "audio_kernel_sizes must be a non-empty list"),
    ({"text_kernel_sizes": [0, 2, 3]}, "text_kernel_sizes must be a non-empty list"),
    ({"audio_kernel_sizes": 3}, "audio_kernel_sizes"),
    ({"channels": 0}, "channels must be a positive integer"),
    ({"dropout": 1.0}, r"dropout must be in \[0, 1\)"), ({"fc_dim": 0}, "fc_dim"),
    ({"xvector": "yes"}, "xvector must be true or false"),
    ({"modalities": ["text"], "xvector": True}, "xvector: true needs the audio modality"),
    ({"embedding_path": "glove.txt"}, "embedding_path needs model.conf.tokenizer"),
    ({"modality_dropout": 1.0}, "modality_dropout")])
def test_bad_options(conf, match):
    with pytest.raises(SertkError, match=match):
        _net(**conf)


def test_error_messages_are_one_line():
    for conf in ({"attention": "mha"}, {"text_kernel_sizes": [1]}, {"xvector": 1}):
        with pytest.raises(SertkError) as err:
            _net(**conf)
        assert "\n" not in str(err.value)


def test_input_tables_for():
    tables = MSCNNSPUAtt.input_tables_for
    assert tables({}) == {TEXT: "tokens"}
    assert tables(None) == {TEXT: "tokens"}
    assert tables({"modalities": ["audio"]}) == {}
    assert tables({"modalities": ["text"]}) == {TEXT: "tokens"}
    assert tables({"xvector": True}) == {TEXT: "tokens", XVEC: "feats"}
    assert tables({"modalities": ["audio"], "xvector": True}) == {XVEC: "feats"}
    with pytest.raises(SertkError, match="needs the audio modality"):
        tables({"modalities": ["text"], "xvector": True})


def test_default_build_and_sizes():
    net = models.build("mscnn_spu_att", input_dim=40, num_classes=4)
    assert net.modalities == BI and net.attention == "per_scale" and not net.xvector
    assert net.embedding.num_embeddings == 256 and net.embedding.padding_idx == 0
    assert net.embedding.embedding_dim == 300
    assert [c.kernel_size for c in net.audio_cnn] == [(s,) for s in range(1, 6)]
    assert all(c.out_channels == 128 for c in (*net.audio_cnn, *net.text_cnn))
    assert net.text_cnn[0].in_channels == 300 and net.audio_cnn[0].in_channels == 40
    # audio SPU 5 x 3 x 128 + text SPU 5 x 3 x 128 + SWEM 2 x 300 + S 5 x 3 x 128
    assert net.classifier[-1].in_features == 3 * 1920 + 600
    assert net.classifier[0].p == 0.3
    xnet = models.build("mscnn_spu_att", input_dim=40, num_classes=4, xvector=True)
    assert xnet.classifier[-1].in_features == 3 * 1920 + 600 + 512
    ordered = models.build("mscnn_spu_att", input_dim=40, num_classes=4,
                           modalities=["text", "audio"])
    assert ordered.modalities == BI


# ---------------------------------------------------------------- training and config


def test_loss_decreases_on_a_tiny_batch():
    net = _net(dropout=0.0, xvector=True)
    feats, lengths, inputs = _batch(4)
    check_loss_decreases(net, feats, lengths, inputs, torch.tensor([0, 1, 2, 1]), lr=1e-2)


def test_modality_dropout_trains_and_is_off_in_eval():
    net = _net(modality_dropout=0.5, xvector=True)
    feats, lengths, inputs = _batch()
    check_modality_dropout(net, feats, lengths, inputs)


def test_portable_conf_drops_the_embedding_path():
    conf = {"embedding_path": "/data/glove.txt", "channels": 8}
    assert MSCNNSPUAtt.portable_conf(conf) == {"embedding_path": None, "channels": 8}


def test_shipped_config_builds_and_runs():
    cfg = yaml.safe_load((ROOT / "conf/model/mscnn_spu_att.yaml").read_text())
    assert {"feats", "model", "loss", "optim", "scheduler", "train"} <= set(cfg)
    assert {"epochs", "batch_size", "grad_clip", "patience", "seed"} <= set(cfg["train"])
    assert cfg["optim"]["lr"] == 5.0e-4 and cfg["train"]["grad_clip"] == 1.0
    assert cfg["train"]["batch_size"] == 64
    conf = cfg["model"]["conf"]
    assert conf["modality_dropout"] == 0.0 and conf["tokenizer"] is None
    assert conf["embedding_path"] is None and conf["freeze_embedding"] is False
    assert conf["xvector"] is False
    feats_cfg = yaml.safe_load((ROOT / cfg["feats"]).read_text())
    dim = feats_cfg["num_ceps"]
    torch.manual_seed(0)
    net = models.build(cfg["model"]["name"], input_dim=dim, num_classes=4,
                       input_sizes={TEXT: 60}, **conf)
    assert MSCNNSPUAtt.input_tables_for(conf) == {TEXT: "tokens"}
    feats = torch.randn(2, 40, dim)
    inputs = {TEXT: (torch.randint(1, 60, (2, 7)), torch.tensor([7, 3]))}
    net.eval()
    with torch.no_grad():
        out = net(feats, torch.tensor([40, 25]), inputs)
    assert out.shape == (2, 4) and torch.isfinite(out).all()
    res = info("mscnn_spu_att")  # `sertk models info` (tests/test_models.py's shipped check)
    assert res["params"] > 0 and res["mflops"] > 0 and res["input"][1] == dim
