#!/usr/bin/env python3
"""CASIA's knowledge for sertk.data.release: prepare_casia.py CORPUS_ROOT TABLE DATA_DIR.

CASIA Chinese emotional speech corpus (Tao, Liu, Zhang & Jia, Blizzard Challenge 2008 workshop):
four professional speakers read the same texts in six emotions; the public part holds sentences
201-250 as ``<speaker>/<emotion>/<nnn>.wav`` (speaker folders liuchanhg, wangzhe, zhaoquanyin,
ZhaoZuoxiang: the release's own spelling and case). The corpus is described as 2 male and
2 female speakers; which is which (Wang Zhe and Zhao Zuoxiang male, Liu Chang and Zhao Quanyin
female) comes from public code using the same voices, not from the corpus's own documentation.
The sentence texts are not part of the public release: no transcripts.
"""

from __future__ import annotations

import re
from pathlib import Path

from sertk.data.release import Skip, TableRow, Utterance, run_cli

# EmoBox label strings -> sertk's vocabulary
LABELS = {"angry": "angry", "fear": "fearful", "happy": "happy", "neutral": "neutral",
          "sad": "sad", "surprise": "surprised"}
GENDER = {"liuchanhg": "f", "wangzhe": "m", "zhaoquanyin": "f", "zhaozuoxiang": "m"}
NAME = re.compile(r"^\d{3}$")


def describe(row: TableRow, path: Path) -> Utterance:
    spk, emo = path.parent.parent.name.lower(), path.parent.name.lower()
    if spk not in GENDER:
        raise Skip(f"folder {path.parent.parent.name!r} is not one of CASIA's speakers")
    if not NAME.match(path.stem):
        raise Skip("file name is not the 3-digit sentence number")
    if emo != row.emotion:
        raise Skip(f"emotion folder says {emo}, the table {row.emotion}")
    # the table's key is casia-<nnn>-<speaker>-<emotion>
    if row.key.split("-")[1:3] != [path.stem, spk]:
        raise Skip(f"file is sentence {path.stem} of {spk}, the table's key is {row.key}")
    return Utterance(spk=spk, gender=GENDER[spk])


if __name__ == "__main__":
    run_cli(LABELS, describe)
