"""``cpc``: Contrastive Predictive Coding features for dimensional SER (Li et al., ICASSP 2021),
papers.md section 6.

**CPC network** (usable on its own; pre-trained without labels by ``sertk pretrain cpc``,
:mod:`sertk.pretrain.cpc`):

* input: not in the paper, each waveform is normalised to zero mean and unit variance over
  its samples (``normalize: true``, as wav2vec 2.0's feature extractor): without it the
  un-normalised encoder on quiet recordings (RAVDESS: RMS 0.023) stays at the chance InfoNCE
  loss ``ln(1 + negatives)`` (measured: 96 steps at lr 1e-3, loss 3.922 raw vs 3.274
  normalised);
* encoder ``f``: 4 Conv1d layers, strides 5, 4, 4, 2, kernels 10, 8, 8, 4, 128 channels, ReLU
  (papers.md's reading of "128 hidden units" and its suggested activation); total stride 160,
  100 frames/s at 16 kHz. Not in the paper: each layer pads ``ceil((k - s) / 2)`` samples on
  both sides (3, 2, 2, 1; as CPC_audio), so ``n * 160`` samples give exactly ``n`` frames;
* autoregressive ``g``: a unidirectional GRU of 256 units, context ``c_t``;
* predictors ``h_k(c_t) = W_k c_t``, ``k = 1..12`` (linear, no bias; papers.md);
* InfoNCE: for every ``t`` and ``k`` the positive ``z_{t+k}`` is scored against 50 negatives
  ``z_i`` drawn uniformly from the same sequence, ``exp(zhat^T z / tau)``, ``tau`` default 1
  (papers.md). Not in the paper: the negatives of a ``(sequence, t)`` are shared by the 12
  horizons (as CPC_audio), a negative that hits the positive is left out, and the loss is the
  paper's sum divided by the number of predictions (a mean; Adam is insensitive to the scale).

**Emotion recogniser** (the registered model ``cpc``), on the CPC context (``frontend: cpc``,
from ``waveform`` frames, conf/model/cpc.yaml) or on plain features such as MFCC or fbank
(``frontend: none``, conf/model/cpc_fbank.yaml) -- the same recogniser, for comparisons:

1. 8-head dot-product self-attention whose output dimension equals its input dimension:
   per-head projections of 512 / 8 = 64 dims and ``W_o`` back to the input dimension
   (papers.md's reading of "8 heads, 512-d hidden"); padded keys are masked;
2. mean + standard deviation statistics pooling over real frames;
3. two FC layers of 128 units, ReLU, dropout 0.2;
4. an FC layer to ``num_classes`` (the 3 dimensions in the paper's dimensional task, the
   emotion logits in a categorical one).

``init_checkpoint`` loads a pre-trained CPC (``DIR/cpc.safetensors`` of ``sertk pretrain cpc``,
or a trained ``cpc`` experiment's ``model.safetensors``); ``freeze: true`` keeps it fixed (the
paper's "proposed" and "minicpc" conditions), ``freeze: false`` fine-tunes it with the
recogniser (without ``init_checkpoint``: the paper's "end2end" condition). Padding is
invisible: each conv layer's output is zeroed beyond its valid length (what the unpadded
utterance's conv padding sees), the GRU is causal, attention keys and pooling are masked.
With ``freeze: true``, ``cache_frames`` (not in the paper; conf/model/cpc.yaml: 600000, about
600 MB) keeps each utterance's CPC contexts after its first pass
(:class:`~sertk.models.layers.frozen_cache.FrozenOutputCache`): the same outputs, one CPC pass
per utterance instead of one per epoch; packs set it to 0.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from sertk.errors import SertkError
from sertk.features.waveform import frames_to_wave, normalize_wave
from sertk.models.layers import StatsPooling, lengths_to_mask, zero_padding
from sertk.models.layers.attention import FusionAttention
from sertk.models.layers.frozen_cache import FrozenOutputCache
from sertk.models.layers.pretrained import init_from_checkpoint
from sertk.models.registry import MODELS

FRONTENDS = ("cpc", "none")


class CPCEncoder(nn.Module):
    """The strided Conv1d encoder ``f``: ``(wave [B, S], lengths in samples) -> (z [B, T, C],
    lengths in frames)``; outputs beyond each utterance's valid frames are zero."""

    def __init__(self, channels: int = 128, strides: Sequence[int] = (5, 4, 4, 2),
                 kernels: Sequence[int] = (10, 8, 8, 4)):
        super().__init__()
        if len(strides) != len(kernels):
            raise SertkError("cpc: strides and kernels need one value per conv layer")
        convs, in_ch = [], 1
        for k, s in zip(kernels, strides):
            convs.append(nn.Conv1d(in_ch, channels, int(k), int(s),
                                   padding=math.ceil((int(k) - int(s)) / 2)))
            in_ch = channels
        self.convs = nn.ModuleList(convs)
        self.stride = math.prod(int(s) for s in strides)
        self.out_dim = channels

    @staticmethod
    def _conv_lengths(conv: nn.Conv1d, lengths: torch.Tensor) -> torch.Tensor:
        k, s, p = conv.kernel_size[0], conv.stride[0], conv.padding[0]
        return ((lengths + 2 * p - k).div(s, rounding_mode="floor") + 1).clamp_min(0)

    def frame_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        """Valid output frames of waveforms of ``lengths`` samples."""
        for conv in self.convs:
            lengths = self._conv_lengths(conv, lengths)
        return lengths

    def forward(self, wave: torch.Tensor, lengths: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        x = zero_padding(wave.unsqueeze(1), lengths_to_mask(lengths, wave.shape[1]))
        for conv in self.convs:
            x = F.relu(conv(x))
            lengths = self._conv_lengths(conv, lengths)
            x = zero_padding(x, lengths_to_mask(lengths, x.shape[2]))
        return x.transpose(1, 2), lengths


class CPCFeatures(nn.Module):
    """Encoder ``f`` + GRU ``g``: ``(wave [B, S], lengths in samples) -> (c [B, T, H],
    z [B, T, C], lengths in frames)``. The part a downstream model keeps."""

    def __init__(self, channels: int = 128, hidden: int = 256,
                 strides: Sequence[int] = (5, 4, 4, 2), kernels: Sequence[int] = (10, 8, 8, 4),
                 normalize: bool = True):
        super().__init__()
        self.encoder = CPCEncoder(channels, strides, kernels)
        self.gru = nn.GRU(channels, hidden, batch_first=True)
        self.out_dim = hidden
        self.normalize = bool(normalize)

    def forward(self, wave: torch.Tensor, lengths: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if self.normalize:
            wave = normalize_wave(wave, lengths)
        z, lengths = self.encoder(wave, lengths)
        c, _ = self.gru(z)  # causal: valid steps never see the (zeroed) padding
        return c, z, lengths


class CPC(CPCFeatures):
    """The CPC network with its 12 linear predictors ``W_k`` and the InfoNCE loss
    (Li et al. 2021, after van den Oord et al. 2018); :meth:`info_nce` is the training loss."""

    def __init__(self, channels: int = 128, hidden: int = 256,
                 strides: Sequence[int] = (5, 4, 4, 2), kernels: Sequence[int] = (10, 8, 8, 4),
                 horizon: int = 12, negatives: int = 50, temperature: float = 1.0,
                 normalize: bool = True):
        super().__init__(channels, hidden, strides, kernels, normalize)
        if horizon < 1 or negatives < 1 or temperature <= 0:
            raise SertkError("cpc: horizon and negatives must be >= 1 and temperature > 0")
        self.predictors = nn.ModuleList(nn.Linear(hidden, channels, bias=False)
                                        for _ in range(horizon))
        self.negatives, self.temperature = int(negatives), float(temperature)

    def info_nce(self, wave: torch.Tensor, lengths: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(loss, accuracy)``: the InfoNCE loss averaged over every ``(sequence, t, k)``
        with ``t + k`` inside the sequence, and how often the positive outscores all of its
        negatives."""
        c, z, lengths = self(wave, lengths)
        b, t, dim = z.shape
        horizon = len(self.predictors)
        weight = torch.cat([w_k.weight for w_k in self.predictors])  # [K * C, H]
        pred = (c @ weight.t()).view(b, t, horizon, dim)  # zhat_{t+k} = W_k c_t
        future = (torch.arange(t, device=z.device).view(-1, 1)
                  + torch.arange(1, horizon + 1, device=z.device))  # t + k: [T, K]
        pos = (pred * z[:, future.clamp(max=t - 1)]).sum(-1, keepdim=True)  # [B, T, K, 1]
        idx = (torch.rand(b, t, self.negatives, device=z.device)
               * lengths.view(b, 1, 1)).long()  # negatives from the same sequence
        negs = torch.gather(z, 1, idx.view(b, -1, 1).expand(-1, -1, dim)).view(
            b, t, self.negatives, dim)
        neg = torch.einsum("btkc,btnc->btkn", pred, negs)
        neg = neg.masked_fill(idx.unsqueeze(2) == future.view(1, t, horizon, 1),
                              float("-inf"))  # a negative that is the positive
        logits = torch.cat([pos, neg], dim=-1) / self.temperature
        valid = future.unsqueeze(0) < lengths.view(-1, 1, 1)  # [B, T, K]
        count = valid.sum()
        if int(count) == 0:
            raise SertkError(f"cpc: sequences of {t} frames are too short for a prediction")
        nll = torch.logsumexp(logits, -1) - logits[..., 0]
        correct = (logits[..., 0] > logits[..., 1:].amax(-1)) & valid
        return (nll * valid).sum() / count, correct.sum().detach() / count


class Recogniser(nn.Module):
    """Li et al.'s emotion recogniser: 8-head self-attention (``att_dim`` split over the
    heads, ``W_o`` back to the input dimension), mean+std pooling, FC layers, output layer."""

    def __init__(self, in_dim: int, num_classes: int, heads: int = 8, att_dim: int = 512,
                 fc_dim: int = 128, fc_layers: int = 2, dropout: float = 0.2):
        super().__init__()
        if att_dim % heads:
            raise SertkError(f"cpc: att_dim {att_dim} is not divisible by {heads} heads")
        self.attention = FusionAttention(in_dim, in_dim, in_dim, heads, att_dim // heads)
        self.att_out = nn.Linear(att_dim, in_dim, bias=False)  # W_o
        self.pool = StatsPooling()
        layers: list[nn.Module] = []
        dim = 2 * in_dim
        for _ in range(fc_layers):
            layers += [nn.Linear(dim, fc_dim), nn.ReLU(), nn.Dropout(dropout)]
            dim = fc_dim
        self.fc = nn.Sequential(*layers)
        self.out = nn.Linear(dim, num_classes)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = x.masked_fill(~mask.unsqueeze(-1), 0.0)
        u = self.att_out(self.attention(x, x, x, mask))
        return self.out(self.fc(self.pool(u, mask)))


def _cpc_key(name: str) -> str | None:
    """A checkpoint tensor's name in the model: CPC pre-training's ``encoder.*``/``gru.*``
    or a trained ``cpc`` model's ``cpc.*``; the predictors are not used."""
    if name.startswith("cpc."):
        return name
    return f"cpc.{name}" if name.startswith(("encoder.", "gru.")) else None


@MODELS.register("cpc", summary="CPC context (pre-trained on raw audio, or plain features) + "
                                "8-head self-attention, stats pooling, 2 FC",
                 paper="Li et al., Contrastive Unsupervised Learning for Speech Emotion "
                       "Recognition, ICASSP 2021")
class CPCEmotion(nn.Module):
    """The emotion recogniser on CPC features (``frontend: cpc``, input ``waveform``
    frames) or directly on the input features (``frontend: none``)."""

    def __init__(self, input_dim: int, num_classes: int, frontend: str = "cpc",
                 cpc: dict | None = None, init_checkpoint: str | None = None,
                 freeze: bool = True, heads: int = 8, att_dim: int = 512, fc_dim: int = 128,
                 fc_layers: int = 2, dropout: float = 0.2, cache_frames: int = 0):
        super().__init__()
        if frontend not in FRONTENDS:
            raise SertkError(f"cpc: frontend must be one of {', '.join(FRONTENDS)}, "
                             f"got {frontend!r}")
        self.cpc: CPCFeatures | None = None
        self.freeze = bool(freeze)
        self.cache = FrozenOutputCache(cache_frames if self.freeze else 0)
        in_dim = input_dim
        if frontend == "cpc":
            self.cpc = CPCFeatures(**(cpc or {}))
            if input_dim % self.cpc.encoder.stride:
                raise SertkError(f"cpc: frontend cpc needs waveform frames of a multiple of "
                                 f"{self.cpc.encoder.stride} samples "
                                 f"(conf/feats/waveform16k.yaml), got {input_dim}-d features")
            in_dim = self.cpc.out_dim
            self._load(init_checkpoint)
            self.cpc.requires_grad_(not self.freeze)
        elif init_checkpoint:
            raise SertkError("cpc: init_checkpoint needs frontend: cpc")
        self.recogniser = Recogniser(in_dim, num_classes, heads, att_dim, fc_dim, fc_layers,
                                     dropout)

    def _load(self, path: str | None) -> None:
        report = init_from_checkpoint(self, path, rename=_cpc_key, include=("cpc.",))
        if report is not None and (report.missing or report.shape_mismatch):
            bad = (report.shape_mismatch + report.missing)[0]
            raise SertkError(f"cpc: init_checkpoint {Path(path).name} does not match "
                             f"model.conf.cpc ({len(report.loaded)} CPC tensors loaded, "
                             f"{bad} missing or of another shape); use the sizes of the "
                             f"pre-training config")

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        if self.cpc is None:
            return self.recogniser(feats, lengths_to_mask(lengths, feats.shape[1]))
        wave, samples = frames_to_wave(feats, lengths)
        if self.freeze:
            with torch.no_grad():
                c, frames = self.cache(self._contexts, wave, samples)
        else:
            c, frames = self._contexts(wave, samples)
        return self.recogniser(c, lengths_to_mask(frames, c.shape[1]))

    def _contexts(self, wave: torch.Tensor, samples: torch.Tensor
                  ) -> tuple[torch.Tensor, torch.Tensor]:
        c, _, frames = self.cpc(wave, samples)
        return c, frames

    @staticmethod
    def portable_conf(conf: dict) -> dict:
        """A pack's conf: the CPC weights are in ``model.safetensors`` (no init_checkpoint)
        and inference keeps no cache (memory must not grow with the number of files)."""
        out = dict(conf)
        out.pop("init_checkpoint", None)
        if "cache_frames" in out:
            out["cache_frames"] = 0
        return out
