#!/usr/bin/env python3
"""MSP-Podcast's knowledge for sertk.data.release: prepare_msppodcast.py CORPUS_ROOT TABLE DATA_DIR.

MSP-Podcast (Lotfian & Busso 2019, IEEE Trans. Affective Computing; UT Dallas): podcast speaking
turns Audios/MSP-PODCAST_<podcast>_<turn>[_<part>].wav (16 kHz), labelled by crowd workers.
Labels/labels_consensus.csv (releases up to 1.9: labels_concensus.csv [sic], in Labels/, labels/
or label/; or the same as .json) gives per file EmoClass (A angry, C contempt, D disgust,
F fear, H happy, N neutral, O other, S sad, U surprise, X no agreement), the mean ratings EmoAct
EmoVal EmoDom (1-7), SpkrID (a number or Unknown), Gender (Male, Female, Unknown) and Split_Set
(Train, Development - Validation up to release 1.9 -, Test1, Test2, Test3). Labels/
labels_detailed.csv has one annotation per worker: FileName, a worker column and EmoClass_Major
(releases 1.12 and later) or FileName, EmoDetail "WORKER00014; Neutral; <secondary>; A:..;
V:..; D:..;" (releases 1.7 to 1.11). Transcripts/<name>.txt hold the human transcripts.

EmoBox's table lists only its test keys (Test1 of release 1.8, 15326 turns, every one in
fold1; EmoBox kept all ten EmoClass codes, O and X included). The emobox protocol trains on the
release's own Train partition and validates on its Development partition: those files are
added to the table (fold "-", label = the release's EmoClass) before matching; the table as
matched is DATA_DIR/../local/<name>_table.tsv and DATA_DIR/../local/<name>_partition.txt says
which utterances are train, dev and test (local/data.sh builds the fold from it).
Speakers: spk<SpkrID>; an Unknown speaker becomes one pseudo-speaker per podcast,
pod<podcast> (file name), never one of the tested speakers. A training or development file
whose speaker is tested is skipped (MSP's partitions are speaker-disjoint by design). Test files
keep the table's label; a release that relabelled one is reported, not changed.
utt2gender, utt2dim and utt2listener_emo are written when the release gives them for every
utterance (sertk's tables are all or none); text when any transcript exists (empty otherwise).
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from sertk.data.release import (
    Skip,
    TableRow,
    Utterance,
    default_utt_id,
    match_release,
    prepare,
    read_table,
    scan_release,
    write_rows,
)
from sertk.errors import DataError

# EmoBox label strings (MSP's EmoClass codes) -> sertk's vocabulary; X: the workers' labels had
# no plurality ("No-agreement" in EmoBox's label map)
LABELS = {"A": "angry", "C": "contempt", "D": "disgust", "F": "fearful", "H": "happy",
          "N": "neutral", "O": "other", "S": "sad", "U": "surprised", "X": "ambiguous"}
# labels_detailed.csv's words -> the same vocabulary ("Other-<free text>" -> other)
WORDS = {"angry": "angry", "anger": "angry", "contempt": "contempt", "disgust": "disgust",
         "disgusted": "disgust", "fear": "fearful", "fearful": "fearful", "happy": "happy",
         "happiness": "happy", "neutral": "neutral", "other": "other", "sad": "sad",
         "sadness": "sad", "surprise": "surprised", "surprised": "surprised"}
TRAIN, DEV = {"train"}, {"development", "validation"}
CONSENSUS = ("labels_consensus.csv", "labels_concensus.csv", "labels_consensus.json",
             "labels_concensus.json")
DETAILED = "labels_detailed.csv"
NAME = re.compile(r"^MSP-PODCAST_(\d+)_\d+(?:_\d+)?$", re.IGNORECASE)
PREFIX = "msppodcast-"


@dataclass
class Meta:
    """One file of the consensus labels."""

    emo: str
    dims: str | None      # "<arousal> <valence> <dominance>"
    spk: str              # SpkrID as given
    gender: str | None    # m / f
    split: str            # Split_Set, lower case


# ------------------------------------------------------------------------- the release files
def find_metadata(root: Path) -> tuple[list[Path], dict[str, Path]]:
    """Consensus label files (the main one first: shallowest, CSV before JSON) and the
    transcripts (Transcripts/<name>.txt, anywhere; the shallowest copy of each name)."""
    labels: list[Path] = []
    texts: dict[str, Path] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        in_transcripts = Path(dirpath).name.lower() == "transcripts"
        for name in sorted(filenames):
            low = name.lower()
            if low in CONSENSUS:
                labels.append(Path(dirpath) / name)
            elif in_transcripts and low.endswith(".txt"):
                texts.setdefault(name[:-4], Path(dirpath) / name)
    labels.sort(key=lambda p: (len(p.relative_to(root).parts), p.suffix.lower() != ".csv",
                               p.as_posix()))
    return labels, texts


def read_text(path: Path) -> str:
    """A metadata file's text: UTF-8 (BOM dropped), else Windows-1252; any line endings."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read: {exc}") from exc
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = raw.decode("cp1252", errors="replace")
    return text.replace("\r\n", "\n").replace("\r", "\n")


def read_csv(path: Path, need: list[list[str]]) -> tuple[list[dict[str, str]], list[str]]:
    """Rows of a CSV file; ``need`` lists alternatives of columns that must exist; returns the
    rows and the chosen column of each alternative."""
    reader = csv.DictReader(io.StringIO(read_text(path)))
    header = [h.strip() for h in reader.fieldnames or []]
    reader.fieldnames = header
    chosen = []
    for names in need:
        hit = next((h for n in names for h in header if h.lower() == n.lower()), None)
        if hit is None:
            raise DataError(f"{path}: no column {' or '.join(names)} (header: {header})")
        chosen.append(hit)
    return [{k: (v or "").strip() for k, v in r.items() if k} for r in reader], chosen


def _dims(act: str, val: str, dom: str) -> str | None:
    try:
        values = [float(x) for x in (act, val, dom)]
    except ValueError:
        return None
    return " ".join(f"{v:g}" for v in values) if all(v == v for v in values) else None


def _gender(value: str) -> str | None:
    return {"male": "m", "m": "m", "female": "f", "f": "f"}.get(value.strip().lower())


def read_consensus(path: Path) -> dict[str, Meta]:
    """File stem -> :class:`Meta` from labels_consensus.csv / .json."""
    out: dict[str, Meta] = {}
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(read_text(path))
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}: not valid JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise DataError(f"{path}: expected an object of file name -> labels")
        for name, value in data.items():
            r = value[0] if isinstance(value, list) and value else value
            if not isinstance(r, dict) or "Split_Set" not in r:
                raise DataError(f"{path}: {name}: no EmoClass/Split_Set labels")
            r = {k: str(v).strip() for k, v in r.items()}
            out[Path(name).stem] = Meta(r.get("EmoClass", r.get("EmoClass_Major", "")),
                                        _dims(r.get("EmoAct", ""), r.get("EmoVal", ""),
                                              r.get("EmoDom", "")),
                                        r.get("SpkrID", ""), _gender(r.get("Gender", "")),
                                        r["Split_Set"].lower())
        return out
    rows, (fname, emo, split) = read_csv(path, [["FileName"], ["EmoClass", "EmoClass_Major"],
                                                ["Split_Set"]])
    for lineno, r in enumerate(rows, 2):
        if not r.get(fname):
            raise DataError(f"{path}:{lineno}: no FileName")
        out[Path(r[fname]).stem] = Meta(r.get(emo, ""), _dims(r.get("EmoAct", ""),
                                                              r.get("EmoVal", ""),
                                                              r.get("EmoDom", "")),
                                        r.get("SpkrID", ""), _gender(r.get("Gender", "")),
                                        r.get(split, "").lower())
    return out


def listener_label(value: str) -> str:
    """A worker's primary emotion in sertk's vocabulary (MSP code or word)."""
    v = value.strip()
    if v.upper() in LABELS and len(v) == 1:
        return LABELS[v.upper()]
    low = v.lower()
    if low.startswith("other"):
        return "other"
    return WORDS.get(low) or re.sub(r"[^a-z0-9]+", "", low) or "other"


def read_detailed(path: Path) -> dict[str, list[str]]:
    """File stem -> ["<worker>:<label>", ...] from labels_detailed.csv (either format)."""
    reader = csv.DictReader(io.StringIO(read_text(path)))
    header = [h.strip() for h in reader.fieldnames or []]
    lower = {h.lower(): h for h in header}
    if "filename" not in lower:
        raise DataError(f"{path}: no column FileName (header: {header})")
    if "emodetail" in lower:
        worker, label = None, lower["emodetail"]
    else:
        worker = next((h for h in header if "worker" in h.lower() or "annotator" in h.lower()),
                      None)
        label = lower.get("emoclass_major") or lower.get("emoclass")
        if worker is None or label is None:
            raise DataError(f"{path}: expected FileName, a worker column and EmoClass_Major, "
                            f"or FileName and EmoDetail (header: {header})")
    reader.fieldnames = header
    out: dict[str, list[str]] = {}
    for lineno, r in enumerate(reader, 2):
        name = (r.get(lower["filename"]) or "").strip()
        if worker is None:
            fields = [f.strip() for f in (r.get(label) or "").split(";")]
            if len(fields) < 2 or not fields[0]:
                raise DataError(f"{path}:{lineno}: EmoDetail is not '<worker>; <emotion>; ...'")
            who, emo = fields[0], fields[1]
        else:
            who, emo = (r.get(worker) or "").strip(), (r.get(label) or "").strip()
        if not name or not who:
            raise DataError(f"{path}:{lineno}: no file name or worker")
        who = re.sub(r"[^A-Za-z0-9_.-]+", "_", who)
        out.setdefault(Path(name).stem, []).append(f"{who}:{listener_label(emo)}")
    return out


def speaker(spk: str, stem: str) -> str:
    """spk<SpkrID> (zero-padded numbers), or pod<podcast> for an unknown speaker."""
    s = spk.strip()
    if s.isdigit():
        return f"spk{int(s):04d}"
    if s and s.lower() not in ("unknown", "nan", "none", "-1"):
        return "spk" + re.sub(r"[^A-Za-z0-9]+", "", s)
    m = NAME.match(stem)
    return f"pod{m.group(1)}" if m else "podunknown"


# ------------------------------------------------------------------------------ preparation
def _stem(key: str) -> str:
    return key[len(PREFIX):] if key.startswith(PREFIX) else key


def _preference(rel: str) -> tuple[bool, int, str]:
    """Sort key of a file's copies: in a folder Audios/ or Audio/ first, then the shallowest."""
    parts = rel.lower().split("/")
    return (len(parts) < 2 or parts[-2] not in ("audios", "audio"), len(parts), rel)


def load_labels(root: Path, tested: set[str]
                ) -> tuple[Path, dict[str, Meta], dict[str, list[str]], dict[str, Path]]:
    """The main consensus file, its labels (earlier releases' files under the root fill in
    tested files it lacks), the per-worker labels beside it and the transcripts."""
    label_files, texts = find_metadata(root)
    if not label_files:
        raise DataError(f"no Labels/labels_consensus.csv (labels_concensus.csv, or .json) under "
                        f"{root}: the release's labels give its Train and Development partitions")
    main_file = label_files[0]
    meta = read_consensus(main_file)
    print(f"{main_file}: {len(meta)} files; partitions: " + ", ".join(
        f"{k or '?'} {n}" for k, n in sorted(Counter(m.split for m in meta.values()).items())))
    for path in label_files[1:]:  # e.g. Previous_releases_information/.../labels_*.csv
        if path.suffix.lower() == ".csv" and tested - set(meta):
            for stem, m in read_consensus(path).items():
                if stem in tested and stem not in meta:
                    meta[stem] = m
    detailed = next((p for p in sorted(main_file.parent.iterdir())
                     if p.name.lower() == DETAILED and p.is_file()), None)
    return main_file, meta, read_detailed(detailed) if detailed else {}, texts


def point_at_copies(rows: list[TableRow], files: list[str]) -> list[TableRow]:
    """Each row pointed at its file's preferred copy (under Audios/ or Audio/, else the
    shallowest): the matcher then takes that one and reports the others as second copies."""
    copies: dict[str, str] = {}
    for rel in sorted(files, key=_preference):
        copies.setdefault(rel.rsplit("/", 1)[-1].lower(), rel)
    exact = set(files)
    out = []
    for r in rows:
        rel = copies.get(r.wav.rsplit("/", 1)[-1].lower())
        out.append(r if r.wav in exact or rel is None else TableRow(r.key, rel, r.emotion, r.fold))
    return out


def run(root: Path, table: Path, out: Path) -> None:
    if not root.is_dir():
        raise DataError(f"corpus release not found: {root} (give --corpus_root)")
    rows = read_table(table)
    tested = {_stem(r.key) for r in rows}
    main_file, meta, listeners, texts = load_labels(root, tested)

    # the table + the release's Train and Development partitions (never tested: fold "-")
    extra_rows, odd = [], Counter()
    for stem, m in sorted(meta.items()):
        if stem in tested or m.split not in TRAIN | DEV:
            continue
        if m.emo in LABELS:
            extra_rows.append(TableRow(PREFIX + stem, f"Audio/{stem}.wav", m.emo, "-"))
        else:
            odd[m.emo] += 1
    files = scan_release(root)
    combined = point_at_copies(rows + extra_rows, files)
    table_out = out.parent / "local" / f"{out.name}_table.tsv"
    write_rows(table_out, combined)

    # what each matched file is (the shared matcher's own scan follows in prepare())
    match = match_release(root, combined, files=files)
    found = [r for r in combined if r.key in match.found]
    spk = {r.key: speaker(meta[_stem(r.key)].spk if _stem(r.key) in meta else "", _stem(r.key))
           for r in found}
    test_spks = {spk[r.key] for r in found if r.fold != "-"}
    skip = {r.key: f"{meta[_stem(r.key)].split} file of {spk[r.key]}, a tested speaker"
            for r in found if r.fold == "-" and spk[r.key] in test_spks}
    kept = [r for r in found if r.key not in skip]
    known = [meta.get(_stem(r.key)) for r in kept]
    with_gender = all(m is not None and m.gender for m in known)
    with_dims = all(m is not None and m.dims for m in known)
    with_listeners = bool(listeners) and all(_stem(r.key) in listeners for r in kept)
    with_text = any(_stem(r.key) in texts for r in kept)
    relabelled = sum(1 for r in kept if r.fold != "-" and _stem(r.key) in meta
                     and meta[_stem(r.key)].emo != r.emotion)
    roles: dict[str, str] = {}

    def describe(row: TableRow, path: Path) -> Utterance:
        stem = _stem(row.key)
        if path.stem.lower() != stem.lower() or not NAME.match(path.stem):
            raise Skip(f"file name is not {stem}.wav")
        if row.key in skip:
            raise Skip(skip[row.key])
        m = meta.get(stem)
        utt = default_utt_id(spk[row.key], row.key)
        tables = {}
        if with_dims:
            tables["utt2dim"] = m.dims
        if with_listeners:
            tables["utt2listener_emo"] = " ".join(listeners[stem])
        text = None
        if with_text:
            text = read_text(texts[stem]).strip() if stem in texts else ""
        roles[utt] = ("test" if row.fold != "-" else "train" if m.split in TRAIN else "dev")
        return Utterance(spk=spk[row.key], gender=m.gender if with_gender else None, text=text,
                         tables=tables, utt=utt)

    listed = {_stem(r.key).lower() for r in combined}

    def extra_reason(rel: str) -> str | None:
        stem = Path(rel).stem
        if stem.lower() in listed:  # a second copy (the matcher says of which)
            return None
        m = meta.get(stem)
        if m is None:
            return f"not in {main_file.name}"
        if m.split in TRAIN | DEV:
            return f"EmoClass {m.emo!r} is none of {' '.join(LABELS)}"
        return (f"{m.split.capitalize() or 'no'} partition: emobox tests EmoBox's list, trains "
                f"on Train and validates on Development")

    prepare(root, table_out, out, LABELS, describe, extra_reason=extra_reason)
    part = out.parent / "local" / f"{out.name}_partition.txt"
    part.write_text("".join(f"{u} {roles[u]}\n" for u in sorted(roles)), encoding="utf-8")
    n = Counter(roles.values())
    print(f"{out}: test {n['test']}, train {n['train']}, dev {n['dev']} utterances ({part}); "
          f"{len(skip)} Train/Development files of tested speakers skipped; "
          f"{sum(odd.values())} Train/Development files without a class; " + ", ".join(
              f"{name} {'written' if ok else 'not given for every utterance: left out'}"
              for name, ok in (("utt2gender", with_gender), ("utt2dim", with_dims),
                               ("utt2listener_emo", with_listeners), ("text", with_text))))
    if relabelled:
        print(f"{relabelled} test files have another EmoClass in {main_file.name}: "
              "the table's (EmoBox's) label is kept")


def main(argv: list[str]) -> None:
    prog = Path(sys.argv[0]).name
    if len(argv) != 3:
        sys.exit(f"usage: {prog} CORPUS_ROOT TABLE DATA_DIR")
    try:
        run(Path(argv[0]), Path(argv[1]), Path(argv[2]))
    except DataError as exc:
        sys.exit(f"{prog}: error: {exc}")


if __name__ == "__main__":
    main(sys.argv[1:])
