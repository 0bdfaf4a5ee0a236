"""ks_transformer (papers.md section 24): bi-modal forward/backward, padding invariance of the
audio and text inputs (with key-sparse top-k over real keys only), the key-sparse attention in
use (kept keys, ratio, equality with dense attention at k = all keys), the CCAB wiring,
uni-modal configs, input and option errors, the extra input tables, a short training run and
the shipped config."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import yaml

import sertk.models.ks_transformer  # noqa: F401  (registers the model)
from sertk import models
from sertk.errors import SertkError
from sertk.models.ks_transformer import KSTransformer
from sertk.models.layers.ks_attention import KeySparseAttention
from tests.model_checks import check_forward_backward, check_padding_invariance
from tests.multimodal_checks import check_invariance as _check_invariance
from tests.multimodal_checks import check_loss_decreases, check_modality_dropout
from tests.multimodal_checks import forward_backward as _forward_backward
from tests.multimodal_checks import one_thread as _one_thread  # noqa: F401 (autouse)

ROOT = Path(__file__).resolve().parents[1]
TEXT = "text"
AUDIO_DIM, VOCAB, CLASSES = 5, 20, 3
SIZES = {TEXT: VOCAB}
SMALL = {"d_model": 8, "heads": 2, "ffn_dim": 16, "encoder_layers": 1, "ccab_blocks": 2,
         "fusion_layers": 1, "embedding_dim": 6, "audio_max_len": None, "text_max_len": None,
         "dropout": 0.1}
BI = ("audio", "text")


def _net(modalities=BI, **conf) -> KSTransformer:
    torch.manual_seed(0)
    return models.build("ks_transformer", input_dim=AUDIO_DIM, num_classes=CLASSES,
                        input_sizes=SIZES, modalities=modalities, **{**SMALL, **conf})


def _batch(b: int = 3, seed: int = 1):
    """Padded audio and text of ``b`` utterances (padding: zeros / token 0)."""
    g = torch.Generator().manual_seed(seed)
    a_len = torch.tensor([10, 7, 3, 9][:b])
    t_len = torch.tensor([6, 1, 4, 8][:b])
    feats = torch.randn(b, int(a_len.max()), AUDIO_DIM, generator=g)
    tokens = torch.randint(1, VOCAB, (b, int(t_len.max())), generator=g)
    for i in range(b):
        feats[i, a_len[i]:] = 0.0
        tokens[i, t_len[i]:] = 0
    return feats, a_len, {TEXT: (tokens, t_len)}


def _ks_modules(net) -> list[KeySparseAttention]:
    return [m for m in net.modules() if isinstance(m, KeySparseAttention)]


# ---------------------------------------------------------------- multimodal


@pytest.mark.parametrize("conf", [{}, {"norm_first": False}, {"ks_scope": "shared"},
                                  {"ccab_blocks": 0}, {"pooling": "max"},
                                  {"attention": "full"}],
                         ids=["default", "post_ln", "shared", "no_ccab", "max", "full"])
def test_forward_backward_bimodal(conf):
    net = _net(BI, **conf)
    _forward_backward(net, *_batch())
    blocks = conf.get("ccab_blocks", SMALL["ccab_blocks"])
    assert set(net.ccab) == {"audio", "text"}  # ccab[A]: queries from A
    assert all(len(stack) == blocks for stack in net.ccab.values())
    # two KS-Transformers per CCAB and direction, plus the deep-fusion layers
    n_ks = 0 if conf.get("attention") == "full" else 2 * 2 * blocks + SMALL["fusion_layers"]
    assert len(_ks_modules(net)) == n_ks
    assert net.out.in_features == 2 * SMALL["d_model"]


@pytest.mark.parametrize("conf", [{}, {"ks_ratio": 0.2, "ks_scope": "shared"},
                                  {"ks_topk": 2, "norm_first": False}],
                         ids=["default", "shared_0.2", "top2_post_ln"])
@pytest.mark.parametrize("modality", BI)
def test_padding_invariance(modality, conf):
    _check_invariance(_net(BI, **conf), *_batch(), modality)


def test_ccab_wiring_queries_from_a_keys_from_b():
    """The first layer of every CCAB attends from the query modality to the other one's
    encoder output; later CCABs take the previous output as queries."""
    net = _net(BI, ccab_blocks=2).eval()
    feats, lengths, inputs = _batch()
    seen = []
    for a, stack in net.ccab.items():
        for k, block in enumerate(stack):
            block.cross.attn.register_forward_hook(
                lambda _m, args, _out, a=a, k=k: seen.append((a, k, args[0].shape[1],
                                                              args[1].shape[1])))
    with torch.no_grad():
        net(feats, lengths, inputs)
    t_audio, t_text = feats.shape[1], inputs[TEXT][0].shape[1]
    assert seen == [("audio", 0, t_audio, t_text), ("audio", 1, t_audio, t_text),
                    ("text", 0, t_text, t_audio), ("text", 1, t_text, t_audio)]


def test_empty_text_sequence_is_accepted():
    net = _net(BI).eval()
    feats, lengths, inputs = _batch()
    tokens, t_len = inputs[TEXT]
    t_len = t_len.clone()
    t_len[1] = 0
    with torch.no_grad():
        out = net(feats, lengths, {TEXT: (tokens, t_len)})
        none = net(feats, lengths, {TEXT: (tokens[:, :0], torch.zeros(3, dtype=torch.long))})
    assert torch.isfinite(out).all() and torch.isfinite(none).all()


def test_inputs_longer_than_max_len_are_cut():
    net = _net(BI, audio_max_len=6, text_max_len=3).eval()
    feats, lengths, inputs = _batch()
    tokens, t_len = inputs[TEXT]
    with torch.no_grad():
        ref = net(feats, lengths, inputs)
        cut = net(feats[:, :6], lengths.clamp(max=6), {TEXT: (tokens[:, :3], t_len.clamp(max=3))})
    torch.testing.assert_close(cut, ref)


# ---------------------------------------------------------------- key-sparse attention


def test_key_sparse_keeps_ceil_half_of_the_real_keys(monkeypatch):
    """Every KS layer of the model keeps ceil(0.5 x real keys) keys per sample and head."""
    net = _net(BI).eval()
    kept = []
    original = KeySparseAttention.key_mask

    def spy(self, w, queries, keys):
        keep = original(self, w, queries, keys)
        kept.append((keep.sum(-1).flatten(1), keys.sum(1)))
        return keep

    monkeypatch.setattr(KeySparseAttention, "key_mask", spy)
    with torch.no_grad():
        net(*_batch())
    assert len(kept) == len(_ks_modules(net)) == 9
    valid_lengths = set()
    for n_kept, n_real in kept:
        want = torch.tensor([math.ceil(0.5 * n) for n in n_real.tolist()])
        assert (n_kept == want[:, None]).all(), (n_kept, n_real)
        valid_lengths.add(tuple(n_real.tolist()))
    # keys: the text (6, 1, 4), the audio (10, 7, 3) and the fused sequence (sums)
    assert valid_lengths == {(6, 1, 4), (10, 7, 3), (16, 8, 7)}


def test_ratio_changes_the_output_and_ratio_one_is_dense_attention():
    feats, lengths, inputs = _batch()
    dense = _net(BI, attention="full").eval()
    outs = {}
    for ratio in (0.2, 0.5, 1.0):
        net = _net(BI, ks_ratio=ratio).eval()
        net.load_state_dict(dense.state_dict())  # same parameter names and shapes
        with torch.no_grad():
            outs[ratio] = net(feats, lengths, inputs)
    with torch.no_grad():
        ref = dense(feats, lengths, inputs)
    torch.testing.assert_close(outs[1.0], ref, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(outs[0.5], ref, atol=1e-4)
    assert not torch.allclose(outs[0.2], outs[0.5], atol=1e-4)
    top_all = _net(BI, ks_topk=100).eval()
    top_all.load_state_dict(dense.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(top_all(feats, lengths, inputs), ref, atol=1e-5, rtol=1e-5)


def test_ks_options_reach_the_attention_layers():
    net = _net(BI, ks_ratio=0.3, ks_topk=2, ks_scope="shared")
    assert all(m.ratio == 0.3 and m.topk == 2 and m.scope == "shared"
               for m in _ks_modules(net))
    assert all(m.num_heads == SMALL["heads"] for m in _ks_modules(net))


# ---------------------------------------------------------------- uni-modal


def test_audio_only():
    net = _net(("audio",))
    assert list(net.encoders) == ["audio"] and len(net.ccab) == 0
    assert len(_ks_modules(net)) == SMALL["fusion_layers"]
    assert net.out.in_features == SMALL["d_model"]
    feats, lengths, _ = _batch()
    check_forward_backward(net, feats, lengths, CLASSES)
    check_padding_invariance(net, feats, lengths)


def test_text_only_ignores_audio():
    net = _net(("text",))
    assert list(net.encoders) == ["text"] and len(net.ccab) == 0
    feats, lengths, inputs = _batch()
    _forward_backward(net, feats, lengths, inputs)
    _check_invariance(net, feats, lengths, inputs, "text")
    with torch.no_grad():
        other = net(torch.randn(3, 2, 11), torch.tensor([2, 1, 2]), inputs)
        torch.testing.assert_close(other, net(feats, lengths, inputs))


def test_modalities_are_put_in_canonical_order():
    assert _net(("text", "audio")).modalities == BI


# ---------------------------------------------------------------- errors and tables


def test_missing_text_input_is_a_clear_error():
    feats, lengths, _ = _batch()
    net = _net(BI)
    with pytest.raises(SertkError, match=r"model ks_transformer needs the text input "
                                         r"\(modalities audio, text\)"):
        net(feats, lengths)
    with pytest.raises(SertkError, match="ks_transformer needs the text input"):
        net(feats, lengths, {"feats_video.scp": (feats, lengths)})


@pytest.mark.parametrize("modalities", [(), ("audio", "video"), "audio", ("text", "text")])
def test_bad_modalities(modalities):
    with pytest.raises(SertkError, match="ks_transformer modalities"):
        _net(modalities)
    with pytest.raises(SertkError, match="ks_transformer modalities"):
        KSTransformer.input_tables_for({"modalities": modalities})


@pytest.mark.parametrize("conf, match", [
    ({"heads": 3}, "d_model 8 must be divisible by heads 3"),
    ({"d_model": 0}, "d_model must be a positive integer"),
    ({"heads": 2.0}, "heads must be a positive integer"),
    ({"encoder_layers": -1}, "encoder_layers must be a non-negative integer"),
    ({"ccab_blocks": True}, "ccab_blocks"), ({"fusion_layers": 1.5}, "fusion_layers"),
    ({"attention": "sparse"}, "attention must be one of key_sparse, full"),
    ({"ks_ratio": 0.0}, r"ks_ratio must be in \(0, 1\]"), ({"ks_ratio": 1.5}, "ks_ratio"),
    ({"ks_topk": 0}, "ks_topk must be at least 1"),
    ({"ks_scope": "global"}, "ks_scope must be one of per_head, shared"),
    ({"pooling": "attention"}, "pooling must be one of mean, max"),
    ({"dropout": 1.0}, r"dropout must be in \[0, 1\)"),
    ({"transformer_dropout": -0.1}, "transformer_dropout"),
    ({"audio_max_len": 0}, "audio_max_len must be positive or null"),
    ({"text_max_len": 0}, "text_max_len"),
    ({"embedding_path": "glove.txt"}, "embedding_path needs model.conf.tokenizer"),
    ({"modality_dropout": 1.0}, "modality_dropout")])
def test_bad_options(conf, match):
    with pytest.raises(SertkError, match=match):
        _net(BI, **conf)


def test_input_tables_for():
    tables = KSTransformer.input_tables_for
    assert tables({}) == {TEXT: "tokens"}
    assert tables(None) == {TEXT: "tokens"}
    assert tables({"modalities": ["audio"]}) == {}
    assert tables({"modalities": ["text"]}) == {TEXT: "tokens"}
    assert tables({"modalities": ["text", "audio"], "ccab_blocks": 1}) == {TEXT: "tokens"}


def test_default_build_and_sizes():
    net = models.build("ks_transformer", input_dim=80, num_classes=4)
    assert net.modalities == BI
    text = net.encoders["text"]
    assert text.embedding.num_embeddings == 256 and text.embedding.padding_idx == 0
    assert text.embedding.embedding_dim == 300 and text.proj.out_features == 256
    assert net.encoders["audio"].proj.in_features == 80
    assert all(len(e.encoder.layers) == 5 for e in net.encoders.values())
    assert all(len(stack) == 3 for stack in net.ccab.values()) and len(net.fusion) == 2
    ks = _ks_modules(net)
    assert len(ks) == 2 * 2 * 3 + 2
    assert all(m.ratio == 0.5 and m.topk is None and m.num_heads == 8 for m in ks)


# ---------------------------------------------------------------- training and config


def test_loss_decreases_on_a_tiny_batch():
    net = _net(BI, dropout=0.0, transformer_dropout=0.0)
    feats, lengths, inputs = _batch(4)
    check_loss_decreases(net, feats, lengths, inputs, torch.tensor([0, 1, 2, 1]), lr=3e-3)


def test_modality_dropout_trains_and_is_off_in_eval():
    net = _net(BI, modality_dropout=0.5)
    feats, lengths, inputs = _batch()
    check_modality_dropout(net, feats, lengths, inputs)


def test_shipped_config_builds_and_runs():
    cfg = yaml.safe_load((ROOT / "conf/model/ks_transformer.yaml").read_text())
    assert {"feats", "model", "loss", "optim", "scheduler", "train"} <= set(cfg)
    assert {"epochs", "batch_size", "grad_clip", "patience", "seed"} <= set(cfg["train"])
    feats_cfg = yaml.safe_load((ROOT / cfg["feats"]).read_text())
    input_dim = feats_cfg["num_mel_bins"]
    conf = cfg["model"]["conf"]
    assert conf["modality_dropout"] == 0.0 and conf["tokenizer"] is None
    assert conf["embedding_path"] is None and conf["freeze_embedding"] is False
    torch.manual_seed(0)
    net = models.build(cfg["model"]["name"], input_dim=input_dim, num_classes=4,
                       input_sizes={TEXT: 60}, **conf)
    assert KSTransformer.input_tables_for(conf) == {TEXT: "tokens"}
    assert len(_ks_modules(net)) == 2 * 2 * conf["ccab_blocks"] + conf["fusion_layers"]
    feats = torch.randn(2, 40, input_dim)
    inputs = {TEXT: (torch.randint(1, 60, (2, 7)), torch.tensor([7, 3]))}
    net.eval()
    with torch.no_grad():
        out = net(feats, torch.tensor([40, 25]), inputs)
    assert out.shape == (2, 4) and torch.isfinite(out).all()
    from sertk.train.schedule import build_optimizer, build_scheduler

    opt = build_optimizer(net.parameters(), cfg["optim"])
    sched, _ = build_scheduler(opt, cfg["scheduler"], cfg["train"]["epochs"], 1)
    lrs = []
    for _ in range(61):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[29] == pytest.approx(5e-4) and lrs[30] == pytest.approx(2.5e-4)
    assert lrs[60] == pytest.approx(1.25e-4)
