"""sertk: speech emotion recognition toolkit with Kaldi/ESPnet-style recipes."""

from sertk.version import __version__

__all__ = ["__version__"]
