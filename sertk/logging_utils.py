"""Logging set-up shared by every command: console plus an optional per-stage log file."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

FORMAT = "%(asctime)s (%(module)s:%(lineno)d) %(levelname)s: %(message)s"


def setup_logging(log_file: str | Path | None = None, level: int = logging.INFO,
                  rank: int = 0) -> logging.Logger:
    """Configure the root logger; non-zero DDP ranks only log warnings to the console."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    root.setLevel(level)
    console = logging.StreamHandler(sys.stderr)
    console.setLevel(level if rank == 0 else logging.WARNING)
    console.setFormatter(logging.Formatter(FORMAT))
    root.addHandler(console)
    if log_file is not None:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        fh = logging.FileHandler(log_file, mode="a")
        fh.setFormatter(logging.Formatter(FORMAT))
        root.addHandler(fh)
    return root
