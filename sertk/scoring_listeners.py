"""Scoring listener-adaptive models (Ando et al., ICASSP 2021; papers.md section 11).

Two tasks on a dump directory with ``utt2listener_emo`` (``utt L1:lab L2:lab ...``) and
``utt2emo``:

* **listener-dependent**: every (utterance, listener) pair with a label is one item, its
  hypothesis the arg-max of the model's posterior for that listener; WA, UA and macro-F1 over
  the pairs (one pooled confusion matrix), plus the same per listener slot;
* **majority**: the arg-max of the mean posterior over the model's listeners against
  ``utt2emo`` (as :func:`sertk.scoring.score`: every utterance needs a known label).

Listener names map to the model's listener slots, the list written at training time to
``EXP/aux/utt2listener_emo.txt`` (index order, ``other`` last when rare listeners were
pooled): a listener unseen in training maps to ``other`` when the model has it. Pairs are
skipped, counted by reason in the results, never silently: ``unseen_listener`` (no ``other``
slot), ``label_not_in_model`` (e.g. IEMOCAP's ``fru`` in a 4-class model), ``repeated_label``
(a listener's later labels of an utterance: the first usable one counts, as in training) and
``no_features`` (utterance not in ``feats.scp``).
"""

from __future__ import annotations

import json
import zipfile
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sertk.data.datadir import DataDir
from sertk.errors import SertkError
from sertk.scoring import confusion_matrix, metrics_from_confusion, score

TABLE = "utt2listener_emo"
OTHER = "other"


@dataclass
class ListenerPairs:
    """The scored (utterance, listener slot, label index) pairs and what was skipped."""

    utts: list[str] = field(default_factory=list)
    slots: list[int] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    skipped: Counter = field(default_factory=Counter)
    mapped_to_other: int = 0


def read_listener_list(model: str | Path, override: str | Path | None = None) -> list[str]:
    """The model's listener slots: ``override``, else ``aux/utt2listener_emo.txt`` of the
    experiment directory (or that file, under ``aux/`` or at the top, in a packed zip)."""
    name = f"{TABLE}.txt"
    if override is not None:
        path = Path(override)
        if not path.is_file():
            raise SertkError(f"listener list not found: {path}")
        return _names(path.read_text())
    model = Path(model)
    if model.is_dir():
        path = model / "aux" / name
        if not path.is_file():
            raise SertkError(f"{path} not found: was {model} trained with listener targets?")
        return _names(path.read_text())
    try:
        with zipfile.ZipFile(model) as zf:
            for member in (f"aux/{name}", name):
                if member in zf.namelist():
                    return _names(zf.read(member).decode())
    except (zipfile.BadZipFile, FileNotFoundError):
        raise SertkError(f"{model} is not an experiment directory or a packed model") from None
    raise SertkError(f"{model} holds no {name}: give the listener list (--listeners "
                     f"EXP/aux/{name})")


def _names(text: str) -> list[str]:
    names = [x.strip() for x in text.splitlines() if x.strip()]
    if not names or len(set(names)) != len(names):
        raise SertkError("the listener list is empty or has duplicate names")
    return names


def listener_pairs(refs: Mapping[str, Sequence[tuple[str, str]]], listeners: Sequence[str],
                   labels: Sequence[str], utts_with_feats: set[str] | None = None
                   ) -> ListenerPairs:
    """Map ``{utt: [(listener, label), ...]}`` to the model's listener slots and labels."""
    slot_of = {name: i for i, name in enumerate(listeners)}
    other = slot_of.get(OTHER)
    label_of = {lab: i for i, lab in enumerate(labels)}
    out = ListenerPairs()
    for utt in sorted(refs):
        seen: set[str] = set()
        for listener, lab in refs[utt]:
            slot = slot_of.get(listener, other)
            reason = ("no_features" if utts_with_feats is not None and utt not in utts_with_feats
                      else "unseen_listener" if slot is None
                      else "label_not_in_model" if lab not in label_of
                      else "repeated_label" if listener in seen else None)
            if reason:
                out.skipped[reason] += 1
                continue
            seen.add(listener)
            out.mapped_to_other += int(listener not in slot_of)
            out.utts.append(utt)
            out.slots.append(slot)
            out.labels.append(label_of[lab])
    return out


def score_listener_task(post: Mapping[str, np.ndarray], pairs: ListenerPairs,
                        listeners: Sequence[str], labels: Sequence[str]) -> dict[str, Any]:
    """Metrics over the pairs (``post[utt]``: ``[NL, C]`` posteriors) and per listener slot;
    ``num_pairs`` scored, ``skipped`` by reason, ``mapped_to_other``."""
    hyp = [int(np.argmax(post[u][s])) for u, s in zip(pairs.utts, pairs.slots)]
    cm = confusion_matrix(pairs.labels, hyp, len(labels))
    res = metrics_from_confusion(cm, labels)
    res["num_pairs"] = res.pop("num_utts")
    per = {}
    slots = np.asarray(pairs.slots, dtype=int)
    for i, name in enumerate(listeners):
        sel = np.flatnonzero(slots == i)
        if sel.size:
            m = metrics_from_confusion(confusion_matrix(
                [pairs.labels[j] for j in sel], [hyp[j] for j in sel], len(labels)), labels)
            per[name] = {"num_pairs": int(sel.size), "UA": m["UA"], "WA": m["WA"]}
    res["per_listener"] = per
    res["skipped"] = dict(sorted(pairs.skipped.items()))
    res["mapped_to_other"] = pairs.mapped_to_other
    return res


def score_majority_task(post: Mapping[str, np.ndarray], utt2emo: Mapping[str, str],
                        labels: Sequence[str]) -> dict[str, Any]:
    """Arg-max of the mean listener posterior against ``utt2emo``."""
    hyp = {u: labels[int(np.argmax(p.mean(0)))] for u, p in post.items()}
    return score(utt2emo, hyp, labels)


@torch.no_grad()
def dump_listener_posteriors(packed: Any, data_dir: str | Path, device: str = "cpu",
                             batch_size: int = 16) -> dict[str, np.ndarray]:
    """``{utt: [NL, C]}`` listener posteriors of a :class:`PackedModel` for a dump directory
    (mean over windows when the model was trained with ``train.eval_segment``)."""
    from sertk.data.dataset import FeatsDataset, pad_collate
    from sertk.data.sampler import BucketBatchSampler

    if not hasattr(packed.model.net, "listener_posteriors"):
        raise SertkError(f"model {packed.model.name} has no listener posteriors (train "
                         "listener_adaptive)")
    segment = (packed.config.get("train") or {}).get("eval_segment")
    ds = FeatsDataset(data_dir, None, require_labels=False)
    loader = torch.utils.data.DataLoader(
        ds, batch_sampler=BucketBatchSampler(ds.lengths, batch_size, shuffle=False),
        collate_fn=pad_collate)
    packed.model.to(device).eval()
    out: dict[str, np.ndarray] = {}
    for batch in loader:
        post = _batch_posteriors(packed.model, batch["feats"], batch["lengths"], segment, device)
        out.update(zip(batch["keys"], post.numpy()))
    return out


def _batch_posteriors(model: Any, feats: torch.Tensor, lengths: torch.Tensor,
                      segment: Sequence[int] | None, device: str) -> torch.Tensor:
    """``[B, NL, C]``: CMVN, the net's listener posteriors, mean over each utterance's
    windows (one window = the whole utterance without ``segment``)."""
    from sertk.data.segments import windows

    pieces, owner = [], []
    for b, n in enumerate(lengths.tolist()):
        spans = windows(n, int(segment[0]), int(segment[1])) if segment else [(0, n)]
        for s, e in spans:
            pieces.append(feats[b, s:e])
            owner.append(b)
    x = torch.nn.utils.rnn.pad_sequence(pieces, batch_first=True).to(device)
    lens = torch.tensor([p.shape[0] for p in pieces], device=device)
    post = model.net.listener_posteriors(model.cmvn(x), lens).float().cpu()
    idx = torch.tensor(owner)
    total = torch.zeros(len(lengths), *post.shape[1:]).index_add_(0, idx, post)
    return total / torch.bincount(idx, minlength=len(lengths)).view(-1, 1, 1).float()


def score_listeners(model: str | Path, data_dir: str | Path, out_json: str | Path,
                    listeners_file: str | Path | None = None, device: str = "cpu",
                    batch_size: int = 16) -> dict[str, Any]:
    """Both tasks for a trained model (experiment directory or packed zip) on a dump
    directory; writes ``out_json`` and returns the results."""
    from sertk.infer.packed import load_packed
    from sertk.train.targets import parse_listener_labels

    d = DataDir(data_dir)
    if not d.has(TABLE):
        raise SertkError(f"{d.path / TABLE} not found (per-listener labels to score)")
    if not d.has("utt2emo"):
        raise SertkError(f"{d.path / 'utt2emo'} not found (majority labels to score)")
    listeners = read_listener_list(model, listeners_file)
    packed = load_packed(model, device)
    n_model = getattr(packed.model.net, "num_listeners", len(listeners))
    if n_model != len(listeners):
        raise SertkError(f"the listener list has {len(listeners)} names, the model "
                         f"{n_model} listeners")
    post = dump_listener_posteriors(packed, data_dir, device, batch_size)
    pairs = listener_pairs(parse_listener_labels(d, TABLE), listeners, packed.labels, set(post))
    res = {"model": str(model), "data": str(data_dir), "labels": list(packed.labels),
           "listeners": listeners,
           "listener_dependent": score_listener_task(post, pairs, listeners, packed.labels),
           "majority": score_majority_task(post, d.utt2emo, packed.labels)}
    out_json = Path(out_json)
    out_json.parent.mkdir(parents=True, exist_ok=True)
    out_json.write_text(json.dumps(res, indent=2) + "\n")
    return res


def summary_lines(res: Mapping[str, Any]) -> list[str]:
    """One line per task: UA, WA, macro-F1 and the counts."""
    def metrics(r: Mapping[str, Any]) -> str:
        return (f"UA {100 * r['UA']:.2f}  WA {100 * r['WA']:.2f}  "
                f"macro-F1 {100 * r['macro_F1']:.2f}")

    ld, mj = res["listener_dependent"], res["majority"]
    skipped = ", ".join(f"{n} {k}" for k, n in ld["skipped"].items()) or "none"
    return [f"listener-dependent: {metrics(ld)}  ({ld['num_pairs']} pairs; "
            f"{ld['mapped_to_other']} mapped to {OTHER}; skipped: {skipped})",
            f"majority: {metrics(mj)}  ({mj['num_utts']} utts)"]


def aggregate_folds(paths: Sequence[str | Path]) -> dict[str, Any]:
    """Mean and standard deviation over folds (population std, as ``sertk score``'s fold
    aggregation) of UA, WA and macro-F1 of both tasks, from per-fold results JSON files."""
    if not paths:
        raise SertkError("no per-fold listener results to aggregate")
    folds = []
    for p in paths:
        try:
            folds.append(json.loads(Path(p).read_text()))
        except (OSError, ValueError) as exc:
            raise SertkError(f"{p}: cannot read listener results ({exc})") from None
    out: dict[str, Any] = {"num_folds": len(folds), "folds": [str(p) for p in paths]}
    for task in ("listener_dependent", "majority"):
        out[task] = {m: {"mean": float(np.mean(v)), "std": float(np.std(v)), "folds": v}
                     for m in ("UA", "WA", "macro_F1")
                     for v in [[float(f[task][m]) for f in folds]]}
    return out


def aggregate_lines(agg: Mapping[str, Any]) -> list[str]:
    """One line per task: mean ± std over the folds."""
    def cell(r: Mapping[str, Any], m: str) -> str:
        return f"{m.replace('_', '-')} {100 * r[m]['mean']:.2f} ± {100 * r[m]['std']:.2f}"

    n = agg["num_folds"]
    return [f"{n} folds, {task.replace('_', '-')}: "
            + "  ".join(cell(agg[task], m) for m in ("UA", "WA", "macro_F1"))
            for task in ("listener_dependent", "majority")]
