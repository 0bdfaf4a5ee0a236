"""Inference: packed models, decoding of dumped features, and audio-in recognition."""
