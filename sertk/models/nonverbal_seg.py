"""``nonverbal_seg``: segment-sequence SER with verbal / nonverbal streams and decision-level
fusion (Hsu et al., TASLP 2021), papers.md section 14.

Pipeline (one turn = one input utterance):

1. **Segmentation.** The paper cuts a turn into prosodic-phrase segments (silence detection,
   an SVM verbal/nonverbal detector and a prosodic-phrase tagger). sertk has none of these; the
   stand-in (``segmenter``) is either ``fixed``: windows of ``segment_frames`` every
   ``segment_hop`` frames (``sertk.data.segments.windows``: the last window ends at the turn's
   end; a turn shorter than one window is a single, shorter segment), or ``pause``: cuts in the
   middle of every pause of at least ``min_pause_frames`` (0.3 s, the annotators' pause rule),
   a frame being a pause frame when its mean feature value is below
   ``min + pause_threshold * (max - min)`` of the turn (no absolute energy survives CMVN),
   segments longer than ``segment_frames`` being windowed as in ``fixed``. Segments are taken
   from the real frames only; they are not padded to 1 s: the embedder is mask-aware.
2. **Segment embeddings.** Each stream has a small ResNet over the segment's log-mel map
   (3x3 conv stem, residual blocks with masked BatchNorm and 2x2 max pooling, mean over time
   and frequency, a linear embedding layer): the paper's two ResNets with their output layers
   removed.
3. **Sequence model.** An attention-based LSTM sequence-to-sequence labeller per stream: a
   BiLSTM encoder over the turn's segment embeddings, an LSTM decoder aligned with the segments
   (initial state from the encoder's final states) and Luong "general" attention over the
   encoder states (softmax over the turn's real segments), ``tanh(W_c [d_i; c_i])``, then the
   per-segment emotion logits.
4. **Fusion.** ``fusion: decision`` (the paper's best): the per-segment posteriors of the
   streams are averaged with ``fusion_weights`` (papers.md's suggestion); ``fusion: feature``
   concatenates the streams' segment embeddings into a single sequence model (the paper's
   feature-level baseline).

sertk gives one label per utterance, so ``forward`` returns the log of the mean fused posterior
over the turn's segments (a valid logit vector for cross-entropy); per-segment outputs are
available from :meth:`NonverbalSeg.segment_log_posteriors` for segment-labelled data.

Stand-ins and values not fixed by the paper (in ``conf/model/nonverbal_seg.yaml``): the streams
are ``branches`` over the same log-mel input (default ``verbal`` and ``nonverbal``, same
architecture, independent weights; per-branch overrides of ``channels``/``embed_dim``), trained
jointly on the emotion loss -- the paper trains the verbal ResNet on emotion and the nonverbal
one on sound type (laughter, breathing, shouting, background) on their own segments, which
needs labels sertk does not have; input 64 log-mel (25/10 ms, papers.md's suggestion); 1 s
fixed windows without overlap; ResNet channels 16, 32, 64 (ResNet-18 is suggested; this is a
CPU-sized stand-in), embedding 128; LSTM encoder 64 units per direction, decoder 128, attention
output 128; dropout 0.2; equal fusion weights.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from sertk.data.segments import windows
from sertk.models.layers import (
    ConvBlock2d,
    MaskedBatchNorm,
    lengths_to_mask,
    masked_mean_2d,
    masked_pool_time,
    zero_padding,
)
from sertk.models.registry import MODELS


def pause_segments(x: torch.Tensor, min_pause: int, threshold: float, max_len: int,
                   hop: int) -> list[tuple[int, int]]:
    """``[(start, end), ...]`` covering the frames of ``x [n, D]``: cuts in the middle of every
    run of at least ``min_pause`` low-energy frames, long segments windowed."""
    n = x.shape[0]
    e = x.float().mean(1)
    lo, hi = float(e.min()), float(e.max())
    silent = (e < lo + threshold * (hi - lo)).tolist() if hi > lo else [False] * n
    cuts, t = [], 0
    while t < n:
        if silent[t]:
            s = t
            while t < n and silent[t]:
                t += 1
            if t - s >= min_pause and 0 < (s + t) // 2 < n:
                cuts.append((s + t) // 2)
        else:
            t += 1
    bounds = [0, *cuts, n]
    segs = []
    for s, e_ in zip(bounds[:-1], bounds[1:]):
        segs.extend((s + a, s + b) for a, b in windows(e_ - s, max_len, hop))
    return segs


class _ResBlock(nn.Module):
    """Two 3x3 conv-BN layers with a (1x1 conv-BN) shortcut, ReLU, then pooling."""

    def __init__(self, in_ch: int, out_ch: int, pool: tuple[int, int]):
        super().__init__()
        self.conv1 = ConvBlock2d(in_ch, out_ch, 3, pool=None, bias=False)
        self.conv2 = ConvBlock2d(out_ch, out_ch, 3, pool=None, activation="none", bias=False)
        self.short = None
        if in_ch != out_ch:
            self.short = nn.Conv2d(in_ch, out_ch, 1, bias=False)
            self.short_bn = MaskedBatchNorm(out_ch)
        self.pool = pool

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y, _ = self.conv2(*self.conv1(x, mask))
        s = x if self.short is None else self.short_bn(self.short(x), mask)
        y = zero_padding(F.relu(y + s), mask)
        return masked_pool_time(y, mask, self.pool, "max")


class SegmentResNet(nn.Module):
    """Segment embedder: ``[N, L, D]`` segments with a ``[N, L]`` mask -> ``[N, embed_dim]``."""

    def __init__(self, channels: Sequence[int] = (16, 32, 64), embed_dim: int = 128):
        super().__init__()
        self.stem = ConvBlock2d(1, channels[0], 3, pool=None, bias=False)
        blocks, in_ch = [], channels[0]
        for ch in channels:
            blocks.append(_ResBlock(in_ch, ch, (2, 2)))
            in_ch = ch
        self.blocks = nn.ModuleList(blocks)
        self.embed = nn.Linear(in_ch, embed_dim)
        self.dim = embed_dim

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x, mask = self.stem(zero_padding(x.unsqueeze(1), mask), mask)
        for block in self.blocks:
            x, mask = block(x, mask)
        return self.embed(masked_mean_2d(x, mask))


class AttentionLSTMLabeller(nn.Module):
    """Attention-based LSTM seq2seq labeller over a segment sequence ``[B, S, E]`` with a
    ``[B, S]`` mask -> per-segment logits ``[B, S, C]`` (BiLSTM encoder, aligned LSTM decoder,
    Luong general attention over the real segments)."""

    def __init__(self, in_dim: int, num_classes: int, enc_hidden: int = 64,
                 dec_hidden: int = 128, att_dim: int = 128, dropout: float = 0.2):
        super().__init__()
        enc = 2 * enc_hidden
        self.encoder = nn.LSTM(in_dim, enc_hidden, batch_first=True, bidirectional=True)
        self.init = nn.Linear(enc, dec_hidden)
        self.decoder = nn.LSTM(enc, dec_hidden, batch_first=True)
        self.score = nn.Linear(enc, dec_hidden, bias=False)
        self.combine = nn.Linear(dec_hidden + enc, att_dim)
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(att_dim, num_classes)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        lens = mask.sum(1).cpu()
        s = x.shape[1]
        packed = nn.utils.rnn.pack_padded_sequence(self.dropout(x), lens, batch_first=True,
                                                   enforce_sorted=False)
        h, (hn, _) = self.encoder(packed)
        h, _ = nn.utils.rnn.pad_packed_sequence(h, batch_first=True, total_length=s)
        h0 = torch.tanh(self.init(torch.cat([hn[0], hn[1]], dim=-1))).unsqueeze(0)
        packed = nn.utils.rnn.pack_padded_sequence(h, lens, batch_first=True,
                                                   enforce_sorted=False)
        d, _ = self.decoder(packed, (h0, torch.zeros_like(h0)))
        d, _ = nn.utils.rnn.pad_packed_sequence(d, batch_first=True, total_length=s)
        scores = torch.bmm(d, self.score(h).transpose(1, 2))  # [B, S (query), S (key)]
        scores = scores.masked_fill(~mask.unsqueeze(1), float("-inf"))
        ctx = torch.bmm(torch.softmax(scores, dim=-1), h)
        att = torch.tanh(self.combine(torch.cat([d, ctx], dim=-1)))
        return self.out(self.dropout(att))


@MODELS.register("nonverbal_seg", summary="segment CNN embeddings + attention LSTM, "
                 "verbal/nonverbal streams with decision-level fusion",
                 paper="Hsu et al., Speech Emotion Recognition Considering Nonverbal "
                       "Vocalization in Affective Conversations, IEEE/ACM TASLP 2021")
class NonverbalSeg(nn.Module):
    def __init__(self, input_dim: int, num_classes: int, segmenter: str = "fixed",
                 segment_frames: int = 100, segment_hop: int = 100,
                 min_pause_frames: int = 30, pause_threshold: float = 0.2,
                 branches: Sequence[str] | dict[str, dict[str, Any]] = ("verbal", "nonverbal"),
                 channels: Sequence[int] = (16, 32, 64), embed_dim: int = 128,
                 enc_hidden: int = 64, dec_hidden: int = 128, att_dim: int = 128,
                 dropout: float = 0.2, fusion: str = "decision",
                 fusion_weights: Sequence[float] | None = None):
        super().__init__()
        del input_dim  # the embedder averages over frequency: any number of bins works
        if segmenter not in ("fixed", "pause"):
            raise ValueError(f"segmenter must be fixed or pause, got {segmenter!r}")
        if fusion not in ("decision", "feature"):
            raise ValueError(f"fusion must be decision or feature, got {fusion!r}")
        conf = dict(branches) if isinstance(branches, dict) else {b: {} for b in branches}
        if not conf:
            raise ValueError("at least one branch is needed")
        self.branch_names = list(conf)
        self.segmenter, self.fusion = segmenter, fusion
        self.segment_frames, self.segment_hop = int(segment_frames), int(segment_hop)
        self.min_pause, self.pause_threshold = int(min_pause_frames), float(pause_threshold)
        self.embedders = nn.ModuleList(
            SegmentResNet(tuple((o or {}).get("channels", channels)),
                          int((o or {}).get("embed_dim", embed_dim))) for o in conf.values())
        dims = [e.dim for e in self.embedders]
        seq_in = dims if fusion == "decision" else [sum(dims)]
        self.labellers = nn.ModuleList(
            AttentionLSTMLabeller(d, num_classes, enc_hidden, dec_hidden, att_dim, dropout)
            for d in seq_in)
        weights = torch.tensor(list(fusion_weights) if fusion_weights is not None
                               else [1.0] * len(conf), dtype=torch.float32)
        if weights.numel() != len(conf) or (weights < 0).any() or weights.sum() <= 0:
            raise ValueError("fusion_weights needs one non-negative weight per branch")
        self.register_buffer("log_weights", (weights / weights.sum()).log(), persistent=False)

    def segments(self, feats: torch.Tensor, lengths: torch.Tensor
                 ) -> list[list[tuple[int, int]]]:
        """Per utterance, the ``(start, end)`` frames of its segments (real frames only)."""
        out = []
        for i, n in enumerate(lengths.tolist()):
            if self.segmenter == "fixed":
                out.append(windows(n, self.segment_frames, self.segment_hop))
            else:
                out.append(pause_segments(feats[i, :n].detach(), self.min_pause,
                                          self.pause_threshold, self.segment_frames,
                                          self.segment_hop))
        return out

    def segment_log_posteriors(self, feats: torch.Tensor, lengths: torch.Tensor
                               ) -> tuple[torch.Tensor, torch.Tensor]:
        """Fused per-segment log posteriors ``[B, S, C]`` and the ``[B, S]`` segment mask."""
        segs = self.segments(feats, lengths)
        counts = torch.tensor([len(s) for s in segs], device=feats.device)
        flat = [(i, s, e) for i, ss in enumerate(segs) for s, e in ss]
        utt = torch.tensor([f[0] for f in flat], device=feats.device)
        start = torch.tensor([f[1] for f in flat], device=feats.device)
        seg_len = torch.tensor([f[2] - f[1] for f in flat], device=feats.device)
        width = int(seg_len.max())
        frames = (start[:, None] + torch.arange(width, device=feats.device)[None]).clamp(
            max=feats.shape[1] - 1)
        seg_feats = feats[utt[:, None], frames]  # [N, width, D]
        seg_mask = lengths_to_mask(seg_len, width)
        # position of every segment in the [B, S] turn layout
        slot = torch.cat([torch.arange(len(s), device=feats.device) for s in segs])
        turn_mask = lengths_to_mask(counts)
        embs = []
        for embedder in self.embedders:
            e = embedder(seg_feats, seg_mask)
            grid = e.new_zeros(len(segs), turn_mask.shape[1], e.shape[1])
            embs.append(grid.index_put((utt, slot), e))
        if self.fusion == "feature":
            logp = F.log_softmax(self.labellers[0](torch.cat(embs, -1), turn_mask), dim=-1)
        else:
            logps = torch.stack([F.log_softmax(lab(e, turn_mask), dim=-1)
                                 for lab, e in zip(self.labellers, embs)])
            logp = torch.logsumexp(logps + self.log_weights.view(-1, 1, 1, 1), dim=0)
        return logp, turn_mask

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        logp, mask = self.segment_log_posteriors(feats, lengths)
        logp = logp.masked_fill(~mask.unsqueeze(-1), float("-inf"))
        # log of the mean posterior over the turn's segments
        return torch.logsumexp(logp, dim=1) - mask.sum(1, keepdim=True).to(logp.dtype).log()
