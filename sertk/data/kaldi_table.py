"""Reading and writing Kaldi text tables (``key value...`` per line).

Keys are sorted in C-locale byte order, as Kaldi's ``LC_ALL=C sort`` does; Python's string
ordering of ASCII keys is that order.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Mapping
from pathlib import Path

from sertk.atomic import atomic_path
from sertk.errors import DataError


def read_table(path: str | Path, min_fields: int = 2, max_fields: int | None = None
               ) -> dict[str, str]:
    """Read a Kaldi table as ``{key: rest_of_line}``, keeping file order.

    A duplicate key, a line with too few or too many fields, or a missing file raises
    :class:`DataError` naming the file and the line number.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    table: dict[str, str] = {}
    with io.StringIO(read_utf8(path), newline=None) as fh:
        for lineno, line in enumerate(fh, 1):
            line = line.rstrip("\n")
            if not line.strip():
                raise DataError(f"{path}:{lineno}: empty line")
            fields = line.split(maxsplit=1)
            key = fields[0]
            rest = fields[1].strip() if len(fields) > 1 else ""
            nfields = 1 + len(rest.split()) if rest else 1
            if nfields < min_fields or (max_fields is not None and nfields > max_fields):
                want = (f"{min_fields}" if max_fields == min_fields
                        else f"at least {min_fields}" if max_fields is None
                        else f"{min_fields}-{max_fields}")
                raise DataError(f"{path}:{lineno}: expected {want} fields, got {nfields}: {line!r}")
            if key in table:
                raise DataError(f"{path}:{lineno}: duplicate key {key!r}")
            table[key] = rest
    return table


def read_utf8(path: Path) -> str:
    """The text of a table; bytes that are not UTF-8 are an error naming the line."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        lineno = data.count(b"\n", 0, exc.start) + 1
        raise DataError(f"{path}:{lineno}: not UTF-8 text (byte "
                        f"0x{data[exc.start]:02x}); convert it, e.g. iconv -f latin1 -t utf-8"
                        ) from None


def write_table(path: str | Path, table: Mapping[str, str] | Iterable[tuple[str, str]]) -> None:
    """Write ``key value`` lines sorted by key (C locale).

    The file is replaced crash-safely (:func:`sertk.atomic.atomic_path`: written beside it,
    synced, then renamed), so that a job reading a data dir while another recipe run rewrites
    it, or a rerun after a crash, sees the old or the new table, never half; a full disk is
    one error naming the file.
    """
    items = table.items() if isinstance(table, Mapping) else table
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp, tmp.open("w", encoding="utf-8") as fh:
        for key, value in sorted(items, key=lambda kv: kv[0]):
            fh.write(f"{key} {value}\n" if value != "" else f"{key}\n")


def is_sorted_unique(keys: list[str]) -> bool:
    return all(a < b for a, b in zip(keys, keys[1:]))
