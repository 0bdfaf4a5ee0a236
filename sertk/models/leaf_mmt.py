"""``leaf_mmt``: the staged multimodal Transformer of Dutta & Ganapathy, "Multimodal Transformer
with Learnable Frontend and Self Attention for Emotion Recognition", ICASSP 2022 (papers.md
section 25). One model id, one ``stage`` per training step; each stage is trained, frozen and
its outputs cached before the next (papers.md's implementation note):

1. ``audio``: LEAF-CNN utterance embedder: LEAF on the raw waveform (``waveform16k`` front
   end) -> 4 conv blocks -> global average pooling -> FC(100) -> classifier.
2. ``text``: text utterance embedder: token embeddings -> 2-layer BiGRU(100) -> FC(100) ->
   classifier.
3. ``context_audio`` / ``context_text``: per modality, a BiGRU over the conversation's cached
   utterance embeddings with the paper's unscaled self-attention per direction,
   ``A_f = softmax((O_f W_f)(O_f W_f)^T)``, ``O_f^a = A_f O_f`` (same for the backward
   direction), per-utterance output ``[O_f^a; O_b^a]`` -> classifier.
4. ``fusion``: the stage-3 outputs of both modalities (loaded from ``init_audio`` /
   ``init_text``, frozen) concatenated per utterance -> projection to 120 -> Transformer
   encoder over the conversation (3 layers, 12 heads) -> classifier.

Stages 3 and 4 read a *conversation matrix* per utterance (``sertk data conversation``): the
embeddings of every turn of its dialogue in turn order, ``[S, audio_dim + text_dim + 1]``,
the last column marking the utterance itself (1 there, 0 elsewhere). Training one item per
utterance with the loss at its own turn gives the paper's per-dialogue loss (the sum over the
dialogue's utterances); the marked row is the column's argmax, so it survives the global CMVN.

Not in the paper (chosen, in ``conf/model/leaf_mmt*.yaml``): LEAF 16 kHz, 40 filters, 25 ms
window, 30 ms stride (the paper's), sPCEN; conv blocks 3x3 with 64-128-256-256 channels, BN,
ReLU, 2x2 max pooling (papers.md's suggestion); the embedding is the FC(100) output after
ReLU; the text model embeds tokens itself (BERT is not available offline: a learned
embedding, or a local GloVe/word2vec file via ``embedding_path``), and its 100-d embedding is
FC(200 -> 100) of the BiGRU's final states; context BiGRU hidden 100; Transformer feed-forward
480, dropout 0.1; dropout 0.3 before every classifier.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sertk.errors import SertkError
from sertk.features.waveform import frames_to_wave
from sertk.models.layers.conv import ConvBlock2d
from sertk.models.layers.leaf import Leaf
from sertk.models.layers.masking import lengths_to_mask
from sertk.models.layers.multimodal import TEXT_TABLE, prepare_sequence
from sertk.models.layers.multimodal import input_sizes as all_input_sizes
from sertk.models.layers.pooling import masked_mean_2d
from sertk.models.layers.pretrained import read_state_dict
from sertk.models.layers.stacked_lstm import run_packed
from sertk.models.layers.token_embedding import TokenEmbedding, portable_text_conf
from sertk.models.registry import MODELS

log = logging.getLogger(__name__)
NAME = "leaf_mmt"
STAGES = ("audio", "text", "context_audio", "context_text", "fusion")
CONVERSATION_STAGES = ("context_audio", "context_text", "fusion")


class LeafCNN(nn.Module):
    """Stage 1: ``(waveform frames [B, T, n], lengths) -> embedding [B, embed_dim]``."""

    def __init__(self, sample_rate: int, n_filters: int, window_ms: float, stride_ms: float,
                 channels: Sequence[int], embed_dim: int):
        super().__init__()
        self.leaf = Leaf(sample_rate, n_filters, window_ms, stride_ms)
        chans = [1, *[int(c) for c in channels]]
        self.blocks = nn.ModuleList(ConvBlock2d(a, b, 3, pool=(2, 2))
                                    for a, b in zip(chans[:-1], chans[1:]))
        self.fc = nn.Linear(chans[-1], embed_dim)

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        wave, samples = frames_to_wave(feats, lengths)
        x, frames = self.leaf(wave, samples)  # [B, T', F]
        x = x.unsqueeze(1)
        mask = lengths_to_mask(frames.clamp_min(1), x.shape[2])
        for block in self.blocks:
            if x.shape[2] < 2 or x.shape[3] < 2:  # too short to pool again: stop early
                raise SertkError(f"{NAME}: an utterance is too short for the LEAF-CNN's "
                                 f"{len(self.blocks)} pooling blocks")
            x, mask = block(x, mask)
        return torch.relu(self.fc(masked_mean_2d(x, mask)))


class TextGRU(nn.Module):
    """Stage 2: ``(token ids [B, L], lengths) -> embedding [B, embed_dim]``."""

    def __init__(self, vocab: int, embedding_dim: int, hidden: int, embed_dim: int,
                 embedding_path: str | None, tokenizer: str | None, freeze: bool,
                 max_len: int | None):
        super().__init__()
        self.embedding = TokenEmbedding(vocab, embedding_dim, embedding_path, tokenizer, freeze,
                                        NAME)
        self.gru = nn.GRU(embedding_dim, hidden, num_layers=2, batch_first=True,
                          bidirectional=True)
        self.fc = nn.Linear(2 * hidden, embed_dim)
        self.max_len = max_len

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        x, lengths, _ = prepare_sequence(tokens, lengths, self.max_len, self.embedding)
        _, last = run_packed(self.gru, x, lengths)
        return torch.relu(self.fc(last))


def directional_self_attention(o: torch.Tensor, proj: nn.Linear, mask: torch.Tensor
                               ) -> torch.Tensor:
    """The paper's ``A = softmax((O W)(O W)^T)`` over real turns, returns ``A O``
    (unscaled, one projection on both sides, as given)."""
    q = proj(o)
    scores = torch.bmm(q, q.transpose(1, 2)).masked_fill(~mask[:, None, :], float("-inf"))
    return torch.bmm(torch.softmax(scores, dim=-1), o)


class ContextBiGRU(nn.Module):
    """Stage 3: ``(utterance embeddings [B, S, E], mask [B, S]) -> [B, S, 2 hidden]``."""

    def __init__(self, in_dim: int, hidden: int):
        super().__init__()
        self.hidden = hidden
        self.gru = nn.GRU(in_dim, hidden, batch_first=True, bidirectional=True)
        self.att_f = nn.Linear(hidden, hidden, bias=False)
        self.att_b = nn.Linear(hidden, hidden, bias=False)
        self.out_dim = 2 * hidden

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        out, _ = run_packed(self.gru, x, mask.sum(1))
        o_f, o_b = out[..., :self.hidden], out[..., self.hidden:]
        return torch.cat([directional_self_attention(o_f, self.att_f, mask),
                          directional_self_attention(o_b, self.att_b, mask)], dim=-1)


def _check_stage(stage: str) -> str:
    if stage not in STAGES:
        raise SertkError(f"{NAME} stage must be one of {', '.join(STAGES)}, got {stage!r}")
    return stage


@MODELS.register(NAME,
                 summary="staged: LEAF-CNN and text BiGRU utterance embedders, per-modality "
                         "conversation BiGRU + self-attention, multimodal Transformer over "
                         "the conversation (stage: audio|text|context_*|fusion)",
                 paper="Dutta, Ganapathy, Multimodal Transformer with Learnable Frontend and "
                       "Self Attention for Emotion Recognition, ICASSP 2022")
class LeafMMT(nn.Module):
    @staticmethod
    def input_tables_for(conf: dict | None) -> dict[str, str]:
        """The text stage reads the transcript (``text``, token ids); the others none."""
        return {TEXT_TABLE: "tokens"} if (conf or {}).get("stage") == "text" else {}

    @staticmethod
    def portable_conf(conf: dict) -> dict:
        """A pack's conf: weights are in ``model.safetensors`` (no init files, no vectors)."""
        out = portable_text_conf(conf)
        out.pop("init_audio", None)
        out.pop("init_text", None)
        return out

    def __init__(self, input_dim: int, num_classes: int, stage: str = "audio",
                 input_sizes: dict[str, int] | None = None, embed_dim: int = 100,
                 sample_rate: int = 16000, n_filters: int = 40, window_ms: float = 25.0,
                 stride_ms: float = 30.0, channels: Sequence[int] = (64, 128, 256, 256),
                 embedding_dim: int = 300, text_hidden: int = 100,
                 text_max_len: int | None = 128, embedding_path: str | None = None,
                 freeze_embedding: bool = False, tokenizer: str | None = None,
                 audio_dim: int = 100, text_dim: int = 100, context_hidden: int = 100,
                 d_model: int = 120, heads: int = 12, layers: int = 3, ff_dim: int = 480,
                 transformer_dropout: float = 0.1, dropout: float = 0.3,
                 init_audio: str | None = None, init_text: str | None = None):
        super().__init__()
        self.stage = _check_stage(stage)
        self.dropout = nn.Dropout(dropout)
        if stage == "audio":
            self.embedder: nn.Module = LeafCNN(sample_rate, n_filters, window_ms, stride_ms,
                                               channels, embed_dim)
        elif stage == "text":
            self.embedder = TextGRU(_vocab(input_sizes), embedding_dim, text_hidden, embed_dim,
                                    embedding_path, tokenizer, freeze_embedding, text_max_len)
        if stage in ("audio", "text"):
            self.head = nn.Linear(embed_dim, num_classes)
            return
        self.split = (int(audio_dim), int(text_dim))
        if input_dim != sum(self.split) + 1:
            raise SertkError(f"{NAME}: a conversation matrix has audio_dim + text_dim + 1 = "
                             f"{sum(self.split) + 1} columns, the features have {input_dim}")
        mods = {"context_audio": ("audio",), "context_text": ("text",)}.get(
            stage, ("audio", "text"))
        dims = {"audio": self.split[0], "text": self.split[1]}
        self.context = nn.ModuleDict({m: ContextBiGRU(dims[m], context_hidden) for m in mods})
        if stage != "fusion":
            self.head = nn.Linear(2 * context_hidden, num_classes)
            return
        self._load_frozen({"audio": init_audio, "text": init_text})
        self.proj = nn.Linear(4 * context_hidden, d_model)
        layer = nn.TransformerEncoderLayer(d_model, heads, ff_dim, transformer_dropout,
                                           batch_first=True)
        self.transformer = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.head = nn.Linear(d_model, num_classes)

    def _load_frozen(self, inits: dict[str, str | None]) -> None:
        """Stage 4: each modality's context network from its stage-3 weights, frozen."""
        for m, path in inits.items():
            if path:
                if not Path(path).is_file():
                    raise SertkError(f"{NAME}: init_{m} {path} not found")
                prefix = f"context.{m}."  # read_state_dict drops "net."
                state = {k[len(prefix):]: v for k, v in read_state_dict(path).items()
                         if k.startswith(prefix)}
                if not state:
                    raise SertkError(f"{NAME}: {path} has no {m} context network (train "
                                     f"stage context_{m} first)")
                self.context[m].load_state_dict(state)
            else:  # a pack: the frozen weights come with model.safetensors
                log.info("%s: no init_%s (a packed model, or training without stage 3)",
                         NAME, m)
            self.context[m].requires_grad_(False)

    def train(self, mode: bool = True) -> LeafMMT:
        super().train(mode)
        if self.stage == "fusion":
            self.context.eval()  # frozen stage-3 networks stay in inference mode
        return self

    def embed(self, feats: torch.Tensor, lengths: torch.Tensor,
              inputs: dict[str, tuple[torch.Tensor, torch.Tensor]] | None = None
              ) -> torch.Tensor:
        """The utterance embedding of stages 1 and 2 (``sertk embed``)."""
        if self.stage == "audio":
            return self.embedder(feats, lengths)
        if self.stage == "text":
            if not inputs or TEXT_TABLE not in inputs:
                raise SertkError(f"model {NAME} (stage text) needs the {TEXT_TABLE} input")
            return self.embedder(*inputs[TEXT_TABLE])
        raise SertkError(f"{NAME}: stage {self.stage} has no utterance embedding (stages "
                         "audio and text do)")

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor,
                inputs: dict[str, tuple[torch.Tensor, torch.Tensor]] | None = None
                ) -> torch.Tensor:
        if self.stage in ("audio", "text"):
            return self.head(self.dropout(self.embed(feats, lengths, inputs)))
        mask = lengths_to_mask(lengths.to(feats.device), feats.shape[1])
        own = _own_turn(feats[..., -1], mask)
        parts = torch.split(feats[..., :-1], list(self.split), dim=-1)
        outs = [self.context[m](x, mask) for m, x in zip(("audio", "text"), parts)
                if m in self.context]
        if self.stage == "fusion":
            h = self.transformer(self.proj(torch.cat(outs, dim=-1)),
                                 src_key_padding_mask=~mask)
        else:
            h = outs[0]
        picked = h[torch.arange(h.shape[0], device=h.device), own]
        return self.head(self.dropout(picked))


def _vocab(sizes: dict[str, int] | None) -> int:
    return int(all_input_sizes(sizes)[TEXT_TABLE])


def _own_turn(marker: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The index of each utterance's own turn: the largest marker among its real turns."""
    return marker.masked_fill(~mask, float("-inf")).argmax(dim=1)


def conversation_stage(conf: dict[str, Any] | None) -> bool:
    """The config trains a stage that reads conversation matrices."""
    return (conf or {}).get("stage") in CONVERSATION_STAGES
