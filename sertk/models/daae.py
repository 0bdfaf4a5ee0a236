"""``daae``: domain-adversarial autoencoder with attention-based feature-level fusion (Gao et al.,
ICASSP 2021), papers.md section 20.

Input: 32 x 129 spectrogram segments (``conf/feats/spectrogram129.yaml``: 256-point FFT, 16 ms
frames every 8 ms, so 32 frames span 264 ms; the trainer cuts utterances into segments with
``train.segment`` and averages segment posteriors with ``train.eval_segment``). The network
works on any length (masked), so it also runs on whole utterances.

* **Convolutional autoencoder (AE)**: encoder ConvBlock2d layers (3x3 conv-BN-ReLU-max pooling)
  to the latent map; ``R_l`` is the latent map flattened per time step ``[B, T', C * F']``. The
  decoder mirrors it (nearest upsampling to each encoder level's size, 3x3 conv-BN-ReLU, a last
  3x3 conv to one channel) and reconstructs the input; the masked MSE over real frames is
  ``L_AE``.
* **DANN on R_l** (mean over real steps): an emotion label predictor and, behind a gradient
  reversal layer (GRL, factor ``lambda``), a speaker and a corpus classifier (each
  Linear-ReLU-Linear). Total loss, with lambda applied once (in the GRL; papers.md's note):
  ``L_AE + alpha (L_e + beta L_s + (1 - beta) L_c)``.
* **Deep CNN branch** (Satt et al. style) on the same spectrogram -> ``R_d`` with the AE's time
  resolution; ``R_f = ReLU(FC(R_l || R_d))``.
* **Multi-head attention fusion**: ``Head_i = softmax(Q_i K_i^T / sqrt(d_i)) V_i`` with
  ``Q_i = R_d W_i^Q``, ``K_i = R_l W_i^K``, ``V_i = R_f W_i^V`` over the time steps (padded keys
  masked); the heads are concatenated (``heads * head_dim`` < the input sizes: the MHA reduces
  dimensionality).
* **BLSTM classifier**: a packed BLSTM over the MHA output, its last forward and backward states,
  dropout and the softmax layer.

Two stages (option ``stage``), through the auxiliary-task protocol of ``registry.py``
(``aux_tables = ("utt2spk", "utt2corpus")``, ``aux_classes``, ``auxiliary_loss``):

* ``autoencoder`` (``conf/model/daae_pretrain.yaml``, on the pretraining corpora): AE + DANN.
  ``forward`` returns the DANN emotion predictor's logits and ``emotion_loss_weight`` is
  ``pretrain_emotion_weight`` (default 0: the pretraining corpora's emotion mapping is not
  available, papers.md; set it to ``alpha`` for the paper's ``alpha L_e``); ``auxiliary_loss`` is
  ``recon_weight L_AE + alpha beta L_s + alpha (1 - beta) L_c``. The CNN/fusion/BLSTM branch is
  unused and frozen.
* ``classifier`` (``conf/model/daae.yaml``, on the target data): ``init_checkpoint`` (the stage-1
  ``model.safetensors``) initialises the AE and DANN heads (matching names and shapes; the
  speaker/corpus heads of other corpora are skipped); the DANN emotion predictor is frozen,
  the adversaries are frozen unless ``alpha > 0`` (paper: DANN frozen, ``alpha: 0``), and
  ``encoder_update`` says what trains the AE: ``reconstruction`` (paper: only ``L_AE`` reaches
  the AE; the fusion sees ``R_l`` detached -- the paper's "fine-tune the AE, then extract R_l
  and train the fusion" in one run), ``all`` (the emotion loss too) or ``frozen`` (encoder
  and decoder fixed, BN statistics included, no reconstruction).

``auxiliary_loss`` skips a table whose weight is 0 and targets -1 (unknown); the trainer asks
only for the tables with a non-zero adversary weight (``aux_tables_for``). The parts a
configuration does not train are frozen (``frozen_parts``), and every trainable parameter
gets a gradient at every step (DDP without unused parameters).
``grl_warmup_steps > 0`` ramps lambda with the DANN schedule
``lambda_p = 2 / (1 + exp(-10 p)) - 1``, ``p`` = training steps / ``grl_warmup_steps``.

Not fixed by the paper, chosen here (``conf/model/daae*.yaml``): AE channels 16-32-32 with
pools (2, 2), (2, 2), (1, 2) (latent 32 x 8 x 16 for a 32 x 129 segment); CNN branch 32-64-128
with the same pools; DANN head hidden size 128; fusion FC 256; 4 heads of 32 dims; BLSTM 128
units per direction; dropout 0.3; alpha 1, beta 0.5, lambda 1 (papers.md's defaults).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from sertk.models.layers import (
    ConvBlock2d,
    GradientReversal,
    MaskedBatchNorm,
    lengths_to_mask,
    masked_mean,
    zero_padding,
)
from sertk.models.layers.attention import FusionAttention
from sertk.models.layers.pretrained import init_from_checkpoint
from sertk.models.registry import MODELS

STAGES = ("autoencoder", "classifier")
ENCODER_UPDATES = ("reconstruction", "all", "frozen")
AE_PARTS = ("encoder", "decoder")
DANN_PARTS = ("emotion_head", "adversaries")
CLASSIFIER_PARTS = ("cnn", "fusion_fc", "attention", "blstm", "classifier")


def _mlp(in_dim: int, hidden: int, out_dim: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, out_dim))


@MODELS.register("daae", summary="domain-adversarial conv autoencoder + CNN, attention fusion, "
                                 "BLSTM (two stages)",
                 paper="Gao et al., Domain-Adversarial Autoencoder with Attention Based Feature "
                       "Level Fusion for Speech Emotion Recognition, ICASSP 2021")
class DAAE(nn.Module):
    aux_tables = ("utt2spk", "utt2corpus")
    # Parts a configuration does not train are frozen (requires_grad False) and every trainable
    # parameter gets a gradient at every step, so DDP runs with find_unused_parameters=False.
    # (True would break: the decoder and adversaries are reached only through auxiliary_loss,
    # outside forward's output, and DDP would mark them ready twice.)
    ddp_find_unused_parameters = False

    @staticmethod
    def aux_tables_for(conf: dict) -> tuple[str, ...]:
        """Only the tables whose adversary has a non-zero weight are needed."""
        alpha, beta = float(conf.get("alpha", 1.0)), float(conf.get("beta", 0.5))
        return tuple(t for t, w in (("utt2spk", alpha * beta),
                                    ("utt2corpus", alpha * (1.0 - beta))) if w > 0)

    def __init__(self, input_dim: int, num_classes: int,
                 aux_classes: dict[str, int] | None = None, stage: str = "classifier",
                 ae_channels: tuple[int, ...] = (16, 32, 32),
                 ae_pools: tuple[tuple[int, int], ...] = ((2, 2), (2, 2), (1, 2)),
                 cnn_channels: tuple[int, ...] = (32, 64, 128),
                 cnn_pools: tuple[tuple[int, int], ...] = ((2, 2), (2, 2), (1, 2)),
                 head_hidden: int = 128, fusion_dim: int = 256, att_heads: int = 4,
                 att_head_dim: int = 32, lstm_hidden: int = 128, dropout: float = 0.3,
                 alpha: float = 1.0, beta: float = 0.5, grl_lambda: float = 1.0,
                 grl_warmup_steps: int = 0, recon_weight: float = 1.0,
                 pretrain_emotion_weight: float = 0.0,
                 encoder_update: str = "reconstruction", init_checkpoint: str | None = None):
        super().__init__()
        if stage not in STAGES:
            raise ValueError(f"stage must be one of {', '.join(STAGES)}, got {stage!r}")
        if encoder_update not in ENCODER_UPDATES:
            raise ValueError(f"encoder_update must be one of {', '.join(ENCODER_UPDATES)}, "
                             f"got {encoder_update!r}")
        if [p[0] for p in ae_pools] != [p[0] for p in cnn_pools]:
            raise ValueError("ae_pools and cnn_pools must pool time alike (R_l and R_d align)")
        if not 0.0 <= beta <= 1.0:
            raise ValueError(f"beta must be in [0, 1], got {beta}")
        self.stage, self.encoder_update = stage, encoder_update
        self.recon_weight = float(recon_weight)
        self.adversary_weights = {"utt2spk": alpha * beta, "utt2corpus": alpha * (1.0 - beta)}
        self.emotion_loss_weight = float(pretrain_emotion_weight) if stage == "autoencoder" \
            else 1.0
        self.grl_lambda, self.grl_warmup_steps = float(grl_lambda), int(grl_warmup_steps)
        self.register_buffer("grl_steps", torch.zeros((), dtype=torch.long))

        # autoencoder
        enc, dec, in_ch, freq = [], [], 1, input_dim
        for ch, pool in zip(ae_channels, ae_pools):
            enc.append(ConvBlock2d(in_ch, ch, 3, pool=tuple(pool), pool_kind="max"))
            in_ch, freq = ch, freq // pool[1]
        self.encoder = nn.ModuleList(enc)
        latent_dim = in_ch * freq
        outs = (1, *ae_channels[:-1])
        for i in reversed(range(len(ae_channels))):
            if i > 0:
                dec.append(ConvBlock2d(ae_channels[i], outs[i], 3))
            else:
                dec.append(nn.Conv2d(ae_channels[0], 1, 3, padding=1))
        self.decoder = nn.ModuleList(dec)

        # DANN heads on the mean latent representation
        aux_classes = aux_classes or {}
        self.grl = GradientReversal(self.grl_lambda)
        self.emotion_head = _mlp(latent_dim, head_hidden, num_classes)
        self.adversaries = nn.ModuleDict({t: _mlp(latent_dim, head_hidden,
                                                  int(aux_classes.get(t, 1)))
                                          for t in self.aux_tables})

        # CNN branch, attention fusion, BLSTM classifier
        cnn, in_ch, freq = [], 1, input_dim
        for ch, pool in zip(cnn_channels, cnn_pools):
            cnn.append(ConvBlock2d(in_ch, ch, 3, pool=tuple(pool), pool_kind="max"))
            in_ch, freq = ch, freq // pool[1]
        self.cnn = nn.ModuleList(cnn)
        deep_dim = in_ch * freq
        self.fusion_fc = nn.Linear(latent_dim + deep_dim, fusion_dim)
        self.attention = FusionAttention(deep_dim, latent_dim, fusion_dim, att_heads,
                                         att_head_dim)
        self.blstm = nn.LSTM(self.attention.out_dim, lstm_hidden, batch_first=True,
                             bidirectional=True)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(2 * lstm_hidden, num_classes)

        init_from_checkpoint(self, init_checkpoint, include=tuple(
            f"{p}." for p in AE_PARTS + DANN_PARTS))
        self._freeze()
        self._cache: dict[str, object] | None = None

    # which parts train in this configuration
    @property
    def reconstructs(self) -> bool:
        return self.recon_weight > 0 and not (self.stage == "classifier"
                                               and self.encoder_update == "frozen")

    def _freeze(self) -> None:
        frozen: list[str] = []
        if self.stage == "autoencoder":
            frozen += CLASSIFIER_PARTS
        else:
            frozen.append("emotion_head")
            adversarial = any(w > 0 for w in self.adversary_weights.values())
            if self.encoder_update == "frozen" or (
                    self.encoder_update == "reconstruction" and not self.reconstructs
                    and not adversarial):
                frozen.append("encoder")  # no loss reaches it
        if not self.reconstructs:
            frozen.append("decoder")
        for table, w in self.adversary_weights.items():
            if w <= 0:
                frozen.append(f"adversaries.{table}")
        self.frozen_parts = tuple(frozen)
        for name, p in self.named_parameters():
            if name.startswith(tuple(f"{f}." for f in frozen)):
                p.requires_grad_(False)
        self._frozen_bns = [m for name, m in self.named_modules()
                            if isinstance(m, MaskedBatchNorm)
                            and name.startswith(tuple(f"{f}." for f in frozen))]

    def train(self, mode: bool = True) -> DAAE:
        super().train(mode)
        for bn in self._frozen_bns:  # frozen layers keep their statistics
            bn.train(False)
        return self

    def _lambda(self) -> float:
        if self.grl_warmup_steps <= 0:
            return self.grl_lambda
        p = min(1.0, float(self.grl_steps) / self.grl_warmup_steps)
        return self.grl_lambda * (2.0 / (1.0 + math.exp(-10.0 * p)) - 1.0)

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        mask = lengths_to_mask(lengths, feats.shape[1])
        x = zero_padding(feats.unsqueeze(1), mask)  # [B, 1, T, F]
        h, m, levels = x, mask, []
        for block in self.encoder:
            levels.append((h.shape[2:], m))
            h, m = block(h, m)
        latent, lmask = h, m
        r_l = latent.permute(0, 2, 1, 3).flatten(2)  # [B, T', C * F']
        pooled = masked_mean(r_l, lmask)
        cache: dict[str, object] = {"pooled": pooled}
        if self.training:
            if self.reconstructs:
                cache["recon"] = self._reconstruction(latent, levels, feats, mask)
            self.grl.scale = self._lambda()
            self.grl_steps += 1
            reversed_ = self.grl(pooled)
            cache["reversed"] = reversed_
            cache["adversaries"] = {t: self.adversaries[t](reversed_)
                                    for t, w in self.adversary_weights.items() if w > 0}
        self._cache = cache
        if self.stage == "autoencoder":
            return self.emotion_head(pooled)

        d, dmask = x, mask
        for block in self.cnn:
            d, dmask = block(d, dmask)
        r_d = d.permute(0, 2, 1, 3).flatten(2)  # [B, T', C * F'']
        if self.encoder_update != "all":
            r_l = r_l.detach()
        r_f = F.relu(self.fusion_fc(torch.cat([r_l, r_d], dim=-1)))
        fused = self.attention(r_d, r_l, r_f, lmask)
        lens = lmask.sum(1)
        packed = nn.utils.rnn.pack_padded_sequence(fused, lens.cpu(), batch_first=True,
                                                   enforce_sorted=False)
        _, (h_n, _) = self.blstm(packed)
        return self.classifier(self.dropout(torch.cat([h_n[-2], h_n[-1]], dim=-1)))

    def _reconstruction(self, latent: torch.Tensor, levels: list, target: torch.Tensor,
                        mask: torch.Tensor) -> torch.Tensor:
        """Masked MSE between the decoder's output and the input, over real frames."""
        h = latent
        for block, (size, m) in zip(self.decoder, reversed(levels)):
            h = zero_padding(F.interpolate(h, size=tuple(size), mode="nearest"), m)
            h = block(h, m)[0] if isinstance(block, ConvBlock2d) else block(h)
        err = (h.squeeze(1) - target.detach()).square().mean(-1)  # [B, T]
        return (err * mask).sum() / mask.sum().clamp_min(1)

    def auxiliary_loss(self, aux_targets: dict[str, torch.Tensor]) -> torch.Tensor:
        """``recon_weight L_AE + alpha beta L_s + alpha (1 - beta) L_c`` for the last
        training-mode ``forward``; targets -1 are ignored, weight-0 tables skipped."""
        cache = self._cache
        if cache is None or "reversed" not in cache:
            raise RuntimeError("auxiliary_loss() needs a training-mode forward() first")
        total = cache["pooled"].new_zeros(())
        if "recon" in cache:
            total = total + self.recon_weight * cache["recon"]
        for table, logits in cache["adversaries"].items():
            target = aux_targets.get(table)
            target = (target.to(logits.device) if target is not None
                      else torch.full(logits.shape[:1], -1, device=logits.device))
            valid = target >= 0
            if bool(valid.any()):
                ce = F.cross_entropy(logits[valid].float(), target[valid])
                total = total + self.adversary_weights[table] * ce
            else:  # no known target: a zero term keeps the head in the graph (DDP)
                total = total + 0.0 * logits.float().sum()
        return total
