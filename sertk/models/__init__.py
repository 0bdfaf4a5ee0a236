"""Model zoo: one registry, one module per model family, shared layers in ``layers/``.

>>> from sertk import models
>>> net = models.build("light_sernet", input_dim=40, num_classes=8)
"""

from __future__ import annotations

from typing import Any

from torch import nn

from sertk.models import (  # noqa: F401  (register models)
    amh,
    ar_gru,
    area_attention,
    att_lstm,
    attpool_cnn,
    ca_mser,
    cnn14,
    cnn_asp,
    cnn_attn,
    compact_gcn,
    cpc,
    daae,
    hnsd,
    ks_transformer,
    leaf_mmt,
    light_sernet,
    listener_adaptive,
    maec,
    mcsan,
    meta_ser,
    mscnn,
    mtl_msf,
    mtl_w2v2_ctc,
    nonverbal_seg,
    rajan_self_cross,
    replk,
    resnet,
    semantic_fusion,
    stl_transformer,
)
from sertk.models.registry import MODELS


def build(name: str, **cfg: Any) -> nn.Module:
    """Build a registered model: ``build(name, input_dim=..., num_classes=..., **conf)``."""
    return MODELS.build(name, **cfg)


def names() -> list[str]:
    return MODELS.names()


__all__ = ["MODELS", "build", "names"]
