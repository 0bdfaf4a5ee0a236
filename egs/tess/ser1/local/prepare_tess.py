#!/usr/bin/env python3
"""TESS's knowledge for sertk.data.release: prepare_tess.py CORPUS_ROOT TABLE DATA_DIR.

Toronto Emotional Speech Set (Dupuis & Pichora-Fuller 2010, doi:10.5683/SP2/E8H2MF): two
female actors, OAF (older, aged 64) and YAF (younger, aged 26), say the carrier phrase "Say the
word ___" with 200 target words of the NU-6 list in 7 emotions. Files are
``<speaker>_<word>_<emotion>.wav`` (emotion angry, disgust, fear, happy, neutral, ps = pleasant
surprise, sad): flat in the Borealis/Dataverse download, in folders such as ``OAF_Fear/``,
``OAF_Pleasant_surprise/``, ``YAF_pleasant_surprised/`` in the Kaggle copy (found by name).
Speaker and word come from the name; both speakers are female. Public copies name one file
``OA_bite_neutral.wav``: it cannot match the table's ``OAF_bite_neutral.wav`` and is reported
with a hint to rename it.
"""

from __future__ import annotations

import re
from pathlib import Path

from sertk.data.release import Skip, TableRow, Utterance, run_cli

# EmoBox label strings -> sertk's vocabulary ("ps": pleasant surprise)
LABELS = {"angry": "angry", "disgust": "disgust", "fear": "fearful", "happy": "happy",
          "neutral": "neutral", "ps": "surprised", "sad": "sad"}
NAME = re.compile(r"^(OAF|YAF)_([a-z]+)_(angry|disgust|fear|happy|neutral|ps|sad)$",
                  re.IGNORECASE)
OTHER_NAME = re.compile(r"^(OAF|OA|YAF)_([a-z]+)_([a-z_]+)\.wav$", re.IGNORECASE)
EMOTION_NAMES = {"pleasant_surprise": "ps", "pleasant_surprised": "ps", "surprise": "ps",
                 "surprised": "ps", "anger": "angry", "fearful": "fear", "sadness": "sad"}


def describe(row: TableRow, path: Path) -> Utterance:
    m = NAME.match(path.stem)
    if not m:
        raise Skip("file name is not <OAF|YAF>_<word>_<emotion>")
    spk, word, emo = m.group(1).upper(), m.group(2).lower(), m.group(3).lower()
    if emo != row.emotion:
        raise Skip(f"file name says {emo}, the table {row.emotion}")
    return Utterance(spk=spk, gender="f", text=f"Say the word {word}")


def extra_reason(rel: str) -> str | None:
    """A file of a public copy named otherwise than the table (the misnamed
    ``OA_bite_neutral.wav``, or a spelled-out emotion) is reported with the table's name."""
    name = rel.rsplit("/", 1)[-1]
    m = OTHER_NAME.match(name)
    if not m:
        return None
    spk, word, emo = m.group(1).upper(), m.group(2).lower(), m.group(3).lower()
    usual = f"{'OAF' if spk == 'OA' else spk}_{word}_{EMOTION_NAMES.get(emo, emo)}.wav"
    if usual.lower() == name.lower() or EMOTION_NAMES.get(emo, emo) not in LABELS:
        return None
    return f"{usual} under another name in this copy; rename it to {usual} to use it"


if __name__ == "__main__":
    run_cli(LABELS, describe, extra_reason=extra_reason)
