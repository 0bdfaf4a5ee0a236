#!/usr/bin/env python3
"""Build the Kaldi data directory of RAVDESS speech from the official layout.

    prepare_ravdess.py CORPUS_ROOT DATA_DIR

CORPUS_ROOT holds ``Actor_XX/MM-VV-EE-II-SS-RR-AA.{wav,flac}`` (Livingstone & Russo 2018).
Fields: modality (03 audio-only), vocal channel (01 speech, 02 song), emotion, intensity,
statement, repetition, actor (odd = male). Speaker = actor; utterance id =
``actorXX_<file name>`` so utterances sort with their speaker. Song files and other
modalities are skipped and counted; a name that does not parse is an error.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from sertk.data.datadir import write_utt2spk
from sertk.data.kaldi_table import write_table
from sertk.errors import DataError

EMOTIONS = {"01": "neutral", "02": "calm", "03": "happy", "04": "sad", "05": "angry",
            "06": "fearful", "07": "disgust", "08": "surprised"}
STATEMENTS = {"01": "KIDS ARE TALKING BY THE DOOR", "02": "DOGS ARE SITTING BY THE DOOR"}
NAME = re.compile(r"^(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)$")


def parse(path: Path) -> dict[str, str] | None:
    """Fields of one file name, or None for a non-speech file (song, video)."""
    m = NAME.match(path.stem)
    if not m:
        raise DataError(f"{path}: file name is not MM-VV-EE-II-SS-RR-AA")
    modality, channel, emo, intensity, statement, rep, actor = m.groups()
    if modality != "03" or channel != "01":
        return None
    if emo not in EMOTIONS or statement not in STATEMENTS or intensity not in ("01", "02"):
        raise DataError(f"{path}: unknown emotion/statement/intensity code")
    if path.parent.name != f"Actor_{actor}":
        raise DataError(f"{path}: actor field {actor} does not match folder {path.parent.name}")
    return {"emotion": EMOTIONS[emo], "actor": actor,
            "gender": "m" if int(actor) % 2 else "f",
            "text": STATEMENTS[statement], "intensity": "strong" if intensity == "02" else
            "normal"}


def main(root: str, data_dir: str) -> None:
    rootp = Path(root)
    if not rootp.is_dir():
        raise DataError(f"RAVDESS root not found: {root}")
    files = sorted(p for p in rootp.glob("Actor_*/*") if p.suffix.lower() in (".wav", ".flac"))
    if not files:
        raise DataError(f"no Actor_XX/*.wav or *.flac files under {root}")
    tables: dict[str, dict[str, str]] = {n: {} for n in
                                         ("wav.scp", "utt2emo", "utt2gender", "text",
                                          "utt2intensity")}
    utt2spk: dict[str, str] = {}
    skipped = 0
    for path in files:
        f = parse(path)
        if f is None:
            skipped += 1
            continue
        utt = f"actor{f['actor']}_{path.stem}"
        if utt in utt2spk:
            raise DataError(f"{path}: duplicate utterance {utt} (both .wav and .flac?)")
        utt2spk[utt] = f"actor{f['actor']}"
        tables["wav.scp"][utt] = str(path.resolve())
        tables["utt2emo"][utt] = f["emotion"]
        tables["utt2gender"][utt] = f["gender"]
        tables["text"][utt] = f["text"]
        tables["utt2intensity"][utt] = f["intensity"]
    out = Path(data_dir)
    for name, tab in tables.items():
        write_table(out / name, tab)
    write_utt2spk(out, utt2spk)
    print(f"{data_dir}: {len(utt2spk)} utterances from {len(set(utt2spk.values()))} actors"
          + (f"; skipped {skipped} non-speech files" if skipped else ""))


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    try:
        main(sys.argv[1], sys.argv[2])
    except DataError as exc:
        sys.exit(f"prepare_ravdess.py: error: {exc}")
