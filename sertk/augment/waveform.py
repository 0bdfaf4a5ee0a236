"""Waveform-level augmentations, applied in the feature-dump stage (Kaldi style).

``sertk data augment`` writes a data directory of augmented copies whose ``utt2aug`` table
holds, per utterance, a JSON list of operations drawn once with a seed (so dumps are
reproducible); ``sertk feats dump`` applies them after reading and resampling the audio:

* ``{"op": "speed", "factor": 0.9}`` -- Kaldi/sox ``speed``: resampling that changes tempo and
  pitch together (Ko et al., Interspeech 2015); ids get ``sp0.9-`` prefixes.
* ``{"op": "noise", "src": DIR, "key": K, "offset": s, "snr": dB}`` -- add recording ``K`` of
  the noise data directory ``DIR`` (e.g. MUSAN noise or music; Snyder et al. 2018), starting
  at ``offset`` seconds and looped to the utterance's length, scaled to ``snr`` dB below the
  speech power.
* ``{"op": "reverb", "src": DIR, "key": K}`` -- convolve with room impulse response ``K``
  (normalised to unit energy, aligned on its direct path, output rescaled to the input power).
"""

from __future__ import annotations

import json
import math
from fractions import Fraction
from functools import lru_cache
from typing import Any

import torch
import torchaudio.functional as AF

from sertk.augment.registry import AUGMENTS
from sertk.data.audio import AudioConfig, load_audio
from sertk.errors import DataError


def speed(wav: torch.Tensor, factor: float) -> torch.Tensor:
    """Play ``factor`` times faster: ``len / factor`` samples, pitch scaled by ``factor``."""
    if factor == 1.0:
        return wav
    frac = Fraction(factor).limit_denominator(100)
    return AF.resample(wav, frac.numerator, frac.denominator)


def power(x: torch.Tensor) -> torch.Tensor:
    return x.double().square().mean().clamp_min(1e-20)


def add_noise(wav: torch.Tensor, noise: torch.Tensor, snr_db: float, offset: int = 0
              ) -> torch.Tensor:
    """``wav + g * noise`` with ``g`` giving ``snr_db``; noise looped from ``offset``."""
    if noise.numel() == 0:
        raise DataError("noise recording has no samples")
    reps = math.ceil((offset + wav.numel()) / noise.numel())
    seg = noise.repeat(reps)[offset:offset + wav.numel()]
    gain = torch.sqrt(power(wav) / (power(seg) * 10 ** (snr_db / 10)))
    return (wav.double() + gain * seg.double()).float()


def reverberate(wav: torch.Tensor, rir: torch.Tensor) -> torch.Tensor:
    rir = rir / rir.norm().clamp_min(1e-12)
    peak = int(rir.abs().argmax())
    out = AF.fftconvolve(wav.double(), rir.double())[peak:peak + wav.numel()]
    return (out * torch.sqrt(power(wav) / power(out))).float()


@lru_cache(maxsize=8)
def _source_table(src: str) -> dict[str, str]:
    from sertk.data.datadir import DataDir

    return DataDir(src).wav_scp


@lru_cache(maxsize=256)
def _source_audio(src: str, key: str, sample_rate: int) -> torch.Tensor:
    table = _source_table(src)
    if key not in table:
        raise DataError(f"augmentation source {key!r} not in {src}/wav.scp")
    return load_audio(table[key], AudioConfig(sample_rate), key=key)


@AUGMENTS.register("speed", summary="speed perturbation (data dir, sp0.9- ids; dump stage)",
                   paper="Ko et al., Audio augmentation for speech recognition, Interspeech 2015")
class SpeedOp:
    level = "waveform"

    def __call__(self, wav: torch.Tensor, sr: int, op: dict[str, Any]) -> torch.Tensor:
        return speed(wav, float(op["factor"]))


@AUGMENTS.register("noise", summary="additive noise/music at an SNR from a noise data dir "
                                    "(MUSAN layout; dump stage)",
                   paper="Snyder et al., X-vectors, ICASSP 2018 (MUSAN augmentation)")
class NoiseOp:
    level = "waveform"

    def __call__(self, wav: torch.Tensor, sr: int, op: dict[str, Any]) -> torch.Tensor:
        noise = _source_audio(op["src"], op["key"], sr)
        offset = int(float(op.get("offset", 0.0)) * sr) % max(1, noise.numel())
        return add_noise(wav, noise, float(op["snr"]), offset)


@AUGMENTS.register("reverb", summary="reverberation with room impulse responses (dump stage)",
                   paper="Ko et al., A study on data augmentation of reverberant speech, "
                         "ICASSP 2017")
class ReverbOp:
    level = "waveform"

    def __call__(self, wav: torch.Tensor, sr: int, op: dict[str, Any]) -> torch.Tensor:
        return reverberate(wav, _source_audio(op["src"], op["key"], sr))


def apply_ops(wav: torch.Tensor, sr: int, spec: str, key: str = "?") -> torch.Tensor:
    """Apply the JSON operation list of one ``utt2aug`` line."""
    try:
        ops = json.loads(spec)
    except json.JSONDecodeError as exc:
        raise DataError(f"utterance {key}: bad utt2aug entry {spec!r}: {exc}") from None
    for op in ops:
        name = op.get("op")
        if name not in AUGMENTS or getattr(AUGMENTS.get(name).builder, "level", "") != "waveform":
            raise DataError(f"utterance {key}: unknown waveform augmentation {name!r}")
        wav = AUGMENTS.build(name)(wav, sr, op)
    return wav
