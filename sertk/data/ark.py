"""Reading Kaldi arks and scps safely: nothing is ever unpickled, every failure is one
:class:`DataError` naming the key and the entry.

kaldiio reads a record that starts with ``PKL`` with :func:`pickle.load`, so an ark (or a
``cmvn.ark``, or a ``feats.scp`` entry) written by someone else could run code when it is read.
Every ark sertk reads goes through :func:`load_mat`, :func:`load_scp` or :func:`load_ark`,
which refuse such records (the other kaldiio formats -- Kaldi binary and text matrices, NPY
without pickles, WAV/FLAC -- are read as kaldiio reads them) and turn a missing file, an offset
past the end of the file or a corrupt record into a one-line error.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from kaldiio.matio import _parse_arkpath, read_kaldi, read_token
from kaldiio.utils import MultiFileDescriptor, open_like_kaldi, seekable

from sertk.errors import DataError

PICKLE_FLAG = b"PKL"


def _prefix(key: str | None) -> str:
    return f"utterance {key}: " if key else ""


def _read_record(fd: Any, where: str) -> Any:
    """One kaldiio record at the current position of ``fd``; a pickle is refused."""
    head = fd.read(5)
    if not head:
        raise DataError(f"{where}: no data at this position (past the end of the file?)")
    if head.startswith(PICKLE_FLAG):
        raise DataError(f"{where}: holds a pickled Python object (kaldiio 'PKL' record); "
                        "sertk never unpickles data files")
    if seekable(fd):
        fd.seek(-len(head), 1)
    else:
        fd = MultiFileDescriptor(io.BytesIO(head), fd)
    return read_kaldi(fd)


def load_mat(entry: str, key: str | None = None) -> Any:
    """``kaldiio.load_mat`` without unpickling: a matrix (or ``(rate, samples)`` for audio)
    from an scp entry ``file.ark:offset[slices]``, ``file.mat`` or ``cmd |``."""
    entry = str(entry).strip()
    pre = _prefix(key)
    if not entry:
        raise DataError(f"{pre}empty ark entry")
    pipe = entry.endswith("|") or entry.startswith("|")
    path, offset, slices = (entry, None, None) if pipe else _parse_arkpath(entry)
    if not pipe:
        if not os.path.isfile(path):
            raise DataError(f"{pre}ark file not found: {path} (entry {entry})")
        size = os.path.getsize(path)
        if offset is not None and offset >= size:
            raise DataError(f"{pre}offset {offset} is past the end of {path} ({size} bytes)")
    try:
        with open_like_kaldi(path, "rb") as fd:
            if offset is not None:
                fd.seek(offset)
            mat = _read_record(fd, f"{pre}{entry}")
    except DataError:
        raise
    except Exception as exc:  # kaldiio raises many types (AssertionError, ValueError...)
        raise DataError(f"{pre}cannot read {entry}: {str(exc).strip() or type(exc).__name__}"
                        ) from None
    if slices is not None:
        mat = (mat[0], mat[1][slices]) if isinstance(mat, tuple) else mat[slices]
    return mat


class ScpReader(Mapping):
    """A lazy ``{key: matrix}`` view of an scp file (like ``kaldiio.load_scp``), read with
    :func:`load_mat`."""

    def __init__(self, path: str | Path):
        from sertk.data.kaldi_table import read_table

        self.path = Path(path)
        self.entries = read_table(self.path, 2, None)

    def __getitem__(self, key: str) -> Any:
        if key not in self.entries:
            raise DataError(f"utterance {key}: not in {self.path}")
        return load_mat(self.entries[key], key)

    def get(self, key: str, default: Any = None) -> Any:
        return self[key] if key in self.entries else default

    def __iter__(self) -> Iterator[str]:
        return iter(self.entries)

    def __len__(self) -> int:
        return len(self.entries)

    def __contains__(self, key: object) -> bool:
        return key in self.entries


def load_scp(path: str | Path) -> ScpReader:
    return ScpReader(path)


def load_ark(path: str | Path) -> Iterator[tuple[str, Any]]:
    """``(key, matrix)`` for every record of an ark file (``kaldiio.load_ark``), no pickles."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"ark file not found: {path}")
    with path.open("rb") as fd:
        while True:
            try:
                key = read_token(fd)
            except UnicodeDecodeError:
                raise DataError(f"{path}: not a Kaldi ark (bad key at byte {fd.tell()})") \
                    from None
            if key is None:
                return
            try:
                mat = _read_record(fd, f"{path}: record {key}")
            except DataError:
                raise
            except Exception as exc:
                raise DataError(f"{path}: cannot read record {key}: "
                                f"{str(exc).strip() or type(exc).__name__}") from None
            yield key, mat


def load_matrix(path: str | Path, what: str = "matrix") -> np.ndarray:
    """A single matrix file (e.g. ``cmvn.ark`` written by ``kaldiio.save_mat``)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{what} not found: {path}")
    mat = load_mat(str(path))
    if isinstance(mat, tuple):
        raise DataError(f"{path}: holds audio, not a {what}")
    return np.asarray(mat)
