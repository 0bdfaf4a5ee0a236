"""Checks every model test runs: a forward and backward pass on a padded batch, and outputs that
do not depend on the padding.

The models take ``(x [B, T, D], lengths [B])`` and return ``[B, num_classes]``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn


def check_forward_backward(net: nn.Module, x: torch.Tensor, lengths: torch.Tensor,
                           num_classes: int,
                           extra_loss: Callable[[nn.Module], torch.Tensor] | None = None
                           ) -> torch.Tensor:
    """Train-mode forward on the padded batch ``x`` and backward of ``logsumexp(out).mean()``
    (plus ``extra_loss(net)``, called after the forward, when given).

    Asserts the output is ``[B, num_classes]``, the model has trainable parameters and every one
    of them received a finite gradient (the failure names the first offenders). Returns the
    output.
    """
    net.train()
    out = net(x, lengths)
    assert out.shape == (x.shape[0], num_classes)
    loss = out.logsumexp(-1).mean()
    if extra_loss is not None:
        loss = loss + extra_loss(net)
    loss.backward()
    trainable = [(n, p) for n, p in net.named_parameters() if p.requires_grad]
    assert trainable, "no trainable parameters"
    bad = [n for n, p in trainable if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not bad, f"no or non-finite gradient: {bad[:5]}"
    return out


def check_padding_invariance(net: nn.Module, x: torch.Tensor, lengths: torch.Tensor,
                             extra_frames: int = 57, atol: float = 1e-5, rtol: float = 1e-5
                             ) -> torch.Tensor:
    """Eval mode, no gradients: each utterance's output is the same alone (cut to its length),
    in the batch ``x``, and in a batch padded with ``extra_frames`` more frames, whose padding
    is garbage (``randn * 100`` beyond ``x``, ``1e3`` beyond each length).

    Returns the batched output.
    """
    net.eval()
    with torch.no_grad():
        batched = net(x, lengths)
        bigger = torch.randn(x.shape[0], x.shape[1] + extra_frames, x.shape[2]) * 100
        bigger[:, :x.shape[1]] = x
        for i, n in enumerate(lengths.tolist()):
            bigger[i, n:] = 1e3
        padded_more = net(bigger, lengths)
        for i, n in enumerate(lengths.tolist()):
            alone = net(x[i:i + 1, :n], lengths[i:i + 1])
            torch.testing.assert_close(alone[0], batched[i], atol=atol, rtol=rtol)
            torch.testing.assert_close(padded_more[i], batched[i], atol=atol, rtol=rtol)
    return batched
