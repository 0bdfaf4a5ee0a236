"""The model registry. Every model maps ``(feats [B, T, D], lengths [B]) -> logits [B, C]``
and is built as ``MODELS.build(name, input_dim=D, num_classes=C, **conf)``."""

from sertk.registry import Registry

MODELS = Registry("model")
