"""``semantic_fusion``: a paralinguistic CNN on the raw waveform fused with aligned semantic
embeddings (Tzirakis, Nguyen, Zafeiriou, Schuller, ICASSP 2021), papers.md section 13.

Input (one feature matrix per utterance, the two streams pasted as columns, see
``bin/semantic_feats.py``): row ``t = [wave_dim samples of frame t | semantic_dim values]``,
the waveform frames of the ``waveform`` front end (``conf/feats/waveform16k.yaml``: 160
samples = 10 ms) and the semantic vector ``X_s`` (Speech2Vec mapped into the Word2Vec space,
repeated over each word's frames, zeros outside words; ``sertk.features.semantic``).
``input_dim`` must equal ``wave_dim + semantic_dim``.

* **Paralinguistic branch** ``X_p``: the frames are joined back into the waveform
  (:func:`frames_to_wave`) and go through three Conv1d blocks (kernel 8, 64 channels, masked
  batch norm, ReLU; papers.md's suggestion), max pooling 10 and 8 after the first two; after
  the third, each input frame's remaining steps (160 / 80 = 2 here) are max-pooled, so
  ``X_p`` has one step per frame, aligned to ``X_s``. (papers.md suggests pooling 10/8/8 for
  22.05 kHz; with 40 ms frames of 640 samples the frame pooling is exactly 8.) ``pools`` must
  divide ``wave_dim``.
* **Fusion** (``fusion``):

  - ``concat``: ``X_fusion = [X_s, X_p]``;
  - ``attention`` (the paper's proposal): ``x~_s = W_s X_s``, ``x~_p = W_p X_p``
    (``fusion_dim``), ``x~_sp = Attention(x~_s, x~_p)``; three equal-width FC layers (ReLU)
    give the streams ``a``, ``v``, ``l`` (arousal, valence, liking in the paper; always three,
    whatever ``num_classes``), ``X_fusion = Attention(Attention(a, l), v)``. ``Attention(x, y)``
    is single-head scaled dot-product attention over the time steps with query ``x`` and
    key/value ``y``, ``softmax(x W_Q (y W_K)^T / sqrt(d)) y W_V`` (papers.md's suggestion;
    :class:`FusionAttention` with one head), padded keys masked.

  ``semantic_dim: 0`` is the audio-only model (``X_fusion = X_p``) for comparisons.
* **Temporal model**: dropout 0.5, a single-layer LSTM (packed: padding-independent),
  dropout 0.5, a linear layer giving frame-level predictions.
* **Utterance output**: sertk predicts one value per utterance and dimension, so the model
  returns the mean of the frame-level predictions over the utterance's real frames
  (:meth:`SemanticFusion.frame_predictions` gives the frame-level ones; the paper predicts
  per frame on SEWA). Train with ``loss: ccc`` (``1 - sum_d CCC_d``, Tzirakis et al.'s CCC
  objective over the batch).

Not in the paper (chosen here, ``conf/model/semantic_fusion.yaml``): 10 ms frames at 16 kHz,
kernel 8 / 64 channels / pooling 10-8-frame (papers.md's suggestion), batch norm in the conv
blocks, ``fusion_dim`` 128, ReLU on the FC streams, LSTM hidden size 128, a linear output
head, mean pooling of the frame predictions.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from sertk.errors import SertkError
from sertk.features.waveform import frames_to_wave
from sertk.models.layers import (
    ConvBlock1d,
    lengths_to_mask,
    masked_mean,
    masked_pool_time,
    zero_padding,
)
from sertk.models.layers.attention import FusionAttention
from sertk.models.layers.stacked_lstm import run_packed
from sertk.models.registry import MODELS

FUSIONS = ("attention", "concat")


class WaveCNN(nn.Module):
    """Conv1d blocks on the waveform of ``[B, T, n]`` frames -> ``[B, T, C]``, one step per
    frame: max pooling ``pools`` after the first blocks, then over each frame's last
    ``n / prod(pools)`` steps."""

    def __init__(self, frame_samples: int, channels: Sequence[int] = (64, 64, 64),
                 kernel: int = 8, pools: Sequence[int] = (10, 8)):
        super().__init__()
        if len(pools) > len(channels):
            raise SertkError(f"semantic_fusion: {len(pools)} pools for {len(channels)} "
                             "conv layers")
        total = math.prod(int(p) for p in pools)
        if frame_samples % total:
            raise SertkError(f"semantic_fusion: pools {list(pools)} (product {total}) must "
                             f"divide wave_dim {frame_samples}")
        dims = [1, *channels]
        self.blocks = nn.ModuleList(ConvBlock1d(i, o, kernel) for i, o in zip(dims, dims[1:]))
        self.pools = [int(p) for p in pools] + [1] * (len(channels) - len(pools))
        self.frame_pool = frame_samples // total
        self.out_dim = dims[-1]

    def forward(self, frames: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        wave, samples = frames_to_wave(frames, lengths)
        mask = lengths_to_mask(samples, wave.shape[1])
        x = zero_padding(wave.unsqueeze(1), mask)  # [B, 1, S]
        for block, pool in zip(self.blocks, self.pools):
            x = block(x, mask)
            if pool > 1:
                y, mask = masked_pool_time(x.unsqueeze(-1), mask, (pool, 1))
                x = y.squeeze(-1)
        b, c, s = x.shape
        x = x.view(b, c, s // self.frame_pool, self.frame_pool).amax(-1)  # [B, C, T]
        return x.transpose(1, 2)


class AttentionFusion(nn.Module):
    """``Attention(Attention(a, l), v)`` with ``a, v, l = FC(Attention(W_s X_s, W_p X_p))``."""

    def __init__(self, semantic_dim: int, para_dim: int, dim: int = 128):
        super().__init__()
        self.w_s, self.w_p = nn.Linear(semantic_dim, dim), nn.Linear(para_dim, dim)
        self.att_sp, self.att_al, self.att_alv = (FusionAttention(dim, dim, dim, 1, dim)
                                                  for _ in range(3))
        self.streams = nn.ModuleList(nn.Sequential(nn.Linear(dim, dim), nn.ReLU())
                                     for _ in range(3))  # a, v, l
        self.out_dim = dim

    def forward(self, xs: torch.Tensor, xp: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        s, p = self.w_s(xs), self.w_p(xp)
        sp = self.att_sp(s, p, p, mask)
        a, v, l = (fc(sp) for fc in self.streams)  # noqa: E741
        al = self.att_al(a, l, l, mask)
        return self.att_alv(al, v, v, mask)


@MODELS.register("semantic_fusion",
                 summary="raw-waveform CNN + aligned Speech2Vec semantics, attention or "
                         "concat fusion, LSTM (dimensional)",
                 paper="Tzirakis et al., Speech Emotion Recognition Using Semantic "
                       "Information, ICASSP 2021")
class SemanticFusion(nn.Module):
    @staticmethod
    def extra_input_dim_for(conf: dict) -> int:
        """Columns beyond the front end's (the pasted semantic features), for tools that
        size the input from the ``feats:`` config alone (``sertk models info``)."""
        return int((conf or {}).get("semantic_dim", 300))

    def __init__(self, input_dim: int, num_classes: int, wave_dim: int = 160,
                 semantic_dim: int = 300, fusion: str = "attention",
                 channels: Sequence[int] = (64, 64, 64), kernel: int = 8,
                 pools: Sequence[int] = (10, 8), fusion_dim: int = 128, lstm_hidden: int = 128,
                 dropout: float = 0.5):
        super().__init__()
        if input_dim != wave_dim + semantic_dim:
            raise SertkError(f"semantic_fusion: input_dim {input_dim} must equal wave_dim "
                             f"{wave_dim} + semantic_dim {semantic_dim} (waveform frames "
                             "pasted with semantic features, bin/semantic_feats.py paste)")
        if fusion not in FUSIONS:
            raise SertkError(f"semantic_fusion: fusion must be one of {', '.join(FUSIONS)}, "
                             f"got {fusion!r}")
        self.wave_dim, self.semantic_dim = wave_dim, semantic_dim
        self.cnn = WaveCNN(wave_dim, channels, kernel, pools)
        self.fusion = fusion if semantic_dim else "none"
        self.attention = (AttentionFusion(semantic_dim, self.cnn.out_dim, fusion_dim)
                          if self.fusion == "attention" else None)
        fused_dim = {"attention": fusion_dim, "concat": semantic_dim + self.cnn.out_dim,
                     "none": self.cnn.out_dim}[self.fusion]
        self.dropout = nn.Dropout(dropout)
        self.lstm = nn.LSTM(fused_dim, lstm_hidden, batch_first=True)
        self.head = nn.Linear(lstm_hidden, num_classes)

    def fuse(self, x: torch.Tensor, lengths: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        xp = self.cnn(x[..., :self.wave_dim], lengths)
        xs = x[..., self.wave_dim:]
        if self.fusion == "concat":
            return torch.cat([xs, xp], dim=-1)
        if self.attention is not None:
            return self.attention(xs, xp, mask)
        return xp

    def frame_predictions(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """``[B, T, num_classes]`` frame-level predictions (padded frames: the head's bias)."""
        mask = lengths_to_mask(lengths, x.shape[1])
        h, _ = run_packed(self.lstm, self.dropout(self.fuse(x, lengths, mask)), lengths)
        return self.head(self.dropout(h))

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        mask = lengths_to_mask(lengths, x.shape[1])
        return masked_mean(self.frame_predictions(x, lengths), mask)
