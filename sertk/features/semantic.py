"""Frame-level semantic features from a word alignment, and pasting feature streams
(Tzirakis et al., ICASSP 2021, papers.md section 13; ``bin/semantic_feats.py``).

**Semantic features** (:func:`make_semantic_feats`). Inputs:

* a word alignment as a CTM file, Kaldi convention ``utt channel start dur word [conf]``,
  times in seconds from the start of the audio the reference dump read (after ``segments``
  or trimming); the channel and confidence are ignored;
* per-token speech embeddings (Speech2Vec segment embeddings, computed outside sertk; or, for
  a corpus without them, the words' text vectors, :func:`write_token_vectors`) in a
  word2vec text file (optional ``n dim`` header) keyed ``<utt>-<k>``: ``k`` is the 1-based
  position of the word among the utterance's CTM lines sorted by start time, e.g.
  ``utt001-1``, ``utt001-2``. A token without an embedding gets zeros (counted, reported);
* optionally the map ``W`` (``.npy``, ``[E_t, E_s]``; ``sertk.text.cross_modal``) into the
  text space: a token's feature is ``W s`` with ``s`` scaled to unit length first
  (``normalize``, as when ``W`` was learnt); without ``W`` the (scaled) vectors are used;
* the reference stream's feature scp (e.g. the ``waveform`` dump), which gives each
  utterance's frame count, and the frame shift (from the dump's ``feats.yaml``: ``frame_ms``
  or ``frame_shift``, or given).

A word ``[start, start + dur)`` covers frames ``round(start / shift)`` to
``round((start + dur) / shift)`` (exclusive; at least one frame), cut at the utterance's
end; its vector is repeated over these frames. Frames outside words are zeros, as is every
frame of an utterance without CTM entries (counted). A CTM utterance missing from the
reference scp is an error. Output: ``OUT/feats.scp`` (``OUT/data/feats.ark``),
``utt2num_frames`` and ``feat_dim``.

**Paste** (:func:`paste_feats`, :func:`paste_dirs`; Kaldi's ``paste-feats``): rows of two
streams side by side, ``[first | second]``. The second stream is zero-padded or truncated to
the first one's frame count; mismatches by more than ``tolerance`` frames are counted and
listed. :func:`paste_dirs` makes a dump directory: the pasted scp and the first directory's
tables and ``feats.yaml``, plus ``paste.yaml`` with both widths (the model's ``wave_dim`` and
``semantic_dim``).
"""

from __future__ import annotations

import logging
import shutil
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import kaldiio
import numpy as np

from sertk.config import load_yaml, save_yaml
from sertk.data.ark import ScpReader, load_scp
from sertk.data.dialog import write_context_tables
from sertk.data.kaldi_table import read_table, write_table
from sertk.errors import SertkError
from sertk.text.cross_modal import load_embeddings, load_map, normalize_rows

log = logging.getLogger(__name__)
PASTE_OWN = ("feats.scp", "utt2num_frames", "feat_dim", "paste.yaml")


@dataclass(frozen=True)
class Word:
    start: float
    dur: float
    word: str


# ---------------------------------------------------------------- alignment


def read_ctm(path: str | Path) -> dict[str, list[Word]]:
    """``{utt: [Word, ...]}`` sorted by start time (stable); errors name the file and line."""
    path = Path(path)
    if not path.is_file():
        raise SertkError(f"{path}: CTM file not found")
    ctm: dict[str, list[Word]] = {}
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        fields = line.split()
        if not fields or fields[0].startswith(";;"):
            continue
        if len(fields) not in (5, 6):
            raise SertkError(f"{path}:{lineno}: expected 'utt channel start dur word [conf]', "
                             f"got {line!r}")
        try:
            start, dur = float(fields[2]), float(fields[3])
        except ValueError:
            raise SertkError(f"{path}:{lineno}: start and duration must be numbers") from None
        if start < 0 or dur < 0:
            raise SertkError(f"{path}:{lineno}: negative start or duration")
        ctm.setdefault(fields[0], []).append(Word(start, dur, fields[4]))
    for words in ctm.values():
        words.sort(key=lambda w: w.start)
    return ctm


def token_key(utt: str, k: int) -> str:
    """Embedding key of the ``k``-th (1-based) word of ``utt``."""
    return f"{utt}-{k}"


def word_frames(word: Word, frame_shift: float) -> tuple[int, int]:
    """``[begin, end)`` frames of a word: rounded boundaries, at least one frame."""
    begin = int(round(word.start / frame_shift))
    return begin, max(begin + 1, int(round((word.start + word.dur) / frame_shift)))


def upsample(words: list[Word], vectors: np.ndarray, num_frames: int, frame_shift: float
             ) -> np.ndarray:
    """Repeat each word's vector (row of ``vectors``) over its frames -> ``[num_frames, E]``,
    zeros outside words (a later word overwrites an overlap)."""
    out = np.zeros((num_frames, vectors.shape[1]), dtype=np.float32)
    for word, vec in zip(words, vectors):
        begin, end = word_frames(word, frame_shift)
        out[begin:min(end, num_frames)] = vec
    return out


@dataclass
class TokenReport:
    tokens: int = 0
    types: int = 0
    missing: list[str] = field(default_factory=list)  # word types without a vector


def word_type_vector(word: str, dim: int, seed: int = 0) -> np.ndarray:
    """A fixed random unit vector per word type (the same in every run and fold)."""
    rng = np.random.default_rng([seed, zlib.crc32(word.encode("utf-8"))])
    vec = rng.standard_normal(dim)
    return (vec / np.linalg.norm(vec)).astype(np.float32)


def write_token_vectors(ctm: str | Path, out: str | Path,
                        word_vectors: str | Path | None = None, random_dim: int = 0,
                        seed: int = 0) -> TokenReport:
    """Per-token vectors keyed ``<utt>-<k>`` (word2vec text format) from the words of a CTM:
    each token gets its word's vector from ``word_vectors`` (a word2vec/GloVe text file; the
    word as written, else lower-cased; a word without a vector is left out, so ``make`` gives
    it zeros, and reported), or with ``random_dim`` a fixed random vector per word type
    (:func:`word_type_vector`). For corpora without speech embeddings of word segments: the
    stream then carries the transcript's words at their aligned frames."""
    if (word_vectors is None) == (random_dim <= 0):
        raise SertkError("give either word vectors or a positive random dimension")
    table: dict[str, np.ndarray] = {}
    if word_vectors is not None:
        words, vecs = load_embeddings(word_vectors)
        table = dict(zip(words, vecs))
    report, rows, types, missing = TokenReport(), [], set(), set()
    for utt, words_of in read_ctm(ctm).items():
        for k, word in enumerate(words_of, 1):
            types.add(word.word)
            vec = (word_type_vector(word.word, random_dim, seed) if random_dim > 0
                   else table.get(word.word, table.get(word.word.lower())))
            if vec is None:
                missing.add(word.word)
                continue
            rows.append(f"{token_key(utt, k)} " + " ".join(f"{v:.6g}" for v in vec) + "\n")
    report.tokens, report.types, report.missing = len(rows), len(types), sorted(missing)
    if not rows:
        raise SertkError(f"{ctm}: no token got a vector")
    dim = random_dim if random_dim > 0 else len(next(iter(table.values())))
    Path(out).write_text(f"{len(rows)} {dim}\n" + "".join(rows), encoding="utf-8")
    return report


# ---------------------------------------------------------------- reference stream


def frame_counts(scp: str | Path) -> dict[str, int]:
    """Frames per utterance of a feature scp (from ``utt2num_frames`` beside it if present)."""
    scp = Path(scp)
    if not scp.is_file():
        raise SertkError(f"{scp}: feature scp not found")
    keys = list(read_table(scp, 2, 2))
    lens = scp.parent / "utt2num_frames"
    if lens.is_file():
        table = read_table(lens, 2, 2)
        if all(k in table for k in keys):
            return {k: int(table[k]) for k in keys}
    reader = load_scp(scp)  # never unpickles
    return {k: int(reader[k].shape[0]) for k in keys}


def frame_shift_of(dump_dir: str | Path) -> float:
    """Frame shift in seconds from a dump directory's ``feats.yaml``."""
    conf = Path(dump_dir) / "feats.yaml"
    cfg = load_yaml(conf) if conf.is_file() else {}
    ms = cfg.get("frame_ms", cfg.get("frame_shift"))
    if ms is None:
        raise SertkError(f"{conf}: no frame_ms or frame_shift; give the frame shift explicitly")
    return float(ms) / 1000.0


# ---------------------------------------------------------------- semantic features


@dataclass
class SemanticReport:
    num_utts: int = 0
    dim: int = 0
    tokens: int = 0
    missing_tokens: list[str] = field(default_factory=list)  # keys without an embedding
    utts_without_words: int = 0
    words_past_end: int = 0   # words starting at or after the utterance's last frame


def token_vectors(embeddings: str | Path, w: np.ndarray | None = None, normalize: bool = True
                  ) -> tuple[dict[str, int], np.ndarray]:
    """``({key: row}, mapped vectors [N, E])`` of a per-token embedding file."""
    keys, vecs = load_embeddings(embeddings)
    if normalize:
        vecs = normalize_rows(vecs)
    if w is not None:
        if w.shape[1] != vecs.shape[1]:
            raise SertkError(f"{embeddings}: {vecs.shape[1]}-dim embeddings, but the map "
                             f"expects {w.shape[1]} (W is {w.shape[0]} x {w.shape[1]})")
        vecs = vecs @ w.T
    return {k: i for i, k in enumerate(keys)}, vecs.astype(np.float32)


def utterance_features(utt: str, words: list[Word], index: dict[str, int], vecs: np.ndarray,
                       num_frames: int, frame_shift: float, report: SemanticReport
                       ) -> np.ndarray:
    """One utterance's ``[num_frames, E]`` semantic matrix (counts go to ``report``)."""
    rows = np.zeros((len(words), vecs.shape[1]), dtype=np.float32)
    for k, word in enumerate(words, 1):
        key = token_key(utt, k)
        if key in index:
            rows[k - 1] = vecs[index[key]]
        else:
            report.missing_tokens.append(key)
        report.words_past_end += word_frames(word, frame_shift)[0] >= num_frames
    report.tokens += len(words)
    return upsample(words, rows, num_frames, frame_shift)


def make_semantic_feats(ctm: str | Path, embeddings: str | Path, ref_scp: str | Path,
                        out_dir: str | Path, w: np.ndarray | str | Path | None = None,
                        frame_shift: float | None = None, normalize: bool = True
                        ) -> SemanticReport:
    """Write frame-level semantic features for every utterance of ``ref_scp`` to
    ``out_dir`` (see the module docstring). ``frame_shift`` in seconds (default: from the
    reference dump's ``feats.yaml``)."""
    ref_scp = Path(ref_scp)
    shift = frame_shift if frame_shift is not None else frame_shift_of(ref_scp.parent)
    if shift <= 0:
        raise SertkError(f"frame shift must be positive, got {shift}")
    lens = frame_counts(ref_scp)
    alignment = read_ctm(ctm)
    unknown = [u for u in alignment if u not in lens]
    if unknown:
        raise SertkError(f"{ctm}: {len(unknown)} CTM utterance(s) not in {ref_scp}, first "
                         f"{unknown[0]!r}")
    if isinstance(w, (str, Path)):
        w = load_map(w)
    index, vecs = token_vectors(embeddings, w, normalize)
    report = SemanticReport(dim=vecs.shape[1])
    out_dir = Path(out_dir).resolve()
    (out_dir / "data").mkdir(parents=True, exist_ok=True)
    ark, scp = out_dir / "data" / "feats.ark", out_dir / "data" / "feats.scp"
    with kaldiio.WriteHelper(f"ark,scp:{ark},{scp}") as writer:
        for utt, n in lens.items():
            words = alignment.get(utt, [])
            report.utts_without_words += not words
            writer(utt, utterance_features(utt, words, index, vecs, n, shift, report))
    report.num_utts = len(lens)
    if report.tokens and len(report.missing_tokens) == report.tokens:
        raise SertkError(f"{embeddings}: no key matches a CTM token (expected keys like "
                         f"{token_key(next(iter(alignment)), 1)!r})")
    _finish_dir(out_dir, scp, lens, report.dim)
    return report


def _finish_dir(out_dir: Path, job_scp: Path, lens: dict[str, int], dim: int) -> None:
    write_table(out_dir / "feats.scp", read_table(job_scp, 2, 2))
    write_table(out_dir / "utt2num_frames", {k: str(v) for k, v in lens.items()})
    (out_dir / "feat_dim").write_text(f"{dim}\n")
    job_scp.unlink()


# ---------------------------------------------------------------- paste


@dataclass
class PasteReport:
    num_utts: int = 0
    dims: tuple[int, int] = (0, 0)
    adjusted: int = 0          # utterances whose second stream was padded or truncated
    large: list[tuple[str, int, int]] = field(default_factory=list)  # (utt, first, second)
    only_second: int = 0       # utterances of the second stream left out


def fit_frames(mat: np.ndarray, num_frames: int) -> np.ndarray:
    """Zero-pad or truncate ``mat`` to ``num_frames`` rows."""
    if mat.shape[0] >= num_frames:
        return mat[:num_frames]
    pad = np.zeros((num_frames - mat.shape[0], mat.shape[1]), dtype=mat.dtype)
    return np.concatenate([mat, pad])


def paste_feats(first_scp: str | Path, second_scp: str | Path, out_dir: str | Path,
                tolerance: int = 1) -> PasteReport:
    """``[first | second]`` for every utterance of ``first_scp`` into ``out_dir/feats.scp``
    (``out_dir/data/feats.ark``), ``utt2num_frames`` and ``feat_dim``."""
    first, second = _open_scp(first_scp), _open_scp(second_scp)
    missing = [k for k in first if k not in second]
    if missing:
        raise SertkError(f"{second_scp}: {len(missing)} utterance(s) of {first_scp} missing, "
                         f"first {missing[0]!r}")
    report = PasteReport(only_second=sum(k not in first for k in second))
    out_dir = Path(out_dir).resolve()
    (out_dir / "data").mkdir(parents=True, exist_ok=True)
    ark, scp = out_dir / "data" / "feats.ark", out_dir / "data" / "feats.scp"
    lens: dict[str, int] = {}
    with kaldiio.WriteHelper(f"ark,scp:{ark},{scp}") as writer:
        for key in first:
            mat = _paste_one(key, first[key], second[key], tolerance, report)
            writer(key, mat)
            lens[key] = mat.shape[0]
    report.num_utts = len(lens)
    _finish_dir(out_dir, scp, lens, sum(report.dims))
    return report


def _open_scp(scp: str | Path) -> ScpReader:
    if not Path(scp).is_file():
        raise SertkError(f"{scp}: feature scp not found")
    return load_scp(scp)  # never unpickles


def _paste_one(key: str, a: np.ndarray, b: np.ndarray, tolerance: int, report: PasteReport
               ) -> np.ndarray:
    dims = (a.shape[1], b.shape[1])
    if report.dims == (0, 0):
        report.dims = dims
    elif dims != report.dims:
        raise SertkError(f"utterance {key}: widths {dims} differ from the first utterance's "
                         f"{report.dims}")
    if b.shape[0] != a.shape[0]:
        report.adjusted += 1
        if abs(b.shape[0] - a.shape[0]) > tolerance:
            report.large.append((key, a.shape[0], b.shape[0]))
        b = fit_frames(b, a.shape[0])
    return np.concatenate([a, b.astype(a.dtype)], axis=1)


def paste_dirs(first_dir: str | Path, second_dir: str | Path, out_dir: str | Path,
               tolerance: int = 1) -> PasteReport:
    """Paste two dump directories' ``feats.scp`` into a dump directory ``out_dir``: the
    pasted features, the first directory's other files (tables, ``feats.yaml``; not its CMVN
    statistics) and ``paste.yaml`` (``wave_dim``, ``semantic_dim``, sources)."""
    first_dir, second_dir = Path(first_dir), Path(second_dir)
    report = paste_feats(first_dir / "feats.scp", second_dir / "feats.scp", out_dir, tolerance)
    out_dir = Path(out_dir)
    for f in sorted(first_dir.iterdir()):
        if f.is_file() and f.name not in PASTE_OWN and not f.name.startswith("cmvn"):
            shutil.copy(f, out_dir / f.name)
    save_yaml({"wave_dim": report.dims[0], "semantic_dim": report.dims[1],
               "first": str(first_dir.resolve()), "second": str(second_dir.resolve()),
               "tolerance": tolerance, "adjusted": report.adjusted,
               "large_mismatches": len(report.large)}, out_dir / "paste.yaml")
    write_context_tables(out_dir)  # the contexts' pasted features
    return report
