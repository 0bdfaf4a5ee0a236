#!/usr/bin/env python3
"""SUBESCO's knowledge for sertk.data.release: prepare_subesco.py CORPUS_ROOT TABLE DATA_DIR.

SUST Bangla Emotional Speech Corpus (Sultana, Rahman, Selim & Iqbal, PLOS ONE 16(4):
e0250173, 2021; zenodo.org/record/4526477): 20 actors (10 female, 10 male) read 10 sentences
in 7 emotions, 5 takes each. Files are ``<F|M>_<nn>_<NAME>_S_<sentence>_<EMOTION>_<take>.wav``
(gender, speaker number, speaker name, sentence 1-10, ANGRY DISGUST FEAR HAPPY NEUTRAL SAD
SURPRISE, take 1-5), all in one folder of SUBESCO.zip; the release has one name with a stray
bracket (``F_02_MONIKA_S_2_SURPRISE_3].wav``), which EmoBox lists as it is. Speaker = gender
+ number (F_01 ... M_10). The sentences' text is not used (no transcript file).
"""

from __future__ import annotations

import re
from pathlib import Path

from sertk.data.release import Skip, TableRow, Utterance, run_cli

# EmoBox label strings -> sertk's vocabulary
LABELS = {"angry": "angry", "disgust": "disgust", "fear": "fearful", "happy": "happy",
          "neutral": "neutral", "sad": "sad", "surprise": "surprised"}
NAME = re.compile(r"^([MF])_(\d{2})_([A-Z]+)_S_(\d{1,2})_([A-Z]+)_(\d)\]?$", re.IGNORECASE)


def describe(row: TableRow, path: Path) -> Utterance:
    m = NAME.match(path.stem)
    if not m:
        raise Skip("file name is not <F|M>_<nn>_<NAME>_S_<sentence>_<EMOTION>_<take>")
    sex, num, emo = m.group(1).upper(), m.group(2), m.group(5).lower()
    if not 1 <= int(num) <= 10:
        raise Skip(f"speaker number {num} outside 01-10")
    if emo != row.emotion:
        raise Skip(f"file name says {emo}, the table {row.emotion}")
    return Utterance(spk=f"{sex}_{num}", gender=sex.lower())


if __name__ == "__main__":
    run_cli(LABELS, describe)
