"""LEAF, the learnable audio front end of Zeghidour, Teboul, de Chaumont Quitry and Tagliasacchi,
"LEAF: A Learnable Frontend for Audio Classification", ICLR 2021 (arXiv:2101.08596).

waveform -> complex Gabor filterbank (1-D conv, learnable centre frequency and bandwidth per
filter, initialised on the mel scale) -> squared modulus -> depthwise Gaussian lowpass pooling
(learnable width per channel) with stride ``stride_ms`` -> sPCEN compression (per-channel
learnable alpha, delta, r and EMA smoothing coefficient s):

    M_t = s x_t + (1 - s) M_{t-1},  M_{-1} = x_0
    y_t = (x_t / (floor + M_t)^alpha + delta)^r - delta^r

papers.md (section 25, ``leaf_mmt``) fixes only the stride (Dutta & Ganapathy use 30 ms; the
LEAF default, kept here, is 10 ms) and suggests 16 kHz, 40 filters, 25 ms window and PCEN.
Everything else follows the LEAF defaults of google-research/leaf-audio:

* Gabor window and pooling window ``int(sr * window_ms / 1000) + 1`` samples (401 at 16 kHz,
  25 ms), forced odd; no pre-emphasis, no instance normalisation, no SpecAugment.
* Mel initialisation between 60 and 7800 Hz (``max_freq`` defaults to 0.975 * sr / 2, i.e.
  7800 Hz at 16 kHz): filter k is centred on the k-th centre of an HTK-mel triangular bank and
  its Gaussian std (samples) is ``sqrt(2 ln 2) sr / (pi FWHM)``, FWHM being the width of the
  square root of the triangle at half its peak. LEAF reads both off a 512-point FFT grid; this
  uses the exact (analytic) values.
* Constraints: centre in [0, pi] rad/sample; Gabor std in [4, k] * sqrt(2 ln 2) / pi samples;
  pooling width (as a fraction of half the window) init 0.4, clipped to [2 / k, 0.5]; the
  pooled energies are floored at 1e-5 before sPCEN; sPCEN alpha <= 1, root = 1/r >= 1,
  s in [0, 1]; init alpha 0.96, delta 2, r 0.5 (root 2), s 0.04, floor 1e-12. delta is also
  kept >= 1e-6 here so the compression stays real-valued.

Differences from the TensorFlow code, both for variable-length batches: frames are centred
(frame t is centred on sample ``t * stride``; the conv and the pooling pad ``k // 2`` zeros on
each side) instead of TF's length-dependent 'SAME' offset, giving ``ceil(S / stride)`` frames;
and samples at or beyond an utterance's length are zeroed before the Gabor conv and after the
squared modulus, so a padded utterance gives exactly the frames it gives alone (sPCEN is causal).
Frames at or beyond ``frame_lengths`` are set to 0.

Cost: the Gabor conv is a stride-1 conv with ``2 n_filters`` kernels of 401 taps (about 0.5
GMAC per second of 16 kHz audio for 40 filters) and its output is ``[B, 2 n_filters, S]``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

_SQRT_2LN2 = math.sqrt(2.0 * math.log(2.0))


def _hz_to_mel(f: torch.Tensor) -> torch.Tensor:
    return 2595.0 * torch.log10(1.0 + f / 700.0)


def _mel_to_hz(m: torch.Tensor) -> torch.Tensor:
    return 700.0 * (10.0 ** (m / 2595.0) - 1.0)


def window_samples(sample_rate: int, ms: float) -> int:
    """LEAF's window length ``int(sr * ms / 1000) + 1``, made odd so that frames are centred."""
    k = int(sample_rate * ms // 1000) + 1
    return k if k % 2 == 1 else k + 1


def mel_gabor_init(n_filters: int, sample_rate: int, min_freq: float = 60.0,
                   max_freq: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Centre frequencies (rad/sample) and Gaussian stds (samples) of Gabor filters matching an
    HTK-mel triangular filterbank with ``n_filters`` bands in ``[min_freq, max_freq]``."""
    max_freq = 0.975 * sample_rate / 2 if max_freq is None else max_freq
    edges = torch.linspace(float(_hz_to_mel(torch.tensor(min_freq, dtype=torch.float64))),
                           float(_hz_to_mel(torch.tensor(max_freq, dtype=torch.float64))),
                           n_filters + 2, dtype=torch.float64)
    step = edges[1] - edges[0]
    centres = edges[1:-1]
    # sqrt(triangle) >= 1/2  <=>  |m - m_c| <= 0.75 step (mel)
    fwhm = _mel_to_hz(centres + 0.75 * step) - _mel_to_hz(centres - 0.75 * step)
    omega = 2 * math.pi * _mel_to_hz(centres) / sample_rate
    sigma = _SQRT_2LN2 * sample_rate / (math.pi * fwhm)
    return omega.float(), sigma.float()


class GaborConv1d(nn.Module):
    """Complex Gabor filterbank over a waveform ``[B, 1, S]`` -> ``[B, 2 n_filters, S]``
    (real parts, then imaginary parts), zero-padded "same" convolution."""

    def __init__(self, n_filters: int = 40, kernel_size: int = 401, sample_rate: int = 16000,
                 min_freq: float = 60.0, max_freq: float | None = None):
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"kernel_size must be odd, got {kernel_size}")
        omega, sigma = mel_gabor_init(n_filters, sample_rate, min_freq, max_freq)
        self.n_filters, self.kernel_size, self.sample_rate = n_filters, kernel_size, sample_rate
        self.sigma_min = 4 * _SQRT_2LN2 / math.pi
        self.sigma_max = kernel_size * _SQRT_2LN2 / math.pi
        self.center = nn.Parameter(omega)  # rad/sample
        self.sigma = nn.Parameter(sigma.clamp(self.sigma_min, self.sigma_max))  # samples
        half = kernel_size // 2
        self.register_buffer("t", torch.arange(-half, half + 1, dtype=torch.float32),
                             persistent=False)

    def constrained(self) -> tuple[torch.Tensor, torch.Tensor]:
        return (self.center.clamp(0.0, math.pi),
                self.sigma.clamp(self.sigma_min, self.sigma_max))

    @property
    def center_hz(self) -> torch.Tensor:
        """Centre frequencies in Hz (after the constraint)."""
        return self.constrained()[0].detach() * self.sample_rate / (2 * math.pi)

    def kernels(self) -> torch.Tensor:
        """``[2 n_filters, 1, kernel_size]``: real then imaginary parts of
        ``exp(i w t) exp(-t^2 / (2 sigma^2)) / (sqrt(2 pi) sigma)``."""
        omega, sigma = self.constrained()
        t = self.t
        gauss = torch.exp(-0.5 * (t / sigma[:, None]) ** 2) / (math.sqrt(2 * math.pi)
                                                               * sigma[:, None])
        phase = omega[:, None] * t
        return torch.cat([gauss * torch.cos(phase), gauss * torch.sin(phase)], 0).unsqueeze(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv1d(x, self.kernels(), padding=self.kernel_size // 2)


class GaussianLowpass(nn.Module):
    """Depthwise Gaussian lowpass pooling ``[B, C, S] -> [B, C, ceil(S / stride)]``; frame t is
    centred on sample ``t * stride``. The per-channel width is a fraction of half the window."""

    def __init__(self, channels: int, kernel_size: int = 401, stride: int = 160,
                 init: float = 0.4):
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"kernel_size must be odd, got {kernel_size}")
        self.kernel_size, self.stride = kernel_size, stride
        self.width = nn.Parameter(torch.full((channels,), float(init)))
        self.register_buffer("t", torch.arange(kernel_size, dtype=torch.float32)
                             - 0.5 * (kernel_size - 1), persistent=False)

    def kernels(self) -> torch.Tensor:
        width = self.width.clamp(2.0 / self.kernel_size, 0.5)
        denom = width[:, None] * 0.5 * (self.kernel_size - 1)
        return torch.exp(-0.5 * (self.t / denom) ** 2).unsqueeze(1)  # [C, 1, k]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv1d(x, self.kernels(), stride=self.stride, padding=self.kernel_size // 2,
                        groups=x.shape[1])


def ema(x: torch.Tensor, s: torch.Tensor, chunk: int = 64) -> torch.Tensor:
    """Exponential moving average along the last axis of ``x [B, C, T]`` with per-channel
    coefficient ``s [C]`` in [0, 1]: ``M_t = s x_t + (1 - s) M_{t-1}``, ``M_{-1} = x_0``.

    Exact and differentiable: chunks of ``chunk`` frames are each a lower-triangular matmul
    with weights ``s (1 - s)^(t - k)`` (non-negative powers only, so nothing overflows), and
    the last value of a chunk carries into the next with weight ``(1 - s)^(t + 1)``.
    """
    t_len = x.shape[-1]
    if t_len == 0:
        return x
    size = min(chunk, t_len)
    log_a = torch.log1p(-s.clamp(0.0, 1.0).clamp_max(1.0 - 1e-7))  # log(1 - s), [C]
    idx = torch.arange(size, device=x.device)
    diff = (idx[:, None] - idx[None, :]).to(x.dtype)  # t - k
    causal = diff >= 0
    decay = torch.exp(diff.clamp_min(0.0) * log_a[:, None, None])  # [C, L, L]
    w_in = torch.where(causal, decay, torch.zeros_like(decay)) * s[:, None, None]
    carry = torch.exp((idx + 1).to(x.dtype) * log_a[:, None])  # [C, L]
    prev = x[..., 0]
    outs = []
    for start in range(0, t_len, size):
        xc = x[..., start:start + size]
        n = xc.shape[-1]
        m = torch.einsum("ctk,bck->bct", w_in[:, :n, :n], xc) + carry[:, :n] * prev[..., None]
        outs.append(m)
        prev = m[..., -1]
    return torch.cat(outs, -1)


class SPCEN(nn.Module):
    """sPCEN (LEAF's per-channel energy normalisation with learnable smoothing) over
    ``[B, C, T]``; all four parameters are per channel and learnable."""

    def __init__(self, channels: int, alpha: float = 0.96, smooth: float = 0.04,
                 delta: float = 2.0, root: float = 2.0, floor: float = 1e-12):
        super().__init__()
        self.alpha = nn.Parameter(torch.full((channels,), float(alpha)))
        self.delta = nn.Parameter(torch.full((channels,), float(delta)))
        self.root = nn.Parameter(torch.full((channels,), float(root)))  # 1 / r
        self.smooth = nn.Parameter(torch.full((channels,), float(smooth)))  # s
        self.floor = floor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        alpha = self.alpha.clamp_max(1.0)[:, None]
        r = 1.0 / self.root.clamp_min(1.0)[:, None]
        delta = self.delta.clamp_min(1e-6)[:, None]
        smoother = ema(x, self.smooth.clamp(0.0, 1.0))
        return (x / (self.floor + smoother) ** alpha + delta) ** r - delta ** r


class Leaf(nn.Module):
    """LEAF front end: ``forward(wav [B, S], lengths [B]) -> (feats [B, T, n_filters],
    frame_lengths [B])`` with ``T = ceil(S / stride)`` and ``frame_lengths =
    ceil(lengths / stride)``, stride = ``int(sample_rate * stride_ms / 1000)`` samples."""

    def __init__(self, sample_rate: int = 16000, n_filters: int = 40, window_ms: float = 25.0,
                 stride_ms: float = 10.0, min_freq: float = 60.0, max_freq: float | None = None,
                 pool_init: float = 0.4, pool_floor: float = 1e-5, pcen_alpha: float = 0.96,
                 pcen_smooth: float = 0.04, pcen_delta: float = 2.0, pcen_root: float = 2.0,
                 pcen_floor: float = 1e-12):
        super().__init__()
        self.sample_rate, self.n_filters = sample_rate, n_filters
        self.kernel_size = window_samples(sample_rate, window_ms)
        self.stride = int(sample_rate * stride_ms // 1000)
        if self.stride < 1:
            raise ValueError(f"stride_ms {stride_ms} is below one sample at {sample_rate} Hz")
        self.filterbank = GaborConv1d(n_filters, self.kernel_size, sample_rate, min_freq,
                                      max_freq)
        self.pooling = GaussianLowpass(n_filters, self.kernel_size, self.stride, pool_init)
        self.compression = SPCEN(n_filters, pcen_alpha, pcen_smooth, pcen_delta, pcen_root,
                                 pcen_floor)
        self.pool_floor = pool_floor
        self.out_dim = n_filters

    def frame_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        """``ceil(lengths / stride)``: the number of frames centred inside each utterance."""
        return torch.div(lengths + self.stride - 1, self.stride, rounding_mode="floor")

    def forward(self, wav: torch.Tensor, lengths: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        b, s = wav.shape
        if lengths is None:
            lengths = torch.full((b,), s, dtype=torch.long, device=wav.device)
        lengths = lengths.to(wav.device)
        mask = (torch.arange(s, device=wav.device)[None, :] < lengths[:, None]).to(wav.dtype)
        y = self.filterbank((wav * mask).unsqueeze(1))  # [B, 2n, S]
        n = self.n_filters
        energy = (y[:, :n] ** 2 + y[:, n:] ** 2) * mask.unsqueeze(1)
        pooled = self.pooling(energy).clamp_min(self.pool_floor)  # [B, n, T]
        feats = self.compression(pooled).transpose(1, 2)  # [B, T, n]
        flen = self.frame_lengths(lengths)
        valid = torch.arange(feats.shape[1], device=wav.device)[None, :] < flen[:, None]
        return feats * valid.unsqueeze(-1).to(feats.dtype), flen
