"""``ca_mser``: co-attention over multi-level acoustic information (Zou, Si, Chen, Rajan,
Chng, "Speech Emotion Recognition with Co-Attention Based Multi-Level Acoustic Information",
ICASSP 2022; code ``Vincent-ZHQ/CA-MSER``), papers.md section 16.

Input: the ``waveform`` front end (``conf/feats/waveform16k.yaml``: 16 kHz samples in rows of
160 = 10 ms), turned back into waveforms by :func:`~sertk.features.waveform.frames_to_wave`.
The three "multi-level" views of one audio segment are computed inside the model, each masked
by the segment's length (samples beyond it are zeroed first):

* **MFCC** ``x_m`` (:class:`MFCCBranch`): ``n_mfcc`` coefficients of log mel energies
  (torchaudio), one frame every 10 ms, frame ``t`` centred on sample ``160 t`` (the start of
  row ``t``; zeros beyond the segment), so a segment of ``n`` rows has ``n`` valid frames.
  BiLSTM -> dropout 0.5 -> flatten -> linear + ReLU -> dropout 0.1 (the paper):
  ``x'_m = f_m(BiLSTM(x_m))``, ``embed_dim`` wide. The BiLSTM runs packed over the valid
  frames; the padded frames of the flattened ``[segment frames x 2 lstm_hidden]`` matrix are 0.
* **Spectrogram** ``x_s`` treated as an image (:class:`SpecBranch`): log power spectrum, same
  10 ms frames (``n`` valid frames for ``n`` rows), the lowest ``spec_max_freq`` Hz,
  standardised over the segment's valid frames (padded frames 0), resized to ``image_size``
  (papers.md: 224 x 224) and replicated to 3 channels; AlexNet ``features`` + ``avgpool``
  (:class:`AlexNetFeatures`, torchvision's layer layout: ImageNet weights load from a local
  ``alexnet_checkpoint``; nothing is downloaded), then the same post-processing (flatten,
  linear + ReLU, dropout 0.1): ``x'_s``.
* **wav2vec 2.0** ``x'_w = Wav2Vec2(x_w)`` (:class:`~sertk.features.ssl.SSLEncoder`, built
  as in ``mtl_w2v2_ctc``): its ``layer`` (last) hidden state, 20 ms frames for the standard
  CNN. ``encoder``: a LOCAL checkpoint directory (HF layout, ``docs/ssl_checkpoints.md``);
  else ``encoder_config``: ``config.json`` fields of a randomly initialised encoder (tests,
  offline and CPU runs, packed models). ``encoder`` takes precedence: with both set,
  ``encoder_config`` is ignored.
* **Co-attention** (:class:`CoAttention`): ``x'_att = f_att(x'_m + x'_s)`` (``+``:
  concatenation, ``f_att`` one linear layer) gives one weight per wav2vec 2.0 frame, and
  ``x''_w = x'_att . x'_w`` (the "W2E" embedding) is their weighted sum. Weights of padded
  frames are 0 (``attention_norm``: ``softmax`` over the valid frames, papers.md's
  suggestion; ``relu``, the authors' code; ``none``, the paper's bare linear weights).
* **Fusion**: ``y = f(x'_m + x'_s + x''_w)``.

**Frame rates and alignment.** ``f_att`` outputs exactly ``T'_w`` weights, so the model works
on fixed-length segments of ``segment`` rows (papers.md: 3 s = 300 rows; the authors' code: 3 s
segments, zero-padded). All views of a segment cover the same samples: the MFCC and the
spectrogram have ``segment`` frames (10 ms), wav2vec 2.0 ``T'_w =`` its frame count for
``segment`` rows (149 for 3 s and the standard CNN; one frame per 2 rows). A segment of ``n <
segment`` rows (a short utterance) is zero-padded to ``segment``: its MFCC and spectrogram
frames from ``n`` on are 0 and its wav2vec 2.0 frames from ``num_frames(160 n)`` on get no
weight. Longer inputs are cut into segments of ``segment`` rows (hop ``segment``, the last one
moved back to end at the utterance's end, as the authors' code and ``train.segment`` do); the
output is then the log of the mean segment posterior (papers.md: average the segment
posteriors), one segment's output its logits. The shipped config trains on 3 s windows
(``train.segment``) and scores utterances by their mean window posterior
(``train.eval_segment``), so the network itself sees one segment per item.

**Ablations** (``views``): any non-empty subset of ``mfcc``, ``spec``, ``w2v2``. Without
``w2v2`` the classifier takes the other embeddings; ``w2v2`` with one other view uses that
view's embedding as the co-attention query; ``w2v2`` alone has no query and is mean-pooled over
its valid frames (the baseline the paper argues against).

Not in the paper (chosen here, ``conf/model/ca_mser.yaml``): 3 s segments and segment posterior
averaging (papers.md; authors' code); the authors' code's sizes: 40 MFCCs, 2-layer BiLSTM of
256 units per direction (dropout 0.5 between the layers too), ``embed_dim`` 128 for ``x'_m``
and ``x'_s`` (papers.md suggests 256), each MFCC frame L2-normalised, pre-emphasis 0.97 before
the MFCC and the spectrogram, a spectrogram of 40 ms Hamming frames, 800-point DFT, 0-4 kHz
(200 bins), ``x''_w`` projected to ``w2e_dim`` 128 (dropout 0.1, linear, ReLU) and ``f`` two
hidden layers of 128 (dropout 0.1, linear, ReLU) and an output layer; 25 ms Hann windows,
512-point DFT and 40 mel bands for the MFCC, natural log; per-segment standardisation of the
log spectrogram, resized to 224 x 224 (papers.md); softmax co-attention weights (papers.md;
the authors' code: ReLU); wav2vec 2.0's last layer, fine-tuned with its CNN frozen (papers.md,
which suggests wav2vec 2.0 base; the authors' code fine-tunes all of wav2vec2-base-960h); the
shipped config's small random encoder (a CPU-sized stand-in until a checkpoint is given) and
its ``normalize: true`` (each segment to zero mean, unit variance, as the authors' HF processor;
the option's default ``null`` takes a checkpoint's ``preprocessor_config.json``, off for a
random encoder); no pre-emphasis for wav2vec 2.0 (a pretrained encoder expects plain audio).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
import torchaudio
from torch import nn

from sertk.data.segments import windows
from sertk.errors import SertkError
from sertk.features.ssl import LayerSpec, SSLEncoder
from sertk.features.waveform import frames_to_wave
from sertk.models.layers import lengths_to_mask
from sertk.models.layers.pretrained import init_from_checkpoint
from sertk.models.layers.stacked_lstm import run_packed
from sertk.models.mtl_w2v2_ctc import MTLWav2Vec2CTC, _build_encoder
from sertk.models.registry import MODELS

log = logging.getLogger(__name__)

VIEWS = ("mfcc", "spec", "w2v2")
ATTENTION_NORMS = ("softmax", "relu", "none")
ALEXNET_CHANNELS = (64, 192, 384, 256, 256)


def preemphasis(wave: torch.Tensor, coef: float) -> torch.Tensor:
    """``y[n] = x[n] - coef x[n - 1]`` (``y[0] = x[0]``) along the last dim."""
    if not coef:
        return wave
    return torch.cat([wave[..., :1], wave[..., 1:] - coef * wave[..., :-1]], dim=-1)


def frames_in(samples: torch.Tensor, hop: int) -> torch.Tensor:
    """Centred frames (frame ``t`` centred on sample ``hop t``) whose centre lies inside
    ``samples``: ``ceil(samples / hop)``."""
    return torch.div(samples + hop - 1, hop, rounding_mode="floor")


def split_segments(x: torch.Tensor, lengths: torch.Tensor, segment: int
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(x [B, T, n], lengths [B])`` -> ``(segments [N, segment, n], lengths [N], owner
    [N])``: each utterance's windows of ``segment`` rows (hop ``segment``, the last one ending
    at the utterance's end; a shorter utterance is one window), zero-padded to ``segment``
    rows. Rows beyond a segment's length are not cleared here."""
    b, t, _ = x.shape
    if bool((lengths <= segment).all()):
        x = x[:, :segment] if t >= segment else F.pad(x, (0, 0, 0, segment - t))
        return x, lengths, torch.arange(b, device=x.device)
    pieces, lens, owner = [], [], []
    for i, n in enumerate(lengths.tolist()):
        for s, e in windows(n, segment, segment):
            pieces.append(F.pad(x[i, s:e], (0, 0, 0, segment - (e - s))))
            lens.append(e - s)
            owner.append(i)
    return (torch.stack(pieces), torch.tensor(lens, device=x.device),
            torch.tensor(owner, device=x.device))


def merge_segments(logits: torch.Tensor, owner: torch.Tensor, batch: int) -> torch.Tensor:
    """Per utterance: the log of its segments' mean posterior, or the logits of its only
    segment."""
    if logits.shape[0] == batch:
        return logits
    counts = torch.bincount(owner, minlength=batch).tolist()
    logp = logits.float().log_softmax(-1)
    out = [chunk[0] if len(chunk) == 1 else torch.logsumexp(lp, 0) - math.log(len(chunk))
           for chunk, lp in zip(logits.split(counts), logp.split(counts))]
    return torch.stack(out).to(logits.dtype)


class MFCCBranch(nn.Module):
    """``(wave [N, S], samples [N]) -> x'_m [N, embed_dim]``: MFCC -> BiLSTM -> dropout ->
    flatten -> linear + ReLU -> dropout, on segments of ``frames`` 10 ms frames."""

    def __init__(self, frames: int, sample_rate: int, hop: int, n_mfcc: int = 40,
                 n_mels: int = 40, win_ms: float = 25.0, n_fft: int = 512,
                 lstm_hidden: int = 256, lstm_layers: int = 2, lstm_dropout: float = 0.5,
                 embed_dim: int = 128, dropout: float = 0.1):
        super().__init__()
        win = int(round(sample_rate * win_ms / 1000))
        if n_fft < win:
            raise SertkError(f"ca_mser: mfcc_n_fft {n_fft} is shorter than the {win}-sample "
                             "window")
        if n_mfcc > n_mels:
            raise SertkError(f"ca_mser: n_mfcc {n_mfcc} exceeds n_mels {n_mels}")
        self.frames, self.hop = frames, hop
        self.mfcc = torchaudio.transforms.MFCC(
            sample_rate, n_mfcc, log_mels=True,
            melkwargs={"n_fft": n_fft, "win_length": win, "hop_length": hop, "n_mels": n_mels,
                       "center": True, "pad_mode": "constant"})
        self.lstm = nn.LSTM(n_mfcc, lstm_hidden, lstm_layers, batch_first=True,
                            bidirectional=True, dropout=lstm_dropout if lstm_layers > 1 else 0.0)
        self.lstm_dropout = nn.Dropout(lstm_dropout)
        self.proj = nn.Linear(frames * 2 * lstm_hidden, embed_dim)
        self.dropout = nn.Dropout(dropout)
        self.out_dim = embed_dim

    def features(self, wave: torch.Tensor, samples: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        """``[N, frames, n_mfcc]`` L2-normalised MFCC frames (padding 0) and valid frames."""
        x = self.mfcc(wave.float())[..., :self.frames].transpose(1, 2)
        frames = frames_in(samples, self.hop).clamp(1, self.frames)
        mask = lengths_to_mask(frames, self.frames)
        return F.normalize(x, dim=-1).masked_fill(~mask.unsqueeze(-1), 0.0), frames

    def forward(self, wave: torch.Tensor, samples: torch.Tensor) -> torch.Tensor:
        x, frames = self.features(wave, samples)
        h, _ = run_packed(self.lstm, x, frames)  # [N, frames, 2H], padding 0
        h = self.lstm_dropout(h).flatten(1)
        return self.dropout(F.relu(self.proj(h)))


class AlexNetFeatures(nn.Module):
    """AlexNet's ``features`` + ``avgpool`` (torchvision's layer indices, so its ImageNet
    state dict's ``features.*`` tensors load by name) -> ``[N, channels[-1] * 36]``."""

    def __init__(self, channels: Sequence[int] = ALEXNET_CHANNELS):
        super().__init__()
        if len(channels) != 5 or min(channels) < 1:
            raise SertkError(f"ca_mser: cnn_channels must be 5 positive widths (AlexNet: "
                             f"{list(ALEXNET_CHANNELS)}), got {list(channels)}")
        c = [3, *(int(v) for v in channels)]
        self.features = nn.Sequential(
            nn.Conv2d(c[0], c[1], 11, stride=4, padding=2), nn.ReLU(), nn.MaxPool2d(3, 2),
            nn.Conv2d(c[1], c[2], 5, padding=2), nn.ReLU(), nn.MaxPool2d(3, 2),
            nn.Conv2d(c[2], c[3], 3, padding=1), nn.ReLU(),
            nn.Conv2d(c[3], c[4], 3, padding=1), nn.ReLU(),
            nn.Conv2d(c[4], c[5], 3, padding=1), nn.ReLU(), nn.MaxPool2d(3, 2))
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
        self.out_dim = c[5] * 36

    @staticmethod
    def output_size(size: int) -> int:
        """Side of the last feature map for an input side ``size`` (< 1: too small)."""
        size = (size + 4 - 11) // 4 + 1
        for _ in range(3):
            size = (size - 3) // 2 + 1
        return size

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.avgpool(self.features(image)).flatten(1)


class SpecBranch(nn.Module):
    """``(wave [N, S], samples [N]) -> x'_s [N, embed_dim]``: log spectrogram image ->
    AlexNet -> flatten -> linear + ReLU -> dropout."""

    def __init__(self, frames: int, sample_rate: int, hop: int, win_ms: float = 40.0,
                 n_fft: int = 800, max_freq: float = 4000.0,
                 image_size: Sequence[int] | None = (224, 224),
                 channels: Sequence[int] = ALEXNET_CHANNELS, embed_dim: int = 128,
                 dropout: float = 0.1):
        super().__init__()
        self.win = int(round(sample_rate * win_ms / 1000))
        if n_fft < self.win:
            raise SertkError(f"ca_mser: spec_n_fft {n_fft} is shorter than the {self.win}-"
                             "sample window")
        self.frames, self.hop, self.n_fft = frames, hop, n_fft
        self.bins = min(int(max_freq * n_fft / sample_rate), n_fft // 2 + 1)
        self.image_size = tuple(int(v) for v in image_size) if image_size else None
        height, width = self.image_size or (self.bins, frames)
        if min(AlexNetFeatures.output_size(height), AlexNetFeatures.output_size(width)) < 1:
            raise SertkError(f"ca_mser: a {height} x {width} spectrogram image is too small "
                             "for AlexNet (at least 63 x 63; set image_size)")
        self.register_buffer("window", torch.hamming_window(self.win, periodic=False),
                             persistent=False)
        self.cnn = AlexNetFeatures(channels)
        self.proj = nn.Linear(self.cnn.out_dim, embed_dim)
        self.dropout = nn.Dropout(dropout)
        self.out_dim = embed_dim

    def features(self, wave: torch.Tensor, samples: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        """``[N, bins, frames]`` log power spectrogram standardised over each segment's valid
        frames (padding 0) and the valid frames."""
        spec = torch.stft(wave.float(), self.n_fft, self.hop, self.win, self.window,
                          center=True, pad_mode="constant", return_complex=True)
        x = spec[:, :self.bins, :self.frames].abs().square().clamp_min(1e-10).log()
        frames = frames_in(samples, self.hop).clamp(1, self.frames)
        m = lengths_to_mask(frames, self.frames).unsqueeze(1).to(x.dtype)  # [N, 1, T]
        count = m.sum((1, 2), keepdim=True) * self.bins
        mean = (x * m).sum((1, 2), keepdim=True) / count
        var = (((x - mean) * m) ** 2).sum((1, 2), keepdim=True) / count
        return (x - mean) * torch.rsqrt(var + 1e-5) * m, frames

    def forward(self, wave: torch.Tensor, samples: torch.Tensor) -> torch.Tensor:
        image, _ = self.features(wave, samples)
        image = image.unsqueeze(1)  # [N, 1, F, T]: frequency as height, time as width
        if self.image_size is not None:
            image = F.interpolate(image, size=self.image_size, mode="bilinear",
                                  align_corners=False)
        h = self.cnn(image.expand(-1, 3, -1, -1))
        return self.dropout(F.relu(self.proj(h)))


class CoAttention(nn.Module):
    """``x''_w = f_att(query) . x'_w``: ``f_att`` a linear layer giving one weight per
    wav2vec 2.0 frame of a full segment (``frames`` = ``T'_w``); no query: the mean over the
    valid frames."""

    def __init__(self, query_dim: int, frames: int, norm: str = "softmax"):
        super().__init__()
        self.f_att = nn.Linear(query_dim, frames) if query_dim else None
        self.frames, self.norm = frames, norm

    def weights(self, query: torch.Tensor | None, mask: torch.Tensor) -> torch.Tensor:
        """``[N, T'_w]`` frame weights, 0 on padded frames."""
        if self.f_att is None or query is None:
            m = mask.to(torch.float32)
            return m / m.sum(1, keepdim=True).clamp_min(1.0)
        scores = self.f_att(query)
        if self.norm == "softmax":
            scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min).softmax(-1)
        elif self.norm == "relu":
            scores = F.relu(scores)
        return scores * mask.to(scores.dtype)

    def forward(self, query: torch.Tensor | None, x: torch.Tensor, frames: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(x''_w [N, D], weights [N, T'_w])`` for ``x [N, <= T'_w, D]`` with ``frames``
        valid frames."""
        x = F.pad(x, (0, 0, 0, self.frames - x.shape[1]))  # [N, T'_w, D]
        w = self.weights(query, lengths_to_mask(frames, self.frames))
        return torch.bmm(w.unsqueeze(1).to(x.dtype), x).squeeze(1), w


def _check_views(views: Sequence[str]) -> tuple[str, ...]:
    views = tuple(views or ())
    bad = [v for v in views if v not in VIEWS]
    if not views or bad or len(set(views)) != len(views):
        raise SertkError(f"ca_mser: views must be a non-empty list of distinct views from "
                         f"{', '.join(VIEWS)}, got {list(views)}")
    return views


def _mlp(dims: Sequence[int], dropout: float) -> nn.Sequential:
    """``dropout -> linear -> ReLU`` per hidden layer."""
    layers: list[nn.Module] = []
    for i, o in zip(dims, dims[1:]):
        layers += [nn.Dropout(dropout), nn.Linear(i, o), nn.ReLU()]
    return nn.Sequential(*layers)


@MODELS.register("ca_mser", summary="MFCC-BiLSTM + spectrogram-AlexNet embeddings co-attend "
                                    "over wav2vec 2.0 frames; fused classifier (raw waveform)",
                 paper="Zou et al., Speech Emotion Recognition with Co-Attention Based "
                       "Multi-Level Acoustic Information, ICASSP 2022")
class CAMSER(nn.Module):
    """``(waveform rows [B, T, input_dim], lengths [B]) -> logits [B, C]``; see the module
    docstring. ``input_dim``: samples per row (160 = 10 ms at 16 kHz)."""

    ddp_find_unused_parameters = True  # wav2vec 2.0's layer drop skips whole layers

    def __init__(self, input_dim: int, num_classes: int, segment: int = 300,
                 views: Sequence[str] = VIEWS, sample_rate: int = 16000,
                 preemphasis: float = 0.97, n_mfcc: int = 40, n_mels: int = 40,
                 mfcc_win_ms: float = 25.0, mfcc_n_fft: int = 512, lstm_hidden: int = 256,
                 lstm_layers: int = 2, lstm_dropout: float = 0.5, spec_win_ms: float = 40.0,
                 spec_n_fft: int = 800, spec_max_freq: float = 4000.0,
                 image_size: Sequence[int] | None = (224, 224),
                 cnn_channels: Sequence[int] = ALEXNET_CHANNELS,
                 alexnet_checkpoint: str | None = None, embed_dim: int = 128,
                 encoder: str | None = None, encoder_config: dict[str, Any] | None = None,
                 kind: str | None = None, layer: LayerSpec = -1, freeze_encoder: bool = False,
                 freeze_cnn: bool = True, normalize: bool | None = None,
                 attention_norm: str = "softmax", w2e_dim: int = 128,
                 hidden: Sequence[int] = (128, 128), dropout: float = 0.1):
        super().__init__()
        self.views = _check_views(views)
        if attention_norm not in ATTENTION_NORMS:
            raise SertkError(f"ca_mser: attention_norm must be one of "
                             f"{', '.join(ATTENTION_NORMS)}, got {attention_norm!r}")
        if int(segment) < 1 or int(input_dim) < 1:
            raise SertkError(f"ca_mser: segment ({segment}) and input_dim ({input_dim}) must "
                             "be positive")
        self.segment, self.row = int(segment), int(input_dim)
        self.preemphasis = float(preemphasis)
        hop = int(sample_rate) // 100  # 10 ms frames for the MFCC and the spectrogram
        frames = int(frames_in(torch.tensor(self.segment * self.row), hop))
        self.mfcc = MFCCBranch(frames, sample_rate, hop, n_mfcc, n_mels, mfcc_win_ms,
                               mfcc_n_fft, lstm_hidden, lstm_layers, lstm_dropout, embed_dim,
                               dropout) if "mfcc" in self.views else None
        self.spec = SpecBranch(frames, sample_rate, hop, spec_win_ms, spec_n_fft, spec_max_freq,
                               image_size, cnn_channels, embed_dim, dropout
                               ) if "spec" in self.views else None
        if self.spec is not None and alexnet_checkpoint:
            init_from_checkpoint(self.spec.cnn, alexnet_checkpoint, include=("features.",))
        fused = sum(b.out_dim for b in (self.mfcc, self.spec) if b is not None)
        self.encoder = self.coatt = self.w2e = None
        if "w2v2" in self.views:
            self.encoder = self._encoder(encoder, encoder_config, kind=kind, layer=layer,
                                         freeze=freeze_encoder, freeze_cnn=freeze_cnn,
                                         normalize=normalize)
            t_w = int(self.encoder.num_frames(torch.tensor([self.segment * self.row]))[0])
            if t_w < 1:
                raise SertkError(f"ca_mser: a segment of {segment} rows is shorter than one "
                                 "wav2vec 2.0 frame")
            self.coatt = CoAttention(fused, t_w, attention_norm)
            self.w2e = _mlp([self.encoder.dim, w2e_dim], dropout) if w2e_dim else nn.Identity()
            fused += int(w2e_dim) or self.encoder.dim
        dims = [fused, *(int(h) for h in hidden)]
        self.classifier = nn.Sequential(_mlp(dims, dropout), nn.Linear(dims[-1], num_classes))

    @staticmethod
    def _encoder(encoder: str | None, encoder_config: dict[str, Any] | None,
                 **options: Any) -> SSLEncoder:
        if encoder and encoder_config:
            log.info("ca_mser: encoder %s given: encoder_config is ignored", encoder)
            encoder_config = None
        if not encoder and encoder_config is None:
            log.warning("ca_mser: neither model.conf.encoder nor encoder_config is set: the "
                        "wav2vec 2.0 encoder is a RANDOM base model (see "
                        "docs/ssl_checkpoints.md)")
            encoder_config = {}
        return _build_encoder(encoder, encoder_config, **options)

    @property
    def w2v2_frames(self) -> int:
        """``T'_w``: wav2vec 2.0 frames of a full segment (0 without the ``w2v2`` view)."""
        return self.coatt.frames if self.coatt is not None else 0

    def segments(self, feats: torch.Tensor, lengths: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(wave [N, segment * input_dim] zero beyond each length, samples [N], owner
        [N])`` for the batch's segments."""
        segs, seg_lengths, owner = split_segments(feats, lengths, self.segment)
        wave, samples = frames_to_wave(segs, seg_lengths)
        return wave * lengths_to_mask(samples, wave.shape[1]).to(wave.dtype), samples, owner

    def embeddings(self, wave: torch.Tensor, samples: torch.Tensor
                   ) -> dict[str, torch.Tensor]:
        """Per segment: ``mfcc`` ``x'_m``, ``spec`` ``x'_s``, ``w2v2`` ``x''_w`` (before the
        ``w2e`` projection) and ``attention`` (``[N, T'_w]`` frame weights), as configured."""
        out: dict[str, torch.Tensor] = {}
        spectral = preemphasis(wave, self.preemphasis)
        spectral = spectral * lengths_to_mask(samples, wave.shape[1]).to(wave.dtype)
        for name, branch in (("mfcc", self.mfcc), ("spec", self.spec)):
            if branch is not None:
                out[name] = branch(spectral, samples)
        if self.encoder is not None:
            x, frames = self._w2v2(wave, samples)
            query = torch.cat([out[v] for v in ("mfcc", "spec") if v in out], -1) \
                if out else None
            out["w2v2"], out["attention"] = self.coatt(query, x, frames)
        return out

    def _w2v2(self, wave: torch.Tensor, samples: torch.Tensor
              ) -> tuple[torch.Tensor, torch.Tensor]:
        """``x'_w [N, T', D]`` (padded frames zeroed) and the valid frames; segments all
        shorter than one frame (the encoder cannot run on them) give no frames."""
        frames = self.encoder.num_frames(samples)
        if int(frames.max()) == 0:
            return wave.new_zeros(wave.shape[0], 0, self.encoder.dim), frames
        return self.encoder(wave, samples)

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        wave, samples, owner = self.segments(feats, lengths)
        emb = self.embeddings(wave, samples)
        parts = [emb[v] for v in ("mfcc", "spec") if v in emb]
        if "w2v2" in emb:
            parts.append(self.w2e(emb["w2v2"]))
        logits = self.classifier(torch.cat(parts, -1))
        return merge_segments(logits, owner, feats.shape[0])

    @staticmethod
    def portable_conf(conf: dict[str, Any]) -> dict[str, Any]:
        """``conf`` for a packed model (weights in ``model.safetensors``): an ``encoder``
        checkpoint becomes its architecture (``encoder_config``, as ``mtl_w2v2_ctc``) and
        ``alexnet_checkpoint`` is dropped."""
        return {**MTLWav2Vec2CTC.portable_conf(conf), "alexnet_checkpoint": None}
