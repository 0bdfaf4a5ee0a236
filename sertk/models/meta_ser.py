"""``meta_ser``: the network of MetaSER / TransSER / MultiSER (Chopra et al., Meta-learning for
low-resource speech emotion recognition, ICASSP 2021), papers.md section 21.

The three configs share one network: a 2-layer LSTM of 128 units over the ``(120, 20)`` MFCC
matrix (``conf/feats/mfcc20_120frames.yaml``), then two dense layers of 128 and ``num_classes``
(4: angry, happy, neutral, sad) units. The training procedures (first-order MAML over source
corpora, sequential transfer, round-robin multitask) live in :mod:`sertk.train.meta`.

Options:

* ``finetune``: ``all`` trains every layer (MetaSER's fine-tuning from the meta-learned
  initialisation); ``dense`` freezes the LSTM and trains the dense layers only (the paper's
  TransSER / MultiSER fine-tuning);
* ``init_checkpoint``: weights to start from (the pre-trained or meta-learned network written
  by ``sertk train-meta`` to ``EXP/pretrain/init.safetensors``); a missing file only warns, as
  for every model (a packed model is rebuilt without it).

Not specified by the paper, chosen here (kept in ``conf/model/meta_ser.yaml``): the utterance
embedding is the last LSTM layer's state at each utterance's last real frame (papers.md's
suggestion; packed sequences, so padding is ignored), ReLU after the 128-unit dense layer, no
dropout.
"""

from __future__ import annotations

import torch
from torch import nn

from sertk.models.layers.pretrained import init_from_checkpoint
from sertk.models.registry import MODELS

FINETUNE_MODES = ("all", "dense")


@MODELS.register("meta_ser", summary="2-layer LSTM + 2 dense layers for MAML / transfer / "
                                     "multitask low-resource SER (sertk train-meta)",
                 paper="Chopra et al., Meta-Learning for Low-Resource Speech Emotion "
                       "Recognition, ICASSP 2021")
class MetaSER(nn.Module):
    """``lstm`` (the shared body) -> last real frame's state -> ``head`` (the dense layers)."""

    def __init__(self, input_dim: int, num_classes: int, hidden: int = 128, layers: int = 2,
                 fc_dim: int = 128, dropout: float = 0.0, finetune: str = "all",
                 init_checkpoint: str | None = None):
        super().__init__()
        if finetune not in FINETUNE_MODES:
            raise ValueError(f"finetune must be one of {', '.join(FINETUNE_MODES)}, "
                             f"got {finetune!r}")
        self.lstm = nn.LSTM(input_dim, hidden, num_layers=layers, batch_first=True,
                            dropout=dropout if layers > 1 else 0.0)
        self.head = nn.Sequential(nn.Linear(hidden, fc_dim), nn.ReLU(), nn.Dropout(dropout),
                                  nn.Linear(fc_dim, num_classes))
        init_from_checkpoint(self, init_checkpoint)
        self.finetune = finetune
        if finetune == "dense":
            self.lstm.requires_grad_(False)

    def encode(self, feats: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Utterance embeddings ``[B, hidden]``: the top layer's state after the last real
        frame. A batch without padding (the paper's fixed 120 frames) skips the packing, which
        costs ~5x on the CPU."""
        if bool((lengths == feats.shape[1]).all()):
            _, (h_n, _) = self.lstm(feats)
            return h_n[-1]
        packed = nn.utils.rnn.pack_padded_sequence(feats, lengths.cpu(), batch_first=True,
                                                   enforce_sorted=False)
        _, (h_n, _) = self.lstm(packed)
        return h_n[-1]

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.head(self.encode(feats, lengths))

    def train(self, mode: bool = True) -> MetaSER:
        """A frozen LSTM stays in eval mode (no dropout between its layers)."""
        super().train(mode)
        if self.finetune == "dense":
            self.lstm.eval()
        return self
