"""``mcsan``: multimodal cross- and self-attention network for audio + text emotion recognition
(Sun, Liu, Tao, Lian, ICASSP 2021; no official code), papers.md section 19.

Inputs (``modalities``, any non-empty subset of audio, text):

* **audio**: the frames ``feats [B, T, D]`` (paper: 40 MFCC, 25/10 ms, no deltas, z-normalised,
  at most 1000 frames: ``conf/feats/mfcc40.yaml``); ignored when audio is not among the
  modalities;
* **text**: ``inputs["text"]``, token ids ``[B, L]`` (0 = padding) and lengths, with a
  vocabulary of ``input_sizes["text"]`` ids (default 256).

:meth:`MCSAN.input_tables_for` names the extra tables a config needs.

Architecture (the paper's): modality encoders -> parallel attention modules (one cross-attention
module, one self-attention module per modality) -> global max pooling of the 4 outputs ->
concatenation -> classifier (logits; the trainer's cross-entropy is the paper's loss).

* **Audio encoder**: the input cut to ``audio_max_len`` (1000) frames, two ConvBlocks
  ``MaxPool(Conv1D(.))`` along time with conv and pool kernel 3, then a BiLSTM whose forward
  and backward outputs are averaged (``d = lstm_hidden = 128``). Each block here is a 'same'
  Conv1d (``conv_channels``, 128 each) -> masked batch norm -> ReLU (:class:`ConvBlock1d`), then
  a max pool of kernel 3, stride 2 and padding 1 (``T -> ceil(T / 2)``, so ``T_a`` is about
  ``T / 4``); the lengths are tracked through the pools and the BiLSTM runs packed.
* **Text encoder**: a token embedding (300-d, ``padding_idx`` 0), learned, or initialised from
  a local GloVe / word2vec file (``embedding_path``, ``freeze_embedding``; the paper's GloVe;
  :class:`~sertk.models.layers.token_embedding.TokenEmbedding`), then a packed BiLSTM with
  averaged directions (``d = 128``).
* **Positional embedding**: sinusoidal (Transformer-style), added to both encoded sequences
  before every attention module.
* **Attention layer** (``num_layers`` = N = 1, ``heads`` = 8): ``H = LN(H + dropout(MHA))``,
  then ``H = LN(H + dropout(FFN(H)))``. The multi-head attention is the paper's formula:
  query, key and value projections ``d x d`` without bias, heads concatenated, no output
  projection (:class:`FusionAttention`, ``d / heads`` dims per head, each head scaled by
  ``1 / sqrt(d / heads)``); padded keys are masked.

  - **cross module**: audio queries attend to text keys/values (``H_a^c``) and text queries
    to audio keys/values (``H_l^c``), each stream with its own projections, norms and FFN;
  - **self modules**: one per modality, query = key = value (``H_a^s``, ``H_l^s``).

* **Fusion**: each of the 4 outputs is max-pooled over its real steps (``[B, d]`` each),
  concatenated (``4 d = 512``), then FC(``fc_dim`` = 128) -> ReLU -> dropout -> FC(classes).

With a single modality the model is the uni-modal model: its self-attention module only (a
cross module needs two modalities), max pooling, the classifier on ``d`` inputs.

Every padded frame or token is masked (zeros before the convs, padding ignored by the max
pools, packed BiLSTMs, masked attention keys and masked global max pooling), so an
utterance's output does not depend on its batch (eval mode).

Not in the paper (chosen here; ``conf/model/mcsan.yaml``): the ConvBlocks' 128 channels,
stride-1 'same' convs, batch norm and ReLU after each conv, pool stride 2 and padding 1
(papers.md's suggestions for channels and stride); the FFN inner size ``4 d = 512`` with ReLU
and dropout 0.1 (also on the attention and FFN outputs before each residual); sinusoidal
positions in both the cross and the self modules (papers.md's suggestion); separate FFNs and
norms for the two streams of the cross module; no attention output projection (the paper's
formula has none); the classifier FC(512 -> 128) -> ReLU -> dropout 0.3 -> FC(classes)
(papers.md's suggestion; the dropout value is chosen); a learned token embedding unless a
GloVe file is given; no cut of the text (``text_max_len: null``); ``modality_dropout``
(default 0, off): in training a sample loses one modality's encoded sequence with this probability
(:class:`ModalityDropout`, not in the paper).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from sertk.errors import SertkError
from sertk.models.layers import ConvBlock1d, ModalityDropout, lengths_to_mask
from sertk.models.layers.attention import FusionAttention
from sertk.models.layers.masking import MaskedMaxPool1d
from sertk.models.layers.multimodal import (
    TEXT_TABLE,
    check_modalities,
    gather_inputs,
    modality_tables,
)
from sertk.models.layers.multimodal import input_sizes as all_input_sizes
from sertk.models.layers.pooling import masked_max
from sertk.models.layers.positions import sinusoidal_positions
from sertk.models.layers.stacked_lstm import run_packed
from sertk.models.layers.token_embedding import TokenEmbedding, portable_text_conf
from sertk.models.registry import MODELS

NAME = "mcsan"
ALLOWED = ("audio", "text")
DEFAULT_MODALITIES = ALLOWED

Encoded = tuple[torch.Tensor, torch.Tensor]  # (sequence [B, T, d], mask [B, T])


def _check_positive(**values: int | None) -> None:
    for key, val in values.items():
        if val is not None and int(val) < 1:
            raise SertkError(f"{NAME} {key} must be a positive integer, got {val}")


class BiLSTMAverage(nn.Module):
    """A packed BiLSTM over ``[B, T, D]`` whose forward and backward outputs are averaged
    (``[B, T, hidden]``, zero on padding)."""

    def __init__(self, in_dim: int, hidden: int):
        super().__init__()
        self.lstm = nn.LSTM(in_dim, hidden, batch_first=True, bidirectional=True)
        self.hidden = hidden

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        out, _ = run_packed(self.lstm, x, lengths)
        return 0.5 * (out[..., :self.hidden] + out[..., self.hidden:])


class AudioEncoder(nn.Module):
    """Cut to ``max_len`` frames -> ConvBlocks (conv, BN, ReLU, max pool) -> averaged BiLSTM.

    ``forward(feats [B, T, D], lengths)`` returns ``(H_a [B, T_a, hidden], mask [B, T_a])``."""

    def __init__(self, in_dim: int, channels: Sequence[int], conv_kernel: int,
                 pool_kernel: int, pool_stride: int, hidden: int, max_len: int | None):
        super().__init__()
        dims = [in_dim, *[int(c) for c in channels]]
        self.convs = nn.ModuleList(ConvBlock1d(i, o, conv_kernel)
                                   for i, o in zip(dims[:-1], dims[1:]))
        self.pools = nn.ModuleList(MaskedMaxPool1d(pool_kernel, pool_stride) for _ in channels)
        self.lstm = BiLSTMAverage(dims[-1], hidden)
        self.max_len = max_len

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> Encoded:
        if self.max_len is not None:
            x = x[:, :self.max_len]
        lengths = lengths.to(x.device).clamp(1, max(1, x.shape[1]))
        x = F.pad(x, (0, 0, 0, max(0, 1 - x.shape[1])))  # an empty batch: one zero frame
        mask = lengths_to_mask(lengths, x.shape[1])
        x = x.masked_fill(~mask.unsqueeze(-1), 0.0).transpose(1, 2)  # [B, D, T]
        for conv, pool in zip(self.convs, self.pools):
            x, lengths = pool(conv(x, lengths_to_mask(lengths, x.shape[2])), lengths)
        h = self.lstm(x.transpose(1, 2), lengths)
        return h, lengths_to_mask(lengths, h.shape[1])


class TextEncoder(nn.Module):
    """Token embedding (``padding_idx`` 0) -> averaged BiLSTM.

    ``forward(tokens [B, L], lengths)`` returns ``(H_l [B, L', hidden], mask [B, L'])``."""

    def __init__(self, embedding: nn.Embedding, hidden: int, max_len: int | None):
        super().__init__()
        self.embedding = embedding
        self.lstm = BiLSTMAverage(embedding.embedding_dim, hidden)
        self.max_len = max_len

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor) -> Encoded:
        if self.max_len is not None:
            tokens = tokens[:, :self.max_len]
        tokens = F.pad(tokens, (0, max(0, 1 - tokens.shape[1])))  # an empty text: one pad
        lengths = lengths.to(tokens.device).clamp(1, tokens.shape[1])
        mask = lengths_to_mask(lengths, tokens.shape[1])
        h = self.lstm(self.embedding(tokens.masked_fill(~mask, 0)), lengths)
        return h, mask


class AttentionLayer(nn.Module):
    """``H = LN(H + dropout(MHA(H, S, S)))``, ``H = LN(H + dropout(FFN(H)))``: one layer of
    the paper's cross- (source ``S`` another modality) or self-attention (``S = H``)."""

    def __init__(self, dim: int, heads: int, ffn_dim: int, dropout: float):
        super().__init__()
        self.attention = FusionAttention(dim, dim, dim, heads, dim // heads)
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.ffn = nn.Sequential(nn.Linear(dim, ffn_dim), nn.ReLU(), nn.Dropout(dropout),
                                 nn.Linear(ffn_dim, dim))
        self.dropout = nn.Dropout(dropout)

    def forward(self, h: torch.Tensor, source: Encoded) -> torch.Tensor:
        s, s_mask = source
        h = self.norm1(h + self.dropout(self.attention(h, s, s, s_mask)))
        return self.norm2(h + self.dropout(self.ffn(h)))


class CrossModule(nn.Module):
    """``num_layers`` layers of two-way cross-attention: each layer updates the audio stream
    from the text stream and the text stream from the audio stream (both from the previous
    layer's outputs)."""

    def __init__(self, num_layers: int, **layer: int | float):
        super().__init__()
        self.audio = nn.ModuleList(AttentionLayer(**layer) for _ in range(num_layers))
        self.text = nn.ModuleList(AttentionLayer(**layer) for _ in range(num_layers))

    def forward(self, audio: Encoded, text: Encoded) -> tuple[torch.Tensor, torch.Tensor]:
        (a, a_mask), (t, t_mask) = audio, text
        for to_audio, to_text in zip(self.audio, self.text):
            a, t = to_audio(a, (t, t_mask)), to_text(t, (a, a_mask))
        return a, t


class SelfModule(nn.Module):
    """``num_layers`` layers of self-attention over one modality."""

    def __init__(self, num_layers: int, **layer: int | float):
        super().__init__()
        self.layers = nn.ModuleList(AttentionLayer(**layer) for _ in range(num_layers))

    def forward(self, x: Encoded) -> torch.Tensor:
        h, mask = x
        for layer in self.layers:
            h = layer(h, (h, mask))
        return h


@MODELS.register("mcsan",
                 summary="audio (conv blocks + BiLSTM) and text (BiLSTM) encoders, parallel "
                         "cross- and self-attention modules, global max pooling, FC",
                 paper="Sun, Liu, Tao, Lian, Multimodal Cross- and Self-Attention Network for "
                       "Speech Emotion Recognition, ICASSP 2021")
class MCSAN(nn.Module):
    portable_conf = staticmethod(portable_text_conf)

    @staticmethod
    def input_tables_for(conf: dict | None) -> dict[str, str]:
        """The extra input tables of a config and their kinds: ``text`` (``tokens``) when the
        text modality is used."""
        return modality_tables(NAME, conf, DEFAULT_MODALITIES, ALLOWED)

    def __init__(self, input_dim: int, num_classes: int,
                 input_sizes: dict[str, int] | None = None,
                 modalities: Sequence[str] = DEFAULT_MODALITIES,
                 conv_channels: Sequence[int] = (128, 128), conv_kernel: int = 3,
                 pool_kernel: int = 3, pool_stride: int = 2, lstm_hidden: int = 128,
                 audio_max_len: int | None = 1000, text_max_len: int | None = None,
                 embedding_dim: int = 300, embedding_path: str | None = None,
                 freeze_embedding: bool = False, heads: int = 8, num_layers: int = 1,
                 ffn_dim: int = 512,
                 dropout: float = 0.1, positional: bool = True, fc_dim: int = 128,
                 fc_dropout: float = 0.3, modality_dropout: float = 0.0,
                 tokenizer: str | None = None):
        """``tokenizer``: the ``sertk tokenizer`` directory that encodes the ``text`` input
        (read by the data side, :mod:`sertk.data.inputs`; the model sees only ids)."""
        super().__init__()
        self.modalities = check_modalities(NAME, modalities, allowed=ALLOWED)
        self._check_options(conv_channels, conv_kernel, pool_kernel, pool_stride, lstm_hidden,
                            audio_max_len, text_max_len, embedding_dim,
                            heads, num_layers, ffn_dim, fc_dim)
        sizes = all_input_sizes(input_sizes)
        encoders = {
            "audio": lambda: AudioEncoder(input_dim, conv_channels, conv_kernel, pool_kernel,
                                          pool_stride, lstm_hidden, audio_max_len),
            "text": lambda: TextEncoder(TokenEmbedding(sizes[TEXT_TABLE], embedding_dim,
                                                       embedding_path, tokenizer,
                                                       freeze_embedding, NAME),
                                        lstm_hidden, text_max_len),
        }
        self.encoders = nn.ModuleDict({m: encoders[m]() for m in self.modalities})
        self.modality_dropout = ModalityDropout(modality_dropout)
        self.positional = bool(positional)
        layer = {"dim": lstm_hidden, "heads": heads, "ffn_dim": ffn_dim, "dropout": dropout}
        # one modality: the uni-modal model (self-attention only)
        self.cross = CrossModule(num_layers, **layer) if len(self.modalities) > 1 else None
        self.self_att = nn.ModuleDict({m: SelfModule(num_layers, **layer)
                                       for m in self.modalities})
        pooled = lstm_hidden * (2 * len(self.modalities) if self.cross else 1)
        self.classifier = nn.Sequential(nn.Linear(pooled, fc_dim), nn.ReLU(),
                                        nn.Dropout(fc_dropout), nn.Linear(fc_dim, num_classes))

    @staticmethod
    def _check_options(conv_channels: Sequence[int], conv_kernel: int, pool_kernel: int,
                       pool_stride: int, lstm_hidden: int, audio_max_len: int | None,
                       text_max_len: int | None, embedding_dim: int, heads: int,
                       num_layers: int, ffn_dim: int, fc_dim: int) -> None:
        if isinstance(conv_channels, (str, int)) or conv_channels is None:
            raise SertkError(f"{NAME} conv_channels must be a list of channel counts (one "
                             f"per ConvBlock; [] for none), got {conv_channels!r}")
        _check_positive(conv_kernel=conv_kernel, pool_kernel=pool_kernel,
                        pool_stride=pool_stride, lstm_hidden=lstm_hidden,
                        audio_max_len=audio_max_len, text_max_len=text_max_len,
                        embedding_dim=embedding_dim, heads=heads, num_layers=num_layers,
                        ffn_dim=ffn_dim, fc_dim=fc_dim,
                        **{f"conv_channels[{i}]": c for i, c in enumerate(conv_channels)})
        if lstm_hidden % heads:
            raise SertkError(f"{NAME}: lstm_hidden {lstm_hidden} (the attention width d) must "
                             f"be divisible by heads {heads}")

    def _add_positions(self, enc: dict[str, Encoded]) -> dict[str, Encoded]:
        if not self.positional:
            return enc
        out = {}
        for m, (h, mask) in enc.items():
            pe = sinusoidal_positions(h.shape[1], h.shape[2], h.device).to(h.dtype)
            out[m] = (h + pe, mask)
        return out

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor,
                inputs: dict[str, tuple[torch.Tensor, torch.Tensor]] | None = None
                ) -> torch.Tensor:
        enc = {m: self.encoders[m](x, n) for m, (x, n) in
               gather_inputs(NAME, self.modalities, feats, lengths, inputs).items()}
        kept = self.modality_dropout({m: h for m, (h, _) in enc.items()})
        enc = self._add_positions({m: (kept[m], mask) for m, (_, mask) in enc.items()})
        pooled = []
        if self.cross is not None:
            a_c, t_c = self.cross(enc["audio"], enc["text"])
            pooled += [masked_max(a_c, enc["audio"][1]), masked_max(t_c, enc["text"][1])]
        pooled += [masked_max(self.self_att[m](enc[m]), enc[m][1]) for m in self.modalities]
        return self.classifier(torch.cat(pooled, dim=-1))
