"""Checks shared by the multimodal models' tests (rajan_self_cross, amh, mcsan, ks_transformer,
mscnn_spu_att): a one-thread fixture, garbage padding, forward/backward with every parameter
getting a finite gradient, and padding invariance of each input (in the batch, with more
padding, and each utterance alone)."""

from __future__ import annotations

import pytest
import torch

from sertk.models.layers.multimodal import TABLES


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Import under a test module's name to use: the machine is shared and small models run
    faster on one thread."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def pad_more(x: torch.Tensor, lengths: torch.Tensor, extra: int) -> torch.Tensor:
    """``x`` with ``extra`` more steps; garbage beyond each length (random token ids within the
    batch's vocabulary for ids, large values for frames)."""
    shape = (x.shape[0], x.shape[1] + extra, *x.shape[2:])
    if x.dtype == torch.long:
        big = torch.randint(1, max(int(x.max()), 1) + 1, shape)
    else:
        big = torch.full(shape, 1e3)
    for i, n in enumerate(lengths.tolist()):
        big[i, :n] = x[i, :n]
    return big


def forward_backward(net, feats, lengths, inputs, num_classes: int | None = None) -> None:
    """Train-mode forward, backward of ``logsumexp(out).mean()``: every trainable parameter
    gets a finite gradient; the output is ``[B, num_classes]``."""
    net.train()
    out = net(feats, lengths, inputs)
    assert out.dim() == 2 and out.shape[0] == feats.shape[0]
    assert num_classes is None or out.shape[1] == num_classes
    out.logsumexp(-1).mean().backward()
    bad = [n for n, p in net.named_parameters()
           if p.requires_grad and (p.grad is None or not torch.isfinite(p.grad).all())]
    assert not bad, f"no or non-finite gradient: {bad[:5]}"


def check_invariance(net, feats, lengths, inputs, which: str, extra: int = 9) -> None:
    """Eval mode: the outputs are the same in the batch, in a batch whose ``which`` input
    (``audio``: the frames; a modality name or an input table) has ``extra`` more garbage
    padded steps, and for each utterance alone."""
    net.eval()
    with torch.no_grad():
        batched = net(feats, lengths, inputs)
        if which == "audio":
            padded = net(pad_more(feats, lengths, extra), lengths, inputs)
        else:
            table = TABLES.get(which, which)
            x, n = inputs[table]
            padded = net(feats, lengths, {**inputs, table: (pad_more(x, n, extra), n)})
        torch.testing.assert_close(padded, batched, atol=1e-5, rtol=1e-5)
        for i in range(feats.shape[0]):
            alone = {k: (x[i:i + 1, :n[i]], n[i:i + 1]) for k, (x, n) in inputs.items()}
            out = net(feats[i:i + 1, :lengths[i]], lengths[i:i + 1], alone)
            torch.testing.assert_close(out[0], batched[i], atol=1e-5, rtol=1e-5)


def check_loss_decreases(net, feats, lengths, inputs, target: torch.Tensor, lr: float,
                         steps: int = 30) -> None:
    """``steps`` Adam steps on one batch at least halve the cross-entropy."""
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    net.train()
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(net(feats, lengths, inputs), target)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses


def check_modality_dropout(net, feats, lengths, inputs) -> None:
    """A model with modality dropout is deterministic in eval mode and trains."""
    net.eval()
    with torch.no_grad():
        assert torch.equal(net(feats, lengths, inputs), net(feats, lengths, inputs))
    forward_backward(net, feats, lengths, inputs)
