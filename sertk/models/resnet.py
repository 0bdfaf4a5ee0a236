"""``copypaste_resnet``: the ResNet-34 x-vector classifier of CopyPaste (Pappagari et al.,
ICASSP 2021), papers.md section 10.

Input: 23-d MFCCs with mean normalisation (``conf/feats/mfcc23_vad.yaml``: per-utterance mean
subtraction in the front end). The paper's energy VAD is, in sertk, the ``segments`` written by
``sertk data trim`` (leading and trailing silence removed before the dump); pauses inside an
utterance are kept, unlike Kaldi's frame-dropping ``select-voiced-frames``.

Network: a 2-D ResNet-34 over the (time x MFCC) map -- a 3x3 stem conv, then basic residual
blocks [3, 4, 6, 3] (two 3x3 convs each) with widths ``channels`` and strides 1, 2, 2, 2 on both
axes (1x1 strided projection shortcuts where the shape changes); then multi-head attention
pooling (:class:`GaussianAttentionPooling`, ``w_{h,t} = softmax_t(-s_h ||x_t - mu_h||)``) over
the frames of the last stage (channels x remaining MFCC bins flattened per frame), the heads
concatenated, an FC embedding layer and the emotion output layer. Every BatchNorm is masked and
padded frames are zeroed before each conv, so a strided conv of a padded batch sees what the
unpadded utterance sees ('same' zero padding); outputs do not depend on batch padding.

``init_checkpoint`` (a state dict file: ``torch.load(weights_only=True)`` or safetensors,
never downloaded) initialises every layer whose name and shape match -- e.g. a speaker x-vector
ResNet-34 in this layout; its speaker output layer (other shape) is skipped and logged, so the
emotion layer keeps its random initialisation and all weights are then fine-tuned (the paper's
second initialisation).

Not fixed by the paper, chosen here (``conf/model/copypaste_resnet.yaml``): channel widths
64-128-256-512 (He et al.'s ResNet-34; the x-vector "light" ResNet-34 uses 16-32-64-128, set
``channels``), no max pooling after the stem (as x-vector ResNets), 4 attention heads and a
256-d embedding (papers.md's suggestions), ReLU after the embedding, dropout 0 before the output
layer.
"""

from __future__ import annotations

import torch
from torch import nn

from sertk.models.layers import (
    GaussianAttentionPooling,
    MaskedBatchNorm,
    lengths_to_mask,
    zero_padding,
)
from sertk.models.layers.pretrained import init_from_checkpoint
from sertk.models.registry import MODELS


class BasicBlock(nn.Module):
    """ResNet basic block (two 3x3 convs) on ``[B, C, T, F]`` with a ``[B, T]`` mask.

    ``stride`` applies to time and frequency; the mask is subsampled as the conv output
    (``ceil(T / stride)`` frames). Input padding must be zero; output padding is zero.
    """

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1):
        super().__init__()
        self.stride = stride
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, bias=False)
        self.bn1 = MaskedBatchNorm(out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1, bias=False)
        self.bn2 = MaskedBatchNorm(out_ch)
        self.act = nn.ReLU()
        self.shortcut: nn.Module | None = None
        self.shortcut_bn: MaskedBatchNorm | None = None
        if stride != 1 or in_ch != out_ch:
            self.shortcut = nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False)
            self.shortcut_bn = MaskedBatchNorm(out_ch)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out_mask = mask[:, ::self.stride]
        y = zero_padding(self.act(self.bn1(self.conv1(x), out_mask)), out_mask)
        y = self.bn2(self.conv2(y), out_mask)
        if self.shortcut is not None:
            x = self.shortcut_bn(self.shortcut(x), out_mask)
        return zero_padding(self.act(y + x), out_mask), out_mask


@MODELS.register("copypaste_resnet", summary="ResNet-34 + multi-head attention pooling (x-vector)",
                 paper="Pappagari et al., CopyPaste: An Augmentation Method for Speech Emotion "
                       "Recognition, ICASSP 2021")
class CopyPasteResNet(nn.Module):
    def __init__(self, input_dim: int, num_classes: int,
                 channels: tuple[int, ...] = (64, 128, 256, 512),
                 blocks: tuple[int, ...] = (3, 4, 6, 3),
                 strides: tuple[int, ...] = (1, 2, 2, 2), heads: int = 4,
                 embed_dim: int = 256, dropout: float = 0.0,
                 init_checkpoint: str | None = None):
        super().__init__()
        if not len(channels) == len(blocks) == len(strides):
            raise ValueError("channels, blocks and strides need one entry per stage")
        self.stem = nn.Conv2d(1, channels[0], 3, padding=1, bias=False)
        self.stem_bn = MaskedBatchNorm(channels[0])
        self.act = nn.ReLU()
        layers, in_ch, freq = [], channels[0], input_dim
        for ch, n, stride in zip(channels, blocks, strides):
            for i in range(n):
                s = stride if i == 0 else 1
                layers.append(BasicBlock(in_ch, ch, s))
                in_ch, freq = ch, -(-freq // s)
        self.layers = nn.ModuleList(layers)
        self.pool = GaussianAttentionPooling(in_ch * freq, heads)
        self.embedding = nn.Linear(self.pool.out_dim, embed_dim)
        self.dropout = nn.Dropout(dropout)
        self.output = nn.Linear(embed_dim, num_classes)
        init_from_checkpoint(self, init_checkpoint)

    def embed(self, feats: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """The utterance embedding ``[B, embed_dim]`` (x-vector), before the output layer."""
        mask = lengths_to_mask(lengths, feats.shape[1])
        x = zero_padding(feats.unsqueeze(1), mask)  # [B, 1, T, D]
        x = zero_padding(self.act(self.stem_bn(self.stem(x), mask)), mask)
        for layer in self.layers:
            x, mask = layer(x, mask)
        x = x.permute(0, 2, 1, 3).flatten(2)  # [B, T', C * F']
        return self.act(self.embedding(self.pool(x, mask)))

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.output(self.dropout(self.embed(feats, lengths)))
