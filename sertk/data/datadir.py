"""Kaldi-style data directories for emotion corpora.

A data directory holds one utterance per line in each file, keys sorted in C order::

    wav.scp         <reco-or-utt> <path> | <cmd ... |> | <file.ark:offset>
    utt2spk         <utt> <spk>
    spk2utt         <spk> <utt1> <utt2> ...        (derived from utt2spk)
    utt2emo         <utt> <label>                  (categorical emotion)
    segments        <utt> <reco> <start-s> <end-s> (optional; then wav.scp keys are recordings)
    text            <utt> <transcript...>          (optional)
    utt2dur         <utt> <seconds>                (optional)
    utt2num_frames  <utt> <frames>                 (optional; written by the feature dump)
    utt2dim         <utt> <arousal> <valence> <dominance>  (optional)
    utt2gender      <utt> <m|f>                    (optional)
    utt2corpus      <utt> <corpus name>            (optional; for multi-corpus training)
    feats.scp       <utt> <ark:offset>             (optional; written by the feature dump)
    utt2aug         <utt> <JSON list of operations> (optional, sertk-specific: waveform
                                                   augmentations applied by the dump)
    utt2key         <utt> <key in the corpus table> (optional; corpus recipes)
    utt2fold        <utt> <fold whose test part holds it, or ->  (optional; corpus recipes)
    utt2listener_emo <utt> <annotator>:<label> ... (optional; per-annotator labels)
    utt2dialog      <utt> <dialog> <turn>          (optional; conversation and 1-based turn)

:func:`validate` mirrors Kaldi's ``validate_data_dir.sh``, :func:`fix` its ``fix_data_dir.sh``.
"""

from __future__ import annotations

import io
import logging
import math
import shutil
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from sertk.data.kaldi_table import is_sorted_unique, read_table, write_table
from sertk.errors import DataError

log = logging.getLogger(__name__)

# file name -> (min fields, max fields) for every per-utterance table
UTT_TABLES: dict[str, tuple[int, int | None]] = {
    "utt2spk": (2, 2),
    "utt2emo": (2, 2),
    "segments": (4, 4),
    "text": (1, None),
    "utt2dur": (2, 2),
    "utt2num_frames": (2, 2),
    "utt2dim": (4, 4),
    "utt2gender": (2, 2),
    "utt2corpus": (2, 2),
    "feats.scp": (2, 2),
    "utt2aug": (2, None),  # sertk: JSON list of waveform augmentations (sertk data augment)
    "utt2key": (2, 2),     # the corpus table's key (e.g. EmoBox's), sertk.data.release
    "utt2fold": (2, 2),    # the fold whose test part holds the utterance ("-": none)
    "utt2listener_emo": (2, None),  # per-annotator labels: <annotator>:<label> ...
    "utt2dialog": (3, 3),  # <dialog> <turn>: the conversation and the 1-based turn index
    "utt2lang": (2, 2),    # language code (multilingual corpora)
    "utt2intensity": (2, 2),  # the corpus's intensity level of the portrayal
    "utt2sentiment": (2, 2),  # sentiment label (MELD)
}
GENDERS = {"m", "f"}
EXTRA_FEATS = "feats_"  # feats_<name>.scp: per-utterance features of another modality


@dataclass(frozen=True)
class Segment:
    reco: str
    start: float
    end: float


class DataDir:
    """Read access to a Kaldi data directory; tables are parsed once and cached."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.is_dir():
            raise DataError(f"data directory not found: {self.path}")
        self._cache: dict[str, dict[str, str]] = {}

    def has(self, name: str) -> bool:
        return (self.path / name).is_file()

    def utt_tables(self) -> list[str]:
        """The per-utterance tables this directory can have: :data:`UTT_TABLES` and its
        feature tables of other modalities or contexts, ``feats_<name>.scp`` (e.g.
        ``feats_video.scp``, ``feats_prev_self.scp``), which subsets and combinations carry
        like the others."""
        return [*UTT_TABLES, *sorted(p.name for p in self.path.glob(f"{EXTRA_FEATS}*.scp")
                                     if p.is_file())]

    def table(self, name: str) -> dict[str, str]:
        if name not in self._cache:
            lo, hi = UTT_TABLES.get(name, (2, None))
            if name == "spk2utt":
                lo, hi = 2, None
            self._cache[name] = read_table(self.path / name, lo, hi)
        return self._cache[name]

    @property
    def utts(self) -> list[str]:
        return sorted(self.table("utt2spk"))

    @property
    def utt2spk(self) -> dict[str, str]:
        return self.table("utt2spk")

    @property
    def wav_scp(self) -> dict[str, str]:
        return self.table("wav.scp")

    @property
    def utt2emo(self) -> dict[str, str]:
        return self.table("utt2emo")

    def segments(self) -> dict[str, Segment] | None:
        if not self.has("segments"):
            return None
        out = {}
        for utt, rest in self.table("segments").items():
            reco, start, end = rest.split()
            try:
                out[utt] = Segment(reco, float(start), float(end))
            except ValueError:
                raise DataError(f"{self.path / 'segments'}: bad times for {utt}: "
                                f"{rest!r}") from None
        return out

    def audio_entries(self) -> dict[str, tuple[str, str, Segment | None]]:
        """Map each utterance to ``(recording key, wav.scp entry, segment or None)``."""
        wav = self.wav_scp
        segs = self.segments()
        out = {}
        for utt in self.utts:
            if segs is None:
                if utt not in wav:
                    raise DataError(f"utterance {utt}: not in {self.path / 'wav.scp'}")
                out[utt] = (utt, wav[utt], None)
            else:
                seg = segs.get(utt)
                if seg is None:
                    raise DataError(f"utterance {utt}: not in {self.path / 'segments'}")
                if seg.reco not in wav:
                    raise DataError(f"utterance {utt}: recording {seg.reco} not in "
                                    f"{self.path / 'wav.scp'}")
                out[utt] = (seg.reco, wav[seg.reco], seg)
        return out

    def labels(self) -> list[str]:
        """Sorted list of the distinct emotion labels in ``utt2emo``."""
        return sorted(set(self.utt2emo.values()))


def spk2utt_from_utt2spk(utt2spk: dict[str, str]) -> dict[str, str]:
    groups: dict[str, list[str]] = defaultdict(list)
    for utt in sorted(utt2spk):
        groups[utt2spk[utt]].append(utt)
    return {spk: " ".join(utts) for spk, utts in groups.items()}


def write_utt2spk(path: str | Path, utt2spk: dict[str, str]) -> None:
    """Write ``utt2spk`` and the matching ``spk2utt``."""
    path = Path(path)
    write_table(path / "utt2spk", utt2spk)
    write_table(path / "spk2utt", spk2utt_from_utt2spk(utt2spk))


# --------------------------------------------------------------------------- validation
def validate(path: str | Path, check_audio: bool = True, require_labels: bool = True,
             require_audio: bool = True) -> list[str]:
    """Check a data directory like Kaldi's ``validate_data_dir.sh``; return the problems found.

    Checks: every table parses (no duplicate keys, right field counts) and is sorted; ``spk2utt``
    is the inverse of ``utt2spk``; ``utt2spk`` is also sorted by speaker; every per-utterance
    table covers exactly the utterances of ``utt2spk``; ``utt2emo`` exists (labels present);
    numeric tables hold numbers; and, with ``check_audio``, every audio entry can be opened and
    holds samples (segments must lie within their recording).
    """
    d = DataDir(path)
    problems: list[str] = []

    def load(name: str) -> dict[str, str] | None:
        try:
            tab = d.table(name)
        except DataError as exc:
            problems.append(str(exc))
            return None
        keys = list(tab)
        if not is_sorted_unique(keys):
            problems.append(f"{d.path / name}: keys are not sorted (use LC_ALL=C sort or "
                            "`sertk data fix`)")
        return tab

    if not d.has("utt2spk"):
        return [f"{d.path}: utt2spk is missing"]
    utt2spk = load("utt2spk")
    if utt2spk is None:
        return problems
    if not utt2spk:
        return [f"{d.path / 'utt2spk'}: no utterances (empty file)"]
    utts = set(utt2spk)
    by_spk = sorted(utt2spk, key=lambda u: (utt2spk[u], u))
    if by_spk != sorted(utt2spk):
        problems.append(f"{d.path / 'utt2spk'}: not sorted when sorted on speaker id; make "
                        "speaker ids a prefix of utterance ids")
    if not d.has("spk2utt"):
        problems.append(f"{d.path}: spk2utt is missing (`sertk data fix` writes it)")
    else:
        spk2utt = load("spk2utt")
        if spk2utt is not None and spk2utt != spk2utt_from_utt2spk(utt2spk):
            problems.append(f"{d.path / 'spk2utt'}: does not match utt2spk")

    if require_labels and not d.has("utt2emo"):
        problems.append(f"{d.path}: utt2emo is missing (every utterance needs an emotion label)")
    if require_audio and not d.has("wav.scp") and not d.has("feats.scp"):
        problems.append(f"{d.path}: neither wav.scp nor feats.scp exists")

    for name in d.utt_tables():
        if name == "utt2spk" or not d.has(name):
            continue
        tab = load(name)
        if tab is None:
            continue
        missing = sorted(utts - set(tab))
        extra = sorted(set(tab) - utts)
        if missing:
            problems.append(f"{d.path / name}: {len(missing)} utterances of utt2spk missing, "
                            f"e.g. {missing[0]}")
        if extra:
            problems.append(f"{d.path / name}: {len(extra)} keys not in utt2spk, e.g. {extra[0]}")
        problems.extend(_check_values(d.path / name, name, tab))

    segs = None
    if d.has("segments"):
        try:
            segs = d.segments()
        except DataError as exc:
            problems.append(str(exc))
    if d.has("wav.scp"):
        wav = load("wav.scp")
        if wav is not None:
            need = {s.reco for s in segs.values()} if segs is not None else utts
            missing = sorted(need - set(wav))
            if missing:
                problems.append(f"{d.path / 'wav.scp'}: {len(missing)} "
                                f"{'recordings' if segs is not None else 'utterances'} "
                                f"missing, e.g. {missing[0]}")
            if segs is None:
                extra = sorted(set(wav) - utts)
                if extra:
                    problems.append(f"{d.path / 'wav.scp'}: {len(extra)} keys not in utt2spk, "
                                    f"e.g. {extra[0]}")
            if check_audio and not missing:
                problems.extend(_check_audio(d, wav, segs, utts))
    return problems


def _check_values(path: Path, name: str, tab: dict[str, str]) -> list[str]:
    problems = []
    for key, value in tab.items():
        try:
            if name == "utt2dur":
                if not float(value) > 0:
                    raise ValueError
            elif name == "utt2num_frames":
                if int(value) < 0:
                    raise ValueError
            elif name == "utt2dim":
                if any(math.isnan(float(v)) for v in value.split()):
                    raise ValueError
            elif name == "utt2gender":
                if value not in GENDERS:
                    raise ValueError
            elif name == "segments":
                _, start, end = value.split()
                if not 0 <= float(start) < float(end):
                    raise ValueError
        except ValueError:
            problems.append(f"{path}: bad value for {key}: {value!r}")
    return problems


def _check_audio(d: DataDir, wav: dict[str, str], segs: dict[str, Segment] | None,
                 utts: set[str]) -> list[str]:
    from sertk.data.audio import probe_audio  # local import: audio pulls in torch

    problems = []
    durations: dict[str, float] = {}
    recos = sorted({s.reco for s in segs.values()}) if segs is not None else sorted(utts)
    for reco in recos:
        try:
            durations[reco] = probe_audio(wav[reco], key=reco)
        except DataError as exc:
            problems.append(str(exc))
    if segs is not None:
        for utt, seg in segs.items():
            dur = durations.get(seg.reco)
            if dur is not None and seg.end > dur + 0.01:
                problems.append(f"utterance {utt}: segment end {seg.end:.2f}s beyond the "
                                f"{dur:.2f}s of recording {seg.reco}")
    return problems


def validate_or_raise(path: str | Path, **kwargs) -> None:
    problems = validate(path, **kwargs)
    if problems:
        raise DataError(f"{path}: {len(problems)} problems; first: {problems[0]}")


# --------------------------------------------------------------------------- fix/subset/split
def fix(path: str | Path, drop_unreadable: bool = False) -> list[str]:
    """Like ``fix_data_dir.sh``: keep the utterances present in every table, sort, rewrite
    ``spk2utt``. The original files are kept in ``.backup/``. Returns one line per drop."""
    d = DataDir(path)
    path = d.path
    tables: dict[str, dict[str, str]] = {}
    for name in ["utt2spk", "wav.scp", *[n for n in d.utt_tables() if n != "utt2spk"]]:
        if d.has(name):
            tables[name] = _read_lenient(path / name, *UTT_TABLES.get(name, (2, None)))
    if "utt2spk" not in tables:
        raise DataError(f"{path}: utt2spk is missing; cannot fix")
    keep = set(tables["utt2spk"])
    drops: list[str] = []
    segs = tables.get("segments")
    for name, tab in tables.items():
        if name == "wav.scp" and segs is not None:
            continue
        for utt in sorted(keep - set(tab)):
            drops.append(f"dropped {utt}: missing from {name}")
        keep &= set(tab)
    if segs is not None and "wav.scp" in tables:
        for utt in sorted(keep):
            reco = segs[utt].split()[0]
            if reco not in tables["wav.scp"]:
                drops.append(f"dropped {utt}: recording {reco} missing from wav.scp")
                keep.discard(utt)
    if drop_unreadable and "wav.scp" in tables:
        from sertk.data.audio import probe_audio

        for utt in sorted(keep):
            reco = segs[utt].split()[0] if segs is not None else utt
            try:
                probe_audio(tables["wav.scp"][reco], key=utt)
            except DataError as exc:
                drops.append(f"dropped {utt}: {exc}")
                keep.discard(utt)
    backup = path / ".backup"
    backup.mkdir(exist_ok=True)
    for name in [*tables, "spk2utt"]:
        if (path / name).is_file():
            shutil.copy(path / name, backup / name)
    for name, tab in tables.items():
        if name == "wav.scp" and segs is not None:
            recos = {segs[u].split()[0] for u in keep}
            write_table(path / name, {k: v for k, v in tab.items() if k in recos})
        else:
            write_table(path / name, {k: v for k, v in tab.items() if k in keep})
    write_table(path / "spk2utt",
                spk2utt_from_utt2spk({u: tables["utt2spk"][u] for u in keep}))
    for line in drops:
        log.warning("%s: %s", path, line)
    log.info("%s: kept %d utterances, dropped %d", path, len(keep), len(drops))
    return drops


def _read_lenient(path: Path, lo: int, hi: int | None) -> dict[str, str]:
    """Read a table for fixing: the first occurrence of a duplicate key wins, bad lines are
    dropped with a warning."""
    from sertk.data.kaldi_table import read_utf8

    out: dict[str, str] = {}
    with io.StringIO(read_utf8(path), newline=None) as fh:
        for lineno, line in enumerate(fh, 1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) < lo or (hi is not None and len(fields) > hi):
                log.warning("%s:%d: malformed line dropped: %r", path, lineno, line.rstrip())
                continue
            if fields[0] in out:
                log.warning("%s:%d: duplicate key %s dropped", path, lineno, fields[0])
                continue
            out[fields[0]] = line.split(maxsplit=1)[1].strip() if len(fields) > 1 else ""
    return out


def subset(src: str | Path, dst: str | Path, utts: list[str] | None = None,
           spks: list[str] | None = None) -> Path:
    """Copy the part of ``src`` for the given utterances or speakers to ``dst``.

    Every requested key must exist in ``src``.
    """
    d = DataDir(src)
    utt2spk = d.utt2spk
    if (utts is None) == (spks is None):
        raise DataError("subset: give exactly one of utterance list or speaker list")
    if spks is not None:
        spk_set = set(spks)
        unknown = spk_set - set(utt2spk.values())
        if unknown:
            raise DataError(f"subset of {src}: unknown speakers: {' '.join(sorted(unknown))}")
        keep = {u for u, s in utt2spk.items() if s in spk_set}
    else:
        keep = set(utts or [])
        unknown = keep - set(utt2spk)
        if unknown:
            raise DataError(f"subset of {src}: {len(unknown)} unknown utterances, "
                            f"e.g. {sorted(unknown)[0]}")
    dst = Path(dst)
    dst.mkdir(parents=True, exist_ok=True)
    for name in d.utt_tables():
        if d.has(name):
            write_table(dst / name, {k: v for k, v in d.table(name).items() if k in keep})
    if d.has("wav.scp"):
        segs = d.segments()
        need = {segs[u].reco for u in keep} if segs is not None else keep
        write_table(dst / "wav.scp", {k: v for k, v in d.wav_scp.items() if k in need})
    write_utt2spk(dst, {u: utt2spk[u] for u in keep})
    for extra in ("labels.txt", "feats.yaml", "feat_dim", "trim.yaml"):
        if (d.path / extra).is_file():
            shutil.copy(d.path / extra, dst / extra)
    return dst


def split(src: str | Path, nj: int, per_spk: bool = False) -> list[Path]:
    """Split into ``nj`` parts like Kaldi's ``split_data.sh``: ``split{nj}utt/{1..nj}`` (by
    utterance, balanced counts) or ``split{nj}/{1..nj}`` with ``per_spk`` (speakers kept whole).
    """
    d = DataDir(src)
    utts = d.utts
    if nj < 1:
        raise DataError(f"split: --nj must be >= 1, got {nj}")
    if per_spk:
        spks = sorted(set(d.utt2spk.values()))
        if nj > len(spks):
            raise DataError(f"split {src}: {nj} jobs but only {len(spks)} speakers")
        chunks = [[u for u in utts if d.utt2spk[u] in set(spks[i::nj])] for i in range(nj)]
        out_root = d.path / f"split{nj}"
    else:
        if nj > len(utts):
            raise DataError(f"split {src}: {nj} jobs but only {len(utts)} utterances")
        bounds = [round(i * len(utts) / nj) for i in range(nj + 1)]
        chunks = [utts[bounds[i]:bounds[i + 1]] for i in range(nj)]
        out_root = d.path / f"split{nj}utt"
    parts = []
    for i, chunk in enumerate(chunks, 1):
        parts.append(subset(src, out_root / str(i), utts=chunk))
    return parts


def combine(dst: str | Path, srcs: list[str | Path]) -> Path:
    """Concatenate data directories; a key present in two sources is an error."""
    dst = Path(dst)
    dirs = [DataDir(s) for s in srcs]
    names = ["wav.scp", *dict.fromkeys(n for d in dirs for n in d.utt_tables())]
    fill = {"utt2aug": "[]"}  # a source without augmentations: no operations
    for name in names:
        present = [d for d in dirs if d.has(name)]
        if not present:
            continue
        if name in fill:
            merged_fill: dict[str, str] = {}
            for d in dirs:
                tab = d.table(name) if d.has(name) else {u: fill[name] for u in d.utts}
                for k, v in tab.items():
                    if k in merged_fill:
                        raise DataError(f"combine: duplicate key {k!r} in {d.path / name}")
                    merged_fill[k] = v
            write_table(dst / name, merged_fill)
            continue
        if len(present) != len(dirs) and name not in ("wav.scp",):
            missing = [str(d.path) for d in dirs if not d.has(name)]
            log.warning("combine: %s missing in %s; not written", name, ", ".join(missing))
            continue
        merged: dict[str, str] = {}
        for d in present:
            for k, v in d.table(name).items():
                if k in merged:
                    if name == "wav.scp" and merged[k] == v:
                        continue
                    raise DataError(f"combine: duplicate key {k!r} in {d.path / name}")
                merged[k] = v
        write_table(dst / name, merged)
    write_utt2spk(dst, DataDir(dst).utt2spk)
    return dst
