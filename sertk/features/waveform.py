"""The ``waveform`` front end: raw samples stored as frames, for models that learn their own
front end from audio (CPC, raw-audio CNNs, wav2vec 2.0 fine-tuning).

A feature matrix row holds ``frame_ms`` of consecutive samples (160 samples = 10 ms at 16 kHz
by default); the last row is zero-padded. The matrix goes through the usual dump, CMVN and
batching machinery, and :func:`frames_to_wave` turns a padded batch back into waveforms with
their lengths in samples (the padding of the last row counts as signal: at most one frame).
The global CMVN a recipe computes has the same statistics in every column, so it just scales
the waveform; a training config keeps the scale with ``cmvn: {norm_vars: false}`` (mean
removal only).
"""

from __future__ import annotations

import torch

from sertk.errors import SertkError
from sertk.features.registry import FEATURES


@FEATURES.register("waveform", summary="raw samples in rows of frame_ms (for models with a "
                                       "learnable front end; frames_to_wave restores them)")
class Waveform:
    """``wav [S] -> [ceil(S / n), n]`` with ``n = sample_rate * frame_ms / 1000`` samples."""

    def __init__(self, sample_rate: int = 16000, frame_ms: float = 10.0):
        n = sample_rate * float(frame_ms) / 1000.0
        if n < 1 or abs(n - round(n)) > 1e-6:
            raise SertkError(f"waveform: frame_ms {frame_ms} is not a whole number of samples "
                             f"at {sample_rate} Hz")
        self.dim = int(round(n))
        self.sample_rate = int(sample_rate)

    def __call__(self, wav: torch.Tensor) -> torch.Tensor:
        wav = wav.reshape(-1).float()
        frames = max(1, -(-wav.numel() // self.dim))
        out = wav.new_zeros(frames * self.dim)
        out[:wav.numel()] = wav
        return out.view(frames, self.dim)


def frames_to_wave(x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x [B, T, n], lengths [B] in frames) -> (wave [B, T * n], lengths [B] in samples)``."""
    b, t, n = x.shape
    return x.reshape(b, t * n), lengths * n


def normalize_wave(wave: torch.Tensor, lengths: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Each waveform of ``[B, S]`` to zero mean and unit variance over its ``lengths`` samples
    (padding stays zero): wav2vec 2.0's ``do_normalize`` and CPC's input normalisation."""
    mask = (torch.arange(wave.shape[1], device=wave.device)[None, :]
            < lengths[:, None]).to(wave.dtype)
    n = lengths.clamp_min(1).to(wave.dtype)[:, None]
    mean = (wave * mask).sum(1, keepdim=True) / n
    var = (((wave - mean) * mask) ** 2).sum(1, keepdim=True) / n
    return (wave - mean) / torch.sqrt(var + eps) * mask
