"""``rajan_self_cross``: self-attention versus cross-attention for tri-modal emotion recognition
(Rajan, Brutti, Cavallaro, ICASSP 2022; code ``smartcameras/SelfCrossAttn``), papers.md
section 17.

Inputs (``modalities``, any non-empty subset of audio, text, video):

* **audio**: the frames ``feats [B, T, D]`` (paper: 40 MFCC + deltas + delta-deltas = 120,
  ``conf/feats/mfcc40_deltas.yaml``); ignored when audio is not among the modalities;
* **text**: ``inputs["text"]``, token ids ``[B, L]`` (0 = padding) and lengths, with a
  vocabulary of ``input_sizes["text"]`` ids (default 256);
* **video**: ``inputs["feats_video.scp"]``, precomputed frame features ``[B, Tv, Dv]`` and
  lengths, ``Dv = input_sizes["feats_video.scp"]`` (default 512; paper: ResNet101 face
  features, 2048-d at 3 Hz).

:meth:`RajanSelfCross.input_tables_for` names the extra tables a config needs.

Architecture (the paper's): modality encoders -> multi-head attention (MHA) modules -> time
average of each MHA output -> statistics pooling -> FC(60) -> FC(classes).

* **Audio / video encoder**: a kernel-1 ``Conv1d`` with the *time axis as channels*, mapping
  ``max_len`` input steps to ``conv_len`` steps (audio 1000 -> 500, video 32 -> 25), then a
  1-layer bi-GRU (60 units per direction, ``d'' = 120``). The input is cut to ``max_len``
  frames and zero-padded to it (the paper's maximum lengths: audio 1000, video 32, text 128),
  so the conv sees each utterance's real frames and zeros, whatever the batch padding; its
  ``conv_len`` output steps are all real. ``*_conv_len: null`` drops the conv: the bi-GRU
  then runs packed over the real frames (``*_max_len: null``: no cut either).
* **Text encoder**: a token embedding (300-d, ``padding_idx`` 0), learned, or initialised
  from a local GloVe / word2vec file (``embedding_path``; the paper's fixed GloVe vectors:
  ``freeze_embedding: true``; :class:`TokenEmbedding`),
  embedding dropout, then the packed bi-GRU (60 units per direction), tokens cut to 128.
* **MHA** (``nn.MultiheadAttention``: per-head projections, heads concatenated, output
  linear layer; 6 heads of 20 dims, attention dropout 0.1), padded keys masked:

  - ``fusion: cross``: one module per ordered pair of modalities, query from the target,
    key and value from the source (6 modules tri-modal, 2 bi-modal);
  - ``fusion: self``: one module per modality, query = key = value (3 tri-modal);
  - ``fusion: cross_plus_self``: both sets of modules on shared encoders; the two pooled
    vectors are concatenated (the paper's Cross+Self ablation).

  With a single modality the model is the paper's uni-modal model (self-attention only, "a
  cross model needs two modalities"), whatever ``fusion`` says.
* **Pooling**: each MHA output is averaged over its query's real steps; the ``M`` averages
  ``[B, M, 120]`` are pooled into ``[mean || std]`` over ``M`` (240-d; papers.md's reading,
  as the authors' ``torch.std_mean(dim=1)``), std with ``unbiased=False`` and a variance
  floor of 1e-5 (:class:`StatsPooling`). ``stats_pooling: false`` is the paper's noSP
  ablation: the ``M`` averages concatenated.
* **Classifier**: FC(60) -> activation -> FC(``num_classes``) (logits; the trainer's CE).

Every padded frame or token is masked (zeroed before the convs, packed GRUs, masked keys and
means), so an utterance's output does not depend on its batch (eval mode).

Not fixed by the paper, chosen here (``conf/model/rajan_self_cross.yaml``): ReLU between
FC(60) and FC(classes) (papers.md's suggestion; the authors' code has none, ``fc_activation:
none``); std over the ``M`` averages with ``unbiased=False`` and a 1e-5 variance floor
(papers.md; the authors' code: unbiased, no floor); embedding dropout 0.25 (the authors'
code, not in the paper); a learned token embedding unless ``embedding_path`` is given (no
GloVe file ships with sertk); the uni-modal model
keeps statistics pooling over its one average (its std is the constant floor); padding
masks everywhere (the authors' code averages over padding); ``cross_plus_self`` shares the
encoders of both models; ``modality_dropout`` (default 0, off): in training a sample loses one
modality's encoded sequence with this probability (:class:`ModalityDropout`, not in the paper).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from sertk.errors import SertkError
from sertk.models.layers import (
    ModalityDropout,
    StatsPooling,
    key_padding_mask,
    lengths_to_mask,
    masked_mean,
)
from sertk.models.layers.multimodal import (
    TEXT_TABLE,
    VIDEO_TABLE,
    check_modalities,
    gather_inputs,
    modality_tables,
)
from sertk.models.layers.multimodal import input_sizes as all_input_sizes
from sertk.models.layers.stacked_lstm import run_packed
from sertk.models.layers.token_embedding import TokenEmbedding, portable_text_conf
from sertk.models.registry import MODELS

DEFAULT_MODALITIES = ("audio", "text")
FUSIONS = ("cross", "self", "cross_plus_self")
ACTIVATIONS = ("relu", "none")
NAME = "rajan_self_cross"


class ModalityEncoder(nn.Module):
    """Optional token embedding, optional time-resampling conv, bi-GRU.

    ``forward(x, lengths)`` takes frames ``[B, T, D]`` (or token ids ``[B, T]`` when
    an ``embedding`` is given) and returns ``(e [B, T', 2 * hidden], mask [B, T'])``: with the
    conv, ``T' = conv_len`` and every step is real; without it, ``T' = min(T, max_len)`` and
    the mask marks the real frames.
    """

    def __init__(self, in_dim: int, hidden: int, max_len: int | None = None,
                 conv_len: int | None = None, embedding: nn.Embedding | None = None,
                 embedding_dropout: float = 0.0, name: str = "audio"):
        super().__init__()
        if conv_len and not max_len:
            raise SertkError(f"rajan_self_cross {name}_conv_len needs {name}_max_len (the "
                             "conv's input channels are the time steps)")
        for key, val in ((f"{name}_max_len", max_len), (f"{name}_conv_len", conv_len)):
            if val is not None and int(val) < 1:
                raise SertkError(f"rajan_self_cross {key} must be positive or null, got {val}")
        self.max_len = int(max_len) if max_len else None
        self.embedding = embedding
        self.embedding_dropout = nn.Dropout(embedding_dropout)
        self.conv = nn.Conv1d(self.max_len, int(conv_len), 1) if conv_len else None
        self.gru = nn.GRU(in_dim, hidden, batch_first=True, bidirectional=True)
        self.out_dim = 2 * hidden

    def forward(self, x: torch.Tensor, lengths: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        lengths = lengths.to(x.device)
        if self.max_len is not None:
            x = x[:, :self.max_len]
        mask = lengths_to_mask(lengths.clamp(max=x.shape[1]), x.shape[1])
        if self.embedding is not None:
            x = self.embedding_dropout(self.embedding(x.masked_fill(~mask, 0)))
        x = x.masked_fill(~mask.unsqueeze(-1), 0.0)
        if self.conv is not None:
            x = F.pad(x, (0, 0, 0, self.max_len - x.shape[1]))
            e, _ = self.gru(self.conv(x))  # [B, conv_len, D]: time steps as conv channels
            return e, torch.ones(e.shape[:2], dtype=torch.bool, device=e.device)
        # an empty sequence (e.g. no face found) is read as one zero frame
        x = F.pad(x, (0, 0, 0, max(0, 1 - x.shape[1])))
        lengths = lengths.clamp(1, x.shape[1])
        e, _ = run_packed(self.gru, x, lengths)
        return e, lengths_to_mask(lengths, x.shape[1])


@MODELS.register("rajan_self_cross",
                 summary="tri-modal (audio, text, video) bi-GRU encoders with cross- or "
                         "self-attention MHA, statistics pooling of the time averages, FC",
                 paper="Rajan, Brutti, Cavallaro, Is Cross-Attention Preferable to "
                       "Self-Attention for Multi-Modal Emotion Recognition?, ICASSP 2022")
class RajanSelfCross(nn.Module):
    portable_conf = staticmethod(portable_text_conf)

    @staticmethod
    def input_tables_for(conf: dict | None) -> dict[str, str]:
        """The extra input tables of a config and their kinds: ``text`` (``tokens``) and
        ``feats_video.scp`` (``feats``) when those modalities are used."""
        return modality_tables(NAME, conf, DEFAULT_MODALITIES)

    def __init__(self, input_dim: int, num_classes: int,
                 input_sizes: dict[str, int] | None = None,
                 modalities: Sequence[str] = DEFAULT_MODALITIES, fusion: str = "self",
                 gru_hidden: int = 60, heads: int = 6, attention_dropout: float = 0.1,
                 audio_max_len: int | None = 1000, audio_conv_len: int | None = 500,
                 video_max_len: int | None = 32, video_conv_len: int | None = 25,
                 text_max_len: int | None = 128, embedding_dim: int = 300,
                 embedding_dropout: float = 0.25, embedding_path: str | None = None,
                 freeze_embedding: bool = False,
                 stats_pooling: bool = True, fc_dim: int = 60, fc_activation: str = "relu",
                 modality_dropout: float = 0.0, tokenizer: str | None = None):
        """``tokenizer``: the ``sertk tokenizer`` directory that encodes the ``text`` input
        (read by the data side, :mod:`sertk.data.inputs`; the model sees only ids; with
        ``embedding_path`` its units are looked up in that word-vector file)."""
        super().__init__()
        self.modalities = check_modalities(NAME, modalities)
        if fusion not in FUSIONS:
            raise SertkError(f"rajan_self_cross fusion must be one of {', '.join(FUSIONS)}, "
                             f"got {fusion!r}")
        if fc_activation not in ACTIVATIONS:
            raise SertkError(f"rajan_self_cross fc_activation must be one of "
                             f"{', '.join(ACTIVATIONS)}, got {fc_activation!r}")
        dim = 2 * gru_hidden
        if dim % heads:
            raise SertkError(f"rajan_self_cross: the bi-GRU width {dim} (2 x gru_hidden) must "
                             f"be divisible by heads {heads}")
        sizes = all_input_sizes(input_sizes)
        encoders = {
            "audio": lambda: ModalityEncoder(input_dim, gru_hidden, audio_max_len,
                                             audio_conv_len, name="audio"),
            "text": lambda: ModalityEncoder(embedding_dim, gru_hidden, text_max_len, None,
                                            embedding=TokenEmbedding(
                                                sizes[TEXT_TABLE], embedding_dim,
                                                embedding_path, tokenizer, freeze_embedding,
                                                NAME),
                                            embedding_dropout=embedding_dropout,
                                            name="text"),
            "video": lambda: ModalityEncoder(int(sizes[VIDEO_TABLE]), gru_hidden,
                                             video_max_len, video_conv_len, name="video"),
        }
        self.encoders = nn.ModuleDict({m: encoders[m]() for m in self.modalities})
        self.modality_dropout = ModalityDropout(modality_dropout)
        # one modality: the paper's uni-modal (self-attention) model
        self.fusion = fusion if len(self.modalities) > 1 else "self"

        def mha() -> nn.MultiheadAttention:
            return nn.MultiheadAttention(dim, heads, dropout=attention_dropout,
                                         batch_first=True)

        self.pairs = [(src, tgt) for tgt in self.modalities for src in self.modalities
                      if src != tgt] if self.fusion != "self" else []
        self.cross = nn.ModuleDict({f"{s}_to_{t}": mha() for s, t in self.pairs})
        use_self = self.fusion in ("self", "cross_plus_self")
        self.self_att = nn.ModuleDict({m: mha() for m in self.modalities} if use_self else {})
        self.stats_pooling = bool(stats_pooling)
        self.pool = StatsPooling()
        groups = [len(g) for g in (self.pairs, self.self_att) if len(g)]
        pooled = 2 * dim * len(groups) if self.stats_pooling else dim * sum(groups)
        self.classifier = nn.Sequential(
            nn.Linear(pooled, fc_dim), nn.ReLU() if fc_activation == "relu" else nn.Identity(),
            nn.Linear(fc_dim, num_classes))

    def _attend(self, att: nn.MultiheadAttention, query: tuple[torch.Tensor, torch.Tensor],
                source: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """``att(query, source, source)`` averaged over the query's real steps ``[B, d'']``."""
        (q, q_mask), (kv, kv_mask) = query, source
        y, _ = att(q, kv, kv, key_padding_mask=key_padding_mask(kv_mask), need_weights=False)
        return masked_mean(y, q_mask)

    def _pool(self, averages: list[torch.Tensor]) -> torch.Tensor:
        stacked = torch.stack(averages, dim=1)  # [B, M, d'']
        if not self.stats_pooling:
            return stacked.flatten(1)
        every = torch.ones(stacked.shape[:2], dtype=torch.bool, device=stacked.device)
        return self.pool(stacked, every)  # [mean || std] over the M averages

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor,
                inputs: dict[str, tuple[torch.Tensor, torch.Tensor]] | None = None
                ) -> torch.Tensor:
        enc = {m: self.encoders[m](x, n) for m, (x, n) in
               gather_inputs(NAME, self.modalities, feats, lengths, inputs).items()}
        kept = self.modality_dropout({m: e for m, (e, _) in enc.items()})
        enc = {m: (kept[m], mask) for m, (_, mask) in enc.items()}
        pooled = []
        if self.pairs:
            pooled.append(self._pool([self._attend(self.cross[f"{s}_to_{t}"], enc[t], enc[s])
                                      for s, t in self.pairs]))
        if len(self.self_att):
            pooled.append(self._pool([self._attend(self.self_att[m], enc[m], enc[m])
                                      for m in self.modalities]))
        return self.classifier(torch.cat(pooled, dim=-1))
