"""Crash-safe file writes: a temporary file beside the target, fsync, ``os.replace``.

A reader (or a rerun after a kill or a crash) sees the old file or the new one, never a
partial one. A full disk (``ENOSPC``) becomes one clear :class:`SertkError` naming the file,
and the temporary file is removed.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from sertk.errors import SertkError


def is_enospc(exc: BaseException) -> bool:
    """True for a full device: an ``OSError`` with ``ENOSPC``, or a library error carrying
    its text (safetensors reports ``... No space left on device (os error 28)``)."""
    while exc is not None:
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if "No space left on device" in str(exc) or "os error 28" in str(exc):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def no_space_error(path: str | Path) -> SertkError:
    return SertkError(f"no space left on device writing {path}")


def fsync_dir(path: str | Path) -> None:
    """Make a rename in directory ``path`` durable (a no-op where directories cannot be
    opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def fsync_file(path: str | Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; when the block succeeds the file is synced to
    disk and renamed to ``path``. On any error the temporary file is removed; ``ENOSPC``
    becomes ``SertkError("no space left on device writing PATH")``."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        fsync_file(tmp)
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, Exception) and is_enospc(exc):
            raise no_space_error(path) from exc
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8", newline="") as fh:
        fh.write(text)


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> None:
    """``write(tmp)`` writes the content to a temporary path, which then replaces ``path``."""
    with atomic_path(path) as tmp:
        write(tmp)
