"""A corpus release on disk matched against the recipe's table of its utterances.

Every corpus recipe (``egs/<corpus>/ser1/local/data.sh``) does the same four things, here once:

1. read its table (``local/emobox.tsv.gz``: the EmoBox benchmark's utterance key, the audio path
   relative to the release root, the label string and the fold in whose test part the utterance
   is; ``-`` = training only), :func:`read_table`;
2. find each listed file in the user's copy of the release: by relative path, then the same path
   case-insensitively, then by file name (releases get renamed folders, other archive layouts,
   upper-case extensions), :func:`match_release`;
3. report what does not match, one line per file with the reason (listed but absent; present but
   not listed; a second copy of a matched file), counted, :func:`write_report`;
4. write a Kaldi data dir from the matched files and the recipe's own knowledge of the corpus
   (speaker, gender, transcript, further labels, given by a ``describe`` function), with the
   labels normalised through the recipe's map, :func:`prepare`.

The data dir gains ``utt2key`` (the table's key) and ``utt2fold`` (the table's test fold), from
which ``sertk data folds --test-table`` rebuilds the table's folds exactly.
"""

from __future__ import annotations

import csv
import gzip
import io
import re
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from sertk.data.datadir import write_utt2spk
from sertk.data.kaldi_table import write_table
from sertk.errors import DataError

AUDIO_EXTS = (".wav", ".flac")
TABLE_HEADER = ["key", "wav", "emotion", "fold"]
NEVER_TESTED = "-"
_SAFE_ID = re.compile(r"[^A-Za-z0-9_.-]")


@dataclass(frozen=True)
class TableRow:
    """One utterance of the recipe's table."""

    key: str
    wav: str       # path relative to the release root, as the table's authors unpacked it
    emotion: str   # the table's label string (not normalised)
    fold: str      # the fold whose test part holds it, or "-" (training only)


class Skip(Exception):
    """Raised by a recipe's ``describe`` for a file it cannot use; the message is the reason."""


@dataclass
class Utterance:
    """What a recipe knows of one matched file (``describe``'s return value)."""

    spk: str
    gender: str | None = None          # "m" or "f"
    text: str | None = None            # transcript
    tables: dict[str, str] = field(default_factory=dict)  # more utt2* tables: name -> value
    wav: str | None = None             # wav.scp entry when not the file itself (a `cmd |`)
    utt: str | None = None             # utterance id; default <spk>-<key without corpus->


@dataclass
class Match:
    """The outcome of :func:`match_release`."""

    found: dict[str, Path]                          # table key -> file in the release
    missing: list[tuple[TableRow, str]]             # listed, not found: (row, reason)
    extra: list[tuple[str, str]]                    # found, not listed: (relative path, reason)
    by_name: int = 0                                # found by file name, not by path


# ------------------------------------------------------------------------------ the table
def read_table(path: str | Path) -> list[TableRow]:
    """Read ``key wav emotion fold`` rows (tab-separated, header line; ``.gz`` allowed)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"corpus table not found: {path}")
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8", newline="") as fh:
        reader = csv.reader(fh, delimiter="\t")
        header = next(reader, None)
        if header != TABLE_HEADER:
            raise DataError(f"{path}: header must be {' '.join(TABLE_HEADER)}, got {header}")
        rows, seen = [], set()
        for lineno, fields in enumerate(reader, 2):
            if len(fields) != 4:
                raise DataError(f"{path}:{lineno}: expected 4 tab-separated fields")
            row = TableRow(*fields)
            if row.key in seen:
                raise DataError(f"{path}:{lineno}: duplicate key {row.key!r}")
            seen.add(row.key)
            rows.append(row)
    if not rows:
        raise DataError(f"{path}: no utterances")
    return rows


def write_rows(path: str | Path, rows: Iterable[TableRow]) -> None:
    """Write rows as a table :func:`read_table` reads (plain TSV with the header), e.g. a
    recipe's table extended with the release's own training files or remapped paths."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh, delimiter="\t", lineterminator="\n")
        writer.writerow(TABLE_HEADER)
        writer.writerows([r.key, r.wav, r.emotion, r.fold] for r in rows)


def compact_emobox(corpus_dir: str | Path, out: str | Path) -> int:
    """Write EmoBox's ``utterances.tsv`` + ``folds.tsv`` of one corpus as one compressed table.

    Each key's fold is the fold whose test part lists it (EmoBox's test parts are disjoint and
    every fold trains on the rest; keys never tested get ``-``). Returns the number of rows.
    """
    corpus_dir = Path(corpus_dir)
    with open(corpus_dir / "utterances.tsv", encoding="utf-8", newline="") as fh:
        utts = list(csv.DictReader(fh, delimiter="\t"))
    test_fold: dict[str, str] = {}
    with open(corpus_dir / "folds.tsv", encoding="utf-8", newline="") as fh:
        for r in csv.DictReader(fh, delimiter="\t"):
            if r["split"] != "test":
                continue
            if r["key"] in test_fold:
                raise DataError(f"{corpus_dir}: {r['key']} is tested in two folds")
            test_fold[r["key"]] = f"fold{r['fold']}"
    buf = io.StringIO()
    writer = csv.writer(buf, delimiter="\t", lineterminator="\n")
    writer.writerow(TABLE_HEADER)
    for u in utts:
        writer.writerow([u["key"], u["wav"], u["emotion"], test_fold.get(u["key"], NEVER_TESTED)])
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    # mtime=0: the same table gives the same bytes
    with open(out, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=9,
                                               mtime=0, filename="") as gz:
        gz.write(buf.getvalue().encode("utf-8"))
    return len(utts)


# ------------------------------------------------------------------------- the release
def scan_release(root: str | Path, exts: Iterable[str] = AUDIO_EXTS) -> list[str]:
    """Relative POSIX paths of the audio files under ``root`` (extension case ignored)."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"corpus release not found: {root} (give --corpus_root)")
    want = {e.lower() for e in exts}
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*")
                  if p.suffix.lower() in want and p.is_file() and not p.name.startswith("._"))


def _norm(rel: str) -> str:
    return rel.lower()


def match_release(root: str | Path, rows: list[TableRow], exts: Iterable[str] = AUDIO_EXTS,
                  files: list[str] | None = None) -> Match:
    """Find each row's file under ``root``: exact path, path ignoring case, then file name.

    Paths are matched for every row first, so that the file-name fallback of one row never
    takes a file another row names by its path. A file name found in several folders matches
    the unused copy whose path shares most trailing folders with the table's path; the other
    copies are reported as second copies of the nearest matched one.
    """
    root = Path(root)
    files = scan_release(root, exts) if files is None else files
    exact = set(files)
    folded: dict[str, list[str]] = defaultdict(list)
    named: dict[str, list[str]] = defaultdict(list)
    for rel in files:
        folded[_norm(rel)].append(rel)
        named[_basename(rel)].append(rel)
    chosen: dict[str, str] = {}        # key -> release file
    used: dict[str, str] = {}          # release file -> key
    for row in rows:                   # pass 1: by path
        rel = row.wav if row.wav in exact else None
        if rel is None and len(folded.get(_norm(row.wav), [])) == 1:
            rel = folded[_norm(row.wav)][0]
        if rel is not None and rel not in used:
            chosen[row.key], used[rel] = rel, row.key
    by_name = 0
    missing: list[tuple[TableRow, str]] = []
    for row in rows:                   # pass 2: by file name, among the files left
        if row.key in chosen:
            continue
        cands = [c for c in named.get(_basename(row.wav), []) if c not in used]
        if not cands:
            missing.append((row, "listed in the table; the release's files of this name all "
                                 "belong to other rows" if named.get(_basename(row.wav)) else
                                 "listed in the table, no file with this path or name in the "
                                 "release"))
            continue
        rel = max(cands, key=lambda c: (_shared_tail(c, row.wav), c))
        chosen[row.key], used[rel] = rel, row.key
        by_name += 1
    found = {row.key: root / chosen[row.key] for row in rows if row.key in chosen}
    extra = []
    for rel in files:
        if rel in used:
            continue
        twins = [c for c in named[_basename(rel)] if c in used]
        if twins:
            twin = max(twins, key=lambda c: (_shared_tail(c, rel), c))
            extra.append((rel, f"second copy of {twin}"))
        else:
            extra.append((rel, "not listed in the table"))
    return Match(found, missing, extra, by_name)


def _basename(rel: str) -> str:
    return _norm(rel.rsplit("/", 1)[-1])


def _shared_tail(a: str, b: str) -> int:
    pa, pb = _norm(a).split("/")[::-1], _norm(b).split("/")[::-1]
    n = 0
    while n < min(len(pa), len(pb)) and pa[n] == pb[n]:
        n += 1
    return n


# --------------------------------------------------------------------------- reporting
def write_report(path: str | Path, match: Match, skipped: list[tuple[str, str]]) -> str:
    """Write one line per unmatched or skipped file (``kind<TAB>file<TAB>reason``).

    Returns the summary line printed by :func:`prepare`.
    """
    lines = [f"missing\t{row.wav}\t{row.key}: {why}" for row, why in match.missing]
    lines += [f"extra\t{rel}\t{why}" for rel, why in match.extra]
    lines += [f"skipped\t{rel}\t{why}" for rel, why in skipped]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
    return (f"{len(match.missing)} listed files missing from the release, "
            f"{len(match.extra)} release files not in the table, {len(skipped)} skipped "
            f"(one line each in {path})")


# ----------------------------------------------------------------------- the data dir
def default_utt_id(spk: str, key: str) -> str:
    """``<spk>-<key without its corpus- prefix>``: utterances sort with their speaker."""
    return _SAFE_ID.sub("_", f"{spk}-{key.split('-', 1)[-1]}")


def prepare(corpus_root: str | Path, table: str | Path, out: str | Path,
            labels: dict[str, str], describe: Callable[[TableRow, Path], Utterance],
            exts: Iterable[str] = AUDIO_EXTS, report: str | Path | None = None,
            extra_reason: Callable[[str], str | None] | None = None,
            log: Callable[[str], None] = print) -> dict[str, int]:
    """Match the release under ``corpus_root`` against ``table`` and write the data dir ``out``.

    ``labels`` maps every table label string to the recipe's vocabulary (an unmapped label is
    an error); ``describe(row, path)`` returns the :class:`Utterance` (or raises :class:`Skip`);
    ``extra_reason(relpath)`` may explain why a release file is not in the table (e.g. a class
    the benchmark leaves out, a split it does not use); it is asked for every unmatched file,
    and its answer (when not None) replaces the generic reason. Stops with a
    :class:`DataError` only when nothing is usable.
    """
    rows = read_table(table)
    unknown = sorted({r.emotion for r in rows} - set(labels))
    if unknown:
        raise DataError(f"{table}: labels without a mapping in the recipe: {' '.join(unknown)}")
    match = match_release(corpus_root, rows, exts)
    if extra_reason is not None:
        match.extra = [(rel, extra_reason(rel) or why) for rel, why in match.extra]
    out = Path(out)
    utts: dict[str, tuple[TableRow, Utterance, Path]] = {}
    skipped: list[tuple[str, str]] = []
    for row in rows:
        path = match.found.get(row.key)
        if path is None:
            continue
        try:
            u = describe(row, path)
        except Skip as why:
            skipped.append((str(path), str(why)))
            continue
        utt = u.utt or default_utt_id(u.spk, row.key)
        if utt in utts:
            raise DataError(f"{path}: utterance id {utt} also given to {utts[utt][2]}")
        utts[utt] = (row, u, path)
    report = Path(report) if report else out.parent / "local" / f"{out.name}_release_report.txt"
    summary = write_report(report, match, skipped)
    if not utts:
        raise DataError(f"nothing usable under {corpus_root}: {len(rows)} files listed in "
                        f"{table}, none found ({summary})")
    _write_datadir(out, utts, labels)
    nspk = len({u.spk for _, u, _ in utts.values()})
    log(f"{out}: {len(utts)} utterances of {nspk} speakers from {corpus_root} "
        f"({len(rows)} in the table, {match.by_name} found by file name); {summary}")
    return {"utterances": len(utts), "speakers": nspk, "missing": len(match.missing),
            "extra": len(match.extra), "skipped": len(skipped)}


def _write_datadir(out: Path, utts: dict[str, tuple[TableRow, Utterance, Path]],
                   labels: dict[str, str]) -> None:
    tables: dict[str, dict[str, str]] = defaultdict(dict)
    for utt, (row, u, path) in utts.items():
        if not u.spk or any(c.isspace() for c in u.spk):
            raise DataError(f"{path}: bad speaker id {u.spk!r}")
        tables["wav.scp"][utt] = u.wav or str(path.resolve())
        tables["utt2emo"][utt] = labels[row.emotion]
        tables["utt2key"][utt] = row.key
        tables["utt2fold"][utt] = row.fold
        if u.gender is not None:
            if u.gender not in ("m", "f"):
                raise DataError(f"{path}: gender must be m or f, got {u.gender!r}")
            tables["utt2gender"][utt] = u.gender
        if u.text is not None:
            tables["text"][utt] = " ".join(u.text.split())
        for name, value in u.tables.items():
            tables[name][utt] = value
    for name in ("utt2gender", "text", *{n for _, u, _ in utts.values() for n in u.tables}):
        if name in tables and len(tables[name]) != len(utts):
            missing = sorted(set(utts) - set(tables[name]))
            raise DataError(f"{name}: {len(missing)} utterances have no value, e.g. "
                            f"{missing[0]}: give it for every utterance or for none")
    out.mkdir(parents=True, exist_ok=True)
    for old in out.iterdir():  # a rerun must not keep tables of an earlier layout
        if old.is_file():
            old.unlink()
    for name, tab in tables.items():
        write_table(out / name, tab)
    write_utt2spk(out, {utt: u.spk for utt, (_, u, _) in utts.items()})


def run_cli(labels: dict[str, str], describe: Callable[[TableRow, Path], Utterance],
            exts: Iterable[str] = AUDIO_EXTS,
            extra_reason: Callable[[str], str | None] | None = None,
            argv: list[str] | None = None) -> None:
    """``prepare_<corpus>.py CORPUS_ROOT TABLE DATA_DIR``: :func:`prepare`, with a user error
    printed as one line (exit 1) instead of a traceback."""
    import sys

    argv = sys.argv[1:] if argv is None else argv
    prog = Path(sys.argv[0]).name
    if len(argv) != 3:
        sys.exit(f"usage: {prog} CORPUS_ROOT TABLE DATA_DIR")
    try:
        prepare(argv[0], argv[1], argv[2], labels, describe, exts, extra_reason=extra_reason)
    except DataError as exc:
        sys.exit(f"{prog}: error: {exc}")
