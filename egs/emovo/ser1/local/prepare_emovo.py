#!/usr/bin/env python3
"""EMOVO's knowledge for sertk.data.release: prepare_emovo.py CORPUS_ROOT TABLE DATA_DIR.

EMOVO (Costantini et al. 2014, "EMOVO Corpus: an Italian Emotional Speech Database", LREC):
6 actors (f1 f2 f3 female, m1 m2 m3 male) read 14 sentences in 7 emotional states. The release
(EMOVO.zip) unpacks to ``EMOVO/<actor>/<emo>-<actor>-<sentence>.wav`` (48 kHz stereo):
emotion dis (disgusto), gio (gioia), neu (neutro), pau (paura), rab (rabbia), sor (sorpresa),
tri (tristezza); sentence b1-b3 (short), l1-l4 (long), n1-n5 (nonsense), d1-d2 (questions), as
listed in the paper and the release's "LA STRUTTURA DI EMOVO" document.
"""

from __future__ import annotations

import re
from pathlib import Path

from sertk.data.release import Skip, TableRow, Utterance, run_cli

LABELS = {"dis": "disgust", "gio": "happy", "neu": "neutral", "pau": "fearful", "rab": "angry",
          "sor": "surprised", "tri": "sad"}
TEXTS = {
    "b1": "Gli operai si alzano presto.",
    "b2": "I vigili sono muniti di pistola.",
    "b3": "La cascata fa molto rumore.",
    "l1": "L'autunno prossimo Tony partirà per la Spagna: nella prima metà di ottobre.",
    "l2": "Ora prendo la felpa di là ed esco per fare una passeggiata.",
    "l3": "Un attimo dopo s'è incamminato... ed è inciampato.",
    "l4": "Vorrei il numero telefonico del Signor Piatti.",
    "n1": "La casa forte vuole col pane.",
    "n2": "La forza trova il passo e l'aglio rosso.",
    "n3": "Il gatto sta scorrendo nella pera.",
    "n4": "Insalata pastasciutta coscia d'agnello limoncello.",
    "n5": "Uno quarantatré dieci mille cinquantasette venti.",
    "d1": "Sabato sera cosa farà?",
    "d2": "Porti con te quella cosa?",
}
NAME = re.compile(r"^([a-z]{3})-([fm][1-3])-([bldn]\d)$", re.IGNORECASE)


def describe(row: TableRow, path: Path) -> Utterance:
    m = NAME.match(path.stem)
    if not m:
        raise Skip("file name is not <emotion>-<actor>-<sentence>")
    emo, actor, sentence = (g.lower() for g in m.groups())
    if emo not in LABELS or sentence not in TEXTS:
        raise Skip(f"unknown emotion {emo} or sentence {sentence}")
    if emo != row.emotion:
        raise Skip(f"file name says {emo}, the table {row.emotion}")
    return Utterance(spk=actor, gender=actor[0], text=TEXTS[sentence])


if __name__ == "__main__":
    run_cli(LABELS, describe)
