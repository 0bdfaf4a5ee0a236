#!/usr/bin/env python3
"""ESD's knowledge for sertk.data.release: prepare_esd.py CORPUS_ROOT TABLE DATA_DIR.

Emotional Speech Dataset (Zhou et al., ICASSP 2021; Speech Communication 137, 2022;
github.com/HLTSingapore/Emotional-Speech-Data): speakers 0001-0010 read 350 Mandarin
sentences, 0011-0020 350 English sentences, each in 5 emotions. The release holds
``<spk>/<Emotion>/[train|evaluation|test/]<spk>_<nnnnnn>.wav`` (utterance numbers 1-350
neutral, 351-700 angry, 701-1050 happy, 1051-1400 sad, 1401-1750 surprise) and one transcript
file per speaker, ``<spk>/<spk>.txt``: ``<spk>_<nnnnnn> TAB text TAB emotion`` lines, in
UTF-8, UTF-16 or GB2312 (Mandarin) / Latin-1 (English) depending on the speaker, a few lines
without tabs. Genders: the release's ReadMe.txt (0001-0003, 0007, 0009, 0015-0019 female).
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

from sertk.data.release import Skip, TableRow, Utterance, run_cli
from sertk.errors import DataError

# EmoBox label strings -> sertk's vocabulary
LABELS = {"Angry": "angry", "Happy": "happy", "Neutral": "neutral", "Sad": "sad",
          "Surprise": "surprised"}
# blocks of 350 utterance numbers per emotion, in the release's order
BLOCKS = ("Neutral", "Angry", "Happy", "Sad", "Surprise")
FEMALE = {"0001", "0002", "0003", "0007", "0009", "0015", "0016", "0017", "0018", "0019"}
SPEAKERS = {f"{i:04d}" for i in range(1, 21)}
# the last field of a transcript line (English names; Mandarin speakers' files use Chinese)
EMOTION_WORDS = {w.lower() for w in BLOCKS} | {"中立", "生气", "快乐", "伤心", "惊喜"}
NAME = re.compile(r"^(\d{4})_(\d{6})$")
LINE = re.compile(r"^\s*(\d{4}_\d{6})\s+(.*?)\s*$")


def language(spk: str) -> str:
    return "zh" if int(spk) <= 10 else "en"


def decode(raw: bytes, spk: str, path: Path) -> str:
    """The transcript file's text: BOM or NUL bytes say UTF-16; else UTF-8, then the legacy
    code page of the speaker's language (GB18030 for Mandarin, CP1252/Latin-1 for English)."""
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        return raw.decode("utf-16")
    if raw[:200].count(b"\x00") > 10:  # UTF-16 without a BOM
        return raw.decode("utf-16-le" if raw[1:2] == b"\x00" else "utf-16-be")
    for enc in ("utf-8-sig", "gb18030" if language(spk) == "zh" else "cp1252", "latin-1"):
        try:
            return raw.decode(enc)
        except UnicodeDecodeError:
            continue
    raise DataError(f"{path}: cannot decode the transcript file")  # unreachable: latin-1


@cache
def transcripts(txt: Path, spk: str) -> dict[str, str]:
    """``<spk>_<nnnnnn>`` -> transcript, from one speaker's ``<spk>.txt``."""
    try:
        text = decode(txt.read_bytes(), spk, txt)
    except OSError as exc:
        raise DataError(f"{txt}: cannot read the transcript file ({exc})") from exc
    out: dict[str, str] = {}
    for line in text.splitlines():
        m = LINE.match(line)
        if not m:
            continue
        fields = [f.strip() for f in m.group(2).split("\t") if f.strip()]
        if len(fields) == 1:  # no tabs: the emotion, if any, is the last word
            words = fields[0].rsplit(None, 1)
            fields = words if len(words) == 2 and words[1].lower() in EMOTION_WORDS else fields
        if len(fields) > 1 and fields[-1].lower() in EMOTION_WORDS:
            fields = fields[:-1]
        if fields:
            out[m.group(1)] = " ".join(fields)
    if not out:
        raise DataError(f"{txt}: no '<spk>_<nnnnnn> TAB text TAB emotion' lines")
    return out


def transcript_file(spk: str, path: Path) -> Path:
    """``<spk>/<spk>.txt`` in the speaker folder above the audio file."""
    for folder in list(path.parents)[:4]:
        for name in (f"{spk}.txt", f"{spk}.TXT"):
            if (folder / name).is_file():
                return folder / name
    raise DataError(f"transcript file {spk}/{spk}.txt not found in the speaker folder above "
                    f"{path} (the release has one per speaker)")


def describe(row: TableRow, path: Path) -> Utterance:
    m = NAME.match(path.stem)
    if not m or m.group(1) not in SPEAKERS:
        raise Skip("file name is not <speaker 0001-0020>_<utterance number>")
    spk, num = m.group(1), int(m.group(2))
    if not 1 <= num <= 5 * 350:
        raise Skip(f"utterance number {num} outside 1-1750")
    if BLOCKS[(num - 1) // 350] != row.emotion:
        raise Skip(f"utterance number {num} is {BLOCKS[(num - 1) // 350]}, the table says "
                   f"{row.emotion}")
    folders = {p.name.lower() for p in list(path.parents)[:2]} & {b.lower() for b in BLOCKS}
    if folders and folders != {row.emotion.lower()}:
        raise Skip(f"in folder {folders.pop()}, the table says {row.emotion}")
    txt = transcript_file(spk, path)
    text = transcripts(txt, spk).get(path.stem)
    if text is None:
        raise Skip(f"no transcript line for {path.stem} in {txt}")
    return Utterance(spk=f"spk{spk}", gender="f" if spk in FEMALE else "m", text=text,
                     tables={"utt2lang": language(spk)})


if __name__ == "__main__":
    run_cli(LABELS, describe)
