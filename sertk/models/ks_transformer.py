"""``ks_transformer``: Key-Sparse Transformer for multimodal (audio + text) speech emotion
recognition (Chen, Xing, Xu, Pang, Du, "Key-Sparse Transformer for Multimodal Speech Emotion
Recognition", ICASSP 2022), papers.md section 24.

Inputs (``modalities``, any non-empty subset of audio, text):

* **audio**: the frames ``feats [B, T, D]`` of any front end (paper: frozen wav2vec features
  at 20 ms; ``conf/model/ks_transformer.yaml`` uses ``conf/feats/fbank80.yaml``, 80 log-mel
  filterbanks at 10 ms, or an ``ssl`` front end config with a local wav2vec 2.0 checkpoint),
  cut to ``audio_max_len`` frames and projected linearly to the model width ``d_model``;
  ignored when audio is not among the modalities;
* **text**: ``inputs["text"]``, token ids ``[B, L]`` (0 = padding) and lengths, with a
  vocabulary of ``input_sizes["text"]`` ids (default 256), cut to ``text_max_len`` tokens
  (paper: 20 RoBERTa tokens); a learned token embedding (``embedding_dim``, or initialised
  from a local GloVe / word2vec file, :class:`TokenEmbedding`) projected to ``d_model``.

:meth:`KSTransformer.input_tables_for` names the extra tables a config needs.

Architecture (the paper's three modules; every attention has ``heads = 8`` heads):

1. **Feature extraction**: per modality, ``encoder_layers = 5`` vanilla Transformer encoder
   layers (dense attention).
2. **Modality interaction**: ``ccab_blocks = 3`` stacked Cascaded Cross-Attention Blocks
   (CCAB) per direction. A CCAB is two cascaded KS-Transformers: the first attends from
   modality A (queries) to modality B (keys = values), the second is key-sparse
   self-attention over that fused sequence (Q = K = V, papers.md's suggestion). Each later
   CCAB takes the previous CCAB's output as its queries; keys and values always come from
   B's feature-extraction output. Both directions are built (papers.md's suggestion): audio
   queries over text (``ccab["audio"]``, ``T_audio`` steps) and text queries over audio
   (``ccab["text"]``, ``T_text`` steps). The skip connections are the residual connections
   around every attention and feed-forward sub-layer.
3. **Deep fusion**: the two CCAB outputs are concatenated along time into one sequence
   (``T_audio + T_text`` steps, one padding mask) and ``fusion_layers = 2`` KS-Transformers
   (key-sparse self-attention) run over it; each modality's part is then mean-pooled over its
   real steps (papers.md's suggestion), the pooled vectors concatenated, dropout 0.5 (the
   paper's dropout), and a linear layer gives the logits (cross-entropy: papers.md).

A **KS-Transformer** is a Transformer layer whose attention is key-sparse
(:class:`~sertk.models.layers.ks_attention.KeySparseAttention`, reused): the top
``k = ceil(ks_ratio * real keys)`` keys (the paper's default ratio 0.5), or ``ks_topk`` keys,
by attention column sum keep their weights, the other columns are zeroed without
re-normalisation; column sums per head (``ks_scope: per_head``) or over the heads
(``shared``). ``attention: full`` replaces every key-sparse attention with dense
``nn.MultiheadAttention`` (same parameters), the vanilla-attention comparison.

With one modality there is nothing to cross-attend: the model is that modality's feature
extraction and deep-fusion KS-Transformers, pooled into the linear layer (the paper reports no
uni-modal model; papers.md names none). ``ccab_blocks: 0`` (the paper tested 0-4) fuses the two
feature-extraction outputs directly.

Every padded frame or token is masked: inputs zeroed beyond their length, key padding masks in
every attention, padded queries left out of the key-sparse column sums (``query_padding_mask``)
and padded keys never selected, so the top-k is taken over real keys only; masked pooling. An
utterance's output does not depend on its batch (eval mode). An empty sequence (e.g. no
transcript) is read as one zero step.

Not in the paper (chosen here; ``conf/model/ks_transformer.yaml``): ``d_model = 256`` and a
ReLU feed-forward of ``ffn_dim = 1024`` (4x) in every layer (the paper gives no sizes; wav2vec
and RoBERTa inputs are 768-d, projected here); pre-LayerNorm layers with a final LayerNorm
(``norm_first: true``; ``false``: post-LN as the original Transformer), chosen for stable
training of the layers from scratch (the paper's inputs are pretrained features); dropout 0.1
inside every Transformer layer (``transformer_dropout``) and the paper's 0.5 on the pooled
vector (``dropout``; the paper does not say where); sinusoidal positions added to both
projected inputs (``positions``); the time concatenation of the two directions before the
deep fusion, and mean pooling per modality part (``pooling: mean``, or ``max``); a learned
300-d token embedding (RoBERTa is not used; ``embedding_path``: GloVe / word2vec vectors);
``audio_max_len = 920`` 10 ms frames (the paper's 460 wav2vec frames of 20 ms, 9.2 s; use 460
with a 20 ms ``ssl`` front end); the key-sparse padding and per-head choices of papers.md
(see :mod:`sertk.models.layers.ks_attention`); ``modality_dropout`` (default 0, off): in
training a sample loses one modality's feature-extraction output with this probability
(:class:`ModalityDropout`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from sertk.errors import SertkError
from sertk.models.layers import (
    ModalityDropout,
    key_padding_mask,
    masked_max,
    masked_mean,
)
from sertk.models.layers.ks_attention import SCOPES, KeySparseAttention
from sertk.models.layers.multimodal import (
    TEXT_TABLE,
    check_modalities,
    gather_inputs,
    modality_tables,
    prepare_sequence,
)
from sertk.models.layers.multimodal import input_sizes as all_input_sizes
from sertk.models.layers.positions import sinusoidal_positions
from sertk.models.layers.token_embedding import TokenEmbedding, portable_text_conf
from sertk.models.registry import MODELS

NAME = "ks_transformer"
MODALITIES = ("audio", "text")
ATTENTIONS = ("key_sparse", "full")
POOLINGS = ("mean", "max")
Encoded = tuple[torch.Tensor, torch.Tensor]  # (sequence [B, T, d], mask [B, T])


class ModalityEncoder(nn.Module):
    """Optional token embedding, linear projection to ``dim``, optional sinusoidal positions,
    ``layers`` vanilla Transformer encoder layers (the paper's feature extraction).

    ``forward(x, lengths)`` takes frames ``[B, T, D]`` (or token ids ``[B, T]`` when an
    ``embedding`` is given) and returns ``(h [B, T', dim], mask [B, T'])`` with
    ``T' = max(1, min(T, max_len))``; padded steps of ``h`` are zero.
    """

    def __init__(self, in_dim: int, dim: int, heads: int, ffn_dim: int, layers: int,
                 dropout: float, norm_first: bool, positions: bool, max_len: int | None,
                 embedding: nn.Embedding | None = None):
        super().__init__()
        self.max_len = int(max_len) if max_len is not None else None
        self.embedding = embedding
        self.proj = nn.Linear(in_dim, dim)
        self.positions = bool(positions)
        self.dropout = nn.Dropout(dropout)
        self.encoder = None
        if layers:
            layer = nn.TransformerEncoderLayer(dim, heads, ffn_dim, dropout, activation="relu",
                                               batch_first=True, norm_first=norm_first)
            self.encoder = nn.TransformerEncoder(
                layer, layers, norm=nn.LayerNorm(dim) if norm_first else None,
                enable_nested_tensor=False)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> Encoded:
        x, lengths, mask = prepare_sequence(x, lengths, self.max_len, self.embedding)
        h = self.proj(x)
        if self.positions:
            h = h + sinusoidal_positions(h.shape[1], h.shape[2], h.device).to(h.dtype)
        h = self.dropout(h)
        if self.encoder is not None:
            h = self.encoder(h, src_key_padding_mask=key_padding_mask(mask))
        return h.masked_fill(~mask.unsqueeze(-1), 0.0), mask


class KSTransformerLayer(nn.Module):
    """A Transformer layer with key-sparse attention (or dense, ``sparse=False``): attention
    from ``x`` to ``source`` (self-attention without a source; ``cross=True`` layers take one)
    and a ReLU feed-forward, each with a residual connection and LayerNorm (pre-LN with
    ``norm_first``, else post-LN)."""

    def __init__(self, dim: int, heads: int, ffn_dim: int, dropout: float, norm_first: bool,
                 cross: bool = False, sparse: bool = True, ratio: float = 0.5,
                 topk: int | None = None, scope: str = "per_head"):
        super().__init__()
        self.attn = (KeySparseAttention(dim, heads, dropout, ratio=ratio, topk=topk,
                                        scope=scope) if sparse else
                     nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True))
        self.ffn = nn.Sequential(nn.Linear(dim, ffn_dim), nn.ReLU(), nn.Dropout(dropout),
                                 nn.Linear(ffn_dim, dim))
        self.norm_attn, self.norm_ffn = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.norm_source = nn.LayerNorm(dim) if cross and norm_first else None
        self.drop_attn, self.drop_ffn = nn.Dropout(dropout), nn.Dropout(dropout)
        self.norm_first, self.cross = bool(norm_first), bool(cross)

    def _attend(self, q: torch.Tensor, q_mask: torch.Tensor, kv: torch.Tensor,
                kv_mask: torch.Tensor) -> torch.Tensor:
        extra = ({"query_padding_mask": key_padding_mask(q_mask)}
                 if isinstance(self.attn, KeySparseAttention) else {})
        out, _ = self.attn(q, kv, kv, key_padding_mask=key_padding_mask(kv_mask),
                           need_weights=False, **extra)
        return self.drop_attn(out)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, source: torch.Tensor | None = None,
                source_mask: torch.Tensor | None = None) -> torch.Tensor:
        """``x [B, T, d]`` with ``mask [B, T]``; a cross layer also takes ``source
        [B, S, d]`` and ``source_mask [B, S]`` (keys and values)."""
        if self.cross != (source is not None):
            raise SertkError("ks_transformer: a cross-attention layer needs a source, a "
                             "self-attention layer takes none")
        if self.norm_first:
            q = self.norm_attn(x)
            kv, kv_mask = (self.norm_source(source), source_mask) if self.cross else (q, mask)
            x = x + self._attend(q, mask, kv, kv_mask)
            return x + self.drop_ffn(self.ffn(self.norm_ffn(x)))
        kv, kv_mask = (source, source_mask) if self.cross else (x, mask)
        x = self.norm_attn(x + self._attend(x, mask, kv, kv_mask))
        return self.norm_ffn(x + self.drop_ffn(self.ffn(x)))


class CCAB(nn.Module):
    """Cascaded Cross-Attention Block: a key-sparse cross-attention KS-Transformer (queries
    from A, keys and values from B), then a key-sparse self-attention KS-Transformer over the
    fused sequence."""

    def __init__(self, **layer: object):
        super().__init__()
        self.cross = KSTransformerLayer(cross=True, **layer)
        self.fuse = KSTransformerLayer(**layer)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, source: torch.Tensor,
                source_mask: torch.Tensor) -> torch.Tensor:
        return self.fuse(self.cross(x, mask, source, source_mask), mask)


@MODELS.register(NAME,
                 summary="audio + text: per-modality Transformer encoders, cascaded "
                         "cross-attention blocks both ways and deep-fusion layers with "
                         "key-sparse (top-k key) attention, mean pooling, linear output",
                 paper="Chen, Xing, Xu, Pang, Du, Key-Sparse Transformer for Multimodal "
                       "Speech Emotion Recognition, ICASSP 2022")
class KSTransformer(nn.Module):
    portable_conf = staticmethod(portable_text_conf)

    @staticmethod
    def input_tables_for(conf: dict | None) -> dict[str, str]:
        """The extra input tables of a config and their kinds: ``text`` (``tokens``) when
        text is among the modalities."""
        return modality_tables(NAME, conf, MODALITIES, MODALITIES)

    def __init__(self, input_dim: int, num_classes: int,
                 input_sizes: dict[str, int] | None = None,
                 modalities: Sequence[str] = MODALITIES, d_model: int = 256, heads: int = 8,
                 ffn_dim: int = 1024, encoder_layers: int = 5, ccab_blocks: int = 3,
                 fusion_layers: int = 2, attention: str = "key_sparse", ks_ratio: float = 0.5,
                 ks_topk: int | None = None, ks_scope: str = "per_head",
                 transformer_dropout: float = 0.1, dropout: float = 0.5,
                 norm_first: bool = True, positions: bool = True, pooling: str = "mean",
                 audio_max_len: int | None = 920, text_max_len: int | None = 20,
                 embedding_dim: int = 300, embedding_path: str | None = None,
                 freeze_embedding: bool = False, modality_dropout: float = 0.0,
                 tokenizer: str | None = None):
        """``tokenizer``: the ``sertk tokenizer`` directory that encodes the ``text`` input
        (read by the data side, :mod:`sertk.data.inputs`; the model sees only ids; with
        ``embedding_path`` its units are looked up in that word-vector file)."""
        super().__init__()
        mods = check_modalities(NAME, modalities, allowed=MODALITIES)
        self.modalities = tuple(m for m in MODALITIES if m in mods)  # audio, text
        _check_options(d_model=d_model, heads=heads, ffn_dim=ffn_dim,
                       encoder_layers=encoder_layers, ccab_blocks=ccab_blocks,
                       fusion_layers=fusion_layers, attention=attention, ks_ratio=ks_ratio,
                       ks_topk=ks_topk, ks_scope=ks_scope,
                       transformer_dropout=transformer_dropout, dropout=dropout,
                       pooling=pooling, audio_max_len=audio_max_len, text_max_len=text_max_len)
        sizes = all_input_sizes(input_sizes)
        common = {"dim": d_model, "heads": heads, "ffn_dim": ffn_dim,
                  "dropout": transformer_dropout, "norm_first": norm_first}
        encoders = {
            "audio": lambda: ModalityEncoder(input_dim, layers=encoder_layers,
                                             positions=positions, max_len=audio_max_len,
                                             **common),
            "text": lambda: ModalityEncoder(
                embedding_dim, layers=encoder_layers, positions=positions,
                max_len=text_max_len, **common,
                embedding=TokenEmbedding(sizes[TEXT_TABLE], embedding_dim, embedding_path,
                                         tokenizer, freeze_embedding, NAME)),
        }
        self.encoders = nn.ModuleDict({m: encoders[m]() for m in self.modalities})
        self.modality_dropout = ModalityDropout(modality_dropout)
        layer = {**common, "sparse": attention == "key_sparse", "ratio": ks_ratio,
                 "topk": ks_topk, "scope": ks_scope}
        # ccab[A]: queries from A, keys and values from the other modality B
        directions = self.modalities if len(self.modalities) > 1 else ()
        self.ccab = nn.ModuleDict({a: nn.ModuleList(CCAB(**layer) for _ in range(ccab_blocks))
                                   for a in directions})
        self.fusion = nn.ModuleList(KSTransformerLayer(**layer) for _ in range(fusion_layers))
        self.final_norm = nn.LayerNorm(d_model) if norm_first else nn.Identity()
        self.pool = masked_mean if pooling == "mean" else masked_max
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(len(self.modalities) * d_model, num_classes)

    def _encode(self, feats: torch.Tensor, lengths: torch.Tensor,
                inputs: dict[str, Encoded] | None) -> dict[str, Encoded]:
        """Each modality's feature-extraction output and mask, modality dropout applied."""
        enc = {m: self.encoders[m](x, n) for m, (x, n) in
               gather_inputs(NAME, self.modalities, feats, lengths, inputs).items()}
        kept = self.modality_dropout({m: h for m, (h, _) in enc.items()})
        return {m: (kept[m], mask) for m, (_, mask) in enc.items()}

    def _interact(self, enc: dict[str, Encoded]) -> dict[str, Encoded]:
        """The CCAB stacks: for each query modality A, its sequence after the blocks that
        attend to the other modality B (keys and values: B's encoder output every time)."""
        if not self.ccab:
            return enc
        out = {}
        for a, (x, mask) in enc.items():
            source, source_mask = next(e for m, e in enc.items() if m != a)
            for block in self.ccab[a]:
                x = block(x, mask, source, source_mask)
            out[a] = (x, mask)
        return out

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor,
                inputs: dict[str, Encoded] | None = None) -> torch.Tensor:
        streams = list(self._interact(self._encode(feats, lengths, inputs)).values())
        fused = torch.cat([x for x, _ in streams], dim=1)  # [B, T_audio + T_text, d]
        mask = torch.cat([m for _, m in streams], dim=1)
        for layer in self.fusion:
            fused = layer(fused, mask)
        parts = fused.split([x.shape[1] for x, _ in streams], dim=1)
        pooled = [self.pool(self.final_norm(x), m) for x, (_, m) in zip(parts, streams)]
        return self.out(self.dropout(torch.cat(pooled, dim=-1)))


def _check_options(**opt: object) -> None:
    for key in ("d_model", "heads", "ffn_dim"):
        if isinstance(opt[key], bool) or not isinstance(opt[key], int) or opt[key] < 1:
            raise SertkError(f"{NAME} {key} must be a positive integer, got {opt[key]!r}")
    for key in ("encoder_layers", "ccab_blocks", "fusion_layers"):
        if isinstance(opt[key], bool) or not isinstance(opt[key], int) or opt[key] < 0:
            raise SertkError(f"{NAME} {key} must be a non-negative integer, got {opt[key]!r}")
    if opt["d_model"] % opt["heads"]:
        raise SertkError(f"{NAME}: d_model {opt['d_model']} must be divisible by heads "
                         f"{opt['heads']}")
    for key, allowed in (("attention", ATTENTIONS), ("ks_scope", SCOPES),
                         ("pooling", POOLINGS)):
        if opt[key] not in allowed:
            raise SertkError(f"{NAME} {key} must be one of {', '.join(allowed)}, "
                             f"got {opt[key]!r}")
    if not 0.0 < float(opt["ks_ratio"]) <= 1.0:
        raise SertkError(f"{NAME} ks_ratio must be in (0, 1], got {opt['ks_ratio']}")
    if opt["ks_topk"] is not None and int(opt["ks_topk"]) < 1:
        raise SertkError(f"{NAME} ks_topk must be at least 1 or null, got {opt['ks_topk']}")
    for key in ("transformer_dropout", "dropout"):
        if not 0.0 <= float(opt[key]) < 1.0:
            raise SertkError(f"{NAME} {key} must be in [0, 1), got {opt[key]}")
    for key in ("audio_max_len", "text_max_len"):
        if opt[key] is not None and int(opt[key]) < 1:
            raise SertkError(f"{NAME} {key} must be positive or null, got {opt[key]}")
