"""sertk: speech emotion recognition toolkit with Kaldi/ESPnet-style recipes.

``from sertk import Recognizer`` is the Python API (:mod:`sertk.api`); it is imported on first
use, so ``import sertk`` stays light (no torch).
"""

from sertk.version import __version__

__all__ = ["Recognizer", "__version__"]


def __getattr__(name: str):
    if name == "Recognizer":
        from sertk.api import Recognizer

        return Recognizer
    raise AttributeError(f"module 'sertk' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), "Recognizer"])
