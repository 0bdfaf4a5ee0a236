#!/usr/bin/env python3
"""EmoDB's knowledge for sertk.data.release: prepare_emodb.py CORPUS_ROOT TABLE DATA_DIR.

File names are ``SSTTTEV.wav`` (Burkhardt et al. 2005, the release's erklaerung.txt): speaker SS
(03, 08-16), text TTT (a01-a07, b01-b10: ten sentences), emotion letter E (W anger, L boredom,
E disgust, A fear, F happiness, T sadness, N neutral), version V. Speakers 03 10 11 12 15 are
male, 08 09 13 14 16 female.
"""

from __future__ import annotations

import re
from pathlib import Path

from sertk.data.release import Skip, TableRow, Utterance, run_cli

# EmoBox label strings (sic: "boredem") -> sertk's vocabulary
LABELS = {"anger": "angry", "boredem": "bored", "disgust": "disgust", "fear": "fearful",
          "happy": "happy", "neutral": "neutral", "sad": "sad"}
MALE = {"03", "10", "11", "12", "15"}
FEMALE = {"08", "09", "13", "14", "16"}
TEXTS = {
    "a01": "Der Lappen liegt auf dem Eisschrank.",
    "a02": "Das will sie am Mittwoch abgeben.",
    "a04": "Heute abend könnte ich es ihm sagen.",
    "a05": "Das schwarze Stück Papier befindet sich da oben neben dem Holzstück.",
    "a07": "In sieben Stunden wird es soweit sein.",
    "b01": "Was sind denn das für Tüten, die da unter dem Tisch stehen?",
    "b02": "Sie haben es gerade hochgetragen und jetzt gehen sie wieder runter.",
    "b03": "An den Wochenenden bin ich jetzt immer nach Hause gefahren und habe Agnes besucht.",
    "b09": "Ich will das eben wegbringen und dann mit Karl was trinken gehen.",
    "b10": "Die wird auf dem Platz sein, wo wir sie immer hinlegen.",
}
LETTERS = {"W": "anger", "L": "boredem", "E": "disgust", "A": "fear", "F": "happy", "T": "sad",
           "N": "neutral"}
NAME = re.compile(r"^(\d\d)([ab]\d\d)([WLEAFTN])([a-z])$")


def describe(row: TableRow, path: Path) -> Utterance:
    m = NAME.match(path.stem)
    if not m:
        raise Skip("file name is not SSTTTEV (speaker, text, emotion, version)")
    spk, text, emo, _ = m.groups()
    if spk not in MALE | FEMALE or text not in TEXTS:
        raise Skip(f"unknown speaker {spk} or text {text}")
    if LETTERS[emo] != row.emotion:
        raise Skip(f"file name says {LETTERS[emo]}, the table {row.emotion}")
    return Utterance(spk=f"spk{spk}", gender="m" if spk in MALE else "f", text=TEXTS[text])


if __name__ == "__main__":
    run_cli(LABELS, describe)
