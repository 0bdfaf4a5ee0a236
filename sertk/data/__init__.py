"""Kaldi data directories, audio loading, datasets, samplers and folds."""
