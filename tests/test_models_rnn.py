"""Recurrent models: hnsd, att_lstm (all variants), ar_gru -- forward/backward on padded
batches, padding invariance, size/cost, and the custom cells against their formulas."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import sertk.models.ar_gru  # noqa: F401  (register models)
import sertk.models.att_lstm  # noqa: F401
import sertk.models.hnsd  # noqa: F401
from sertk import models
from sertk.errors import SertkError
from sertk.models.ar_gru import AReLU, ARGRUCell
from sertk.models.att_lstm import VARIANTS, AttentionGateLSTMCell
from sertk.models.layers import lengths_to_mask
from sertk.models.layers.recurrent import MaskedRNN, reverse_padded
from tests.model_checks import check_forward_backward, check_padding_invariance

SMALL = {
    "hnsd": (78, {"hidden": 16, "fusion_dim": 12, "fc_dim": 8}),
    "ar_gru": (26, {"hidden": 8, "fc_dim": 8}),
    **{f"att_lstm:{v}": (130, {"variant": v, "hidden": 12, "gate_att_dim": 6})
       for v in VARIANTS},
}


def _build(case: str, dim: int, conf: dict) -> nn.Module:
    return models.build(case.split(":")[0], input_dim=dim, num_classes=5, **conf)


@pytest.mark.parametrize("case", list(SMALL))
def test_forward_backward_and_padding_invariance(case):
    torch.manual_seed(0)
    dim, conf = SMALL[case]
    net = _build(case, dim, conf)
    lengths = torch.tensor([13, 9, 4])
    x = torch.randn(3, 13, dim)
    check_forward_backward(net, x, lengths, num_classes=5)
    check_padding_invariance(net, x, lengths, extra_frames=7)  # padded to 20 frames


def test_reverse_padded_and_bidirectional_scan():
    x = torch.arange(12.0).view(2, 6, 1)
    lengths = torch.tensor([6, 3])
    r = reverse_padded(x, lengths)
    assert r[1, :, 0].tolist() == [8.0, 7.0, 6.0, 9.0, 10.0, 11.0]
    torch.testing.assert_close(reverse_padded(r, lengths), x)
    # a bidirectional scan of tanh GRU cells equals nn.GRU on the packed batch
    torch.manual_seed(0)
    rnn = MaskedRNN(lambda: ARGRUCell(4, 5, activation="tanh"), bidirectional=True)
    ref = nn.GRU(4, 5, batch_first=True, bidirectional=True)
    for cell, sfx in zip(rnn.cells, ("", "_reverse")):
        _copy_gru(cell, getattr(ref, f"weight_ih_l0{sfx}"), getattr(ref, f"weight_hh_l0{sfx}"),
                  getattr(ref, f"bias_ih_l0{sfx}"), getattr(ref, f"bias_hh_l0{sfx}"))
    x = torch.randn(2, 6, 4)
    out, last = rnn(x, lengths_to_mask(lengths, 6))
    packed = nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True)
    want, h_n = ref(packed)
    want, _ = nn.utils.rnn.pad_packed_sequence(want, batch_first=True, total_length=6)
    torch.testing.assert_close(out, want, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(last, torch.cat([h_n[0], h_n[1]], dim=-1), atol=1e-6, rtol=1e-5)


def _copy_gru(cell: ARGRUCell, w_ih, w_hh, b_ih, b_hh) -> None:
    with torch.no_grad():
        cell.x_proj.weight.copy_(w_ih)
        cell.x_proj.bias.copy_(b_ih)
        cell.h_proj.weight.copy_(w_hh)
        cell.h_proj.bias.copy_(b_hh)


# --- att_lstm ---------------------------------------------------------------------------------

def test_lstm_cell_without_attention_gate_matches_lstm_cell():
    torch.manual_seed(0)
    ref = nn.LSTMCell(7, 6)
    cell = AttentionGateLSTMCell(7, 6, attention_gate=False)
    with torch.no_grad():
        cell.x_proj.weight.copy_(ref.weight_ih)
        cell.x_proj.bias.copy_(ref.bias_ih + ref.bias_hh)
        cell.h_proj.weight.copy_(ref.weight_hh)
    x, h, c = torch.randn(3, 7), torch.randn(3, 6), torch.randn(3, 6)
    h_ref, c_ref = ref(x, (h, c))
    h_new, c_new = cell(cell.project(x), (h, c))
    torch.testing.assert_close(h_new, h_ref)
    torch.testing.assert_close(c_new, c_ref)


def test_attention_gate_in_unit_interval_and_depends_on_cell_state_only():
    torch.manual_seed(0)
    cell = AttentionGateLSTMCell(7, 6, attention_gate=True, att_dim=4)
    c = torch.randn(50, 6) * 3
    f = cell.forget_gate(c)
    assert f.shape == (50, 6) and bool(((f > 0) & (f < 1)).all())
    # the step uses exactly that gate: c' = f * c + i * g, whatever x and h are
    x, h = torch.randn(50, 7), torch.randn(50, 6)
    i, g, _ = (cell.project(x) + cell.h_proj(h)).chunk(3, dim=-1)
    _, c_new = cell(cell.project(x), (h, c))
    torch.testing.assert_close(c_new, f * c + torch.sigmoid(i) * torch.tanh(g))
    assert not hasattr(cell, "f_proj") and cell.x_proj.out_features == 3 * 6


def test_att_lstm_fc_widths_follow_the_paper():
    for variant, first in [("lstm", 256), ("lstm_t", 256), ("lstm_tf", 512),
                           ("lstm_tf_at", 512)]:
        net = models.build("att_lstm", input_dim=10, num_classes=6, variant=variant)
        linears = [m for m in net.head if isinstance(m, nn.Linear)]
        assert [m.out_features for m in linears] == [first, 128, 6]
    with pytest.raises(SertkError, match="unknown variant"):
        models.build("att_lstm", input_dim=10, num_classes=6, variant="lstm_x")


# --- ar_gru -----------------------------------------------------------------------------------

def test_arelu_matches_formula():
    act = AReLU(alpha=0.01, beta=1.0)
    x = torch.tensor([-3.0, -0.5, 0.0, 0.25, 2.0])
    pos = 1.0 + 1.0 / (1.0 + torch.exp(torch.tensor(-1.0)))  # 1 + sigmoid(1) = 1.7311
    want = torch.tensor([-0.03, -0.005, 0.0, 0.25 * pos, 2.0 * pos])
    torch.testing.assert_close(act(x), want)
    with torch.no_grad():  # alpha is clamped to [0.01, 0.99]
        act.alpha.fill_(5.0)
        act.beta.fill_(-4.0)
    torch.testing.assert_close(act(torch.tensor([-2.0, 1.0])),
                               torch.tensor([-1.98, 1.0 + float(torch.sigmoid(torch.tensor(-4.)))]))
    assert sum(p.numel() for p in act.parameters()) == 2


def test_gru_cell_with_tanh_matches_gru_cell_and_arelu_replaces_candidate():
    torch.manual_seed(0)
    ref = nn.GRUCell(5, 4)
    cell = ARGRUCell(5, 4, activation="tanh")
    _copy_gru(cell, ref.weight_ih, ref.weight_hh, ref.bias_ih, ref.bias_hh)
    x, h = torch.randn(3, 5), torch.randn(3, 4)
    torch.testing.assert_close(cell(cell.project(x), (h,))[0], ref(x, h))
    # AReLU cell: same gates, candidate AReLU(x_n + r * h_n)
    ar = ARGRUCell(5, 4, activation="arelu")
    _copy_gru(ar, ref.weight_ih, ref.weight_hh, ref.bias_ih, ref.bias_hh)
    gx, gh = ar.project(x).chunk(3, -1), ar.h_proj(h).chunk(3, -1)
    r, z = torch.sigmoid(gx[0] + gh[0]), torch.sigmoid(gx[1] + gh[1])
    pre = gx[2] + r * gh[2]
    n = torch.where(pre >= 0, pre * (1 + torch.sigmoid(torch.tensor(1.0))), 0.01 * pre)
    torch.testing.assert_close(ar(ar.project(x), (h,))[0], (1 - z) * n + z * h)


def test_ar_gru_has_one_arelu_per_direction():
    net = models.build("ar_gru", input_dim=26, num_classes=4, hidden=8)
    acts = [m for m in net.modules() if isinstance(m, AReLU)]
    assert len(acts) == 2
    assert all(abs(a.alpha.item() - 0.01) < 1e-7 and a.beta.item() == 1.0 for a in acts)


# --- hnsd -------------------------------------------------------------------------------------

def test_hnsd_gate_in_unit_interval_and_streams_split():
    torch.manual_seed(0)
    net = models.build("hnsd", input_dim=78, num_classes=4, hidden=16, fusion_dim=12)
    assert net.static_lstm.input_size == 26 and net.dynamic_lstm.input_size == 52
    f_s, f_d = torch.randn(2, 9, 16) * 5, torch.randn(2, 9, 16) * 5
    h, z = net.gmu(f_s, f_d)
    assert h.shape == (2, 9, 12) and z.shape == (2, 9)
    assert bool(((z > 0) & (z < 1)).all())
    hs, hd = torch.tanh(net.gmu.w_s(f_s)), torch.tanh(net.gmu.w_d(f_d))
    torch.testing.assert_close(h, z[..., None] * hs + (1 - z[..., None]) * hd)
    custom = models.build("hnsd", input_dim=40, num_classes=4, hidden=8, fusion_dim=8,
                          static_dims=[0, 20], dynamic_dims=[20, 40])
    assert custom.dynamic_lstm.input_size == 20
    with pytest.raises(SertkError, match="dynamic_dims"):
        models.build("hnsd", input_dim=60, num_classes=4)


def _context_batch(seed: int = 0):
    """Padded current utterances and two contexts; utterance 1 has no previous own turn."""
    from sertk.data.dialog import PREV_OTHER, PREV_SELF

    g = torch.Generator().manual_seed(seed)
    lengths = torch.tensor([7, 5, 3])
    x = torch.randn(3, 7, 6, generator=g) * lengths_to_mask(lengths, 7).unsqueeze(-1)
    ctx = {}
    for table, lens in ((PREV_SELF, [4, 0, 6]), (PREV_OTHER, [5, 2, 1])):
        n = torch.tensor(lens)
        ctx[table] = (torch.randn(3, 6, 6, generator=g) * lengths_to_mask(n, 6).unsqueeze(-1),
                      n)
    return x, lengths, ctx


def test_ar_gru_dialogue_context_forward_backward_and_padding():
    from sertk.data.dialog import PREV_OTHER, PREV_SELF

    assert models.MODELS.get("ar_gru").builder.input_tables_for({"context": True}) == {
        PREV_SELF: "context", PREV_OTHER: "context"}
    assert models.MODELS.get("ar_gru").builder.input_tables_for({}) == {}
    torch.manual_seed(0)
    net = models.build("ar_gru", input_dim=6, num_classes=4, hidden=5, fc_dim=8, context=True)
    x, lengths, ctx = _context_batch()
    out = net.train()(x, lengths, inputs=ctx)
    out.logsumexp(-1).mean().backward()
    assert out.shape == (3, 4)
    assert all(p.grad is not None and torch.isfinite(p.grad).all()
               for p in net.parameters()), "a parameter got no gradient"
    net.eval()
    ref = net(x, lengths, inputs=ctx)
    # more padding on every input, and each utterance alone: the same outputs
    padded = {t: (torch.cat([v, torch.randn(3, 3, 6)], 1) * lengths_to_mask(n, 9)
                  .unsqueeze(-1), n) for t, (v, n) in ctx.items()}
    assert torch.allclose(net(x, lengths, inputs=padded), ref, atol=1e-5)
    for i in range(3):
        one = {t: (v[i:i + 1, :max(int(n[i]), 0)], n[i:i + 1]) for t, (v, n) in ctx.items()}
        alone = net(x[i:i + 1, :lengths[i]], lengths[i:i + 1], inputs=one)
        assert torch.allclose(alone, ref[i:i + 1], atol=1e-5)
    # the context matters, and a missing one is an error naming the table
    changed = {**ctx, PREV_OTHER: (ctx[PREV_OTHER][0] + 1, ctx[PREV_OTHER][1])}
    assert not torch.allclose(net(x, lengths, inputs=changed), ref)
    with pytest.raises(SertkError, match="ar_gru with context needs the feats_prev_self.scp"):
        net(x, lengths, inputs=None)
