"""``listener_adaptive``: listener-adaptive (LA) models of perceived emotion (Ando et al.,
ICASSP 2021), papers.md section 11.

The backbone is the paper's baseline (``cnn_attn_baseline``): three CNN layers (16, 24, 32
channels, BatchNorm, ReLU, 2x2 max pooling), a BiLSTM of 128 units (dropout 0.2), 4-head
structured self-attention (Lin et al.; dropout 0.2) and two FC layers of 64 units (dropout
0.2). A listener code ``l`` (one-hot, i.e. an ``nn.Embedding`` row ``e_l`` of ``listener_dim``
values; paper: 8 for IEMOCAP, 32 for MSP-Podcast) is an extra input to the adaptive layers
named by ``adapt`` (any non-empty combination; the paper's best is ``[afc]``):

* ``afc``: both FC layers take ``[x, e_l]``, i.e. ``y = ReLU(W x + U e_l + b)``;
* ``alstm``: ``e_l`` is appended to every BiLSTM input frame;
* ``acnn``: ``e_l`` is appended to the input of every CNN layer as constant channels (zero on
  padded frames, as the acoustic channels).

The paper does not say how ``e_l`` enters a layer: these are papers.md's suggested forms.
Every listener's posterior ``p(c | x, l)`` comes from one pass over a batch replicated per
listener from the first adaptive layer on (so ``acnn``/``alstm`` cost about ``NL`` times the
backbone). :meth:`ListenerAdaptive.listener_posteriors` returns them ``[B, NL, C]``;
``forward`` returns the majority-vote estimate ``log mean_l p(c | x, l)`` ``[B, C]`` (log
probabilities: the trainer's cross-entropy and the softmax of every scorer treat them as
logits of the mean posterior), averaged over all ``NL`` listener slots, ``other`` included.

Training (the registry's ``listeners`` auxiliary kind, table ``utt2listener_emo``): the loss is
the cross-entropy of each (utterance, listener) pair with a label, weighted by

    w(l, c) = [n(l) / n(l, c)] * [N / n(l)]

the inverse frequency of class ``c`` among listener ``l``'s labels times the inverse of ``l``'s
share of all ``N`` annotations (paper: per-listener inverse class frequency times inverse
listener annotation frequency; reading "frequency" as relative frequency, the product is
``N / n(l, c)``: every (listener, class) cell weighs the same in total). The batch loss is
the weighted mean ``sum w * nll / sum w`` over its labelled pairs (as ``nn.CrossEntropyLoss``
with class weights). The counts ``n(l, c)`` are a buffer saved with the weights: given as
``listener_class_counts`` (``[NL][C]``, in the trainer's listener and label order), or else
accumulated from the training batches themselves (exact ratios after the first epoch, running
estimates during it; under DDP the counts of rank 0's shard, as DDP broadcasts buffers).
The model is trained on listener labels only (``emotion_loss_weight = majority_weight``,
default 0, as the paper); ``select_on_valid`` since the majority estimate is meaningful on the
validation set.

Not specified by the paper, chosen here (kept in ``conf/model/listener_adaptive.yaml``): the
adaptive-layer forms above, 3x3 kernels, attention size 64, the weight normalisation above,
the running counts.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from sertk.errors import SertkError
from sertk.models.layers import (
    ConvBlock2d,
    StructuredSelfAttention,
    lengths_to_mask,
    zero_padding,
)
from sertk.models.registry import MODELS

TABLE = "utt2listener_emo"
ADAPT = ("afc", "alstm", "acnn")


def listener_pair_weights(counts: torch.Tensor) -> torch.Tensor:
    """``w[l, c] = n(l) / n(l, c) * N / n(l)`` from counts ``[NL, C]``; an empty cell or
    listener divides by 1 so that every weight is finite (it weighs no labelled pair)."""
    per_listener = counts.sum(1, keepdim=True).clamp_min(1.0)
    class_w = per_listener / counts.clamp_min(1.0)  # inverse class frequency in the listener
    listener_w = counts.sum().clamp_min(1.0) / per_listener  # inverse share of annotations
    return class_w * listener_w


@MODELS.register("listener_adaptive", summary="CNN-BiLSTM-attention with listener-adaptive "
                 "layers; majority = mean listener posterior",
                 paper="Ando et al., Speech emotion recognition based on listener adaptive "
                       "models, ICASSP 2021")
class ListenerAdaptive(nn.Module):
    aux_tables = (TABLE,)
    aux_kinds = {TABLE: "listeners"}
    select_on_valid = True

    def __init__(self, input_dim: int, num_classes: int,
                 aux_classes: dict[str, int] | None = None,
                 adapt: Sequence[str] | str = ("afc",), listener_dim: int = 8,
                 channels: Sequence[int] = (16, 24, 32), kernel: int = 3,
                 pool: Sequence[int] = (2, 2), lstm_hidden: int = 128, att_heads: int = 4,
                 att_dim: int = 64, fc_dims: Sequence[int] = (64, 64), dropout: float = 0.2,
                 majority_weight: float = 0.0,
                 listener_class_counts: Sequence[Sequence[float]] | None = None,
                 listener_min_utts: int = 1):
        """``aux_classes[utt2listener_emo]``: the number of listeners ``NL`` (set by the
        trainer; 1 when built without targets, e.g. by ``sertk models info``).
        ``listener_min_utts`` is read by the trainer (pooling rare listeners as ``other``)."""
        super().__init__()
        self.adapt = _check_adapt(adapt)
        self.num_listeners = int((aux_classes or {}).get(TABLE, 1))
        self.num_classes = num_classes
        self.emotion_loss_weight = float(majority_weight)
        self.embed = nn.Embedding(self.num_listeners, listener_dim)
        e_cnn = listener_dim if "acnn" in self.adapt else 0
        blocks, in_ch, freq = [], 1, input_dim
        for ch in channels:
            blocks.append(ConvBlock2d(in_ch + e_cnn, ch, kernel, pool=tuple(pool),
                                      pool_kind="max"))
            in_ch, freq = ch, freq // pool[1]
        self.cnn = nn.ModuleList(blocks)
        e_lstm = listener_dim if "alstm" in self.adapt else 0
        self.lstm = nn.LSTM(in_ch * freq + e_lstm, lstm_hidden, batch_first=True,
                            bidirectional=True)
        self.dropout = nn.Dropout(dropout)
        self.attention = StructuredSelfAttention(2 * lstm_hidden, att_dim, att_heads, dropout)
        e_fc, dim, fcs = (listener_dim if "afc" in self.adapt else 0), self.attention.out_dim, []
        for h in fc_dims:
            fcs.append(nn.Linear(dim + e_fc, h))
            dim = h
        self.fcs = nn.ModuleList(fcs)
        self.out = nn.Linear(dim, num_classes)
        self.register_buffer("listener_counts", self._initial_counts(listener_class_counts))
        self.count_batches = listener_class_counts is None
        self._last_logp: torch.Tensor | None = None

    def _initial_counts(self, given: Sequence[Sequence[float]] | None) -> torch.Tensor:
        shape = (self.num_listeners, self.num_classes)
        if given is None:
            return torch.zeros(shape)
        try:
            counts = torch.tensor(given, dtype=torch.float32)
        except (TypeError, ValueError):
            counts = torch.full((0,), -1.0)
        if counts.shape != shape or bool((counts < 0).any()):
            raise SertkError(f"listener_adaptive: listener_class_counts must be {shape[0]} "
                             f"rows (listeners) of {shape[1]} counts >= 0 (labels), got "
                             f"{tuple(counts.shape)}")
        return counts

    # ------------------------------------------------------------------ network
    def _replicate(self, x: torch.Tensor, mask: torch.Tensor
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Rows ``b * NL + l``: ``x`` and ``mask`` repeated per listener, and ``e_l``."""
        n = self.num_listeners
        emb = self.embed.weight.repeat(x.shape[0], 1)
        return x.repeat_interleave(n, 0), mask.repeat_interleave(n, 0), emb

    def listener_logits(self, feats: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Unnormalised scores of every listener ``[B, NL, C]``."""
        batch = feats.shape[0]
        mask = lengths_to_mask(lengths, feats.shape[1])
        x, emb = zero_padding(feats.unsqueeze(1), mask), None  # [B, 1, T, D]
        for block in self.cnn:
            if "acnn" in self.adapt:
                if emb is None:
                    x, mask, emb = self._replicate(x, mask)
                const = emb[:, :, None, None].expand(-1, -1, x.shape[2], x.shape[3])
                x = torch.cat([x, zero_padding(const, mask)], 1)
            x, mask = block(x, mask)
        x = x.permute(0, 2, 1, 3).flatten(2)  # [B', T', C * F']
        if "alstm" in self.adapt:
            if emb is None:
                x, mask, emb = self._replicate(x, mask)
            x = torch.cat([x, emb[:, None].expand(-1, x.shape[1], -1)], -1)
        packed = nn.utils.rnn.pack_padded_sequence(x, mask.sum(1).cpu(), batch_first=True,
                                                   enforce_sorted=False)
        h, _ = self.lstm(packed)
        h, _ = nn.utils.rnn.pad_packed_sequence(h, batch_first=True, total_length=x.shape[1])
        z = self.attention(self.dropout(h), mask)
        if "afc" in self.adapt and emb is None:
            z, mask, emb = self._replicate(z, mask)
        for fc in self.fcs:
            z = self.dropout(F.relu(fc(torch.cat([z, emb], -1) if "afc" in self.adapt else z)))
        return self.out(z).view(batch, self.num_listeners, self.num_classes)

    def listener_posteriors(self, feats: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """``p(c | x, l)`` of every listener ``[B, NL, C]`` (switching the listener code)."""
        return torch.softmax(self.listener_logits(feats, lengths), -1)

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Majority-vote estimate ``log mean_l p(c | x, l)`` ``[B, C]``."""
        logp = torch.log_softmax(self.listener_logits(feats, lengths), -1)
        self._last_logp = logp
        return torch.logsumexp(logp, 1) - math.log(self.num_listeners)

    # ------------------------------------------------------------------ loss
    def auxiliary_loss(self, aux_targets: dict[str, torch.Tensor]) -> torch.Tensor:
        """Weighted CE over the batch's (utterance, listener) pairs with a label (target
        ``[B, NL]`` label indices, -1 = none); see the module docstring for the weights."""
        logp, self._last_logp = self._last_logp, None
        if logp is None:
            raise RuntimeError("auxiliary_loss() before forward()")
        target = aux_targets[TABLE].to(logp.device)
        if target.shape != logp.shape[:2]:
            raise SertkError(f"listener_adaptive: listener targets {tuple(target.shape)} do "
                             f"not match the model's {self.num_listeners} listeners")
        known = target >= 0
        if self.training and self.count_batches and torch.is_grad_enabled():
            self._count(target, known)
        if not bool(known.any()):
            return logp.sum() * 0.0
        tgt = target.clamp_min(0)
        w = listener_pair_weights(self.listener_counts)[
            torch.arange(self.num_listeners, device=tgt.device).expand_as(tgt), tgt]
        w = w * known
        nll = -logp.gather(-1, tgt.unsqueeze(-1)).squeeze(-1)
        return (w * nll).sum() / w.sum()

    @torch.no_grad()
    def _count(self, target: torch.Tensor, known: torch.Tensor) -> None:
        """Add the batch's labelled pairs to ``listener_counts``."""
        slot = torch.arange(self.num_listeners, device=target.device).expand_as(target)
        flat = (slot * self.num_classes + target.clamp_min(0))[known]
        self.listener_counts += torch.bincount(
            flat, minlength=self.listener_counts.numel()).view_as(self.listener_counts).to(
            self.listener_counts.dtype)


def _check_adapt(adapt: Sequence[str] | str) -> tuple[str, ...]:
    names = (adapt,) if isinstance(adapt, str) else tuple(adapt)
    bad = [a for a in names if a not in ADAPT]
    if bad or not names:
        raise SertkError(f"listener_adaptive: adapt must name one or more of "
                         f"{', '.join(ADAPT)}, got {list(names)}")
    return names
