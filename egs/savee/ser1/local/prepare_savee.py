#!/usr/bin/env python3
"""SAVEE's knowledge for sertk.data.release: prepare_savee.py CORPUS_ROOT TABLE DATA_DIR.

SAVEE (Surrey Audio-Visual Expressed Emotion; Haq & Jackson 2009, AVSP): four male British
English speakers DC, JE, JK, KL, 15 TIMIT sentences per emotion (30 neutral), 120 utterances
each. The release's AudioData/Info.txt: 44.1 kHz WAV files AudioData/<speaker>/<e><nn>.wav,
the letters a d f h n sa su = anger disgust fear happiness neutral sadness surprise and nn the
sentence number (d03.wav: the 3rd disgust sentence). EmoBox's table names the files as Kaggle's
flattened copy does (DC_a01.wav). No transcripts: the release has no sentence list per file.

The shared matcher finds DC_a01.wav anywhere by its name, but not AudioData/DC/a01.wav (another
name, and four speakers share it): rows whose flattened file is absent are pointed at
<speaker>/<e><nn>.wav (the folder named after the speaker) before matching; the table as
matched is kept in DATA_DIR/../local/<name>_table.tsv.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from sertk.data.release import (
    Skip,
    TableRow,
    Utterance,
    read_table,
    run_cli,
    scan_release,
    write_rows,
)
from sertk.errors import DataError

# EmoBox label strings (the file names' emotion letters) -> sertk's vocabulary
LABELS = {"a": "angry", "d": "disgust", "f": "fearful", "h": "happy", "n": "neutral",
          "sa": "sad", "su": "surprised"}
SPEAKERS = ("DC", "JE", "JK", "KL")  # all male (AudioData/Info.txt)
NAME = re.compile(r"^(?:(DC|JE|JK|KL)_)?(a|d|f|h|n|sa|su)(\d\d)$", re.IGNORECASE)
KEY = re.compile(r"^savee-(DC|JE|JK|KL)-((?:a|d|f|h|n|sa|su)\d\d)$")


def per_speaker_table(root: Path, rows: list[TableRow]) -> tuple[list[TableRow], int]:
    """The rows, each pointed at <speaker>/<e><nn>.wav where the release has that file and
    not the table's flattened DC_a01.wav. Returns the rows and how many were redirected."""
    files = scan_release(root)
    names = {rel.rsplit("/", 1)[-1].lower() for rel in files}
    nested: dict[tuple[str, str], str] = {}
    # the copy under a folder AudioData first, then the shallowest
    for rel in sorted(files, key=lambda r: ("audiodata/" not in r.lower(), r.count("/"), r)):
        parts = rel.split("/")
        if len(parts) >= 2 and parts[-2].upper() in SPEAKERS:
            nested.setdefault((parts[-2].upper(), parts[-1].lower()), rel)
    out, moved = [], 0
    for row in rows:
        m = KEY.match(row.key)
        name = row.wav.rsplit("/", 1)[-1]
        rel = nested.get((m.group(1), f"{m.group(2)}.wav")) if m else None
        if name.lower() not in names and rel is not None:
            out.append(TableRow(row.key, rel, row.emotion, row.fold))
            moved += 1
        else:
            out.append(row)
    return out, moved


def describe(row: TableRow, path: Path) -> Utterance:
    key = KEY.match(row.key)
    m = NAME.match(path.stem)
    if not key or not m:
        raise Skip("file name is not [SPK_]<emotion letters><sentence number> (e.g. DC_a01)")
    spk = (m.group(1) or path.parent.name).upper()
    if spk != key.group(1):
        raise Skip(f"the file's speaker is {spk or '?'}, the table's {key.group(1)}")
    emo = m.group(2).lower()
    if emo != row.emotion or f"{emo}{m.group(3)}" != key.group(2):
        raise Skip(f"file name says {emo}{m.group(3)}, the table {key.group(2)} ({row.emotion})")
    return Utterance(spk=spk, gender="m", utt=f"{spk}-{key.group(2)}")


def main(argv: list[str]) -> None:
    if len(argv) != 3:
        sys.exit(f"usage: {Path(sys.argv[0]).name} CORPUS_ROOT TABLE DATA_DIR")
    root, out = Path(argv[0]), Path(argv[2])
    try:
        rows, moved = per_speaker_table(root, read_table(argv[1]))
    except DataError as exc:
        sys.exit(f"{Path(sys.argv[0]).name}: error: {exc}")
    table = out.parent / "local" / f"{out.name}_table.tsv"
    write_rows(table, rows)
    if moved:
        print(f"{moved} table rows matched in the per-speaker layout "
              f"(<speaker>/<e><nn>.wav); the table as matched: {table}")
    run_cli(LABELS, describe, argv=[str(root), str(table), str(out)])


if __name__ == "__main__":
    main(sys.argv[1:])
