"""Feature front ends (one registry), CMVN and the parallel feature dump."""

from sertk.features import (  # noqa: F401  (register front ends)
    kaldi,
    logmel,
    opensmile_fe,
    spectrogram,
    ssl,
    waveform,
)
from sertk.features.registry import FEATURES, FeatureConfig, build_frontend

# Front ends that are nn.Module layers trained inside a model (not dumped, so not in FEATURES);
# listed by `sertk feats list`.
LEARNABLE_FRONT_ENDS = (
    ("leaf", "LEAF (Zeghidour et al. 2021): Gabor filterbank, Gaussian lowpass pooling, sPCEN; "
             "sertk.models.layers.leaf.Leaf"),
    ("ssl_encoder", "wav2vec 2.0 / HuBERT / WavLM fine-tuned in a model, one layer or a learnable "
                    "weighted sum; sertk.features.ssl.SSLEncoder"),
)

__all__ = ["FEATURES", "LEARNABLE_FRONT_ENDS", "FeatureConfig", "build_frontend"]
