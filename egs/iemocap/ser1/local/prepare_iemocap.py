#!/usr/bin/env python3
"""IEMOCAP's knowledge for sertk.data.release: prepare_iemocap.py CORPUS_ROOT TABLE DATA_DIR.

IEMOCAP (Busso et al. 2008, "IEMOCAP: interactive emotional dyadic motion capture database",
Language Resources and Evaluation 42(4)): 5 sessions, each a female and a male actor in
improvised and scripted dialogs. The release (IEMOCAP_full_release) holds, per session,

* ``SessionN/sentences/wav/<dialog>/<utt>.wav``: one file per utterance; ``<utt>`` is
  ``SesNN<F|M>_<dialog part>_<F|M>NNN`` whose last letter is the speaking actor's gender (the one
  after ``SesNN`` names the actor wearing the markers);
* ``SessionN/dialog/EmoEvaluation/<dialog>.txt``: per utterance a line
  ``[start - end]<TAB><utt><TAB><label><TAB>[V, A, D]`` (the consensus label, mean valence,
  activation, dominance on 1-5) followed by the evaluators' lines, e.g. ``C-E2:<TAB>Neutral;
  Anger;<TAB>(comment)`` (categories chosen by evaluator E2; F1/M1 are the actors' self-ratings)
  and ``A-E3:<TAB>val 3; act 2; dom  2;<TAB>()``;
* ``SessionN/dialog/transcriptions/<dialog>.txt``: ``<utt> [start-end]: <transcript>``.

Speaker = session + the utterance's own gender (``Ses01_F``). Written beside the usual tables:
``utt2dim`` (arousal valence dominance, the bracket's means) and ``utt2listener_emo``, one
``<evaluator>:<category>`` per category chosen (an evaluator choosing two gives two tokens).
EmoBox keeps the 4-class set (ang, hap + exc merged as happy, neu, sad); every other release
file is reported with its consensus label (fru, sur, xxx = no majority, ...).
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

from sertk.data.release import Skip, TableRow, Utterance, run_cli
from sertk.errors import DataError

# EmoBox label strings -> sertk's vocabulary (exc and hap merged, the usual 4-class setup)
LABELS = {"ang": "angry", "exc": "happy", "hap": "happy", "neu": "neutral", "sad": "sad"}
# the evaluators' category names (EmoEvaluation's C- lines) -> sertk's vocabulary
CATEGORIES = {"neutral": "neutral", "neutral state": "neutral", "frustration": "frustrated",
              "anger": "angry", "sadness": "sad", "happiness": "happy", "excited": "excited",
              "surprise": "surprised", "fear": "fearful", "disgust": "disgust", "other": "other"}
UTT = re.compile(r"^(Ses\d\d)[FM]_.+_([FM])[0-9]{3}$")
HEAD = re.compile(r"^\[\s*[\d.]+\s*-\s*[\d.]+\s*\]\s+(\S+)\s+(\S+)\s+"
                  r"\[\s*([\d.]+)\s*,\s*([\d.]+)\s*,\s*([\d.]+)\s*\]$")
CAT_LINE = re.compile(r"^C-([A-Za-z]+\d*)\s*:(.*)$")
TRANSCRIPT = re.compile(r"^(Ses\S+)\s+\[[^\]]*\]\s*:\s?(.*)$")
KINDS = ("EmoEvaluation", "transcriptions")


@dataclass
class Evaluation:
    """One utterance of an EmoEvaluation file."""

    label: str
    valence: str
    arousal: str
    dominance: str
    listeners: list[tuple[str, str]] = field(default_factory=list)  # (evaluator, category)


def read_text(path: Path) -> list[str]:
    """The lines of a metadata file (UTF-8 with or without BOM, else Latin-1; any line ends)."""
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
    return text.splitlines()


def category(name: str) -> str:
    """An evaluator's category name as one lower-case token."""
    name = " ".join(name.lower().split())
    first = re.split(r"[\s:,]", name, maxsplit=1)[0]  # "Other: amused" -> other
    return (CATEGORIES.get(name) or CATEGORIES.get(first)
            or re.sub(r"[^a-z0-9]+", "_", name).strip("_") or "other")


def parse_evaluation(path: Path) -> dict[str, Evaluation]:
    """The utterances of one ``EmoEvaluation/<dialog>.txt``."""
    evals: dict[str, Evaluation] = {}
    current: Evaluation | None = None
    for lineno, line in enumerate(read_text(path), 1):
        line = line.strip()
        if not line or line.startswith("%"):
            continue
        if line.startswith("["):
            m = HEAD.match(line)
            if not m:
                raise DataError(f"{path}:{lineno}: not '[start - end] utt label [V, A, D]'")
            utt, label, v, a, d = m.groups()
            current = evals[utt] = Evaluation(label, v, a, d)
        elif (m := CAT_LINE.match(line)) is not None:
            if current is None:
                raise DataError(f"{path}:{lineno}: evaluator line before any utterance line")
            names = m.group(2).split("(", 1)[0]  # categories; then the comment in ()
            for cat in dict.fromkeys(category(n) for n in names.split(";") if n.strip()):
                current.listeners.append((m.group(1), cat))
    if not evals:
        raise DataError(f"{path}: no utterance lines ('[start - end] utt label [V, A, D]')")
    return evals


def parse_transcription(path: Path) -> dict[str, str]:
    """``utt -> transcript`` of one ``transcriptions/<dialog>.txt``."""
    texts = {m.group(1): m.group(2).strip() for line in read_text(path)
             if (m := TRANSCRIPT.match(line.strip())) is not None}
    if not texts:
        raise DataError(f"{path}: no transcript lines ('<utt> [start-end]: text')")
    return texts


class Release:
    """The dialog-level metadata of one IEMOCAP release, read on first use."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self._index: dict[tuple[str, str], list[Path]] | None = None
        self._evals: dict[Path, dict[str, Evaluation]] = {}
        self._texts: dict[Path, dict[str, str]] = {}

    def _find(self, wav: Path, kind: str) -> Path:
        """``SessionN/dialog/<kind>/<dialog>.txt`` beside the wav's session, else the one
        file of that name found under the root."""
        dialog = wav.stem.rsplit("_", 1)[0]
        beside = wav.parents[3] / "dialog" / kind / f"{dialog}.txt" if len(wav.parents) > 3 \
            else None
        if beside is not None and beside.is_file():
            return beside
        if self._index is None:
            self._index = {}
            for p in sorted(self.root.rglob("*.txt")):
                if p.parent.name in KINDS and not p.name.startswith("._") and p.is_file():
                    self._index.setdefault((p.parent.name, p.stem), []).append(p)
        found = self._index.get((kind, dialog), [])
        if not found:
            raise DataError(f"{beside or self.root}: IEMOCAP's {kind} file of dialog {dialog} "
                            f"not found (needed for {wav})")
        return found[0]

    def evaluation(self, wav: Path) -> tuple[Path, Evaluation | None]:
        path = self._find(wav, "EmoEvaluation")
        if path not in self._evals:
            self._evals[path] = parse_evaluation(path)
        return path, self._evals[path].get(wav.stem)

    def transcript(self, wav: Path) -> tuple[Path, str | None]:
        path = self._find(wav, "transcriptions")
        if path not in self._texts:
            self._texts[path] = parse_transcription(path)
        return path, self._texts[path].get(wav.stem)

    def describe(self, row: TableRow, path: Path) -> Utterance:
        m = UTT.match(path.stem)
        if not m:
            raise Skip("file name is not an IEMOCAP utterance id (SesNN<F|M>_..._<F|M>NNN)")
        session, gender = m.groups()
        evals, ev = self.evaluation(path)
        if ev is None:
            raise Skip(f"no line for {path.stem} in {evals}")
        if ev.label != row.emotion:
            raise Skip(f"{evals.name} says {ev.label}, the table {row.emotion}")
        if not ev.listeners:
            raise Skip(f"no evaluator (C-) lines for {path.stem} in {evals}")
        texts, text = self.transcript(path)
        if text is None:
            raise Skip(f"no line for {path.stem} in {texts}")
        listeners = " ".join(f"{who}:{cat}" for who, cat in ev.listeners)
        return Utterance(spk=f"{session}_{gender}", gender=gender.lower(), text=text,
                         tables={"utt2dim": f"{ev.arousal} {ev.valence} {ev.dominance}",
                                 "utt2listener_emo": listeners})

    def extra_reason(self, rel: str) -> str | None:
        """Why EmoBox left a release file out: its consensus label is not one of the 4."""
        path = self.root / rel
        if not UTT.match(path.stem):
            return None
        try:
            _, ev = self.evaluation(path)
        except DataError:
            return None
        if ev is None or ev.label in LABELS:
            return None
        return f"label {ev.label}: not one of EmoBox's 4 classes"


if __name__ == "__main__":
    release = Release(sys.argv[1] if len(sys.argv) > 1 else ".")
    run_cli(LABELS, release.describe, extra_reason=release.extra_reason)
