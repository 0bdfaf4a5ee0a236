"""Kaldi-compatible filterbank and MFCC via :mod:`torchaudio.compliance.kaldi`.

Parameters are Kaldi's (``compute-fbank-feats`` / ``compute-mfcc-feats``) with Kaldi's defaults
(including ``energy_floor`` 0, where torchaudio's default is 1), except ``dither`` which
defaults to 0 so that dumps are reproducible. The waveform is scaled to
the 16-bit integer range first, as Kaldi reads it, so that values match Kaldi's.
"""

from __future__ import annotations

import torch
import torchaudio.compliance.kaldi as ta_kaldi

from sertk.errors import SertkError
from sertk.features.registry import FEATURES

INT16_SCALE = 32768.0


class _KaldiFrontEnd:
    fn = staticmethod(ta_kaldi.fbank)

    def __init__(self, sample_rate: int = 16000, frame_length: float = 25.0,
                 frame_shift: float = 10.0, dither: float = 0.0, window_type: str = "povey",
                 preemphasis_coefficient: float = 0.97, low_freq: float = 20.0,
                 high_freq: float = 0.0, snip_edges: bool = True, energy_floor: float = 0.0,
                 **kwargs: object):
        self.kwargs = dict(sample_frequency=float(sample_rate), frame_length=frame_length,
                           frame_shift=frame_shift, dither=dither, window_type=window_type,
                           preemphasis_coefficient=preemphasis_coefficient,
                           low_freq=low_freq, high_freq=high_freq, snip_edges=snip_edges,
                           energy_floor=energy_floor, **kwargs)
        try:  # torchaudio asserts on impossible frame settings (e.g. frame_length 0)
            self.dim = int(self(torch.full((int(sample_rate),), 1e-3)).shape[1])
        except (AssertionError, RuntimeError, ValueError) as exc:
            raise SertkError(f"bad options for feature front end {type(self).__name__.lower()}: "
                             f"{str(exc).strip() or type(exc).__name__} (frame_length "
                             f"{frame_length} ms, frame_shift {frame_shift} ms at {sample_rate} "
                             "Hz)") from None

    def __call__(self, wav: torch.Tensor) -> torch.Tensor:
        window = int(self.kwargs["sample_frequency"] * self.kwargs["frame_length"] * 0.001)
        if wav.numel() < max(2, window):  # torchaudio asserts; Kaldi gives no frame
            return torch.zeros(0, getattr(self, "dim", 0))
        return self.fn(wav.unsqueeze(0) * INT16_SCALE, **self.kwargs)


@FEATURES.register("fbank", summary="Kaldi log mel filterbank (compute-fbank-feats)")
class Fbank(_KaldiFrontEnd):
    """Kaldi log mel filterbank energies; ``num_mel_bins`` default 80."""

    fn = staticmethod(ta_kaldi.fbank)

    def __init__(self, num_mel_bins: int = 80, use_energy: bool = False, **kwargs: object):
        super().__init__(num_mel_bins=num_mel_bins, use_energy=use_energy, **kwargs)


@FEATURES.register("mfcc", summary="Kaldi MFCC (compute-mfcc-feats)")
class Mfcc(_KaldiFrontEnd):
    """Kaldi MFCCs; ``num_ceps`` default 13 from ``num_mel_bins`` 23 as in Kaldi."""

    fn = staticmethod(ta_kaldi.mfcc)

    def __init__(self, num_ceps: int = 13, num_mel_bins: int = 23, use_energy: bool = True,
                 cepstral_lifter: float = 22.0, **kwargs: object):
        super().__init__(num_ceps=num_ceps, num_mel_bins=num_mel_bins, use_energy=use_energy,
                         cepstral_lifter=cepstral_lifter, **kwargs)
