#!/usr/bin/env python3
"""MELD's knowledge for sertk.data.release: prepare_meld.py [--nj N] CORPUS_ROOT TABLE DATA_DIR.

MELD (Poria et al., "MELD: A Multimodal Multi-Party Dataset for Emotion Recognition in
Conversations", ACL 2019): utterance clips of the TV series Friends. MELD.Raw.tar.gz and its
train/dev/test tarballs unpacked give ``train/train_splits/dia<D>_utt<U>.mp4``,
``dev/dev_splits_complete/...`` (or ``dev_splits_complete/...``) and
``output_repeated_splits_test/...``, with the annotation tables ``train_sent_emo.csv``,
``dev_sent_emo.csv`` and ``test_sent_emo.csv`` (looked for anywhere under the root; columns
Sr No., Utterance, Speaker, Emotion, Sentiment, Dialogue_ID, Utterance_ID, Season, Episode,
StartTime, EndTime). The three splits reuse clip names (each has a ``dia0_utt0.mp4``), so the
table's key (``meld-dia<D>_utt<U>-train|test``) and the clip's folder must name the same split.

The audio is decoded once from the clips (PyAV, FFmpeg's decoders) to 16 kHz mono 16-bit WAV in
``DATA_DIR/../local/wav/<key>.wav``; WAVs already there (and newer than their clip) are kept, so
an interrupted run resumes. Clips without an audio stream or that FFmpeg cannot decode are
skipped with the reason. Speaker: the CSV's Speaker column (character names made ids:
lower-case, other characters ``_``); transcript: the Utterance column (mis-decoded UTF-8
repaired, typographic quotes and dashes made ASCII); the release gives no gender.
"""

from __future__ import annotations

import csv
import io
import os
import re
import sys
from pathlib import Path

import numpy as np
import soundfile as sf
from tqdm import tqdm

from sertk.data.release import Skip, TableRow, Utterance, match_release, read_table, run_cli
from sertk.errors import DataError

# EmoBox label strings (MELD's Emotion column) -> sertk's vocabulary
LABELS = {"anger": "angry", "disgust": "disgust", "fear": "fearful", "joy": "happy",
          "neutral": "neutral", "sadness": "sad", "surprise": "surprised"}
EXTS = (".mp4",)
SAMPLE_RATE = 16000
COLUMNS = ("Utterance", "Speaker", "Emotion", "Sentiment", "Dialogue_ID", "Utterance_ID")
CLIP = re.compile(r"^dia(\d+)_utt(\d+)$")
DEV_REASON = "MELD dev split: not in EmoBox's table"
ASCII = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"',
                       "\u2013": "-", "\u2014": "-", "\u2026": "...", "\xa0": " "})

# set by main() before run_cli: where the WAVs go, why clips failed, the release root
STATE: dict = {"wavdir": None, "failed": {}, "root": None, "csv": {}}


# ------------------------------------------------------------------------------ audio
def _stale(src: Path, dst: Path) -> bool:
    return not dst.is_file() or dst.stat().st_mtime < src.stat().st_mtime


def decode_clip(src: Path, dst: Path) -> str | None:
    """Decode the first audio stream of ``src`` to 16 kHz mono WAV ``dst`` (kept if present and
    newer than the clip).

    Returns None, or why the clip gives no audio.
    """
    if not _stale(src, dst):
        return None
    import av

    try:
        with av.open(str(src)) as container:
            if not container.streams.audio:
                return "no audio stream in the clip"
            stream = container.streams.audio[0]
            resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
            chunks = [out.to_ndarray().reshape(-1) for frame in container.decode(stream)
                      for out in resampler.resample(frame)]
            chunks += [out.to_ndarray().reshape(-1) for out in resampler.resample(None)]
    except (av.error.FFmpegError, OSError) as exc:
        return f"cannot decode the clip's audio: {getattr(exc, 'strerror', None) or exc}"
    audio = np.concatenate(chunks) if chunks else np.zeros(0, np.int16)
    if audio.size == 0:
        return "the clip's audio stream holds no samples"
    dst.parent.mkdir(parents=True, exist_ok=True)
    part = dst.with_name(dst.name + ".part")
    sf.write(part, audio, SAMPLE_RATE, subtype="PCM_16", format="WAV")
    os.replace(part, dst)  # a killed run leaves no half-written WAV behind
    return None


def _decode_task(task: tuple[str, Path, Path]) -> tuple[str, str | None]:
    key, src, dst = task
    return key, decode_clip(src, dst)


def decode_all(tasks: list[tuple[str, Path, Path]], nj: int) -> dict[str, str]:
    """Decode the clips not yet decoded (``nj`` processes); returns key -> failure reason."""
    todo = [t for t in tasks if _stale(t[1], t[2])]
    failed: dict[str, str] = {}
    if not todo:
        return failed
    bar = tqdm(total=len(todo), desc="MELD clips -> 16 kHz WAV", unit="clip", file=sys.stderr)
    if nj > 1 and len(todo) > 1:
        import multiprocessing

        with multiprocessing.Pool(min(nj, len(todo))) as pool:
            results = pool.imap_unordered(_decode_task, todo, chunksize=8)
            for key, why in results:
                if why:
                    failed[key] = why
                bar.update()
    else:
        for task in todo:
            key, why = _decode_task(task)
            if why:
                failed[key] = why
            bar.update()
    bar.close()
    return failed


# ------------------------------------------------------------------------- annotations
def clean_text(text: str) -> str:
    """Repair UTF-8 read as cp1252/latin-1 ("â€™"), map stray C1 characters as cp1252 and make
    typographic quotes, dashes and ellipses ASCII."""
    for enc in ("cp1252", "latin-1"):
        try:
            text = text.encode(enc).decode("utf-8")
            break
        except UnicodeError:
            continue
    text = "".join(bytes([ord(c)]).decode("cp1252", "ignore") if "\x80" <= c <= "\x9f" else c
                   for c in text)
    return " ".join(text.translate(ASCII).split())


def speaker_id(name: str) -> str:
    """A MELD speaker name as an id: ``Fireman #1`` -> ``fireman_1`` (starts with a letter)."""
    spk = re.sub(r"[^a-z0-9]+", "_", clean_text(name).lower()).strip("_") or "unknown"
    return spk if spk[0].isalpha() else f"spk_{spk}"


def find_csv(root: Path, split: str) -> Path:
    """``<split>_sent_emo.csv`` anywhere under the release root (the shallowest copy)."""
    name = f"{split}_sent_emo.csv"
    found = [p for p in root.rglob("*") if p.name.lower() == name and p.is_file()]
    if not found:
        raise DataError(f"{name} not found under {root}: MELD's annotations (Speaker, "
                        "Utterance, Emotion of each clip) come with MELD.Raw.tar.gz")
    return min(found, key=lambda p: (len(p.parts), str(p)))


def read_csv(path: Path) -> dict[tuple[int, int], dict[str, str]]:
    """MELD's annotation table: (Dialogue_ID, Utterance_ID) -> the needed columns."""
    raw = path.read_bytes()
    for enc in ("utf-8-sig", "cp1252", "latin-1"):
        try:
            text = raw.decode(enc)
            break
        except UnicodeDecodeError:
            continue
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = [h.strip() for h in next(reader, [])]
        absent = [c for c in COLUMNS if c not in header]
        if absent:
            raise DataError(f"{path}: not MELD's annotation table, no column "
                            f"{', '.join(absent)} (header: {','.join(header)[:200]})")
        col = {c: header.index(c) for c in COLUMNS}
        rows: dict[tuple[int, int], dict[str, str]] = {}
        for fields in reader:
            if not any(f.strip() for f in fields):
                continue
            if len(fields) < len(header):
                raise DataError(f"{path}:{reader.line_num}: {len(fields)} fields, the header "
                                f"has {len(header)}")
            try:
                ids = (int(fields[col["Dialogue_ID"]]), int(fields[col["Utterance_ID"]]))
            except ValueError:
                raise DataError(f"{path}:{reader.line_num}: Dialogue_ID and Utterance_ID "
                                "must be numbers") from None
            rows.setdefault(ids, {c: fields[i] for c, i in col.items()})  # first row wins
    except csv.Error as exc:
        raise DataError(f"{path}:{reader.line_num}: {exc}") from None
    return rows


def annotations(split: str) -> tuple[Path, dict[tuple[int, int], dict[str, str]]]:
    if split not in STATE["csv"]:
        path = find_csv(STATE["root"], split)
        STATE["csv"][split] = (path, read_csv(path))
    return STATE["csv"][split]


# ------------------------------------------------------------------------ the recipe
def clip_of(key: str, path: Path) -> tuple[str, str]:
    """The clip name and split of a table key (``meld-dia0_utt0-train``), checked against the
    file found for it (its name, and its folder's split: the splits reuse clip names)."""
    clip, split = key.split("-", 1)[1].rsplit("-", 1)
    if path.stem != clip or not CLIP.match(clip):
        raise Skip(f"file name is not {clip}.mp4")
    if split not in path.parent.name.lower():
        raise Skip(f"clip of folder {path.parent.name}, not of MELD's {split} split")
    return clip, split


def describe(row: TableRow, path: Path) -> Utterance:
    clip, split = clip_of(row.key, path)
    csv_path, rows = annotations(split)
    ann = rows.get(tuple(int(g) for g in CLIP.match(clip).groups()))
    if ann is None:
        raise Skip(f"no row for {clip} in {csv_path.name}")
    emotion = ann["Emotion"].strip().lower()
    if emotion != row.emotion:
        raise Skip(f"{csv_path.name} says {emotion}, the table {row.emotion}")
    if row.key in STATE["failed"]:
        raise Skip(STATE["failed"][row.key])
    wav = STATE["wavdir"] / f"{row.key}.wav"
    if not wav.is_file():
        raise Skip(f"not decoded to {wav}")
    return Utterance(spk=speaker_id(ann["Speaker"]), text=clean_text(ann["Utterance"]),
                     wav=str(wav.resolve()),
                     tables={"utt2sentiment": ann["Sentiment"].strip().lower() or "unknown"})


def _is_dev(rel: str) -> bool:
    return any(part.lower() == "dev" or part.lower().startswith("dev_splits")
               for part in rel.split("/")[:-1])


def extra_reason(rel: str) -> str | None:
    name = rel.rsplit("/", 1)[-1]
    if _is_dev(rel):
        return DEV_REASON
    if name.lower().startswith("final_videos_test"):
        return "a final_videos_test* variant of a test clip: EmoBox's table lists the plain name"
    return None


def main(argv: list[str]) -> None:
    nj = 1
    if argv[:1] == ["--nj"] and len(argv) > 1:
        nj, argv = int(argv[1]), argv[2:]
    if len(argv) != 3:
        sys.exit(f"usage: {Path(sys.argv[0]).name} [--nj N] CORPUS_ROOT TABLE DATA_DIR")
    root, table, out = Path(argv[0]), Path(argv[1]), Path(argv[2])
    STATE["root"] = root
    STATE["wavdir"] = out.parent / "local" / "wav"
    try:
        match = match_release(root, read_table(table), EXTS)
    except DataError as exc:
        sys.exit(f"{Path(sys.argv[0]).name}: error: {exc}")
    tasks = []
    for key, src in match.found.items():
        try:
            clip_of(key, src)
        except Skip:
            continue  # describe() skips it with the reason; never decode a wrong clip
        tasks.append((key, src, STATE["wavdir"] / f"{key}.wav"))
    STATE["failed"] = decode_all(tasks, nj)
    # dev clips share names with train clips: extra_reason names the split for every such file
    run_cli(LABELS, describe, exts=EXTS, extra_reason=extra_reason, argv=argv)


if __name__ == "__main__":
    main(sys.argv[1:])
