#!/usr/bin/env python3
"""ShEMO's knowledge for sertk.data.release: prepare_shemo.py CORPUS_ROOT TABLE DATA_DIR.

ShEMO (Sharif Emotional Speech Database; Mohamad Nezami et al. 2019, Language Resources and
Evaluation 53(1)): 3000 Persian utterances of 87 speakers (31 female, 56 male) from radio
plays. The release (github.com/pariajm/sharif-emotional-speech-dataset) is female.zip and
male.zip, unpacked to ``female/F01A01.wav`` and ``male/M01A01.wav`` (44.1 kHz), and the labels
and transcripts file ``shemo.json``. A name is gender F/M, speaker number (numbered per gender:
F01 and M01 are different people), emotion letter (A anger, F fear, H happiness, N neutral,
S sadness, W surprise) and the utterance's number within that speaker and emotion.

``shemo.json`` maps each name to speaker_id, gender, emotion, transcript and ipa (an older
copy is a list of such objects with an ``id``). 162 clips of the zips have no entry in it
(github.com/mansourehk/ShEMO issue #2); EmoBox used only the clips it lists, 2838.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

from sertk.data.release import Skip, TableRow, Utterance, run_cli
from sertk.errors import DataError

LABELS = {"angry": "angry", "fearful": "fearful", "happy": "happy", "neutral": "neutral",
          "sad": "sad", "surprised": "surprised"}
LETTERS = {"A": "angry", "F": "fearful", "H": "happy", "N": "neutral", "S": "sad",
           "W": "surprised"}
GENDERS = {"F": ("f", "female"), "M": ("m", "male")}
NAME = re.compile(r"^([FM])(\d\d)([AFHNSW])(\d\d)$")
METADATA = "shemo.json"
DOWNLOAD = ("https://github.com/pariajm/sharif-emotional-speech-dataset/raw/master/"
            "shemo.json")


def find_metadata(root: Path) -> Path:
    """``root/shemo.json``, else the shallowest file of that name (any case) under ``root``."""
    if (root / METADATA).is_file():
        return root / METADATA
    found = sorted((p for p in root.rglob("*") if p.name.lower() == METADATA and p.is_file()),
                   key=lambda p: (len(p.parts), str(p)))
    if not found:
        raise DataError(f"{METADATA} not found under {root} (the release's labels and "
                        f"transcripts: {DOWNLOAD})")
    return found[0]


def read_metadata(path: Path) -> dict[str, dict[str, str]]:
    """Utterance name -> its entry (the dict layout or the older list layout)."""
    try:
        data = json.loads(path.read_bytes().decode("utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: not a UTF-8 JSON file: {exc}") from None
    if isinstance(data, list):
        if not all(isinstance(e, dict) and isinstance(e.get("id"), str) for e in data):
            raise DataError(f"{path}: a list of entries must give each an \"id\"")
        data = {e["id"]: e for e in data}
    if not isinstance(data, dict) or not data:
        raise DataError(f"{path}: expected an object of utterances (\"F01A01\": {{...}})")
    for name, entry in data.items():
        if not isinstance(entry, dict) or not all(
                isinstance(entry.get(k), str) for k in ("gender", "emotion", "transcript")):
            raise DataError(f"{path}: entry {name!r} lacks gender, emotion or transcript")
    return data


class Shemo:
    """The release under ``root``; shemo.json is read on first use."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._meta: dict[str, dict[str, str]] | None = None
        self._path: Path | None = None

    def meta(self) -> dict[str, dict[str, str]]:
        if self._meta is None:
            self._path = find_metadata(self.root)
            self._meta = read_metadata(self._path)
        return self._meta

    def describe(self, row: TableRow, path: Path) -> Utterance:
        m = NAME.match(path.stem)
        if not m:
            raise Skip("file name is not GSSENN (gender, speaker, emotion letter, number)")
        sex, number, letter, _ = m.groups()
        spk = f"{sex}{number}"
        if LETTERS[letter] != row.emotion:
            raise Skip(f"file name says {LETTERS[letter]}, the table {row.emotion}")
        gender, folder = GENDERS[sex]
        if path.parent.name.lower() in ("female", "male") and path.parent.name.lower() != folder:
            raise Skip(f"a {folder} speaker's file in the folder {path.parent.name}")
        entry = self.meta().get(path.stem)
        if entry is None:
            raise Skip(f"no entry in {self._path}")
        said = (entry.get("speaker_id", spk), entry["gender"].lower(), entry["emotion"].lower())
        if said != (spk, folder, row.emotion):
            raise Skip(f"{METADATA} says speaker {said[0]} {said[1]} {said[2]}, the file name "
                       f"{spk} {folder} {row.emotion}")
        text = " ".join(entry["transcript"].replace("\ufeff", " ").split())
        if not text:
            raise Skip(f"empty transcript in {METADATA}")
        return Utterance(spk=spk, gender=gender, text=text)

    def extra_reason(self, rel: str) -> str | None:
        """Why a release file is not in the table: one of the clips shemo.json lacks."""
        name = rel.rsplit("/", 1)[-1].rsplit(".", 1)[0]
        if NAME.match(name) and name not in self.meta():
            return f"not in {METADATA} (no label or transcript; EmoBox left these out)"
        return None


if __name__ == "__main__":
    release = Shemo(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("."))
    run_cli(LABELS, release.describe, extra_reason=release.extra_reason)
