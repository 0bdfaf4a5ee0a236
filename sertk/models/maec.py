"""``maec``: multi-instance learning with an adversarial-autoencoder-based classifier (Fu et al.,
MAEC, ICASSP 2021), papers.md section 27.

Input: frame-level LLDs every 10 ms (``conf/feats/emobase_lld.yaml``, 26 emobase LLDs, the
stand-in for the paper's 45-d emobase2010 LLDs; see ``sertk/features/opensmile_fe.py``).

* **Multi-instance bag**: instances of 50 ms every 10 ms, i.e. 5 LLD frames with a 1-frame
  stride (``instance_frames``); an utterance of ``L`` frames is a bag of ``L - 4`` instances
  (one instance, zero-padded, when shorter).
* **Dilated-conv block with conv shortcut**, per instance, along its frames (channels = LLDs):
  convs of 512, 512, 128 filters with kernels 1, 3, 1, the kernel-3 one dilated by 2 with
  'same' zero padding inside the instance, ReLU after each; shortcut: a 1x1 conv to 128; the
  sum is mean-pooled over the instance's frames -> ``h_i``. (Computed over the whole sequence
  at once: the kernel-1 convs are per frame, and the dilated conv's output at an instance
  frame is the sequence conv's with the taps outside the instance dropped.)
* ``BT = ReLU(FC_512(H))`` (bottleneck, per instance); ``Key = BiGRU_256(H)``;
  ``A = softmax(Q Key^T / sqrt(d)) Key`` with ``Q = BT`` (projected to the BiGRU width when it
  differs); ``KQ = mean(A)``, ``V = mean(Key)`` over the real instances; ``HF = KQ * V``.
* **Latent** ``Z = LayerNorm(HF)`` of the current utterance (no affine parameters; chosen, not
  in the paper: ``HF`` is a product of two means of BiGRU outputs, about 0.01 in magnitude at
  initialisation (measured on RAVDESS emobase LLDs), and without the norm the emotion CE
  stayed at ln 8 for 12 epochs at the paper's lr 1e-4; normalised, ``Z`` matches the
  ``N(0, I)`` prior's scale; ``latent_norm: false`` gives the paper's raw ``HF``).
* **Context fusion** (``context: true``, the paper's model): the same encoder (shared,
  papers.md's suggestion) gives ``HF_pre`` and ``HF_int`` of the speaker's previous turn and
  the interlocutor's previous turn (inputs ``feats_prev_self.scp`` / ``feats_prev_other.scp``,
  :mod:`sertk.data.dialog`, normalised with the model's CMVN);
  ``PI = softmax(HF_pre * HF_int)`` over the latent dimensions and
  ``Z = [HF_cur * PI, HF_cur]`` (twice the width; the heads and the discriminator follow).
  A missing turn (a dialogue's first turns) has ``HF = 0`` (papers.md: a zero tensor), so
  ``PI`` is uniform. ``context: false`` (default, corpora without dialogues): ``Z = HF_cur``.
* **Classifier**: one FC layer each for emotion (``forward``'s logits) and gender.
* **Discriminator**: two FC layers telling prior samples ``N(prior_mean, prior_std^2)``
  (true) from ``Z`` (false), BCE.

Losses, through the auxiliary-task protocol of ``registry.py`` (``aux_tables =
("utt2gender",)``, class kind, -1 = unknown gender, ignored): the emotion CE (trainer) plus
``auxiliary_loss = adversarial_weight L_adv + gender_weight L_gender``. The paper alternates
a regularisation stage (discriminator, then encoder) and a classification stage every step;
here one optimiser step does both (``adversarial_mode``):

* ``grl`` (default): ``L_adv = BCE(D(eps), 1) + BCE(D(GRL(Z)), 0)``; the discriminator
  minimises it, the encoder gets the reversed gradient, i.e. minimises
  ``E[log(1 - D(Z))]``, the paper's ``L_Enc`` term as written (minimax);
* ``non_saturating``: papers.md's suggestion: the discriminator is trained on ``Z`` detached
  and the encoder minimises ``BCE(D(Z), 1) = -log D(Z)`` through a frozen copy of ``D``.

``adversarial_weight: 0`` is the paper's ablation ``mec`` (no discriminator; it is frozen) and
``gender_weight: 0`` drops the gender task (head frozen, no ``utt2gender`` needed).

Not fixed by the paper, chosen here (``conf/model/maec.yaml``): ReLU after the bottleneck;
the attention of papers.md's note (query BT, key = value = Key, scaled; identity projection at
the paper's sizes, 512 = 2 x 256); mean pooling; discriminator hidden size 256 with
LeakyReLU 0.2; prior ``N(0, I)`` (papers.md's suggestion; with ``latent_norm: false`` use a
small ``prior_std`` such as 0.1, as ``|HF| < 1``); dropout 0.2 before the heads; GRL factor
1; equal loss weights (the paper sums the terms).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from sertk.data.dialog import PREV_OTHER, PREV_SELF
from sertk.errors import SertkError
from sertk.models.layers import GradientReversal, lengths_to_mask, masked_mean
from sertk.models.registry import MODELS

ADVERSARIAL_MODES = ("grl", "non_saturating")


def _pointwise(conv: nn.Conv1d, x: torch.Tensor) -> torch.Tensor:
    """A kernel-1 ``conv`` applied to every frame of ``x [B, T, C]``."""
    return F.linear(x, conv.weight.squeeze(-1), conv.bias)


class InstanceConvBlock(nn.Module):
    """The MAEC dilated-conv block with conv shortcut on every instance (``frames``
    consecutive frames, stride 1) of ``[B, T, D]``; returns ``[B, N, channels[-1]]`` with
    ``N = max(T, frames) - frames + 1``. Same result as :meth:`per_instance` on each
    unfolded instance, without materialising the instances."""

    def __init__(self, in_dim: int, channels: tuple[int, int, int] = (512, 512, 128),
                 dilation: int = 2, frames: int = 5):
        super().__init__()
        if len(channels) != 3:
            raise SertkError(f"maec conv_channels needs 3 values, got {list(channels)}")
        if not 0 < dilation < frames:
            raise SertkError(f"maec dilation must be in [1, instance_frames), got {dilation}")
        c1, c2, c3 = channels
        self.frames, self.dilation = frames, dilation
        self.conv1 = nn.Conv1d(in_dim, c1, 1)
        self.conv2 = nn.Conv1d(c1, c2, 3, dilation=dilation, padding=dilation)
        self.conv3 = nn.Conv1d(c2, c3, 1)
        self.shortcut = nn.Conv1d(in_dim, c3, 1)

    def per_instance(self, inst: torch.Tensor) -> torch.Tensor:
        """Reference: the block on instances ``[M, D, frames]`` -> ``[M, C]``."""
        y = F.relu(self.conv3(F.relu(self.conv2(F.relu(self.conv1(inst))))))
        return (y + self.shortcut(inst)).mean(-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w, d = self.frames, self.dilation
        if x.shape[1] < w:
            x = F.pad(x, (0, 0, 0, w - x.shape[1]))
        n = x.shape[1] - w + 1
        a = F.relu(_pointwise(self.conv1, x))  # [B, T, C1]
        c2 = self.conv2.out_channels
        taps = F.linear(a, self.conv2.weight.permute(2, 0, 1).reshape(3 * c2, -1))
        taps = taps.view(*a.shape[:2], 3, c2)  # taps for frames t - d, t, t + d
        left = F.pad(taps[:, :-d, 0], (0, 0, d, 0))
        right = F.pad(taps[:, d:, 2], (0, 0, 0, d))
        centre = taps[:, :, 1] + self.conv2.bias
        variants: dict[tuple[bool, bool], torch.Tensor] = {}
        total = 0.0
        for j in range(w):  # frame j of every instance: which taps fall inside it
            has = (j >= d, j + d < w)
            if has not in variants:
                pre = centre + (left if has[0] else 0.0) + (right if has[1] else 0.0)
                variants[has] = F.relu(_pointwise(self.conv3, F.relu(pre)))
            total = total + variants[has][:, j:j + n]
        mean_x = F.avg_pool1d(x.transpose(1, 2), w, stride=1).transpose(1, 2)
        return total / w + _pointwise(self.shortcut, mean_x)


@MODELS.register("maec", summary="multi-instance dilated-conv + BiGRU attention encoder, "
                                 "Gaussian adversarial prior, emotion + gender heads",
                 paper="Fu et al., MAEC: Multi-Instance Learning with an Adversarial "
                       "Auto-Encoder-Based Classifier for Speech Emotion Recognition, "
                       "ICASSP 2021")
class MAEC(nn.Module):
    aux_tables = ("utt2gender",)
    # every trainable parameter gets a gradient at every training step (unused heads frozen)
    ddp_find_unused_parameters = False

    @staticmethod
    def aux_tables_for(conf: dict) -> tuple[str, ...]:
        """``utt2gender`` unless the gender task is off."""
        return ("utt2gender",) if float(conf.get("gender_weight", 1.0)) > 0 else ()

    def __init__(self, input_dim: int, num_classes: int,
                 aux_classes: dict[str, int] | None = None, instance_frames: int = 5,
                 conv_channels: tuple[int, int, int] = (512, 512, 128), dilation: int = 2,
                 bottleneck: int = 512, gru_hidden: int = 256, disc_hidden: int = 256,
                 dropout: float = 0.2, prior_mean: float = 0.0, prior_std: float = 1.0,
                 adversarial_weight: float = 1.0, gender_weight: float = 1.0,
                 grl_lambda: float = 1.0, adversarial_mode: str = "grl",
                 latent_norm: bool = True, context: bool = False,
                 input_sizes: dict[str, int] | None = None):
        """``input_sizes``: the context tables' dimensions (the features', by construction)."""
        super().__init__()
        if adversarial_mode not in ADVERSARIAL_MODES:
            raise SertkError(f"maec adversarial_mode must be one of "
                             f"{', '.join(ADVERSARIAL_MODES)}, got {adversarial_mode!r}")
        if prior_std <= 0:
            raise SertkError(f"maec prior_std must be positive, got {prior_std}")
        self.instances = InstanceConvBlock(input_dim, tuple(conv_channels), dilation,
                                           instance_frames)
        c3, key_dim = conv_channels[-1], 2 * gru_hidden
        self.context, self.key_dim = bool(context), key_dim
        z_dim = 2 * key_dim if self.context else key_dim
        self.bottleneck = nn.Linear(c3, bottleneck)
        self.gru = nn.GRU(c3, gru_hidden, batch_first=True, bidirectional=True)
        self.query = nn.Identity() if bottleneck == key_dim else \
            nn.Linear(bottleneck, key_dim, bias=False)
        self.dropout = nn.Dropout(dropout)
        self.emotion_head = nn.Linear(z_dim, num_classes)
        self.gender_head = nn.Linear(z_dim, int((aux_classes or {}).get("utt2gender", 2)))
        self.discriminator = nn.Sequential(nn.Linear(z_dim, disc_hidden), nn.LeakyReLU(0.2),
                                           nn.Linear(disc_hidden, 1))
        self.grl = GradientReversal(grl_lambda)
        # parameter-free: Z keeps the prior's scale, not a learnt one
        self.latent_norm = nn.LayerNorm(key_dim, elementwise_affine=False) if latent_norm \
            else nn.Identity()
        self.prior_mean, self.prior_std = float(prior_mean), float(prior_std)
        self.adversarial_weight, self.gender_weight = float(adversarial_weight), \
            float(gender_weight)
        self.adversarial_mode = adversarial_mode
        for part, weight in ((self.discriminator, self.adversarial_weight),
                             (self.gender_head, self.gender_weight)):
            part.requires_grad_(weight > 0)
        self._latent: torch.Tensor | None = None

    def encode(self, feats: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """The latent code ``Z = LayerNorm(mean(A) * mean(Key))`` of each utterance ``[B, 2H]``."""
        mask = lengths_to_mask(lengths, feats.shape[1])
        h = self.instances(feats.masked_fill(~mask.unsqueeze(-1), 0.0))  # [B, N, C]
        n_inst = (lengths - self.instances.frames + 1).clamp_min(1)
        imask = lengths_to_mask(n_inst, h.shape[1])
        packed = nn.utils.rnn.pack_padded_sequence(h, n_inst.cpu(), batch_first=True,
                                                   enforce_sorted=False)
        key, _ = self.gru(packed)
        key, _ = nn.utils.rnn.pad_packed_sequence(key, batch_first=True,
                                                  total_length=h.shape[1])
        q = self.query(F.relu(self.bottleneck(h)))
        scores = q @ key.transpose(1, 2) / math.sqrt(key.shape[-1])
        att = torch.softmax(scores.masked_fill(~imask[:, None, :], float("-inf")), dim=-1)
        return self.latent_norm(masked_mean(att @ key, imask) * masked_mean(key, imask))

    def encode_turns(self, feats: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """``encode`` of the turns that exist (length > 0); zeros for the missing ones."""
        lengths = lengths.to(feats.device)
        out = feats.new_zeros(feats.shape[0], self.key_dim)
        present = (lengths > 0).nonzero().squeeze(1)
        if present.numel():
            n = lengths[present]
            out[present] = self.encode(feats[present, :int(n.max())], n)
        return out

    def fuse_context(self, hf: torch.Tensor,
                     inputs: dict[str, tuple[torch.Tensor, torch.Tensor]] | None
                     ) -> torch.Tensor:
        """``Z = [HF_cur * softmax(HF_pre * HF_int), HF_cur]``."""
        turns = []
        for table in (PREV_SELF, PREV_OTHER):
            if not inputs or table not in inputs:
                raise SertkError(f"model maec with context needs the {table} input (the "
                                 "dialogue context of a dump with utt2dialog)")
            turns.append(self.encode_turns(*inputs[table]))
        pi = torch.softmax(turns[0] * turns[1], dim=-1)
        return torch.cat([hf * pi, hf], dim=-1)

    @staticmethod
    def input_tables_for(conf: dict | None) -> dict[str, str]:
        """With ``context: true``, the previous turns' feature tables (``context`` kind)."""
        return {PREV_SELF: "context", PREV_OTHER: "context"} \
            if (conf or {}).get("context") else {}

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor,
                inputs: dict[str, tuple[torch.Tensor, torch.Tensor]] | None = None
                ) -> torch.Tensor:
        z = self.encode(feats, lengths)
        if self.context:
            z = self.fuse_context(z, inputs)
        self._latent = z if self.training else None
        return self.emotion_head(self.dropout(z))

    def adversarial_loss(self, z: torch.Tensor) -> torch.Tensor:
        """Discriminator BCE on prior samples (true) and ``z`` (false); the encoder's part
        per ``adversarial_mode`` (module docstring)."""
        prior = torch.randn_like(z) * self.prior_std + self.prior_mean
        real = self.discriminator(prior).float()
        loss = F.binary_cross_entropy_with_logits(real, torch.ones_like(real))
        if self.adversarial_mode == "grl":
            fake = self.discriminator(self.grl(z)).float()
            return loss + F.binary_cross_entropy_with_logits(fake, torch.zeros_like(fake))
        fake = self.discriminator(z.detach()).float()
        frozen = {k: v.detach() for k, v in self.discriminator.named_parameters()}
        fooled = functional_call(self.discriminator, frozen, (z,)).float()
        return (loss + F.binary_cross_entropy_with_logits(fake, torch.zeros_like(fake))
                + F.binary_cross_entropy_with_logits(fooled, torch.ones_like(fooled)))

    def gender_loss(self, z: torch.Tensor, target: torch.Tensor | None) -> torch.Tensor:
        """Gender cross-entropy over the utterances with a known gender (target >= 0)."""
        logits = self.gender_head(self.dropout(z)).float()
        if target is None:
            target = torch.full(logits.shape[:1], -1, device=logits.device)
        target = target.to(logits.device)
        valid = target >= 0
        if not bool(valid.any()):  # a zero term keeps the head in the graph (DDP)
            return 0.0 * logits.sum()
        return F.cross_entropy(logits[valid], target[valid])

    def auxiliary_loss(self, aux_targets: dict[str, torch.Tensor]) -> torch.Tensor:
        """``adversarial_weight L_adv + gender_weight L_gender`` for the last training-mode
        ``forward``; weight-0 terms are skipped."""
        z = self._latent
        if z is None:
            raise RuntimeError("auxiliary_loss() needs a training-mode forward() first")
        total = z.new_zeros((), dtype=torch.float32)
        if self.adversarial_weight > 0:
            total = total + self.adversarial_weight * self.adversarial_loss(z)
        if self.gender_weight > 0:
            total = total + self.gender_weight * self.gender_loss(
                z, aux_targets.get("utt2gender"))
        return total
