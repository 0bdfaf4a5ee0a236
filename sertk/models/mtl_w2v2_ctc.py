"""``mtl_w2v2_ctc``: wav2vec 2.0 fine-tuned jointly for emotion and CTC character recognition
(Cai, Yuan, Zheng, Huang, Church, "Speech Emotion Recognition with Multi-Task Learning",
Interspeech 2021), papers.md section 12.

Input: the ``waveform`` front end (``conf/feats/waveform16k.yaml``: 16 kHz samples in rows of
160), turned back into waveforms by :func:`~sertk.features.waveform.frames_to_wave`.

* **Encoder** ``f``: wav2vec 2.0 (:class:`~sertk.features.ssl.SSLEncoder`), its last hidden
  layer ``z = f(x)`` (option ``layer``), fine-tuned as a whole except the convolutional feature
  encoder (``freeze_cnn``, papers.md's suggestion). ``encoder``: a LOCAL checkpoint directory
  (HF layout, see ``docs/ssl_checkpoints.md``; nothing is downloaded); ``encoder_config``:
  ``config.json`` fields for a randomly initialised encoder (tests, offline runs, and packed
  models, whose weights come with ``model.safetensors``); neither: a random wav2vec 2.0 base
  with a warning (only useful to size the model).
* **SER head**: pooling ``P`` over the valid frames (``mean``, papers.md's suggestion:
  ``c = h(1/T sum_i z_i)``; or ``stats`` / ``attention``), then one FC layer ``h``.
* **ASR head**: one FC layer ``g`` per frame, ``y = g(z)``, over the tokenizer's units
  (``aux_classes["text"]``; id 0 is the CTC blank).
* **Loss**: ``L = L_CE + alpha L_CTC``; the trainer adds the emotion loss, ``auxiliary_loss``
  returns ``alpha L_CTC`` (transcripts as ``tokens`` targets of the ``text`` table, see
  ``registry.py``). ``alpha`` 0.1 (papers.md; sweep {0.01, 0.1, 1}); ``alpha: 0`` is the
  single-task ablation and needs no transcripts.
* **Decoding**: :meth:`MTLWav2Vec2CTC.transcribe`, greedy CTC (argmax per frame, repeats
  collapsed, blanks dropped), as the paper's argmax at inference.

Vocabulary: the paper uses V = 32 characters (26 letters and punctuation). With papers.md's
list, a ``sertk tokenizer train --kind char`` on transcripts normalised to upper case letters,
space, ``'``, ``.``, ``,`` and ``?`` gives ``<blank> <unk> ▁ ' , . ? A..Z``: the paper's 32
plus ``<unk>`` (33).

Not fixed by the paper, chosen here (``conf/model/mtl_w2v2_ctc.yaml``): dropout 0.1 on ``z``
before both heads (wav2vec 2.0's ``final_dropout``); CTC loss per token (``ctc_reduction:
mean``: each utterance's loss divided by its transcript length, then the mean over the batch's
utterances that have a transcript; ``sum``: per utterance, ESPnet-style), ``zero_infinity``;
32 CTC outputs when built without ``aux_classes`` (e.g. ``sertk models info``).
"""

from __future__ import annotations

import logging
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torchaudio.models import Wav2Vec2Model, wav2vec2_model, wavlm_model
from torchaudio.models.wav2vec2.utils.import_huggingface import _get_config, _get_config_wavlm

from sertk.errors import SertkError
from sertk.features.ssl import (
    HF_DEFAULTS,
    KINDS,
    LayerSpec,
    SSLEncoder,
    check_config,
    do_normalize,
    read_json,
)
from sertk.features.waveform import frames_to_wave
from sertk.models.layers import (
    AdditiveAttentionPooling,
    StatsPooling,
    lengths_to_mask,
    masked_mean,
)
from sertk.models.registry import MODELS

log = logging.getLogger(__name__)

POOLINGS = ("mean", "stats", "attention")
REDUCTIONS = ("mean", "sum")
PAPER_VOCAB = 32
# config.json fields that define the architecture (what a packed model keeps of a checkpoint)
ARCH_KEYS = (*HF_DEFAULTS, "model_type", "hidden_act", "feat_extract_activation",
             "layer_norm_eps", "feat_proj_layer_norm")


def random_encoder(config: dict[str, Any], kind: str | None = None) -> Wav2Vec2Model:
    """A randomly initialised torchaudio wav2vec 2.0 / HuBERT / WavLM network from HF
    ``config.json`` fields; missing fields take transformers' defaults (wav2vec 2.0 base)."""
    kind = kind or config.get("model_type") or "wav2vec2"
    if kind not in KINDS:
        raise SertkError(f"encoder_config: model_type {kind!r} is not one of {', '.join(KINDS)}")
    check_config(config, kind, Path("encoder_config"))
    cfg = SimpleNamespace(**{**HF_DEFAULTS, **config})
    try:
        args = (_get_config_wavlm if kind == "wavlm" else _get_config)(cfg)
        return (wavlm_model if kind == "wavlm" else wav2vec2_model)(**args, aux_num_out=None)
    except (TypeError, ValueError) as exc:
        raise SertkError(f"bad encoder_config: {exc}") from None


def ctc_greedy(logits: torch.Tensor, frames: torch.Tensor, blank: int = 0) -> list[list[int]]:
    """Greedy CTC decoding of ``[B, T, V]`` scores over each utterance's ``frames``: the
    best unit per frame, repeats collapsed, then blanks dropped."""
    best = logits.argmax(-1).cpu()
    out = []
    for b, n in enumerate(frames.tolist()):
        ids = torch.unique_consecutive(best[b, :n])
        out.append(ids[ids != blank].tolist())
    return out


def ctc_loss(logits: torch.Tensor, frames: torch.Tensor, tokens: torch.Tensor,
             token_lengths: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """CTC (blank 0, ``zero_infinity``) averaged over the utterances with a transcript
    (``token_lengths > 0``); ``mean`` divides each utterance's loss by its length first.
    A batch without transcripts gives a zero that keeps the head in the graph."""
    tokens, token_lengths = tokens.to(logits.device), token_lengths.to(logits.device)
    keep = token_lengths > 0
    if not bool(keep.any()):
        return 0.0 * logits.float().sum()
    log_probs = logits[keep].float().log_softmax(-1).transpose(0, 1)  # [T, B', V]
    lengths = token_lengths[keep]
    loss = F.ctc_loss(log_probs, tokens[keep], frames[keep], lengths, blank=0,
                      reduction="none", zero_infinity=True)
    if reduction == "mean":
        loss = loss / lengths.to(loss.dtype)
    return loss.mean()


def _build_encoder(encoder: str | None, encoder_config: dict[str, Any] | None,
                   **options: Any) -> SSLEncoder:
    if encoder and encoder_config:
        raise SertkError("mtl_w2v2_ctc: give encoder (a checkpoint directory) or "
                         "encoder_config (a random encoder), not both")
    if encoder:
        return SSLEncoder(encoder, **options)
    if encoder_config is None:
        log.warning("mtl_w2v2_ctc: model.conf.encoder is not set: the wav2vec 2.0 encoder is "
                    "a RANDOM base model (the paper fine-tunes a pretrained one; see "
                    "docs/ssl_checkpoints.md)")
    kind = options.pop("kind")
    options["normalize"] = bool(options["normalize"])
    return SSLEncoder(random_encoder(dict(encoder_config or {}), kind), **options)


@MODELS.register("mtl_w2v2_ctc", summary="wav2vec 2.0 fine-tuned for emotion (mean pooling + "
                                         "FC) and CTC characters (multi-task)",
                 paper="Cai et al., Speech Emotion Recognition with Multi-Task Learning, "
                       "Interspeech 2021")
class MTLWav2Vec2CTC(nn.Module):
    """``(waveform rows [B, T, 160], lengths [B]) -> emotion logits [B, C]``; the CTC scores of
    the last forward feed :meth:`auxiliary_loss`. See the module docstring; ``tokenizer`` is
    read by the trainer, ``sertk pack`` and ``sertk infer``, not by the network."""

    aux_tables = ("text",)
    aux_kinds = {"text": "tokens"}
    ddp_find_unused_parameters = True  # wav2vec 2.0's layer drop skips whole layers

    @staticmethod
    def aux_tables_for(conf: dict[str, Any]) -> tuple[str, ...]:
        """Transcripts are needed only with a CTC weight (``alpha > 0``)."""
        return ("text",) if float(conf.get("alpha", 0.1)) > 0 else ()

    def __init__(self, input_dim: int, num_classes: int,
                 aux_classes: dict[str, int] | None = None, encoder: str | None = None,
                 encoder_config: dict[str, Any] | None = None, kind: str | None = None,
                 layer: LayerSpec = -1, freeze_encoder: bool = False, freeze_cnn: bool = True,
                 normalize: bool | None = None, pooling: str = "mean", dropout: float = 0.1,
                 alpha: float = 0.1, ctc_reduction: str = "mean", tokenizer: str | None = None):
        super().__init__()
        if pooling not in POOLINGS:
            raise SertkError(f"mtl_w2v2_ctc: pooling must be one of {', '.join(POOLINGS)}, "
                             f"got {pooling!r}")
        if ctc_reduction not in REDUCTIONS:
            raise SertkError(f"mtl_w2v2_ctc: ctc_reduction must be mean or sum, "
                             f"got {ctc_reduction!r}")
        self.encoder = _build_encoder(encoder, encoder_config, layer=layer,
                                      freeze=freeze_encoder, freeze_cnn=freeze_cnn, kind=kind,
                                      normalize=normalize)
        dim = self.encoder.dim
        self.pooling = pooling
        self.pool = StatsPooling() if pooling == "stats" else \
            AdditiveAttentionPooling(dim, att_dim=128) if pooling == "attention" else None
        self.dropout = nn.Dropout(dropout)
        self.emotion_head = nn.Linear(2 * dim if pooling == "stats" else dim, num_classes)
        vocab = int((aux_classes or {}).get("text", PAPER_VOCAB))
        self.ctc_head = nn.Linear(dim, vocab)
        self.alpha = float(alpha)
        self.ctc_reduction = ctc_reduction
        self._ctc: tuple[torch.Tensor, torch.Tensor] | None = None

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        wav, samples = frames_to_wave(feats, lengths)
        z, frames = self.encoder(wav, samples)  # [B, T', D], padded frames zeroed
        z = self.dropout(z)
        self._ctc = (self.ctc_head(z), frames)
        mask = lengths_to_mask(frames, z.shape[1])
        pooled = masked_mean(z, mask) if self.pool is None else self.pool(z, mask)
        return self.emotion_head(pooled)

    def auxiliary_loss(self, aux_targets: dict[str, Any]) -> torch.Tensor:
        """``alpha L_CTC`` of the last forward; ``aux_targets["text"]`` is ``(tokens [B, L]
        padded with 0, lengths [B])``, length 0 where the utterance has no transcript."""
        if self._ctc is None:
            raise RuntimeError("auxiliary_loss() needs a forward() first")
        logits, frames = self._ctc
        if "text" not in aux_targets:
            return 0.0 * logits.float().sum()
        tokens, token_lengths = aux_targets["text"]
        return self.alpha * ctc_loss(logits, frames, tokens, token_lengths, self.ctc_reduction)

    @torch.no_grad()
    def transcribe(self, feats: torch.Tensor, lengths: torch.Tensor) -> list[list[int]]:
        """Greedy CTC token ids per utterance for a batch as :meth:`forward` takes it (after
        the classifier's CMVN); decode them with the training tokenizer."""
        self.forward(feats, lengths)
        logits, frames = self._ctc
        return ctc_greedy(logits, frames)

    @staticmethod
    def portable_conf(conf: dict[str, Any]) -> dict[str, Any]:
        """``conf`` for a packed model: ``encoder: PATH`` becomes ``encoder_config`` (the
        checkpoint's architecture from its ``config.json``) and ``normalize`` is resolved, so
        the model is rebuilt without the checkpoint (its weights are in ``model.safetensors``)."""
        path = conf.get("encoder")
        if not path:
            return dict(conf)
        root = Path(path).expanduser()
        raw = read_json(root / "config.json")
        arch = {k: raw[k] for k in ARCH_KEYS if k in raw}
        if conf.get("kind"):
            arch["model_type"] = conf["kind"]
        normalize = conf.get("normalize")
        return {**conf, "encoder": None, "encoder_config": arch, "kind": None,
                "normalize": do_normalize(root) if normalize is None else bool(normalize)}
