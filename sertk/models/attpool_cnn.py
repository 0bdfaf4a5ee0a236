"""``attpool_cnn``: rectangular-kernel CNN with attention pooling (Li et al., Interspeech 2018),
papers.md section 15.

Input: the 400-bin linear spectrogram (40 ms Hamming, 10 ms hop, NFFT 1600, 0-4 kHz) scaled to
[-1, 1] and mu-law companded (``conf/feats/spectrogram400_mulaw.yaml``), in 2 s segments (1 s
hop in training, 0.4 s at test, segment scores averaged: ``train.segment``/``eval_segment``).
Conv1: two parallel Conv-BN-ReLU branches with 10 x 2 (frequency x time: ~100 Hz x 20 ms) and
2 x 8 (20 Hz x 80 ms) kernels, concatenated; Conv2-Conv5: 3 x 3 Conv-BN-ReLU
(``layers/rect_conv.py``). Head (instead of FC layers): a 1 x 1 conv gives the class-specific
top-down maps ``T_k``, another 1 x 1 conv the class-agnostic bottom-up map ``B``, softmax-
normalised over all real time-frequency positions; the class score is
``s_k = norm * sum_{t,f} T_k(t, f) softmax(B)(t, f)`` (a rank-1 attentional pooling).

Not fixed by the paper, chosen here (papers.md's suggestions): 8 filters per Conv1 branch;
32, 48, 64, 80 channels in Conv2-Conv5; 2 x 2 max pooling after Conv2 and Conv3; 'same'
padding, stride 1. ``score_norm``: the paper writes ``norm = 1 / (HW)`` (``"mean"``, HW = the
segment's real positions); the default ``"sum"`` uses ``norm = 1`` -- the scores are then the
attention-weighted average of the top-down maps, independent of the input length (on fixed
2 s segments the two differ only by a constant logit scale).
"""

from __future__ import annotations

import torch
from torch import nn

from sertk.models.layers.rect_conv import RectangularConvStack
from sertk.models.registry import MODELS


class AttentionPoolingHead(nn.Module):
    """Top-down (class-specific) x bottom-up (class-agnostic) attention pooling of a
    ``[B, C, T, F]`` map -> class scores ``[B, K]``; padded frames get zero attention.

    After a call, ``last_attention`` holds the bottom-up weights ``[B, T, F]`` (summing to 1
    over each utterance's real positions) and ``last_top_down`` the maps ``[B, K, T, F]``.
    """

    def __init__(self, in_ch: int, num_classes: int, score_norm: str = "sum"):
        super().__init__()
        if score_norm not in ("sum", "mean"):
            raise ValueError(f"score_norm must be sum or mean, got {score_norm!r}")
        self.top_down = nn.Conv2d(in_ch, num_classes, 1)
        self.bottom_up = nn.Conv2d(in_ch, 1, 1)
        self.score_norm = score_norm
        self.last_attention: torch.Tensor | None = None
        self.last_top_down: torch.Tensor | None = None

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b, _, t, f = x.shape
        top = self.top_down(x)  # [B, K, T, F]
        real = mask[:, :, None].expand(b, t, f)  # [B, T, F]
        logits = self.bottom_up(x)[:, 0].masked_fill(~real, float("-inf"))
        att = torch.softmax(logits.reshape(b, -1), dim=1).view(b, t, f)
        self.last_attention, self.last_top_down = att, top
        scores = torch.einsum("bktf,btf->bk", top, att)
        if self.score_norm == "mean":
            scores = scores / (mask.sum(1, keepdim=True) * f).to(scores.dtype)
        return scores


@MODELS.register("attpool_cnn", summary="10x2/2x8 rectangular-kernel CNN + attention pooling",
                 paper="Li et al., An attention pooling based representation learning method "
                       "for speech emotion recognition, Interspeech 2018")
class AttentionPoolingCNN(nn.Module):
    def __init__(self, input_dim: int, num_classes: int,
                 branch_kernels: tuple[tuple[int, int], ...] = ((10, 2), (2, 8)),
                 branch_channels: int = 8, channels: tuple[int, ...] = (32, 48, 64, 80),
                 pools: tuple[tuple[int, int] | None, ...] = ((2, 2), (2, 2), None, None),
                 score_norm: str = "sum"):
        super().__init__()
        del input_dim  # fully convolutional: any number of bins works
        self.cnn = RectangularConvStack(branch_kernels, branch_channels, channels, pools)
        self.head = AttentionPoolingHead(self.cnn.out_channels, num_classes, score_norm)

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        x, mask = self.cnn(feats, lengths)
        return self.head(x, mask)
