#!/usr/bin/env python3
"""CREMA-D's knowledge for sertk.data.release: prepare_cremad.py CORPUS_ROOT TABLE DATA_DIR.

CREMA-D (Cao et al. 2014, "CREMA-D: Crowd-sourced Emotional Multimodal Actors Dataset", IEEE
Trans. Affective Computing 5(4)); the release is the git-lfs repository
github.com/CheyneyComputerScience/CREMA-D. Its README documents the file names
``AudioWAV/AAAA_SSS_EEE_LL.wav``: actor AAAA (1001-1091), sentence SSS (12 codes, below),
emotion EEE (ANG DIS FEA HAP NEU SAD) and level LL (LO MD HI, XX unspecified); the actors' sex
is in ``VideoDemographics.csv`` (ActorID, Age, Sex, Race, Ethnicity) at the repository root.

A zip download of the repository holds git-lfs pointer stubs instead of audio: every file is
probed and unreadable, empty or silent files are skipped with the reason. Per-rater votes
(finishedResponses.csv) are not read: their layout is not documented precisely enough.
"""

from __future__ import annotations

import csv
import re
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

from sertk.data.release import Skip, TableRow, Utterance, run_cli
from sertk.errors import DataError

LABELS = {"ANG": "angry", "DIS": "disgust", "FEA": "fearful", "HAP": "happy",
          "NEU": "neutral", "SAD": "sad"}
SENTENCES = {  # the README's "Filename labeling conventions"
    "IEO": "It's eleven o'clock",
    "TIE": "That is exactly what happened",
    "IOM": "I'm on my way to the meeting",
    "IWW": "I wonder what this is about",
    "TAI": "The airplane is almost full",
    "MTI": "Maybe tomorrow it will be cold",
    "IWL": "I would like a new alarm clock",
    "ITH": "I think I have a doctor's appointment",
    "DFA": "Don't forget a jacket",
    "ITS": "I think I've seen this before",
    "TSI": "The surface is slick",
    "WSI": "We'll stop in a couple of minutes",
}
LEVELS = {"LO": "low", "MD": "medium", "HI": "high", "XX": "unspecified"}
SEX = {"male": "m", "female": "f"}
NAME = re.compile(r"^(\d{4})_([A-Z]{3})_([A-Z]{3})_([A-Z]{2})$")
DEMOGRAPHICS = "VideoDemographics.csv"
LFS_POINTER = b"version https://git-lfs"


def find_metadata(root: Path, name: str) -> Path:
    """``root/name``, else the shallowest file of that name (any case) under ``root``."""
    if (root / name).is_file():
        return root / name
    found = sorted((p for p in root.rglob("*") if p.name.lower() == name.lower()
                    and p.is_file()), key=lambda p: (len(p.parts), str(p)))
    if not found:
        raise DataError(f"{name} not found under {root} (the release's actor table, at the "
                        "root of the CREMA-D repository)")
    return found[0]


def read_demographics(path: Path) -> dict[str, str]:
    """Actor id -> "m"/"f" from VideoDemographics.csv (BOM, CRLF and quoting tolerated)."""
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
    rows = csv.reader(text.splitlines())
    header = [h.strip() for h in next(rows, [])]
    if "ActorID" not in header or "Sex" not in header:
        raise DataError(f"{path}: header must name ActorID and Sex columns, got {header}")
    col_id, col_sex = header.index("ActorID"), header.index("Sex")
    sexes: dict[str, str] = {}
    for lineno, fields in enumerate(rows, 2):
        if not any(f.strip() for f in fields):
            continue
        if len(fields) <= max(col_id, col_sex):
            raise DataError(f"{path}:{lineno}: expected {len(header)} fields, got {fields}")
        actor, sex = fields[col_id].strip(), fields[col_sex].strip().lower()
        if not re.fullmatch(r"\d{4}", actor) or sex not in SEX:
            raise DataError(f"{path}:{lineno}: expected a 4-digit ActorID and Sex Male or "
                            f"Female, got {fields[col_id]!r} {fields[col_sex]!r}")
        sexes[actor] = SEX[sex]
    if not sexes:
        raise DataError(f"{path}: no actors")
    return sexes


def check_audio(path: Path) -> None:
    """Skip what cannot be used: a git-lfs stub, an unreadable, empty or all-zero file."""
    try:
        info = sf.info(str(path))
    except RuntimeError as exc:  # soundfile.LibsndfileError
        with open(path, "rb") as fh:
            head = fh.read(len(LFS_POINTER))
        if head == LFS_POINTER:
            raise Skip("a git-lfs pointer, not audio (the repository was downloaded as a "
                       "zip or cloned without git-lfs: run `git lfs pull`)") from None
        raise Skip(f"unreadable audio: {exc}") from None
    if info.frames == 0:
        raise Skip("empty audio (0 samples)")
    data, _ = sf.read(str(path), dtype="int16" if info.subtype == "PCM_16" else "float32")
    if not np.any(data):
        raise Skip("silent audio (every sample is 0)")


class Cremad:
    """The release under ``root``; its actor table is read on first use."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._sexes: dict[str, str] | None = None

    def sexes(self) -> dict[str, str]:
        if self._sexes is None:
            self._sexes = read_demographics(find_metadata(self.root, DEMOGRAPHICS))
        return self._sexes

    def describe(self, row: TableRow, path: Path) -> Utterance:
        m = NAME.match(path.stem)
        if not m:
            raise Skip("file name is not AAAA_SSS_EEE_LL (actor, sentence, emotion, level)")
        actor, sentence, emo, level = m.groups()
        if sentence not in SENTENCES or level not in LEVELS:
            raise Skip(f"unknown sentence {sentence} or level {level}")
        if emo != row.emotion:
            raise Skip(f"file name says {emo}, the table {row.emotion}")
        gender = self.sexes().get(actor)
        if gender is None:
            raise Skip(f"actor {actor} is not in {DEMOGRAPHICS}")
        check_audio(path)
        return Utterance(spk=f"spk{actor}", gender=gender, text=SENTENCES[sentence],
                         tables={"utt2intensity": LEVELS[level]})


def extra_reason(rel: str) -> str | None:
    """Why a release file is not in the table (an old clone's misnamed file)."""
    if rel.rsplit("/", 1)[-1] == "1040_ITH_SAD_X.wav":
        return ("misnamed 1040_ITH_SAD_XX.wav of clones before October 2022 (CREMA-D issue "
                "#6): rename it")
    return None


if __name__ == "__main__":
    run_cli(LABELS, Cremad(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(".")).describe,
            extra_reason=extra_reason)
