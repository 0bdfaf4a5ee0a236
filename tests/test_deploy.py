"""Conv blocks in their inference form (:meth:`sertk.models.layers.conv.ConvBlock2d.deploy`):
batch norm folded into the convolution, oneDNN's convolution over time-bucketed inputs on a
CPU; used by ``sertk infer`` when a probe gives the same posteriors."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import sertk.models  # noqa: F401  (register models)
from sertk.models.layers.conv import (
    ConvBlock2d,
    bucketed_conv2d,
    deploy_conv_blocks,
    time_bucket,
)
from sertk.models.registry import MODELS


def test_time_buckets_are_few_and_tight():
    sizes = [time_bucket(t) for t in range(1, 5000)]
    assert all(b >= t and b - t <= max(7, t // 8) for t, b in zip(range(1, 5000), sizes))
    assert all(time_bucket(b) == b for b in sizes)
    assert len(set(sizes)) < 80  # a few per octave, not one per length


@pytest.mark.parametrize("conv", [
    nn.Conv2d(1, 8, 3, padding="same"),
    nn.Conv2d(4, 8, (5, 1), padding=(2, 0)),
    nn.Conv2d(4, 8, 3, padding="same", dilation=2, bias=False),
    nn.Conv2d(4, 8, 3, padding="valid"),
    nn.Conv2d(4, 8, 3, padding=1, groups=2),
    nn.Conv2d(4, 8, (2, 2), padding="same"),  # uneven 'same' padding: torch's own conv
])
@pytest.mark.parametrize("frames", [3, 129, 235])
@pytest.mark.parametrize("channels_last", [False, True])
def test_bucketed_conv_equals_the_conv(conv, frames, channels_last):
    torch.manual_seed(0)
    x = torch.randn(2, conv.in_channels, frames, 12)
    if channels_last:
        x, conv = x.to(memory_format=torch.channels_last), \
            copy.deepcopy(conv).to(memory_format=torch.channels_last)
    with torch.no_grad():
        ref, got = conv(x), bucketed_conv2d(conv, x)
    assert got.shape == ref.shape
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-5)


CASES = [("cnn_asp", 64, {"channels": [8, 8, 16, 16], "embed_dim": 16}),
         ("light_sernet", 40, {"path_channels": 4, "lflb_channels": [8, 8, 8, 8],
                               "final_channels": 16}),
         ("attpool_cnn", 40, {"branch_channels": 4, "channels": [8, 8, 8, 8]}),
         ("stl_transformer", 40, {"channels": [4, 4, 8, 8, 8, 8], "ffn_dim": 16})]


@pytest.mark.parametrize("name, dim, conf", CASES)
@pytest.mark.parametrize("channels_last", [False, True])
def test_deployed_model_gives_the_same_outputs_and_undo_restores_it(name, dim, conf,
                                                                     channels_last):
    torch.manual_seed(0)
    net = MODELS.build(name, input_dim=dim, num_classes=4, **conf)
    for m in net.modules():  # statistics away from (0, 1), as after training
        if isinstance(m, nn.BatchNorm1d):
            m.running_mean.uniform_(-1.0, 1.0)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.5, 0.5)
    net.eval()
    if channels_last:
        net.to(memory_format=torch.channels_last)
    state = {k: v.clone() for k, v in net.state_dict().items()}
    x, lengths = torch.randn(3, 237, dim), torch.tensor([237, 130, 61])
    with torch.no_grad():
        ref = net(x, lengths)
        undo = deploy_conv_blocks(net)
        assert undo is not None
        blocks = [m for m in net.modules() if isinstance(m, ConvBlock2d)]
        assert blocks and all(b.deployed and b.bn is None for b in blocks)
        got = net(x, lengths)
        alone = torch.cat([net(x[i:i + 1, :n], lengths[i:i + 1]) for i, n in
                           enumerate(lengths.tolist())])
        undo()
        back = net(x, lengths)
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(alone, ref, atol=1e-5, rtol=1e-5)
    assert torch.equal(back, ref)
    assert net.state_dict().keys() == state.keys()
    assert all(torch.equal(v, state[k]) for k, v in net.state_dict().items())
    assert not any(b.deployed for b in blocks)
