"""Key-sparse attention (layer and stl_transformer option) and maec: equality with full
attention, top-k selection, padding, forward/backward, padding invariance, auxiliary losses,
gradient reversal and a short training run."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sertk import models
from sertk.errors import SertkError
from sertk.models.layers import GradientReversal
from sertk.models.layers.ks_attention import KeySparseAttention
from sertk.models.maec import MAEC
from tests.model_checks import check_forward_backward, check_padding_invariance

LENGTHS = torch.tensor([9, 5, 2])
STL_SMALL = {"channels": (4, 4, 4, 4, 4, 4), "lstm_hidden": 8, "num_layers": 2, "heads": 2,
             "ffn_dim": 16, "pools": ((2, 2), (2, 2), (1, 2), (1, 2), (1, 2), (1, 1))}
MAEC_SMALL = {"conv_channels": (16, 16, 8), "bottleneck": 12, "gru_hidden": 6,
              "disc_hidden": 8, "aux_classes": {"utt2gender": 2}}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)  # the machine is shared; small models run faster this way
    yield
    torch.set_num_threads(n)


def _padding(lengths: torch.Tensor, t: int) -> torch.Tensor:
    return torch.arange(t)[None, :] >= lengths[:, None]  # True = padding


def _pair(**ks) -> tuple[nn.MultiheadAttention, KeySparseAttention]:
    torch.manual_seed(0)
    full = nn.MultiheadAttention(16, 4, batch_first=True)
    sparse = KeySparseAttention(16, 4, **ks)
    sparse.load_state_dict(full.state_dict())
    return full.eval(), sparse.eval()


# ---------------------------------------------------------------- key-sparse attention


@pytest.mark.parametrize("ks", [{"ratio": 1.0}, {"topk": 9}, {"topk": 50, "scope": "shared"}])
def test_key_sparse_equals_full_attention_when_k_covers_the_keys(ks):
    full, sparse = _pair(**ks)
    x, pad = torch.randn(3, 9, 16), _padding(LENGTHS, 9)
    ref, ref_w = full(x, x, x, key_padding_mask=pad)
    out, w = sparse(x, x, x, key_padding_mask=pad)
    torch.testing.assert_close(out, ref)
    torch.testing.assert_close(w, ref_w)


def test_key_sparse_runs_inside_a_stock_encoder_layer_in_inference():
    """The layer's inference fast path must not bypass the key-sparse module."""
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(16, 4, 32, 0.0, batch_first=True, norm_first=True)
    sparse_layer = nn.TransformerEncoderLayer(16, 4, 32, 0.0, batch_first=True,
                                              norm_first=True)
    sparse_layer.load_state_dict(layer.state_dict())
    sparse_layer.self_attn = _pair(topk=9)[1]
    sparse_layer.self_attn.load_state_dict(layer.self_attn.state_dict())
    layer.eval(), sparse_layer.eval()
    x, pad = torch.randn(3, 9, 16), _padding(LENGTHS, 9)
    with torch.no_grad():
        real = ~pad
        torch.testing.assert_close(sparse_layer(x, src_key_padding_mask=pad)[real],
                                   layer(x, src_key_padding_mask=pad)[real])
        sparse_layer.self_attn.topk = 1
        diff = sparse_layer(x, src_key_padding_mask=pad) - layer(x, src_key_padding_mask=pad)
        assert float(diff[real].abs().max()) > 1e-3


@pytest.mark.parametrize("scope", ["per_head", "shared"])
@pytest.mark.parametrize("ks, kept", [({"topk": 3}, [3, 3, 2]), ({"ratio": 0.5}, [5, 3, 1]),
                                      ({"ratio": 0.1}, [1, 1, 1])])
def test_small_k_keeps_k_keys_with_their_weights(scope, ks, kept):
    full, sparse = _pair(scope=scope, **ks)
    x, pad = torch.randn(3, 9, 16), _padding(LENGTHS, 9)
    _, dense = full(x, x, x, key_padding_mask=pad, average_attn_weights=False)
    _, w = sparse(x, x, x, key_padding_mask=pad, average_attn_weights=False)  # [B, H, T, S]
    columns = (w > 0).any(2)  # [B, H, S]: keys with a nonzero weight
    if scope == "shared":
        assert columns.any(1).sum(-1).tolist() == kept  # the same keys in every head
        assert (columns == columns.any(1, keepdim=True)).all()
    else:
        assert (columns.sum(-1) == torch.tensor(kept)[:, None]).all()
    torch.testing.assert_close(w, dense * (w > 0))  # kept weights unchanged, no renormalising
    real = ~pad
    col_sums = (dense * real[:, None, :, None]).sum(2)
    if scope == "shared":
        col_sums = col_sums.sum(1, keepdim=True).expand_as(columns)
    for b, h in zip(*torch.nonzero(columns.any(-1), as_tuple=True)):  # kept = largest sums
        lowest_kept = col_sums[b, h][columns[b, h]].min()
        dropped = col_sums[b, h][real[b] & ~columns[b, h]]
        assert (dropped <= lowest_kept + 1e-6).all()


def test_padding_keys_are_never_selected():
    _, sparse = _pair(topk=4)
    x, pad = torch.randn(3, 9, 16), _padding(LENGTHS, 9)
    x[pad] = 1e3  # garbage padding that would dominate the column sums
    out, w = sparse(x, x, x, key_padding_mask=pad, average_attn_weights=False)
    assert not (w > 0).any(2).masked_select(pad[:, None, :]).any()
    assert ((w > 0).any(2).sum(-1) == torch.tensor([4, 4, 2])[:, None]).all()
    for i, n in enumerate(LENGTHS.tolist()):  # each utterance alone gives the same rows
        alone, _ = sparse(x[i:i + 1, :n], x[i:i + 1, :n], x[i:i + 1, :n])
        torch.testing.assert_close(alone[0], out[i, :n])


def test_key_sparse_options_are_checked():
    with pytest.raises(SertkError, match="ratio must be in"):
        KeySparseAttention(16, 4, ratio=0.0)
    with pytest.raises(SertkError, match="scope must be one of"):
        KeySparseAttention(16, 4, scope="global")
    with pytest.raises(SertkError, match="attention must be one of"):
        models.build("stl_transformer", input_dim=40, num_classes=4, attention="sparse")


@pytest.mark.parametrize("ks", [{"ks_scope": "per_head"}, {"ks_scope": "shared", "ks_topk": 2}])
def test_stl_transformer_key_sparse(ks):
    torch.manual_seed(0)
    net = models.build("stl_transformer", input_dim=40, num_classes=5, attention="key_sparse",
                       **ks, **STL_SMALL)
    assert all(isinstance(layer.self_attn, KeySparseAttention) for layer in net.stl.layers)
    lengths, x = torch.tensor([83, 50, 17]), torch.randn(3, 83, 40)
    check_forward_backward(net, x, lengths, num_classes=5)
    check_padding_invariance(net, x, lengths, extra_frames=57)


def test_stl_transformer_key_sparse_with_all_keys_is_the_default_model():
    torch.manual_seed(0)
    x, lengths = torch.randn(3, 83, 40), torch.tensor([83, 50, 17])
    full, sparse = (models.build("stl_transformer", input_dim=40, num_classes=4, **STL_SMALL,
                                 **conf).eval()
                    for conf in ({}, {"attention": "key_sparse", "ks_ratio": 1.0}))
    sparse.load_state_dict(full.state_dict())  # same parameter names: checkpoints load
    with torch.no_grad():
        torch.testing.assert_close(sparse(x, lengths), full(x, lengths))


# ---------------------------------------------------------------- maec


def _maec(**over) -> MAEC:
    torch.manual_seed(0)
    return models.build("maec", input_dim=26, num_classes=4, **{**MAEC_SMALL, **over})


def _gender_loss(net: nn.Module) -> torch.Tensor:
    return net.auxiliary_loss({"utt2gender": torch.tensor([0, 1, -1])})


@pytest.mark.parametrize("conf", [{}, {"adversarial_mode": "non_saturating"},
                                  {"bottleneck": 16, "gru_hidden": 8},  # no query projection
                                  {"adversarial_weight": 0.0}])  # mec: no discriminator
def test_maec_forward_backward_and_padding_invariance(conf):
    net = _maec(**conf)
    same_width = net.bottleneck.out_features == 2 * net.gru.hidden_size
    assert isinstance(net.query, nn.Identity) == same_width  # BT projected only if needed
    lengths, x = torch.tensor([83, 50, 3]), torch.randn(3, 83, 26)  # 3 < one instance
    check_forward_backward(net, x, lengths, num_classes=4, extra_loss=_gender_loss)
    check_padding_invariance(net, x, lengths, extra_frames=57)
    frozen = {n.split(".")[0] for n, p in net.named_parameters() if not p.requires_grad}
    assert frozen == ({"discriminator"} if conf.get("adversarial_weight") == 0 else set())


def test_maec_instance_block_equals_per_instance_convolution():
    block = _maec().instances
    x = torch.randn(2, 12, 26)
    instances = x.unfold(1, 5, 1)  # [B, N, D, 5]: 50 ms windows every 10 ms
    ref = block.per_instance(instances.reshape(-1, 26, 5)).view(2, 8, -1)
    torch.testing.assert_close(block(x), ref)
    short = torch.randn(1, 3, 26)  # shorter than an instance: zero-padded to 5 frames
    torch.testing.assert_close(block(short)[0],
                               block.per_instance(F.pad(short, (0, 0, 0, 2)).transpose(1, 2)))


def test_maec_auxiliary_loss_with_unknown_genders():
    net = _maec().train()
    x, lengths = torch.randn(3, 30, 26), torch.tensor([30, 20, 8])
    net(x, lengths)
    for targets in ({"utt2gender": torch.tensor([-1, -1, -1])}, {}):
        loss = net.auxiliary_loss(targets)
        assert torch.isfinite(loss)
        net.zero_grad()
        loss.backward(retain_graph=True)
        assert net.gender_head.weight.grad is not None  # still in the graph (DDP)
        assert float(net.gender_head.weight.grad.abs().sum()) == 0.0
    known = net.auxiliary_loss({"utt2gender": torch.tensor([0, -1, 1])})
    assert torch.isfinite(known) and float(known.detach()) > float(loss.detach())
    assert MAEC.aux_tables_for({}) == ("utt2gender",)
    assert MAEC.aux_tables_for({"gender_weight": 0}) == ()
    net.eval()
    net(x, lengths)
    with pytest.raises(RuntimeError, match="training-mode forward"):
        net.auxiliary_loss({})


def test_gradient_reversal_layer_flips_gradients():
    x = torch.randn(4, 3, requires_grad=True)
    g = torch.randn(4, 3)
    y = GradientReversal(0.7)(x)
    torch.testing.assert_close(y, x)
    (y * g).sum().backward()
    torch.testing.assert_close(x.grad, -0.7 * g)


def test_maec_encoder_gets_the_reversed_discriminator_gradient():
    net = _maec(grl_lambda=1.0, dropout=0.0).train()
    x, lengths = torch.randn(3, 30, 26), torch.tensor([30, 20, 8])
    encoder = [p for n, p in net.named_parameters()
               if n.split(".")[0] in ("instances", "bottleneck", "gru", "query")]
    disc = list(net.discriminator.parameters())

    def grads(scale: float) -> list[torch.Tensor]:
        net.grl.scale = scale  # -1: no reversal, the discriminator's own direction
        torch.manual_seed(1)  # the same prior samples
        loss = net.adversarial_loss(net.encode(x, lengths))
        return torch.autograd.grad(loss, encoder + disc)

    reversed_, plain = grads(1.0), grads(-1.0)
    n = len(encoder)
    for r, p in zip(reversed_[:n], plain[:n]):
        torch.testing.assert_close(r, -p)
    for r, p in zip(reversed_[n:], plain[n:]):
        torch.testing.assert_close(r, p)
    assert any(float(p.abs().sum()) > 0 for p in plain[:n])

    # a descent step on the encoder with the reversed gradient fools the discriminator more
    def fake_loss() -> float:
        with torch.no_grad():
            logit = net.discriminator(net.encode(x, lengths))
            return float(F.binary_cross_entropy_with_logits(logit, torch.zeros_like(logit)))

    before = fake_loss()
    with torch.no_grad():
        for p, g in zip(encoder, reversed_[:n]):
            p -= 1e-2 * g
    assert fake_loss() > before


def test_maec_loss_decreases_on_a_fixed_batch():
    net = _maec(dropout=0.0).train()
    torch.manual_seed(2)
    x, lengths = torch.randn(6, 40, 26), torch.tensor([40, 36, 30, 25, 20, 12])
    emotion, gender = torch.tensor([0, 1, 2, 3, 0, 1]), torch.tensor([0, 1, 0, 1, -1, 0])
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    losses = []
    for _ in range(30):
        ce = F.cross_entropy(net(x, lengths), emotion)
        loss = ce + net.auxiliary_loss({"utt2gender": gender})
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    print("maec losses:", " ".join(f"{v:.3f}" for v in losses))
    assert all(torch.isfinite(torch.tensor(losses)))
    assert sum(losses[-5:]) / 5 < 0.7 * sum(losses[:5]) / 5


def test_maec_options_are_checked():
    with pytest.raises(SertkError, match="adversarial_mode must be one of"):
        _maec(adversarial_mode="wgan")
    with pytest.raises(SertkError, match="dilation must be in"):
        _maec(dilation=5)


def test_maec_dialogue_context():
    from sertk.data.dialog import PREV_OTHER, PREV_SELF

    assert MAEC.input_tables_for({"context": True}) == {PREV_SELF: "context",
                                                        PREV_OTHER: "context"}
    assert MAEC.input_tables_for({}) == {}
    net = _maec(context=True)
    g = torch.Generator().manual_seed(0)
    lengths = torch.tensor([12, 9, 7])
    x = torch.randn(3, 12, 26, generator=g) * ~_padding(lengths, 12).unsqueeze(-1)
    ctx = {}
    for table, lens in ((PREV_SELF, [10, 0, 6]), (PREV_OTHER, [8, 7, 0])):
        n = torch.tensor(lens)
        ctx[table] = (torch.randn(3, 10, 26, generator=g) * ~_padding(n, 10).unsqueeze(-1), n)
    out = net.train()(x, lengths, inputs=ctx)
    loss = out.logsumexp(-1).mean() + net.auxiliary_loss(
        {"utt2gender": torch.tensor([0, 1, -1])})
    loss.backward()
    assert out.shape == (3, 4) and net.emotion_head.in_features == 2 * net.key_dim
    missing = [n for n, p in net.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, missing
    net.eval()
    ref = net(x, lengths, inputs=ctx)
    for i in range(3):  # each utterance alone, its contexts cut to their lengths
        one = {t: (v[i:i + 1, :int(n[i])], n[i:i + 1]) for t, (v, n) in ctx.items()}
        assert torch.allclose(net(x[i:i + 1, :lengths[i]], lengths[i:i + 1], inputs=one),
                              ref[i:i + 1], atol=1e-5)
    # a missing turn: HF = 0, so PI is uniform over the latent dimensions
    hf = net.encode(x, lengths)
    z = net.fuse_context(hf, {PREV_SELF: (ctx[PREV_SELF][0], torch.tensor([0, 0, 0])),
                              PREV_OTHER: ctx[PREV_OTHER]})
    assert torch.allclose(z[:, :net.key_dim], hf / net.key_dim, atol=1e-6)
    with pytest.raises(SertkError, match="maec with context needs the feats_prev_self.scp"):
        net(x, lengths)
