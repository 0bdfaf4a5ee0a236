"""Multi-scale CNN with statistical pooling units and attention (Peng, Lu, Pan, Liu, "Efficient
Speech Emotion Recognition Using Multi-Scale CNN and Attention", ICASSP 2021; code
``julianyulu/icassp2021-mscnn-spu``, announced but not published), papers.md section 9.

Two registered models share one audio path (:class:`MultiScaleCNN` + SPU):

``mscnn_spu``: the audio path alone.
    MSCNN: parallel single-layer convs with ReLU, 128 filters each, kernel ``(s, d)`` for every
    ``s`` in ``kernel_sizes``: each kernel spans the whole MFCC vector (``d = input_dim``) and
    ``s`` frames, i.e. a 1-D conv over time with the coefficients as input channels. SPU:
    global max, average and standard deviation over the real frames of every branch. The
    pooled vectors are concatenated, then dropout 0.3 and a dense softmax layer (papers.md's
    suggested classifier).

``mscnn_spu_att``: the paper's audio + text model with audio-guided attention.
    Inputs (``modalities``, any non-empty subset of audio, text):

    * **audio**: the frames ``feats [B, T, D]`` (``conf/feats/mfcc40.yaml``); ignored when
      audio is not among the modalities;
    * **text**: ``inputs["text"]``, token ids ``[B, L]`` (0 = padding) and lengths, with a
      vocabulary of ``input_sizes["text"]`` ids (default 256);
    * **x-vector** (only with ``xvector: true``; off by default, so that the model trains
      from MFCC + transcript alone): ``inputs["feats_xvector.scp"]``, a ``feats`` table of
      per-utterance matrices ``[n, Dx]`` (``Dx = input_sizes["feats_xvector.scp"]``, default
      512, papers.md's VoxCeleb TDNN). Kaldi's ``xvector.scp`` holds vectors, which
      :mod:`sertk.data.inputs` does not read: store each x-vector as a one-row matrix. The
      rows are averaged (one row: the x-vector itself).

    :meth:`MSCNNSPUAtt.input_tables_for` names the extra tables a config needs.

    Architecture (the paper's):

    * **Audio**: the ``mscnn_spu`` audio path: MSCNN over the frames, SPU of every branch
      (``e_{s,gamma}``, ``gamma`` in max, avg, std), with the x-vector appended when given.
    * **Text**: a token embedding (``embedding_dim`` = 300, ``padding_idx`` 0; learned, or
      GloVe / word2vec vectors from ``embedding_path``, :class:`TokenEmbedding`), an MSCNN over
      the word embeddings (128 filters per kernel size ``(s, d^T)``), the SPU of every branch,
      and SWEM-max / SWEM-avg (max and mean of the word embeddings) appended (``swem``).
    * **Audio-guided attention**: the audio SPU vectors ``e_gamma`` are context vectors over
      the text MSCNN maps ``h_k``: ``s_k = softmax_k(e_gamma^T h_k)`` over the real tokens,
      ``S^gamma = sum_k s_k h_k``, ``S = concat(S^max, S^avg, S^std)``. No scaling, no
      projection (the paper's formula), except as said under ``attention: joint``.
    * **Fusion and classifier**: ``[audio SPU || x-vector || text SPU || SWEM-max ||
      SWEM-avg || S]`` -> dropout 0.3 -> dense layer -> logits (papers.md's suggestion; the
      paper leaves fusion and classifier open).

    Uni-modal fallbacks: ``[audio]`` is ``mscnn_spu`` (the audio path, x-vector if asked,
    dropout, dense layer); ``[text]`` is the text MSCNN + SPU + SWEM, dropout, dense layer.
    There is no attention with a single modality.

    Every padded frame or token is masked (zeroed before the 'same' convs, so a frame near an
    utterance's end sees the zeros that the utterance alone gets from the conv's own padding;
    masked pooling; padded tokens get no attention weight), so an utterance's output does not
    depend on its batch (eval mode). :attr:`MSCNNSPUAtt.attention_weights` keeps the last
    forward's weights ``[B, G, 3, L]`` (detached; G groups, see ``attention``).

Not in the paper (chosen here; ``conf/model/mscnn_spu.yaml``, ``conf/model/mscnn_spu_att.yaml``):
kernel sizes 1-5 frames / tokens for both modalities (papers.md's suggestion); 'same' zero
padding along time (the paper's centred sum; PyTorch puts the extra step of an even kernel
after the frame); a population standard deviation with a variance floor of 1e-5; no hidden
classifier layer (``fc_dim: null``; an integer adds FC -> ReLU -> dropout); dropout 0.3 on the
fused vector only (the paper says dropout 0.3, not where); how ``e_gamma`` (one 128-d vector
per audio kernel size) meets ``h_k`` (one 128-d map per text kernel size), ``attention``:

* ``per_scale`` (default, papers.md's first suggestion): the ``i``-th audio branch's
  ``e_gamma`` attends the ``i``-th text branch's maps (as many audio as text kernel sizes;
  ``G`` = that number of groups);
* ``joint``: ``e_gamma`` concatenated over the audio branches attends ``h_k`` concatenated
  over the text branches (``G = 1``); a bias-free linear projection of ``e_gamma`` only when
  the two widths differ;
* ``none``: no attention (the paper's bi-modal MSCNN-SPU without attention);

the x-vector off by default (``xvector: false``) and its rows averaged; a learned token
embedding unless ``embedding_path`` is given (no GloVe file ships with sertk);
``modality_dropout`` (default 0, off): in training a sample loses one modality (its SPU
vector and x-vector, or its embeddings and text maps) with this probability
(:class:`ModalityDropout`). Input 40-d MFCC at 25/10 ms, 16 kHz (``conf/feats/mfcc40.yaml``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from sertk.errors import SertkError
from sertk.models.layers import (
    ModalityDropout,
    lengths_to_mask,
    masked_max,
    masked_mean,
    masked_std,
)
from sertk.models.layers.multimodal import (
    TEXT_TABLE,
    check_modalities,
    gather_inputs,
    input_tables,
)
from sertk.models.layers.multimodal import input_sizes as all_input_sizes
from sertk.models.layers.token_embedding import TokenEmbedding, portable_text_conf
from sertk.models.registry import MODELS

PAPER = ("Peng et al., Efficient speech emotion recognition using multi-scale CNN and "
         "attention, ICASSP 2021")
NAME = "mscnn_spu_att"
MODALITIES = ("audio", "text")
DEFAULT_KERNELS = (1, 2, 3, 4, 5)
ATTENTIONS = ("per_scale", "joint", "none")
XVECTOR_TABLE = "feats_xvector.scp"
XVECTOR_DIM = 512
STATS = 3  # max, avg, std


def spu(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Max, mean and standard deviation over the real steps of ``[B, T, C]`` -> ``[B, 3, C]``."""
    return torch.stack([masked_max(x, mask), masked_mean(x, mask), masked_std(x, mask)], dim=1)


class StatisticalPoolingUnit(nn.Module):
    """Max, mean and standard deviation over the real frames of ``[B, T, D]`` -> ``[B, 3D]``."""

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return spu(x, mask).flatten(1)


class MultiScaleCNN(nn.ModuleList):
    """Parallel 'same' ``Conv1d(input_dim, channels, s)`` + ReLU, one per ``s``: the MSCNN of
    either modality (kernel ``(s, d)`` spanning the whole feature vector).

    ``forward(x [B, T, D], mask [B, T])`` -> one map ``[B, T, channels]`` per kernel size;
    padded steps are zeroed before the convs (what the utterance alone gets from the 'same'
    padding) and in the maps. ``pooled`` gives their SPU vectors ``[B, S, 3, channels]``.
    """

    def __init__(self, input_dim: int, channels: int, kernel_sizes: Sequence[int]):
        super().__init__(nn.Conv1d(input_dim, channels, int(s), padding="same")
                         for s in kernel_sizes)
        self.channels = int(channels)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> list[torch.Tensor]:
        keep = mask.unsqueeze(-1)
        x = x.masked_fill(~keep, 0.0).transpose(1, 2)  # [B, D, T]
        return [torch.relu(conv(x)).transpose(1, 2).masked_fill(~keep, 0.0) for conv in self]

    def pooled(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return torch.stack([spu(h, mask) for h in self(x, mask)], dim=1)


@MODELS.register("mscnn_spu", summary="multi-scale CNN + statistical pooling (audio path)",
                 paper=PAPER)
class MSCNNSPU(nn.Module):
    def __init__(self, input_dim: int, num_classes: int,
                 kernel_sizes: tuple[int, ...] = DEFAULT_KERNELS, channels: int = 128,
                 dropout: float = 0.3):
        super().__init__()
        self.convs = MultiScaleCNN(input_dim, channels, kernel_sizes)
        self.spu = StatisticalPoolingUnit()
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(STATS * channels * len(kernel_sizes), num_classes)

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        mask = lengths_to_mask(lengths, feats.shape[1])
        # [B, S, 3, C] flattened: per branch [max || avg || std]
        return self.out(self.dropout(self.convs.pooled(feats, mask).flatten(1)))


@MODELS.register(NAME,
                 summary="audio + text multi-scale CNNs with statistical pooling, SWEM, "
                         "audio-guided attention over the text maps, concatenation, dense",
                 paper=PAPER)
class MSCNNSPUAtt(nn.Module):
    portable_conf = staticmethod(portable_text_conf)

    @staticmethod
    def input_tables_for(conf: dict | None) -> dict[str, str]:
        """The extra input tables of a config and their kinds: ``text`` (``tokens``) when text
        is used, ``feats_xvector.scp`` (``feats``) with ``xvector: true``."""
        conf = conf or {}
        mods = _modalities(conf.get("modalities", MODALITIES))
        xvector = _check_xvector(mods, conf.get("xvector", False))
        return {**input_tables(mods), **({XVECTOR_TABLE: "feats"} if xvector else {})}

    def __init__(self, input_dim: int, num_classes: int,
                 input_sizes: dict[str, int] | None = None,
                 modalities: Sequence[str] = MODALITIES,
                 audio_kernel_sizes: Sequence[int] = DEFAULT_KERNELS,
                 text_kernel_sizes: Sequence[int] = DEFAULT_KERNELS, channels: int = 128,
                 attention: str = "per_scale", swem: bool = True, xvector: bool = False,
                 fc_dim: int | None = None, dropout: float = 0.3, embedding_dim: int = 300,
                 embedding_path: str | None = None, freeze_embedding: bool = False,
                 modality_dropout: float = 0.0, tokenizer: str | None = None):
        """``tokenizer``: the ``sertk tokenizer`` directory that encodes the ``text`` input
        (read by the data side, :mod:`sertk.data.inputs`; the model sees only ids; with
        ``embedding_path`` its units are looked up in that word-vector file)."""
        super().__init__()
        self.modalities = _modalities(modalities)
        self.xvector = _check_xvector(self.modalities, xvector)
        _check_options(channels, attention, dropout, fc_dim)
        self.channels, self.swem = int(channels), bool(swem)
        sizes = all_input_sizes(input_sizes)
        self.xvector_dim = int(sizes.get(XVECTOR_TABLE, XVECTOR_DIM)) if self.xvector else 0
        fused = 0
        if "audio" in self.modalities:
            kernels = _kernels(audio_kernel_sizes, "audio_kernel_sizes")
            self.audio_cnn = MultiScaleCNN(input_dim, channels, kernels)
            fused += STATS * channels * len(kernels) + self.xvector_dim
        if "text" in self.modalities:
            kernels = _kernels(text_kernel_sizes, "text_kernel_sizes")
            self.embedding = TokenEmbedding(sizes[TEXT_TABLE], embedding_dim, embedding_path,
                                            tokenizer, freeze_embedding, NAME)
            self.text_cnn = MultiScaleCNN(embedding_dim, channels, kernels)
            fused += STATS * channels * len(kernels) + 2 * embedding_dim * self.swem
        self.attention = attention if len(self.modalities) == 2 else "none"
        fused += self._build_attention()
        self.modality_dropout = ModalityDropout(modality_dropout)
        self.classifier = _classifier(fused, num_classes, fc_dim, dropout)
        self.attention_weights: torch.Tensor | None = None

    def _build_attention(self) -> int:
        """The projection of ``joint`` attention (identity when the widths agree); the
        width of ``S``."""
        if self.attention == "none":
            return 0
        n_a, n_t = len(self.audio_cnn), len(self.text_cnn)
        if self.attention == "per_scale" and n_a != n_t:
            raise SertkError(f"{NAME} attention per_scale pairs the audio and text kernel "
                             f"sizes one to one, but there are {n_a} and {n_t} (use "
                             "attention: joint)")
        if self.attention == "joint":
            a, t = n_a * self.channels, n_t * self.channels
            self.project = nn.Linear(a, t, bias=False) if a != t else nn.Identity()
        return STATS * n_t * self.channels

    # ------------------------------------------------------------------ encoders

    def _audio(self, feats: torch.Tensor, lengths: torch.Tensor,
               inputs: dict[str, tuple[torch.Tensor, torch.Tensor]] | None) -> torch.Tensor:
        """``[B, S_a * 3 * C (+ Dx)]``: the audio SPU vectors, then the x-vector."""
        mask = lengths_to_mask(lengths.to(feats.device), feats.shape[1])
        parts = [self.audio_cnn.pooled(feats, mask).flatten(1)]
        if self.xvector:
            parts.append(self._xvector(inputs))
        return torch.cat(parts, dim=-1)

    def _xvector(self, inputs: dict[str, tuple[torch.Tensor, torch.Tensor]] | None
                 ) -> torch.Tensor:
        if not inputs or XVECTOR_TABLE not in inputs:
            raise SertkError(f"model {NAME} needs the {XVECTOR_TABLE} input (xvector: true)")
        x, n = inputs[XVECTOR_TABLE]
        if x.dim() != 3 or x.shape[-1] != self.xvector_dim:
            raise SertkError(f"model {NAME}: {XVECTOR_TABLE} must be [B, n, {self.xvector_dim}]"
                             f", got {list(x.shape)}")
        return masked_mean(x, lengths_to_mask(n.to(x.device), x.shape[1]))

    def _text(self, tokens: torch.Tensor, lengths: torch.Tensor
              ) -> tuple[torch.Tensor, torch.Tensor]:
        """``([B, L, E + S_t * C], mask [B, L])``: word embeddings and text maps side by side
        (one tensor, for the modality dropout), padding zeroed."""
        mask = lengths_to_mask(lengths.to(tokens.device), tokens.shape[1])
        emb = self.embedding(tokens.masked_fill(~mask, 0)).masked_fill(~mask.unsqueeze(-1), 0.0)
        return torch.cat([emb, *self.text_cnn(emb, mask)], dim=-1), mask

    def _text_features(self, emb: torch.Tensor, maps: list[torch.Tensor],
                       mask: torch.Tensor) -> torch.Tensor:
        """``[text SPU || SWEM-max || SWEM-avg]``."""
        parts = [torch.stack([spu(h, mask) for h in maps], dim=1).flatten(1)]
        if self.swem:
            parts += [masked_max(emb, mask), masked_mean(emb, mask)]
        return torch.cat(parts, dim=-1)

    # ------------------------------------------------------------------ attention

    def _attend(self, audio: torch.Tensor, maps: list[torch.Tensor], mask: torch.Tensor
                ) -> torch.Tensor:
        """``S``: the audio SPU vectors ``e_gamma`` attend the text maps over the real
        tokens; ``[B, G * 3 * C']`` (``per_scale``: G = S, C' = C; ``joint``: G = 1,
        C' = S_t * C)."""
        b, c, n_a = audio.shape[0], self.channels, len(self.audio_cnn)
        e = audio[:, :n_a * STATS * c].view(b, n_a, STATS, c)  # e_{s, gamma}
        if self.attention == "per_scale":
            keys = torch.stack(maps, dim=1)  # [B, S, L, C]
        else:
            keys = torch.cat(maps, dim=-1).unsqueeze(1)  # [B, 1, L, S_t C]
            e = self.project(e.transpose(1, 2).reshape(b, 1, STATS, n_a * c))
        scores = e @ keys.transpose(-1, -2)  # [B, G, 3, L]: e_gamma^T h_k
        weights = torch.softmax(scores.masked_fill(~mask[:, None, None, :], float("-inf")), -1)
        self.attention_weights = weights.detach()
        return (weights @ keys).flatten(1)  # S = concat_gamma sum_k s_k h_k

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor,
                inputs: dict[str, tuple[torch.Tensor, torch.Tensor]] | None = None
                ) -> torch.Tensor:
        got = gather_inputs(NAME, self.modalities, feats, lengths, inputs)
        enc, text_mask = {}, None
        if "audio" in got:
            enc["audio"] = self._audio(*got["audio"], inputs)
        if "text" in got:
            enc["text"], text_mask = self._text(*got["text"])
        enc = self.modality_dropout(enc)
        parts = [enc["audio"]] if "audio" in enc else []
        if "text" in enc:
            emb, *maps = enc["text"].split([self.embedding.embedding_dim]
                                           + [self.channels] * len(self.text_cnn), dim=-1)
            parts.append(self._text_features(emb, maps, text_mask))
            if self.attention != "none":
                parts.append(self._attend(enc["audio"], maps, text_mask))
        return self.classifier(torch.cat(parts, dim=-1))


# ---------------------------------------------------------------------- config checks


def _modalities(modalities: Sequence[str]) -> tuple[str, ...]:
    """The modalities in the order audio, text."""
    mods = check_modalities(NAME, modalities, allowed=MODALITIES)
    return tuple(m for m in MODALITIES if m in mods)


def _check_xvector(modalities: Sequence[str], xvector: bool) -> bool:
    if not isinstance(xvector, bool):
        raise SertkError(f"{NAME} xvector must be true or false, got {xvector!r}")
    if xvector and "audio" not in modalities:
        raise SertkError(f"{NAME} xvector: true needs the audio modality (the x-vector is "
                         "appended to the audio SPU vectors)")
    return xvector


def _kernels(sizes: Sequence[int], key: str) -> tuple[int, ...]:
    ok = not isinstance(sizes, (str, int)) and len(sizes) > 0 and all(
        isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in sizes)
    if not ok:
        raise SertkError(f"{NAME} {key} must be a non-empty list of positive integers, got "
                         f"{sizes!r}")
    return tuple(sizes)


def _check_options(channels: int, attention: str, dropout: float, fc_dim: int | None) -> None:
    if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1:
        raise SertkError(f"{NAME} channels must be a positive integer, got {channels!r}")
    if attention not in ATTENTIONS:
        raise SertkError(f"{NAME} attention must be one of {', '.join(ATTENTIONS)}, got "
                         f"{attention!r}")
    if not 0.0 <= float(dropout) < 1.0:
        raise SertkError(f"{NAME} dropout must be in [0, 1), got {dropout}")
    if fc_dim is not None and (isinstance(fc_dim, bool) or not isinstance(fc_dim, int)
                               or fc_dim < 1):
        raise SertkError(f"{NAME} fc_dim must be a positive integer or null, got {fc_dim!r}")


def _classifier(fused: int, num_classes: int, fc_dim: int | None, dropout: float
                ) -> nn.Sequential:
    """Dropout -> dense (logits); with ``fc_dim``: dropout -> FC -> ReLU -> dropout -> dense."""
    layers: list[nn.Module] = [nn.Dropout(dropout)]
    if fc_dim:
        layers += [nn.Linear(fused, fc_dim), nn.ReLU(), nn.Dropout(dropout)]
        fused = fc_dim
    return nn.Sequential(*layers, nn.Linear(fused, num_classes))
