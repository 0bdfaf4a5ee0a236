"""The feature front-end registry and the YAML feature configuration.

A feature config (``conf/feats/*.yaml``) names a registered front end and its parameters::

    name: fbank            # registered front end
    sample_rate: 16000     # audio is resampled to this rate before the front end
    channel: null          # null: average channels; k: use channel k
    num_mel_bins: 80       # everything else goes to the front end's builder

``trim: {threshold_db, margin}`` is set by the dump when its data directory was trimmed
(``sertk data trim``); inference then trims leading/trailing silence the same way.
``speaker_cmvn: {norm_vars}`` is set by ``sertk feats apply-cmvn --per-spk``; inference then
normalises each speaker's features with that speaker's statistics.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch

from sertk.config import load_yaml
from sertk.data.audio import AudioConfig
from sertk.errors import SertkError
from sertk.registry import Registry

FEATURES = Registry("feature front end")


class FrontEnd(Protocol):
    """Maps a mono waveform ``[samples]`` at the configured rate to features ``[frames, dim]``."""

    dim: int

    def __call__(self, wav: torch.Tensor) -> torch.Tensor: ...


@dataclass
class FeatureConfig:
    name: str
    sample_rate: int = 16000
    channel: int | None = None
    params: dict[str, Any] = field(default_factory=dict)
    trim: dict[str, float] | None = None
    speaker_cmvn: dict[str, Any] | None = None

    @classmethod
    def from_dict(cls, cfg: dict[str, Any]) -> FeatureConfig:
        cfg = dict(cfg)
        if "name" not in cfg:
            raise SertkError("feature config needs a 'name' (one of "
                             f"{', '.join(FEATURES.names())})")
        rate, channel = cfg.pop("sample_rate", 16000), cfg.pop("channel", None)
        try:
            ok = not isinstance(rate, bool) and int(float(rate)) == float(rate) > 0
        except (TypeError, ValueError, OverflowError):
            ok = False
        if not ok:
            raise SertkError(f"feature config: sample_rate must be a positive integer (Hz), "
                             f"got {rate!r}")
        if channel is not None and (isinstance(channel, bool) or not isinstance(channel, int)
                                    or channel < 0):
            raise SertkError(f"feature config: channel must be null (average the channels) or "
                             f"a channel index >= 0, got {channel!r}")
        return cls(name=cfg.pop("name"), sample_rate=int(float(rate)),
                   channel=channel, trim=cfg.pop("trim", None),
                   speaker_cmvn=cfg.pop("speaker_cmvn", None), params=cfg)

    @classmethod
    def load(cls, path: str | Path) -> FeatureConfig:
        return cls.from_dict(load_yaml(path))

    def to_dict(self) -> dict[str, Any]:
        out = {"name": self.name, "sample_rate": self.sample_rate, "channel": self.channel,
               **self.params}
        if self.trim:
            out["trim"] = dict(self.trim)
        if self.speaker_cmvn:
            out["speaker_cmvn"] = dict(self.speaker_cmvn)
        return out

    @property
    def audio(self) -> AudioConfig:
        return AudioConfig(sample_rate=self.sample_rate, channel=self.channel)


def build_frontend(cfg: FeatureConfig) -> FrontEnd:
    """The registered front end with the config's post-processing (deltas, per-utterance or
    sliding CMVN, fixed length; see :mod:`sertk.features.postprocess`)."""
    from sertk.config import check_conf_types
    from sertk.features.postprocess import POST_KEYS, PostProcessed

    params = {k: v for k, v in cfg.params.items() if k not in POST_KEYS}
    post = {k: v for k, v in cfg.params.items() if k in POST_KEYS}
    check_conf_types(params, FEATURES.get(cfg.name).builder, f"feature config {cfg.name}:")
    base = FEATURES.build(cfg.name, sample_rate=cfg.sample_rate, **params)
    return PostProcessed(base, **post) if post else base
