"""Conversation matrices for models over whole dialogues (``leaf_mmt`` stages 3 and 4, Dutta &
Ganapathy 2022, papers.md section 25).

From a data/dump directory with ``utt2dialog`` (``<dialog> <turn>``) and cached utterance
embeddings (scp files, one vector per utterance, e.g. from ``sertk embed``), each utterance
gets the matrix ``[S, E_1 + ... + E_k + 1]`` of its dialogue: one row per turn present in the
directory, in turn order, the embeddings side by side, and a last column that is 1 at the
utterance's own turn and 0 elsewhere. Only the directory's own utterances form a dialogue, so a
test set never sees a training utterance. An utterance without a ``utt2dialog`` entry is a
conversation of one turn (counted and reported).

The output directory is a training directory: ``feats.scp``/``feats.ark``, ``feat_dim``,
``utt2num_frames`` (= S), ``feats.yaml`` (``name: conversation``: not an audio front end) and
the label/speaker tables of the source.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import kaldiio
import numpy as np
import yaml

from sertk.data.ark import load_scp
from sertk.data.datadir import DataDir
from sertk.data.kaldi_table import write_table
from sertk.errors import DataError

COPIED = ("utt2spk", "spk2utt", "utt2emo", "utt2dim", "utt2dialog", "utt2gender", "text")


@dataclass
class ConversationReport:
    utts: int = 0
    dialogs: int = 0
    outside_dialogs: int = 0
    dim: int = 0


def dialogues(utt2dialog: dict[str, str], keys: list[str], source: str) -> list[list[str]]:
    """The dialogues of ``keys``, each its utterances in turn order (an utterance without a
    ``utt2dialog`` entry alone)."""
    turns: dict[str, list[tuple[int, str]]] = {}
    for utt in keys:
        if utt not in utt2dialog:
            turns[f"\0{utt}"] = [(0, utt)]
            continue
        name, turn = utt2dialog[utt].split()
        try:
            turns.setdefault(name, []).append((int(turn), utt))
        except ValueError:
            raise DataError(f"{source}: utterance {utt}: turn {turn!r} is not an integer") \
                from None
    out = []
    for name, items in sorted(turns.items()):
        items.sort()
        dup = [a for (a, _), (b, _) in zip(items, items[1:]) if a == b]
        if dup:
            raise DataError(f"{source}: dialogue {name} has turn {dup[0]} twice")
        out.append([u for _, u in items])
    return out


def _vectors(scp: Path, keys: list[str]) -> dict[str, np.ndarray]:
    """One 1-D vector per key from an embedding scp (a ``[1, E]`` matrix is flattened)."""
    table = load_scp(scp)  # sertk.data.ark: never unpickles
    out: dict[str, np.ndarray] = {}
    dims: set[int] = set()
    for k in keys:
        if k not in table:
            raise DataError(f"utterance {k}: no embedding in {scp}")
        v = np.asarray(table[k], dtype=np.float32).reshape(-1)
        if not np.all(np.isfinite(v)):
            raise DataError(f"utterance {k}: non-finite embedding in {scp}")
        dims.add(v.size)
        out[k] = v
    if len(dims) > 1:
        raise DataError(f"{scp}: embeddings of different sizes {sorted(dims)}")
    return out


def write_conversation_dir(data_dir: str | Path, embeddings: list[str | Path],
                           out_dir: str | Path) -> ConversationReport:
    """Write ``out_dir`` (see the module docstring) from ``data_dir`` and the embedding scps."""
    d, out = DataDir(data_dir), Path(out_dir)
    if not embeddings:
        raise DataError("give at least one embedding scp")
    keys = d.utts
    u2d = d.table("utt2dialog") if d.has("utt2dialog") else {}
    vecs = [_vectors(Path(s), keys) for s in embeddings]
    rep = ConversationReport(utts=len(keys), outside_dialogs=sum(k not in u2d for k in keys))
    out.mkdir(parents=True, exist_ok=True)
    mats: dict[str, np.ndarray] = {}
    convs = dialogues(u2d, keys, str(d.path / "utt2dialog"))
    rep.dialogs = len(convs)
    for conv in convs:
        rows = np.stack([np.concatenate([v[u] for v in vecs]) for u in conv])
        for i, utt in enumerate(conv):
            marker = np.zeros((len(conv), 1), dtype=np.float32)
            marker[i] = 1.0
            mats[utt] = np.concatenate([rows, marker], axis=1)
    rep.dim = next(iter(mats.values())).shape[1] if mats else 0
    with kaldiio.WriteHelper(f"ark,scp:{out / 'feats.ark'},{out / 'feats.scp'}") as w:
        for utt in sorted(mats):
            w(utt, mats[utt])
    write_table(out / "utt2num_frames", {u: str(m.shape[0]) for u, m in mats.items()})
    (out / "feat_dim").write_text(f"{rep.dim}\n")
    (out / "feats.yaml").write_text(yaml.safe_dump(
        {"name": "conversation", "sample_rate": 16000,
         "embeddings": [str(Path(s)) for s in embeddings]}))
    for name in COPIED:
        if d.has(name):
            shutil.copy(d.path / name, out / name)
    return rep
