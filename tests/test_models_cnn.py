"""CNN models: attpool_cnn (Li et al. 2018), area_attention (Xu et al. 2021), mscnn_spu (Peng et
al. 2021): forward/backward on padded batches, padding invariance, size/cost, model checks."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import sertk.models.area_attention  # noqa: F401  (register models)
import sertk.models.attpool_cnn  # noqa: F401
import sertk.models.mscnn  # noqa: F401
from sertk.models.layers import lengths_to_mask
from sertk.models.layers.area_attention import AreaAttention2d
from sertk.models.registry import MODELS
from tests.model_checks import check_forward_backward, check_padding_invariance

SMALL = {"branch_channels": 4, "channels": [8, 8, 8, 8]}
CASES = [
    ("attpool_cnn", 40, SMALL),
    ("attpool_cnn", 40, {**SMALL, "score_norm": "mean"}),
    ("area_attention", 32, {**SMALL, "att_dim": 8}),
    ("area_attention", 32, {**SMALL, "att_dim": None, "att_pool": None,
                            "area_feature": "mean", "area_value": "sum"}),
    ("area_attention", 32, {**SMALL, "att_dim": 8, "area_feature": "sample",
                            "area_value": "mean"}),
    ("mscnn_spu", 20, {"channels": 16}),
]


@pytest.mark.parametrize("name, dim, conf", CASES)
def test_forward_backward_and_padding_invariance(name, dim, conf):
    torch.manual_seed(0)
    net = MODELS.build(name, input_dim=dim, num_classes=4, **conf)
    lengths = torch.tensor([45, 30, 7])
    x = torch.randn(3, 45, dim)
    check_forward_backward(net, x, lengths, num_classes=4)
    check_padding_invariance(net, x, lengths, extra_frames=25)  # padded to 70 frames


def test_attpool_attention_sums_to_one_over_real_positions():
    torch.manual_seed(0)
    net = MODELS.build("attpool_cnn", input_dim=40, num_classes=4, **SMALL).eval()
    lengths = torch.tensor([40, 17])
    with torch.no_grad():
        scores = net(torch.randn(2, 40, 40), lengths)
    head = net.head
    att, top = head.last_attention, head.last_top_down  # [B, T', F'], [B, K, T', F']
    real = lengths_to_mask(torch.tensor([10, 5]), att.shape[1])  # ceil(len / 4) after 2 pools
    assert att.shape[1] == 10
    # class-agnostic bottom-up weights: the same for every class, sum 1 over real positions
    torch.testing.assert_close(att.sum((1, 2)), torch.ones(2))
    assert (att[~real] == 0).all()
    # class score = attention-weighted sum of the class's top-down map
    ref = (top * att[:, None]).sum((2, 3))
    torch.testing.assert_close(scores, ref)
    net.head.score_norm = "mean"  # the paper's 1 / (HW) over the real positions
    with torch.no_grad():
        mean_scores = net(torch.randn(2, 40, 40), lengths)
    hw = (real.sum(1) * att.shape[2]).float()
    ref = (net.head.last_top_down * net.head.last_attention[:, None]).sum((2, 3)) / hw[:, None]
    torch.testing.assert_close(mean_scores, ref)


@pytest.mark.parametrize("key, value", [("max", "max"), ("mean", "sum"), ("sample", "mean")])
@pytest.mark.parametrize("train", [False, True])
def test_area_attention_1x1_is_plain_attention(key, value, train):
    torch.manual_seed(0)
    att = AreaAttention2d(6, att_dim=5, max_area=(1, 1), area_key=key, area_value=value)
    att.train(train)
    x = torch.randn(2, 6, 7, 4)  # [B, C, T, F]
    lengths = torch.tensor([7, 3])
    mask = lengths_to_mask(lengths)
    out = att(x, mask)
    cells = x.permute(0, 2, 3, 1).reshape(2, 28, 6)
    q, k, v = att.q(cells), att.k(cells), att.v(cells)
    keep = mask[:, :, None].expand(2, 7, 4).reshape(2, 1, 28)  # key cells of real frames
    ref = F.scaled_dot_product_attention(q, k, v, attn_mask=keep)
    ref = ref.view(2, 7, 4, 5).permute(0, 3, 1, 2) * mask[:, None, :, None]
    torch.testing.assert_close(out, ref, atol=1e-6, rtol=1e-5)


def test_area_attention_model_1x1_equals_plain_attention():
    """The whole model with max area 1 x 1 equals the model whose attention layer is replaced
    by plain scaled dot-product self-attention over the cells."""
    torch.manual_seed(0)
    net = MODELS.build("area_attention", input_dim=32, num_classes=4, max_area=[1, 1],
                       **SMALL, att_dim=8).eval()
    x, lengths = torch.randn(2, 40, 32), torch.tensor([40, 22])
    with torch.no_grad():
        out = net(x, lengths)
        layer = net.attention

        class Plain(torch.nn.Module):
            def forward(self, fmap: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
                b, c, t, f = fmap.shape
                cells = fmap.permute(0, 2, 3, 1).reshape(b, t * f, c)
                keep = mask[:, :, None].expand(b, t, f).reshape(b, 1, t * f)
                y = F.scaled_dot_product_attention(layer.q(cells), layer.k(cells),
                                                   layer.v(cells), attn_mask=keep)
                return y.view(b, t, f, -1).permute(0, 3, 1, 2) * mask[:, None, :, None]

        net.attention = Plain()
        ref = net(x, lengths)
    torch.testing.assert_close(out, ref, atol=1e-6, rtol=1e-5)


def test_area_attention_areas():
    """3 x 3 areas: all shapes enumerated, keys/values as configured, padded areas masked."""
    att = AreaAttention2d(1, att_dim=None, max_area=(3, 3), area_key="max", area_value="sum")
    x = torch.arange(20.0).view(1, 1, 5, 4)
    mask = lengths_to_mask(torch.tensor([4]), 5)
    keys, values, valid = att.areas(x, x, mask)
    counts = [(5 - h + 1) * (4 - w + 1) for h in (1, 2, 3) for w in (1, 2, 3)]
    assert keys.shape == (1, sum(counts), 1) and values.shape == keys.shape
    # first area of shape 2 x 3 (time x frequency) covers rows 0-1, columns 0-2
    start = sum(counts[:5])
    assert keys[0, start, 0] == 6.0 and values[0, start, 0] == 0 + 1 + 2 + 4 + 5 + 6
    # areas are real only if all their frames are real (length 4 of 5)
    n_valid = sum((4 - h + 1) * (4 - w + 1) for h in (1, 2, 3) for w in (1, 2, 3))
    assert int(valid.sum()) == n_valid
    with pytest.raises(ValueError):
        AreaAttention2d(1, area_key="median")


def test_mscnn_spu_pools_real_frames_only():
    torch.manual_seed(0)
    net = MODELS.build("mscnn_spu", input_dim=5, num_classes=3, kernel_sizes=[1],
                       channels=2).eval()
    x = torch.randn(1, 6, 5)
    h = torch.relu(net.convs[0](x.transpose(1, 2))).transpose(1, 2)[0]  # kernel 1: no context
    stats = net.spu(h[None], torch.ones(1, 6, dtype=torch.bool))[0]
    ref = torch.cat([h.amax(0), h.mean(0), h.std(0, unbiased=False).clamp_min(1e-5 ** 0.5)])
    torch.testing.assert_close(stats, ref)
