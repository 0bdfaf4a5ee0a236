"""openSMILE feature sets (audEERING's ``opensmile`` package) as a sertk front end.

``level: lld`` gives the frame-level low-level descriptors (``[frames, dim]``, 10 ms hop);
``level: functionals`` gives one utterance-level vector as a ``[1, dim]`` matrix.
``deltas_lld: true`` appends openSMILE's own delta regression (its ``LowLevelDescriptors_Deltas``
level; ComParE_2016, emobase, IS09 and IS10 -- the GeMAPS family has none).

Dimensions (opensmile 2.6):

==============  =====  ================  ===========
feature_set     LLD    LLD + deltas      functionals
==============  =====  ================  ===========
eGeMAPSv02      25     --                88
GeMAPSv01b      18     --                62
emobase         26     52                988
ComParE_2016    65     130               6373
IS09            16     32                384
IS10            38     76                1582
==============  =====  ================  ===========

Stand-ins for the sets the papers name (papers.md; the ``conf/feats/*.yaml`` recipes):

* ``compact_gcn`` (section 7) uses IS09 (InterSpeech 2009 Emotion Challenge) LLDs with
  first-order deltas after moving-average smoothing: 16 LLDs (RMS energy, MFCC 1-12, ZCR,
  voicing probability, F0) + 16 deltas = 32, and the paper's node dimension is P = 34
  (35 with IEMOCAP's spontaneity flag), which no stock set reproduces. The stand-in is
  **emobase LLDs** (26: intensity, loudness, MFCC 1-12, 8 LSP frequencies, ZCR, voicing
  probability, F0, F0 envelope; 52 with ``deltas_lld``), a superset of the IS09 descriptor
  types (loudness/intensity instead of RMS energy, plus LSPs and the F0 envelope).
* ``ar_gru`` (section 4) and ``maec`` (section 27) use **emobase2010** LLDs; the stand-in is
  **emobase** LLDs (26, or 52 with deltas). emobase2010 has 38 LLDs (loudness, MFCC 0-14,
  8 log mel bands, 8 LSPs, F0 envelope, voicing, F0, jitter local/DDP, shimmer) + 38 deltas
  = 76; maec's stated 45 dims match neither.
* ``att_lstm`` (section 3) uses a modified ComParE LLD set of **93** dims (incl. harmonicERMS
  and noiseERMS, which no stock config outputs). The stand-in is **ComParE_2016 LLDs with
  deltas**: 65 LLDs + 65 deltas = **130, not 93** (different descriptors, e.g. 26 RASTA
  auditory bands instead of 26 mel magnitudes, no LPC/LSP, no harmonic/noise energies).

The ``opensmile`` package also ships the original challenge configs, accepted here as
``IS09`` (``is09-13/IS09_emotion``) and ``IS10`` (``IS10_paraling_compat``: the INTERSPEECH
2010 Paralinguistic Challenge set that emobase2010 is derived from: the same 38 LLDs; per the
openSMILE book the functionals differ only in duration/position normalisation). They are
closer to the papers than the stand-ins above but are not what the shipped configs use.

openSMILE frames differ from Kaldi's: the LLD rows are the stock configs' framing (25 ms
frames for emobase/IS09, 60 ms for ComParE's pitch/voice features, 20/60 ms for eGeMAPS,
all every 10 ms), including openSMILE's end-of-input rows. The delta level emits two extra
trailing rows (flush of its W = 2 regression window); they are dropped, so delta row t aligns
with LLD row t (for emobase every row t equals the regression over LLD rows t-2..t+2 with edges
replicated; for ComParE all but the two end-of-input rows do).
The waveform is clipped to [-1, 32767/32768] because openSMILE casts ``x * 32768`` to int16.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import torch

from sertk.errors import DataError, SertkError
from sertk.features.registry import FEATURES

FEATURE_SETS = ("eGeMAPSv02", "ComParE_2016", "emobase", "GeMAPSv01b", "IS09", "IS10")
DELTA_SETS = ("ComParE_2016", "emobase", "IS09", "IS10")
LEVELS = ("lld", "functionals")
_INT16_MAX = 32767.0 / 32768.0


def import_opensmile() -> Any:
    """The ``opensmile`` module, or a :class:`SertkError` saying how to install it."""
    try:
        import opensmile
    except ImportError:
        raise SertkError("the opensmile front end needs audEERING's opensmile package: "
                         "pip install sertk[opensmile]") from None
    return opensmile


@FEATURES.register("opensmile", summary="openSMILE LLDs or functionals "
                   "(eGeMAPSv02, ComParE_2016, emobase, GeMAPSv01b)")
class OpenSmile:
    """openSMILE ``feature_set`` at ``level`` lld (``[frames, dim]``) or functionals
    (``[1, dim]``); ``deltas_lld`` appends openSMILE's LLD deltas."""

    def __init__(self, sample_rate: int = 16000, feature_set: str = "eGeMAPSv02",
                 level: str = "lld", deltas_lld: bool = False):
        if feature_set not in FEATURE_SETS:
            raise SertkError(f"opensmile: unknown feature_set {feature_set!r}; one of "
                             f"{', '.join(FEATURE_SETS)}")
        if level not in LEVELS:
            raise SertkError(f"opensmile: unknown level {level!r}; one of {', '.join(LEVELS)}")
        if deltas_lld and level != "lld":
            raise SertkError("opensmile: deltas_lld needs level: lld")
        if deltas_lld and feature_set not in DELTA_SETS:
            raise SertkError(f"opensmile: feature set {feature_set} has no LLD deltas; "
                             f"deltas_lld works with {', '.join(DELTA_SETS)}")
        smile = import_opensmile()
        fs = getattr(smile.FeatureSet, feature_set)
        fl = smile.FeatureLevel.LowLevelDescriptors if level == "lld" \
            else smile.FeatureLevel.Functionals
        self.sample_rate, self.feature_set, self.level = int(sample_rate), feature_set, level
        self.deltas_lld = bool(deltas_lld)
        self._smile = smile.Smile(feature_set=fs, feature_level=fl)
        self._smile_de = (smile.Smile(feature_set=fs,
                                      feature_level=smile.FeatureLevel.LowLevelDescriptors_Deltas)
                          if deltas_lld else None)
        self.feature_names: list[str] = list(self._smile.feature_names) + (
            list(self._smile_de.feature_names) if self._smile_de is not None else [])
        self.dim = len(self.feature_names)

    def _run(self, smile: Any, x: np.ndarray) -> np.ndarray:
        with warnings.catch_warnings():
            # "Segment too short, filling with NaN." -- reported below as a DataError
            warnings.simplefilter("ignore", UserWarning)
            return smile.process_signal(x, self.sample_rate).to_numpy(dtype=np.float32)

    def __call__(self, wav: torch.Tensor) -> torch.Tensor:
        x = wav.detach().to("cpu", torch.float32).reshape(-1).numpy()
        x = np.clip(x, -1.0, _INT16_MAX)
        y = self._run(self._smile, x)
        if self._smile_de is not None:
            de = self._run(self._smile_de, x)
            if de.shape[0] < y.shape[0]:
                raise DataError(f"opensmile {self.feature_set}: {de.shape[0]} delta rows for "
                                f"{y.shape[0]} LLD rows")
            y = np.concatenate([y, de[:y.shape[0]]], axis=1)
        if np.isnan(y).any():
            raise DataError(
                f"opensmile {self.feature_set} {self.level}: openSMILE returned NaN features "
                f"for a {x.size / self.sample_rate:.3f} s signal ({int(np.isnan(y).sum())} "
                "values); the signal is probably shorter than the set's analysis windows")
        return torch.from_numpy(np.array(y, dtype=np.float32, copy=True))
