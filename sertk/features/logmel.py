"""Log mel spectrogram with an explicit window/hop in milliseconds.

Used for Cao et al.'s 26 log-mel (25/10 ms Hamming; with ``deltas: 2`` in the config), PANNs
Cnn14's 64 log-mel (32/10 ms Hann, 50-8000 Hz at 16 kHz, dB scale) and the issue-5 CNN
baselines. ``center`` follows torch.stft (PANNs/librosa use centred frames); ``log: db`` gives
``10 log10(max(P, amin))`` as librosa's ``power_to_db`` without the reference/top_db.
"""

from __future__ import annotations

import math

import torch
import torchaudio.functional as AF

from sertk.features.registry import FEATURES


@FEATURES.register("logmel", summary="log mel spectrogram (window/hop in ms, ln or dB)")
class LogMel:
    """``n_mels`` log mel energies per frame."""

    def __init__(self, sample_rate: int = 16000, n_mels: int = 64, frame_length: float = 25.0,
                 frame_shift: float = 10.0, n_fft: int | None = None, f_min: float = 0.0,
                 f_max: float | None = None, window: str = "hann", center: bool = False,
                 power: float = 2.0, log: str = "ln", floor: float = 1e-10,
                 mel_scale: str = "htk", norm: str | None = None):
        self.win = int(round(sample_rate * frame_length / 1000))
        self.hop = int(round(sample_rate * frame_shift / 1000))
        self.n_fft = n_fft or 2 ** math.ceil(math.log2(self.win))
        windows = {"hann": torch.hann_window, "hamming": torch.hamming_window,
                   "povey": lambda n, periodic=True: torch.hann_window(n, periodic=False) ** 0.85}
        self.window = windows[window](self.win, periodic=True)
        self.center, self.power, self.log, self.floor = center, power, log, floor
        if log not in ("ln", "db"):
            raise ValueError(f"log must be ln or db, got {log!r}")
        self.fb = AF.melscale_fbanks(self.n_fft // 2 + 1, f_min, f_max or sample_rate / 2,
                                     n_mels, sample_rate, norm=norm, mel_scale=mel_scale)
        self.dim = n_mels

    def __call__(self, wav: torch.Tensor) -> torch.Tensor:
        # too short for one frame: an uncentred frame needs n_fft samples, a centred one's
        # reflection padding more than n_fft / 2 (torch.stft raises otherwise)
        if wav.numel() < self.n_fft if not self.center else wav.numel() <= self.n_fft // 2:
            return wav.new_zeros(0, self.dim)
        spec = torch.stft(wav, self.n_fft, self.hop, self.win, self.window, center=self.center,
                          pad_mode="reflect", return_complex=True)
        power = spec.abs().pow(self.power).T  # [T, F]
        mel = power @ self.fb
        if self.log == "db":
            return 10.0 * torch.log10(mel.clamp_min(self.floor))
        return torch.log(mel.clamp_min(self.floor))
