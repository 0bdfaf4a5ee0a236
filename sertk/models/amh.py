"""``amh``: Attentive Modality Hopping for tri-modal speech emotion recognition (Yoon, Dey,
Lee, Jung, ICASSP 2020; code ``david-yoon/attentive-modality-hopping-for-SER``), papers.md
section 22 (features as ``rajan_self_cross``, section 17, which inherits AMH's).

Inputs (``modalities``, any non-empty subset of audio, text, video):

* **audio**: the frames ``feats [B, T, D]`` (papers.md: 40 MFCC + deltas + delta-deltas =
  120, ``conf/feats/mfcc40_deltas.yaml``); ignored when audio is not among the modalities;
* **text**: ``inputs["text"]``, token ids ``[B, L]`` (0 = padding) and lengths, with a
  vocabulary of ``input_sizes["text"]`` ids (default 256);
* **video**: ``inputs["feats_video.scp"]``, precomputed frame features ``[B, Tv, Dv]`` and
  lengths, ``Dv = input_sizes["feats_video.scp"]`` (default 512; paper: ResNet face
  features, papers.md: ResNet101 2048-d at 3 Hz).

:meth:`AMH.input_tables_for` names the extra tables a config needs.

Architecture (the paper's):

* **Encoders**: one GRU per modality, ``h_t = f(h_{t-1}, x_t)``, giving the frame states
  ``h_i [B, T, d]`` and the last state ``h_last [B, d]`` (after each utterance's last real
  frame: packed GRU). Text goes through a learned token embedding first.
* **Hops**: each modality's summary starts as its last state. Hop ``k`` attends over the
  frame states of one modality, the hop cycle being V -> A -> T (V, A, T, V, A, T, ...):
  ``a_i = softmax_i(C^T W h_i)``, the summary of that modality becomes ``sum_i a_i h_i``,
  where the context ``C`` is the concatenation of the *current* summaries of the other
  modalities (in the order audio, text, video: hop 1 ``C = [h^A_last; h^T_last]``, hop 2
  ``C = [h^T_last; H^V_1]``, hop 3 ``C = [H^A_1; H^V_1]``, ...). ``W`` is
  ``(M - 1) d x d`` (papers.md: ``2d x d`` tri-modal), without bias (the paper's formula;
  the authors' code adds one). Padded steps get no weight.
* **Output**: ``H_hopN = [H^A; H^T; H^V]`` (``M d``) -> linear layer with bias ->
  ``num_classes`` logits (the paper's softmax output, applied by the trainer's CE).

Fewer modalities: the cycle keeps the present ones in the order V -> A -> T (audio + text:
A -> T -> A ...; video + text: V -> T -> V ...), the context being the other modality's
summary (``W`` is ``d x d``). With a single modality there is nothing to hop from: the model
is the uni-modal encoder, its own summary (the GRU's last state) into the output layer
(``hops`` is ignored, no attention weights).

Every padded frame or token is masked (packed GRUs, masked attention), so an utterance's
output does not depend on its batch (eval mode). An empty sequence (e.g. no face found) is
read as one zero frame.

Not in the paper (chosen here; ``conf/model/amh.yaml``): ``hops: 7`` (the paper only says
that more hops help; 7 is the authors' reference script); one 1-layer unidirectional GRU of
``gru_hidden = 128`` units for every modality (papers.md's suggestion; the authors' script:
200 audio / text, 128 video); ``W`` shared across the repeated hops of a modality, one per
attended modality (papers.md's suggestion, ``share_hops: true``; ``false`` gives one ``W``
per hop as the authors' code); no bias in the attention (the paper's formula); dropout
``dropout = 0.3`` on every encoder's input (frames or token embeddings; the authors' code
drops the GRU inputs, keep probabilities 0.7 audio / video, 0.3 text); a learned 300-d token
embedding unless ``embedding_path`` names a local GloVe / word2vec file
(:class:`TokenEmbedding`; ``freeze_embedding: true`` keeps it fixed); inputs cut to
the maximum lengths of papers.md (audio 1000 frames, text 128 tokens, video 32 frames;
``null``: no cut); padding masks; ``modality_dropout`` (default 0, off): in training a sample
loses one modality (its frame states and last state) with this probability
(:class:`ModalityDropout`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from sertk.errors import SertkError
from sertk.models.layers import ModalityDropout, lengths_to_mask
from sertk.models.layers.multimodal import (
    MODALITIES,
    TEXT_TABLE,
    VIDEO_TABLE,
    check_modalities,
    gather_inputs,
    modality_tables,
    prepare_sequence,
)
from sertk.models.layers.multimodal import input_sizes as all_input_sizes
from sertk.models.layers.stacked_lstm import run_packed
from sertk.models.layers.token_embedding import TokenEmbedding, portable_text_conf
from sertk.models.registry import MODELS

DEFAULT_MODALITIES = ("audio", "text")
HOP_CYCLE = ("video", "audio", "text")
NAME = "amh"

Encoded = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # states, last state, mask


def hop_schedule(modalities: Sequence[str], hops: int) -> list[str]:
    """The modality attended at each of ``hops`` hops: the V -> A -> T cycle over the present
    ``modalities``; empty with a single modality."""
    cycle = [m for m in HOP_CYCLE if m in modalities]
    return [cycle[k % len(cycle)] for k in range(hops)] if len(cycle) > 1 else []


class GRUEncoder(nn.Module):
    """Optional token embedding, input dropout, a packed unidirectional GRU.

    ``forward(x, lengths)`` takes frames ``[B, T, D]`` (or token ids ``[B, T]`` when
    an ``embedding`` is given) and returns the frame states ``[B, T', hidden]`` (zero on
    padding), the state after each utterance's last real step ``[B, hidden]`` and the mask
    ``[B, T']`` of real steps, ``T' = max(1, min(T, max_len))``.
    """

    def __init__(self, in_dim: int, hidden: int, max_len: int | None = None,
                 embedding: nn.Embedding | None = None, dropout: float = 0.0,
                 name: str = "audio"):
        super().__init__()
        if max_len is not None and int(max_len) < 1:
            raise SertkError(f"amh {name}_max_len must be positive or null, got {max_len}")
        self.max_len = int(max_len) if max_len is not None else None
        self.embedding = embedding
        self.dropout = nn.Dropout(dropout)
        self.gru = nn.GRU(in_dim, hidden, batch_first=True)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> Encoded:
        x, lengths, mask = prepare_sequence(x, lengths, self.max_len, self.embedding)
        x = self.dropout(x)
        states, last = run_packed(self.gru, x, lengths)
        return states, last, lengths_to_mask(lengths, x.shape[1])


def attend(states: torch.Tensor, mask: torch.Tensor, query: torch.Tensor) -> torch.Tensor:
    """``sum_i a_i h_i`` with ``a_i = softmax_i(query . h_i)`` over the real steps:
    ``states [B, T, d]``, ``mask [B, T]``, ``query [B, d]`` -> ``[B, d]``."""
    scores = torch.bmm(states, query.unsqueeze(-1)).squeeze(-1)  # [B, T]
    weights = torch.softmax(scores.masked_fill(~mask, float("-inf")), dim=-1)
    return torch.bmm(weights.unsqueeze(1), states).squeeze(1)


@MODELS.register("amh",
                 summary="tri-modal (audio, text, video) GRU encoders; attentive modality "
                         "hopping V -> A -> T, each hop attending one modality conditioned "
                         "on the others' summaries; linear output",
                 paper="Yoon, Dey, Lee, Jung, Attentive Modality Hopping Mechanism for "
                       "Speech Emotion Recognition, ICASSP 2020")
class AMH(nn.Module):
    portable_conf = staticmethod(portable_text_conf)

    @staticmethod
    def input_tables_for(conf: dict | None) -> dict[str, str]:
        """The extra input tables of a config and their kinds: ``text`` (``tokens``) and
        ``feats_video.scp`` (``feats``) when those modalities are used."""
        return modality_tables(NAME, conf, DEFAULT_MODALITIES)

    def __init__(self, input_dim: int, num_classes: int,
                 input_sizes: dict[str, int] | None = None,
                 modalities: Sequence[str] = DEFAULT_MODALITIES, hops: int = 7,
                 share_hops: bool = True, gru_hidden: int = 128, dropout: float = 0.3,
                 audio_max_len: int | None = 1000, text_max_len: int | None = 128,
                 video_max_len: int | None = 32, embedding_dim: int = 300,
                 embedding_path: str | None = None, freeze_embedding: bool = False,
                 modality_dropout: float = 0.0,
                 tokenizer: str | None = None):
        """``tokenizer``: the ``sertk tokenizer`` directory that encodes the ``text`` input
        (read by the data side, :mod:`sertk.data.inputs`; the model sees only ids)."""
        super().__init__()
        mods = check_modalities(NAME, modalities)
        self.modalities = tuple(m for m in MODALITIES if m in mods)  # audio, text, video
        _check_options(hops, dropout, gru_hidden)
        sizes = all_input_sizes(input_sizes)
        encoders = {
            "audio": lambda: GRUEncoder(input_dim, gru_hidden, audio_max_len,
                                        dropout=dropout, name="audio"),
            "text": lambda: GRUEncoder(embedding_dim, gru_hidden, text_max_len,
                                       embedding=TokenEmbedding(
                                           sizes[TEXT_TABLE], embedding_dim, embedding_path,
                                           tokenizer, freeze_embedding, NAME),
                                       dropout=dropout, name="text"),
            "video": lambda: GRUEncoder(int(sizes[VIDEO_TABLE]), gru_hidden, video_max_len,
                                        dropout=dropout, name="video"),
        }
        self.encoders = nn.ModuleDict({m: encoders[m]() for m in self.modalities})
        self.modality_dropout = ModalityDropout(modality_dropout)
        self.schedule = hop_schedule(self.modalities, int(hops))
        self.hop_keys = [m if share_hops else f"hop{k + 1}_{m}"
                         for k, m in enumerate(self.schedule)]
        context = (len(self.modalities) - 1) * gru_hidden
        self.attention = nn.ModuleDict({key: nn.Linear(context, gru_hidden, bias=False)
                                        for key in dict.fromkeys(self.hop_keys)})
        self.output = nn.Linear(len(self.modalities) * gru_hidden, num_classes)

    def _encode(self, feats: torch.Tensor, lengths: torch.Tensor,
                inputs: dict[str, tuple[torch.Tensor, torch.Tensor]] | None
                ) -> dict[str, Encoded]:
        """Each modality's ``(states, last state, mask)``, modality dropout applied to the
        states and the last state together (one draw per sample)."""
        enc = {m: self.encoders[m](x, n) for m, (x, n) in
               gather_inputs(NAME, self.modalities, feats, lengths, inputs).items()}
        joint = {m: torch.cat([s, last.unsqueeze(1)], dim=1) for m, (s, last, _) in enc.items()}
        kept = self.modality_dropout(joint)
        return {m: (kept[m][:, :-1], kept[m][:, -1], mask) for m, (_, _, mask) in enc.items()}

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor,
                inputs: dict[str, tuple[torch.Tensor, torch.Tensor]] | None = None
                ) -> torch.Tensor:
        enc = self._encode(feats, lengths, inputs)
        summary = {m: last for m, (_, last, _) in enc.items()}
        for target, key in zip(self.schedule, self.hop_keys):
            context = torch.cat([summary[m] for m in self.modalities if m != target], dim=-1)
            states, _, mask = enc[target]
            summary[target] = attend(states, mask, self.attention[key](context))
        return self.output(torch.cat([summary[m] for m in self.modalities], dim=-1))


def _check_options(hops: int, dropout: float, gru_hidden: int) -> None:
    if isinstance(hops, bool) or not isinstance(hops, int) or hops < 1:
        raise SertkError(f"amh hops must be a positive integer, got {hops!r}")
    if not 0.0 <= float(dropout) < 1.0:
        raise SertkError(f"amh dropout must be in [0, 1), got {dropout}")
    if int(gru_hidden) < 1:
        raise SertkError(f"amh gru_hidden must be positive, got {gru_hidden}")
