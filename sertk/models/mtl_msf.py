"""``mtl_msf``: multitask CCC loss and multistage SVR fusion (Atmaja & Akagi, ICASSP 2020),
papers.md section 23.

The network: 3 stacked LSTM layers of 256, 128 and 64 units with dropout 0.4 after each
(paper), and one linear output per dimension (``num_classes`` = the number of ``utt2dim``
columns; papers.md's suggested ``Dense(1)`` per attribute). It is trained with the multitask
CCC loss ``1 - (0.7 CCC_aro + 0.2 CCC_val + 1.0 CCC_3rd)`` (``loss: {name: ccc, weights:
[0.7, 0.2, 1.0]}``, :class:`sertk.losses.CCCLoss`; the paper's third attribute is liking, here
the third ``utt2dim`` column, dominance). The multistage late fusion of several such models
is :mod:`sertk.fusion_svr` (``bin/svr_fusion.py``).

Not from the paper (chosen here, kept in ``conf/model/mtl_msf.yaml``):

* **Utterance output.** The paper predicts every 100 ms label step (sequence to sequence, with
  a one-step annotation-delay shift); sertk's dimensional task has one label per utterance.
  ``pooling: mean`` (default) averages the last LSTM layer's outputs over the real frames
  before the output layer, which equals averaging the per-step linear predictions of the
  paper's ``Dense(1)`` heads over the utterance. ``pooling: last`` uses the state after the
  last real frame instead. The delay shift does not apply to utterance labels.
* The LSTMs are unidirectional with tanh/sigmoid activations (Keras defaults).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from sertk.errors import SertkError
from sertk.models.layers import lengths_to_mask, masked_mean
from sertk.models.layers.stacked_lstm import StackedLSTM
from sertk.models.registry import MODELS

POOLINGS = ("mean", "last")


@MODELS.register("mtl_msf", summary="3-layer LSTM (256/128/64) for dimensional SER with the "
                                    "multitask CCC loss; SVR multistage late fusion",
                 paper="Atmaja & Akagi, Multitask learning and multistage fusion for "
                       "dimensional audiovisual emotion recognition, ICASSP 2020")
class MtlMsf(nn.Module):
    """``(feats [B, T, D], lengths [B]) -> [B, num_classes]`` predicted values."""

    def __init__(self, input_dim: int, num_classes: int,
                 hidden: Sequence[int] = (256, 128, 64), dropout: float = 0.4,
                 pooling: str = "mean"):
        super().__init__()
        if pooling not in POOLINGS:
            raise SertkError(f"mtl_msf: pooling must be {' or '.join(POOLINGS)}, "
                             f"got {pooling!r}")
        if not hidden:
            raise SertkError("mtl_msf: hidden needs at least one LSTM width")
        self.pooling = pooling
        self.lstm = StackedLSTM(input_dim, [int(h) for h in hidden], dropout)
        self.out = nn.Linear(self.lstm.out_dim, num_classes)

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        frames, last = self.lstm(feats, lengths)
        if self.pooling == "last":
            return self.out(last)
        return self.out(masked_mean(frames, lengths_to_mask(lengths, feats.shape[1])))
