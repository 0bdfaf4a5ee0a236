"""Linear log-power spectrogram (Ando et al. 2021; Li et al. 2018).

Frames of ``frame_length`` ms every ``frame_shift`` ms, a Hamming window, a zero-padded
``n_fft``-point DFT, and the power of the bins below ``max_freq`` Hz. With the defaults (40 ms,
10 ms, NFFT 1600 at 16 kHz, 0-4 kHz) this is the 400-bin input of ``cnn_attn_baseline``.
Framing follows Kaldi's ``snip_edges=true``: ``1 + (n - win) // hop`` frames.
"""

from __future__ import annotations

import torch

from sertk.features.registry import FEATURES


@FEATURES.register("spectrogram", summary="linear log-power spectrogram, 0-max_freq Hz")
class LogPowerSpectrogram:
    """Log power spectrum per frame; ``dim = floor(max_freq * n_fft / sample_rate)`` bins."""

    def __init__(self, sample_rate: int = 16000, frame_length: float = 40.0,
                 frame_shift: float = 10.0, n_fft: int = 1600, max_freq: float = 4000.0,
                 window: str = "hamming", floor: float = 1e-10):
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
        power = spec.real.square() + spec.imag.square()
        return torch.log(power[:, : self.dim].clamp_min(self.floor))
