"""Helpers shared by the CLI sub-apps."""

from __future__ import annotations

import logging
from pathlib import Path

from sertk.logging_utils import setup_logging


def init_logging(log_file: Path | None = None, verbose: bool = False) -> None:
    setup_logging(log_file, logging.DEBUG if verbose else logging.INFO)
