#!/usr/bin/env python3
"""JL-Corpus's knowledge for sertk.data.release: prepare_jlcorpus.py CORPUS_ROOT TABLE DATA_DIR.

JL-Corpus (James, Tian & Watson, Interspeech 2018; github.com/tli725/JL-Corpus, audio on
kaggle.com/datasets/tli725/jl-corpus): New Zealand English read by two female and two male
actors in 5 primary emotions (angry excited happy neutral sad) and 5 secondary ones (anxious
apologetic assertive concerned encouraging). The Kaggle archive holds
``Raw JL corpus (unchecked and unannotated)/JL(wav+txt)/<speaker>_<emotion>_<n><a|b>_<1|2>.wav``
(``Format_Intro.txt``: (Gender)(speaker.ID)_(Emotion)_(Sentence.ID)(session.ID)), speaker
female1 female2 male1 male2, each with its prompt in a ``.txt`` of the same name beside it.
Some copies of the archive unpack the tree twice, once with a lower-case folder name.
"""

from __future__ import annotations

import re
from pathlib import Path

from sertk.data.release import Skip, TableRow, Utterance, run_cli

# EmoBox label strings -> sertk's vocabulary (the secondary emotions keep their own words)
LABELS = {"angry": "angry", "excited": "excited", "happy": "happy", "neutral": "neutral",
          "sad": "sad", "anxious": "anxious", "apologetic": "apologetic",
          "assertive": "assertive", "concerned": "concerned", "encouraging": "encouraging"}
NAME = re.compile(r"^((?:fe)?male)([12])_([a-z]+)_(\d+[ab])_([12])$", re.IGNORECASE)


def read_prompt(path: Path) -> str:
    """The transcript beside the audio file (same name, ``.txt``), or Skip."""
    for txt in (path.with_suffix(".txt"), path.with_suffix(".TXT")):
        if txt.is_file():
            break
    else:
        raise Skip(f"no transcript {path.stem}.txt beside the audio file")
    raw = txt.read_bytes()
    for enc in ("utf-8-sig", "cp1252", "latin-1"):
        try:
            text = raw.decode(enc)
            break
        except UnicodeDecodeError:
            continue
    text = " ".join(text.split())
    if not text:
        raise Skip(f"empty transcript {txt.name}")
    return text


def describe(row: TableRow, path: Path) -> Utterance:
    m = NAME.match(path.stem)
    if not m:
        raise Skip("file name is not <female|male><1|2>_<emotion>_<sentence><a|b>_<1|2>")
    sex, num, emo = m.group(1).lower(), m.group(2), m.group(3).lower()
    if emo != row.emotion:
        raise Skip(f"file name says {emo}, the table {row.emotion}")
    return Utterance(spk=f"{sex}{num}", gender="f" if sex == "female" else "m",
                     text=read_prompt(path))


if __name__ == "__main__":
    run_cli(LABELS, describe)
