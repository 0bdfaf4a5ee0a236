"""``replk_ser``: RepLKNet (Ding et al., "Scaling Up Your Kernels to 31x31", CVPR 2022) adapted
to log-mel spectrograms, papers.md section 26.

The spectrogram is a 1-channel image ``[B, 1, T, F]`` (``conf/feats/logmel64.yaml``).

* **Stem** (4x downsampling): 3x3 conv stride 2 -> DW 3x3 -> 1x1 conv -> DW 3x3 stride 2, each
  conv-BN-ReLU.
* **Stages**: ``blocks[i]`` x (RepLK block, ConvFFN block) at ``channels[i]``.
  **RepLK block**: ``x + pw2(ReLU(LK(pw1(BN(x)))))`` with pw1 = 1x1 conv-BN-ReLU, pw2 = 1x1
  conv-BN and LK the re-parameterised large depthwise conv: a large DW conv + BN in parallel
  with a small (5x5) DW conv + BN, outputs added. **ConvFFN**: ``x + pw2(GELU(pw1(BN(x))))``
  with 1x1 conv-BN layers and a 4x hidden width. Both have identity shortcuts (guideline 2) and
  stochastic depth.
* **Transitions**: 1x1 conv-BN-ReLU to the next width -> DW 3x3 stride 2 conv-BN-ReLU.
* **Head**: BN, masked global average pooling over time and frequency, dropout, linear layer.

:meth:`RepLKSER.fuse` re-parameterises for deployment: each BN following a conv is folded into
it, and each large-kernel pair becomes one DW conv with bias (the small kernel zero-padded to
the large size and added; papers.md's formulas). The fused model gives the same output in eval
mode. Every BN is masked, and padded frames are zeroed before every conv with a spatial extent,
so the output does not depend on batch padding (large kernels included: they see zeros, as the
'same' padding of the unpadded utterance); block outputs have zero padding.

**Kernel sizes** (the paper's [31, 29, 27, 13] are for 56x56..7x7 image maps): a 64-mel input
gives per-stage maps of 16, 8, 4 and 2 bins (and T/4 .. T/32 frames), so kernels are
rectangular ``(K_t, K_f)``: ``K_t`` = ``kernel_sizes`` along time (default the paper's
[31, 29, 27, 13]: with 10 ms hops 1.2, 2.3, 4.3 and 4.2 s of context) and
``K_f`` = ``min(K_t, 2 F_s - 1)`` along frequency (odd; F_s the stage's bins; 31, 15, 7, 3 for
64 mels), the smallest kernel that covers the whole band from any bin (guideline 5).
``freq_kernel_sizes`` overrides ``K_f`` (e.g. equal to ``kernel_sizes`` for square kernels);
the small kernel is ``min(5, K)`` per axis. Rectangular large kernels are an extension the
paper did not test.

Not fixed by the paper (SER-sized, papers.md suggestions; ``conf/model/replk_ser.yaml``):
blocks [2, 2, 6, 2], channels [64, 128, 256, 512], stem width = ``channels[0]``, FFN ratio 4,
DW width ratio 1, drop-path rate 0.1 (linear over blocks), head dropout 0.2.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sertk.models.layers import MaskedBatchNorm, lengths_to_mask, masked_mean_2d, zero_padding
from sertk.models.layers.conv import fold_conv_bn
from sertk.models.registry import MODELS


class ConvBN(nn.Module):
    """Conv2d (no bias, 'same' padding, optional stride 2 on both axes) -> masked BN, fusible.

    ``forward(x, mask)`` returns the output and its mask (subsampled when strided); a spatial
    conv zeroes its input's padding first. After :meth:`fuse` the BN is folded into the conv.
    """

    def __init__(self, in_ch: int, out_ch: int, kernel: int | tuple[int, int], stride: int = 1,
                 groups: int = 1):
        super().__init__()
        k = (kernel, kernel) if isinstance(kernel, int) else tuple(kernel)
        if k[0] % 2 == 0 or k[1] % 2 == 0:
            raise ValueError(f"kernel sizes must be odd, got {k}")
        self.kernel, self.stride = k, stride
        self.conv = nn.Conv2d(in_ch, out_ch, k, stride=stride, padding=(k[0] // 2, k[1] // 2),
                              groups=groups, bias=False)
        self.bn: MaskedBatchNorm | None = MaskedBatchNorm(out_ch)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.kernel != (1, 1):
            x = zero_padding(x, mask)
        mask = mask[:, ::self.stride]
        y = self.conv(x)
        return (self.bn(y, mask) if self.bn is not None else y), mask

    def fused_kernel(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Kernel and bias of the conv with the (eval-mode) BN folded in."""
        w = self.conv.weight
        b = self.conv.bias if self.conv.bias is not None else torch.zeros_like(w[:, 0, 0, 0])
        if self.bn is None:
            return w, b
        scale, shift = self.bn.eval_affine()
        return w * scale.view(-1, 1, 1, 1), b * scale + shift

    @torch.no_grad()
    def fuse(self) -> None:
        if self.bn is None:
            return
        self.conv, self.bn = fold_conv_bn(self.conv, self.bn), None


class ConvBNAct(ConvBN):
    def __init__(self, in_ch: int, out_ch: int, kernel: int | tuple[int, int], stride: int = 1,
                 groups: int = 1, act: type[nn.Module] = nn.ReLU):
        super().__init__(in_ch, out_ch, kernel, stride, groups)
        self.act = act()

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y, mask = super().forward(x, mask)
        return self.act(y), mask


class ReparamLargeKernelConv(nn.Module):
    """Large DW conv + BN in parallel with a small DW conv + BN (training); one DW conv with
    bias after :meth:`fuse` (deployment). Stride 1, 'same' padding, odd kernels."""

    def __init__(self, channels: int, kernel: tuple[int, int], small_kernel: int = 5):
        super().__init__()
        small = (min(small_kernel, kernel[0]), min(small_kernel, kernel[1]))
        self.kernel = tuple(kernel)
        self.large = ConvBN(channels, channels, self.kernel, groups=channels)
        self.small: ConvBN | None = ConvBN(channels, channels, small, groups=channels)
        self.fused: nn.Conv2d | None = None

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = zero_padding(x, mask)
        if self.fused is not None:
            return self.fused(x)
        y = self.large(x, mask)[0]
        if self.small is not None:
            y = y + self.small(x, mask)[0]
        return y

    @torch.no_grad()
    def fuse(self) -> None:
        if self.fused is not None:
            return
        w, b = self.large.fused_kernel()
        if self.small is not None:
            ws, bs = self.small.fused_kernel()
            pt, pf = (w.shape[2] - ws.shape[2]) // 2, (w.shape[3] - ws.shape[3]) // 2
            w = w + F.pad(ws, (pf, pf, pt, pt))
            b = b + bs
        conv = self.large.conv
        fused = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size,
                          padding=conv.padding, groups=conv.groups, bias=True
                          ).to(w.device, w.dtype)
        fused.weight.copy_(w)
        fused.bias.copy_(b)
        self.fused = fused
        del self.large, self.small
        self.small = None


def drop_path(x: torch.Tensor, rate: float, training: bool) -> torch.Tensor:
    """Stochastic depth: drop the residual branch of whole samples with probability ``rate``."""
    if rate <= 0.0 or not training:
        return x
    keep = 1.0 - rate
    shape = (x.shape[0],) + (1,) * (x.dim() - 1)
    return x * x.new_empty(shape).bernoulli_(keep) / keep


class RepLKBlock(nn.Module):
    """``x + drop_path(pw2(ReLU(LK(pw1(BN(x))))))``."""

    def __init__(self, channels: int, kernel: tuple[int, int], small_kernel: int = 5,
                 dw_ratio: float = 1.0, drop: float = 0.0):
        super().__init__()
        dw = int(channels * dw_ratio)
        self.pre_bn = MaskedBatchNorm(channels)
        self.pw1 = ConvBNAct(channels, dw, 1)
        self.large_kernel = ReparamLargeKernelConv(dw, kernel, small_kernel)
        self.act = nn.ReLU()
        self.pw2 = ConvBN(dw, channels, 1)
        self.drop = drop

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        y = self.pw1(self.pre_bn(x, mask), mask)[0]
        y = self.pw2(self.act(self.large_kernel(y, mask)), mask)[0]
        return zero_padding(x + drop_path(y, self.drop, self.training), mask)


class ConvFFN(nn.Module):
    """``x + drop_path(pw2(GELU(pw1(BN(x)))))`` with 1x1 conv-BN layers (BN, not LayerNorm,
    so that it fuses)."""

    def __init__(self, channels: int, ratio: float = 4.0, drop: float = 0.0):
        super().__init__()
        hidden = int(channels * ratio)
        self.pre_bn = MaskedBatchNorm(channels)
        self.pw1 = ConvBN(channels, hidden, 1)
        self.act = nn.GELU()
        self.pw2 = ConvBN(hidden, channels, 1)
        self.drop = drop

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        y = self.pw2(self.act(self.pw1(self.pre_bn(x, mask), mask)[0]), mask)[0]
        return zero_padding(x + drop_path(y, self.drop, self.training), mask)


def _odd(k: int) -> int:
    return k if k % 2 else k - 1


def _ceil_half(n: int) -> int:
    """Size after a 3x3 stride-2 conv with padding 1."""
    return -(-n // 2)


@MODELS.register("replk_ser", summary="RepLKNet: re-parameterised large depthwise kernels",
                 paper="Ding et al., Scaling Up Your Kernels to 31x31: Revisiting Large Kernel "
                       "Design in CNNs, CVPR 2022 (adapted to spectrograms)")
class RepLKSER(nn.Module):
    def __init__(self, input_dim: int, num_classes: int,
                 blocks: tuple[int, ...] = (2, 2, 6, 2),
                 channels: tuple[int, ...] = (64, 128, 256, 512),
                 kernel_sizes: tuple[int, ...] = (31, 29, 27, 13),
                 freq_kernel_sizes: tuple[int, ...] | None = None, small_kernel: int = 5,
                 ffn_ratio: float = 4.0, dw_ratio: float = 1.0, drop_path_rate: float = 0.1,
                 dropout: float = 0.2):
        super().__init__()
        if not len(blocks) == len(channels) == len(kernel_sizes):
            raise ValueError("blocks, channels and kernel_sizes need one entry per stage")
        c0 = channels[0]
        self.stem = nn.ModuleList([
            ConvBNAct(1, c0, 3, stride=2), ConvBNAct(c0, c0, 3, groups=c0),
            ConvBNAct(c0, c0, 1), ConvBNAct(c0, c0, 3, stride=2, groups=c0)])
        freq = _ceil_half(_ceil_half(input_dim))  # bins after the stem
        rates = torch.linspace(0, drop_path_rate, sum(blocks)).tolist()
        self.stages, self.transitions = nn.ModuleList(), nn.ModuleList()
        self.kernels: list[tuple[int, int]] = []
        n = 0
        for i, (nb, ch, kt) in enumerate(zip(blocks, channels, kernel_sizes)):
            kf = (freq_kernel_sizes[i] if freq_kernel_sizes is not None
                  else min(kt, max(1, 2 * freq - 1)))
            kernel = (_odd(int(kt)), _odd(int(kf)))
            self.kernels.append(kernel)
            layers: list[nn.Module] = []
            for _ in range(nb):
                layers += [RepLKBlock(ch, kernel, small_kernel, dw_ratio, rates[n]),
                           ConvFFN(ch, ffn_ratio, rates[n])]
                n += 1
            self.stages.append(nn.ModuleList(layers))
            if i + 1 < len(channels):
                nxt = channels[i + 1]
                self.transitions.append(nn.ModuleList([
                    ConvBNAct(ch, nxt, 1), ConvBNAct(nxt, nxt, 3, stride=2, groups=nxt)]))
                freq = _ceil_half(freq)
        self.norm = MaskedBatchNorm(channels[-1])
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(channels[-1], num_classes)

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        mask = lengths_to_mask(lengths, feats.shape[1])
        x = feats.unsqueeze(1)  # [B, 1, T, F]
        for layer in self.stem:
            x, mask = layer(x, mask)
        for i, stage in enumerate(self.stages):
            for block in stage:
                x = block(x, mask)
            if i < len(self.transitions):
                for layer in self.transitions[i]:
                    x, mask = layer(x, mask)
        return self.head(self.dropout(masked_mean_2d(self.norm(x, mask), mask)))

    @torch.no_grad()
    def fuse(self) -> RepLKSER:
        """Fold every conv's BN into it and merge each small kernel into its large kernel
        (deployment form; call in eval mode, after training). Returns ``self``."""
        for m in list(self.modules()):
            if isinstance(m, (ReparamLargeKernelConv, ConvBN)):
                m.fuse()
        return self
