#!/usr/bin/env python3
"""TurEV-DB's knowledge for sertk.data.release: prepare_turevdb.py CORPUS_ROOT TABLE DATA_DIR.

Turkish Emotion-Voice Database (Canpolat, Ormanoğlu & Zeyrek, SLTU-CCURL 2020;
github.com/Xeonen/TurEV-DB): 82 Turkish words uttered by 6 actors in 4 emotions, 1735 files.
The repository holds ``Sound Source/<Emotion>/<actor>_<code>_<word>.wav``: actor a 4-digit id
(1157 1234 1358 1984 6783 7895; 1157 recorded angry and sad only), code the emotion, one per
folder (kz angry, sk calm, mt happy, hl sad: kızgın, sakin, mutlu, hüzünlü), word the spoken
word in ASCII spelling (``acik`` for açık; ``ogul1`` is one actor's ``ogul``), kept as the
transcript. The repository also holds filtered copies of the test files under
``Model Output for Test Data/<variant>/sound/<Emotion>/`` (reported as second copies). The
actors' genders are not published with the release.
"""

from __future__ import annotations

import re
from pathlib import Path

from sertk.data.release import Skip, TableRow, Utterance, run_cli

# EmoBox label strings -> sertk's vocabulary
LABELS = {"Angry": "angry", "Calm": "calm", "Happy": "happy", "Sad": "sad"}
CODES = {"kz": "Angry", "sk": "Calm", "mt": "Happy", "hl": "Sad"}
ACTORS = {"1157", "1234", "1358", "1984", "6783", "7895"}
NAME = re.compile(r"^(\d{4})_([a-z]{2})_([a-z]+)(\d*)$", re.IGNORECASE)


def describe(row: TableRow, path: Path) -> Utterance:
    m = NAME.match(path.stem)
    if not m:
        raise Skip("file name is not <actor>_<emotion code>_<word>")
    actor, code, word = m.group(1), m.group(2).lower(), m.group(3).lower()
    if actor not in ACTORS:
        raise Skip(f"unknown actor {actor}")
    if CODES.get(code) != row.emotion:
        raise Skip(f"file name says {CODES.get(code, code)}, the table {row.emotion}")
    folder = path.parent.name
    if folder.capitalize() in CODES.values() and folder.capitalize() != row.emotion:
        raise Skip(f"in folder {folder}, the table says {row.emotion}")
    spk = f"spk{actor}"
    return Utterance(spk=spk, text=word, utt=f"{spk}-{path.stem}")


if __name__ == "__main__":
    run_cli(LABELS, describe)
