"""Linear log-power spectrogram (Ando et al. 2021; Li et al. 2018).

Frames of ``frame_length`` ms every ``frame_shift`` ms, a Hamming window, a zero-padded
``n_fft``-point DFT, and the power of the bins below ``max_freq`` Hz. With the defaults (40 ms,
10 ms, NFFT 1600 at 16 kHz, 0-4 kHz) this is the 400-bin input of ``cnn_attn_baseline``.
Framing follows Kaldi's ``snip_edges=true``: ``1 + (n - win) // hop`` frames.

Li et al. (papers.md section 15) scale each utterance's matrix to [-1, 1] and compand it with
mu-law (mu = 255): ``F(x) = sgn(x) ln(1 + mu |x|) / ln(1 + mu)``; set ``scale: minmax`` and
``mu_law: 255``. Whether the paper scaled the magnitude or its log is not specified; sertk
scales the log power (``log: false`` uses the power itself).
"""

from __future__ import annotations

import torch

from sertk.features.registry import FEATURES


@FEATURES.register("spectrogram", summary="linear log-power spectrogram, 0-max_freq Hz")
class LogPowerSpectrogram:
    """Log power spectrum per frame; ``dim = floor(max_freq * n_fft / sample_rate)`` bins."""

    def __init__(self, sample_rate: int = 16000, frame_length: float = 40.0,
                 frame_shift: float = 10.0, n_fft: int = 1600, max_freq: float = 4000.0,
                 window: str = "hamming", floor: float = 1e-10, log: bool = True,
                 scale: str | None = None, mu_law: float | None = None):
        if scale not in (None, "minmax"):
            raise ValueError(f"scale must be null or minmax, got {scale!r}")
        if mu_law is not None and scale != "minmax":
            raise ValueError("mu_law companding needs scale: minmax (input in [-1, 1])")
        self.log, self.scale, self.mu = log, scale, mu_law
        self.win = int(round(sample_rate * frame_length / 1000))
        self.hop = int(round(sample_rate * frame_shift / 1000))
        if n_fft < self.win:
            raise ValueError(f"n_fft {n_fft} shorter than the {self.win}-sample window")
        self.n_fft = n_fft
        self.dim = int(max_freq * n_fft / sample_rate)
        windows = {"hamming": torch.hamming_window, "hann": torch.hann_window}
        self.window = windows[window](self.win, periodic=False)
        self.floor = floor

    def __call__(self, wav: torch.Tensor) -> torch.Tensor:
        if wav.numel() < self.win:
            wav = torch.nn.functional.pad(wav, (0, self.win - wav.numel()))
        frames = wav.unfold(0, self.win, self.hop)  # [T, win]
        frames = frames - frames.mean(dim=1, keepdim=True)
        spec = torch.fft.rfft(frames * self.window, n=self.n_fft)
        power = (spec.real.square() + spec.imag.square())[:, : self.dim]
        x = torch.log(power.clamp_min(self.floor)) if self.log else power
        if self.scale == "minmax":
            lo, hi = x.min(), x.max()
            x = 2 * (x - lo) / (hi - lo).clamp_min(1e-12) - 1
        if self.mu is not None:
            x = mu_law(x, self.mu)
        return x


def mu_law(x: torch.Tensor, mu: float = 255.0) -> torch.Tensor:
    """mu-law companding of values in [-1, 1]."""
    return torch.sign(x) * torch.log1p(mu * x.abs()) / torch.log1p(torch.tensor(mu))
