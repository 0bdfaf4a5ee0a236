"""``cnn14_transfer``: PANNs Cnn14 for transfer learning to SER (Triantafyllopoulos & Schuller,
ICASSP 2021), papers.md section 18; Cnn14 as published by Kong et al. (PANNs, TASLP 2020).

Cnn14 on 64 log-mel bins (``conf/feats/logmel64_cnn14.yaml``: 32 ms Hann window, 10 ms hop,
16 kHz, 50-8000 Hz, dB): six conv blocks, each two 3x3 conv (no bias) -> BN -> ReLU, with 64,
128, 256, 512, 1024, 2048 channels; 2x2 average pooling after blocks 1-5 (none after block 6)
and dropout 0.2 after every block (= after every second conv layer). Global pooling as PANNs:
mean over frequency, then max + mean over time; dropout 0.5, ``fc1`` (2048, ReLU), dropout 0.5
and the output layer (``fc_out``: 3 classes for binned arousal; PANNs' ``fc_audioset`` is the
527-class AudioSet layer it replaces).

Masking: BNs are masked, padded frames are zeroed before every conv, the average pooling over
time is mask-aware with ceil rounding (PANNs floors: an utterance's last odd frame is dropped
there, averaged here), and the max/mean over time use real frames only.

PANNs normalises its log-mel input with ``bn0``, a BatchNorm over the mel bins. sertk's trainer
already z-normalises every bin with global CMVN statistics (what ``bn0`` computes, fixed after
training), so ``bn0`` is off by default; ``bn0: true`` adds it (a masked BN over bins, loaded
from a PANNs checkpoint's ``bn0.*``). SpecAugment and mixup live in sertk's ``augment:`` config.

Transfer: ``init_checkpoint`` takes a state dict in the PANNs layout (e.g. the released
``Cnn14_16k_mAP=0.438.pth``, whose ``{"model": ...}`` container is unwrapped, or a sertk
``model.safetensors`` of this model); PANNs names map to sertk names (``conv_block1.bn1.weight``
-> ``conv_block1.bn1.bn.weight``), the spectrogram/log-mel extractor and ``fc_audioset`` tensors
are skipped, and nothing is downloaded. ``finetune``:

* ``all``: every layer is trained (the paper's mode (a));
* ``linear``: only the output layer ``fc_out`` is trained;
* ``linear_layers``: ``fc1`` and ``fc_out`` are trained (the paper's mode (b), "fine-tune only
  the linear layers": Cnn14 has two).

In the frozen modes the frozen BNs keep their running statistics (eval mode) during training.
:func:`layer_cosine_distances` gives the paper's layer-adaptation measure.

Not fixed by the paper, chosen here: the output head is one linear layer after ``fc1``; ceil
instead of floor time pooling (above); ``bn0`` replaced by CMVN (above).
"""

from __future__ import annotations

import re

import torch
import torch.nn.functional as F
from torch import nn

from sertk.models.layers import MaskedBatchNorm, lengths_to_mask, masked_pool_time, zero_padding
from sertk.models.layers.pretrained import init_from_checkpoint
from sertk.models.registry import MODELS

FINETUNE_MODES = ("all", "linear", "linear_layers")
PANNS_SKIP = ("spectrogram_extractor.", "logmel_extractor.", "fc_audioset.")
_PANNS_BN = re.compile(r"^((?:conv_block\d+\.)?bn\d+)\.(weight|bias|running_mean|running_var|"
                       r"num_batches_tracked)$")


def panns_to_sertk(name: str) -> str | None:
    """Map a PANNs Cnn14 state-dict name to this module's name (None: not used)."""
    if name.startswith(PANNS_SKIP):
        return None
    m = _PANNS_BN.match(name)
    return f"{m.group(1)}.bn.{m.group(2)}" if m else name


class Cnn14Block(nn.Module):
    """PANNs ``ConvBlock``: (3x3 conv -> BN -> ReLU) x 2, then average pooling."""

    def __init__(self, in_ch: int, out_ch: int, pool: tuple[int, int] = (2, 2)):
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=False)
        self.bn1 = MaskedBatchNorm(out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1, bias=False)
        self.bn2 = MaskedBatchNorm(out_ch)
        self.pool = tuple(pool)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = zero_padding(F.relu(self.bn1(self.conv1(x), mask)), mask)
        x = zero_padding(F.relu(self.bn2(self.conv2(x), mask)), mask)
        return masked_pool_time(x, mask, self.pool, "avg")


@MODELS.register("cnn14_transfer", summary="PANNs Cnn14 (6 VGG blocks, max+mean pooling), "
                                           "transfer / layer-adaptation analysis",
                 paper="Triantafyllopoulos & Schuller, The Role of Task and Acoustic Similarity "
                       "in Audio Transfer Learning: Insights from the Speech Emotion Recognition "
                       "Case, ICASSP 2021")
class Cnn14Transfer(nn.Module):
    def __init__(self, input_dim: int, num_classes: int,
                 channels: tuple[int, ...] = (64, 128, 256, 512, 1024, 2048),
                 fc_dim: int = 2048, conv_dropout: float = 0.2, fc_dropout: float = 0.5,
                 bn0: bool = False, init_checkpoint: str | None = None,
                 finetune: str = "all"):
        super().__init__()
        if finetune not in FINETUNE_MODES:
            raise ValueError(f"finetune must be one of {', '.join(FINETUNE_MODES)}, "
                             f"got {finetune!r}")
        self.bn0 = MaskedBatchNorm(input_dim) if bn0 else None
        in_ch = 1
        for i, ch in enumerate(channels, start=1):
            pool = (2, 2) if i < len(channels) else (1, 1)
            self.add_module(f"conv_block{i}", Cnn14Block(in_ch, ch, pool))
            in_ch = ch
        self.num_blocks = len(channels)
        self.conv_dropout = nn.Dropout(conv_dropout)
        self.fc_dropout = nn.Dropout(fc_dropout)
        self.fc1 = nn.Linear(in_ch, fc_dim)
        self.fc_out = nn.Linear(fc_dim, num_classes)
        init_from_checkpoint(self, init_checkpoint, rename=panns_to_sertk)
        self.finetune = finetune
        trainable = {"all": None, "linear": ("fc_out.",),
                     "linear_layers": ("fc1.", "fc_out.")}[finetune]
        if trainable is not None:
            for name, p in self.named_parameters():
                p.requires_grad_(name.startswith(trainable))
        self._frozen_bns = [m for name, m in self.named_modules()
                            if isinstance(m, MaskedBatchNorm) and trainable is not None]

    def train(self, mode: bool = True) -> Cnn14Transfer:
        super().train(mode)
        for bn in self._frozen_bns:  # frozen layers keep their statistics
            bn.train(False)
        return self

    def blocks(self) -> list[Cnn14Block]:
        return [getattr(self, f"conv_block{i}") for i in range(1, self.num_blocks + 1)]

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        mask = lengths_to_mask(lengths, feats.shape[1])
        if self.bn0 is not None:
            feats = self.bn0(feats.transpose(1, 2), mask).transpose(1, 2)
        x = zero_padding(feats.unsqueeze(1), mask)  # [B, 1, T, mel]
        for block in self.blocks():
            x, mask = block(x, mask)
            x = zero_padding(self.conv_dropout(x), mask)
        x = x.mean(dim=3)  # [B, C, T']: mean over frequency
        m = mask.unsqueeze(1)
        x_max = x.masked_fill(~m, float("-inf")).amax(dim=2)
        x_mean = (x * m).sum(2) / m.sum(2).clamp_min(1)
        x = self.fc_dropout(x_max + x_mean)
        x = self.fc_dropout(F.relu(self.fc1(x)))
        return self.fc_out(x)


def layer_cosine_distances(initial: dict[str, torch.Tensor], finetuned: dict[str, torch.Tensor]
                           ) -> dict[str, float]:
    """Cosine distance ``1 - x.y / (|x| |y|)`` between the flattened weights of every conv and
    linear layer (weights with >= 2 dimensions) present in both state dicts, keyed by layer
    name (the weight's name without ``.weight``); the paper's layer-adaptation measure."""
    out = {}
    for key, a in initial.items():
        b = finetuned.get(key)
        if not key.endswith(".weight") or b is None or a.dim() < 2 or a.shape != b.shape:
            continue
        x, y = a.detach().double().flatten(), b.detach().double().flatten()
        cos = torch.dot(x, y) / (x.norm() * y.norm()).clamp_min(1e-30)
        out[key[: -len(".weight")]] = float(1.0 - cos)
    return out
