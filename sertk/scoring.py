"""Scoring: WA, UA, macro-F1, per-class recall, confusion matrices; aggregation over folds.

Conventions (checked against scikit-learn in ``tests/test_scoring.py``):

* WA  = accuracy = ``accuracy_score``.
* UA  = mean recall over the classes present in the reference = ``balanced_accuracy_score``.
* macro-F1 = unweighted mean F1 over the classes present in the reference or the hypothesis,
  0 where undefined = ``f1_score(average="macro", zero_division=0)``.

Fold aggregation reports mean and standard deviation (population, ``ddof=0``) of each metric,
plus the pooled confusion matrix (sum over folds) and the metrics computed from it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sertk.data.kaldi_table import read_table
from sertk.errors import DataError, SertkError


def confusion_matrix(ref: Sequence[int], hyp: Sequence[int], num_classes: int) -> np.ndarray:
    """``cm[i, j]`` = number of utterances of reference class i recognised as j."""
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(cm, (np.asarray(ref, dtype=int), np.asarray(hyp, dtype=int)), 1)
    return cm


def metrics_from_confusion(cm: np.ndarray, labels: Sequence[str]) -> dict[str, Any]:
    cm = np.asarray(cm, dtype=np.float64)
    support = cm.sum(1)
    predicted = cm.sum(0)
    tp = np.diag(cm)
    total = cm.sum()
    present = support > 0
    recall = np.divide(tp, support, out=np.zeros_like(tp), where=present)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(tp), where=denom > 0)
    f1_classes = present | (predicted > 0)
    return {
        "num_utts": int(total),
        "WA": float(tp.sum() / total) if total else 0.0,
        "UA": float(recall[present].mean()) if present.any() else 0.0,
        "macro_F1": float(f1[f1_classes].mean()) if f1_classes.any() else 0.0,
        "recall": {lab: float(r) for lab, r, p in zip(labels, recall, present) if p},
        "labels": list(labels),
        "confusion": cm.astype(np.int64).tolist(),
    }


def score(ref: Mapping[str, str], hyp: Mapping[str, str], labels: Sequence[str]
          ) -> dict[str, Any]:
    """Score hypotheses against references, both ``{utt: label}``.

    Every reference utterance needs a hypothesis and vice versa; labels outside ``labels``
    are errors: nothing is silently dropped.
    """
    index = {lab: i for i, lab in enumerate(labels)}
    missing = sorted(set(ref) - set(hyp))
    extra = sorted(set(hyp) - set(ref))
    if missing:
        raise DataError(f"scoring: {len(missing)} reference utterances have no hypothesis, "
                        f"e.g. {missing[0]}")
    if extra:
        raise DataError(f"scoring: {len(extra)} hypotheses have no reference, e.g. {extra[0]}")
    r, h = [], []
    for utt in sorted(ref):
        for lab, out in ((ref[utt], r), (hyp[utt], h)):
            if lab not in index:
                raise DataError(f"utterance {utt}: unknown label {lab!r} "
                                f"(known: {' '.join(labels)})")
            out.append(index[lab])
    return metrics_from_confusion(confusion_matrix(r, h, len(labels)), labels)


def read_hyp(path: str | Path) -> dict[str, str]:
    """Hypotheses from ``utt label`` text or from ``sertk infer``/``predict`` JSON lines."""
    path = Path(path)
    if path.suffix == ".jsonl":
        out: dict[str, str] = {}
        for lineno, line in enumerate(path.read_text().splitlines(), 1):
            rec = json.loads(line)
            key = rec.get("key")
            if key in out:
                raise DataError(f"{path}:{lineno}: duplicate key {key!r}")
            out[key] = rec["label"]
        return out
    return read_table(path, 2, 2)


def format_confusion(cm: Sequence[Sequence[int]], labels: Sequence[str]) -> str:
    width = max(6, *(len(lab) for lab in labels)) + 1
    lines = ["ref\\hyp".ljust(width) + "".join(lab.rjust(width) for lab in labels)]
    for lab, row in zip(labels, cm):
        lines.append(lab.ljust(width) + "".join(str(int(v)).rjust(width) for v in row))
    return "\n".join(lines)


def plot_confusion(cm: Sequence[Sequence[int]], labels: Sequence[str], path: str | Path,
                   title: str = "") -> None:
    """Save the confusion matrix (row-normalised colours, counts as text) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cm = np.asarray(cm, dtype=float)
    norm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    size = 1.2 + 0.6 * len(labels)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("recognised")
    ax.set_ylabel("reference")
    for i in range(len(labels)):
        for j in range(len(labels)):
            ax.text(j, i, f"{int(cm[i, j])}", ha="center", va="center",
                    color="white" if norm[i, j] > 0.5 else "black", fontsize=8)
    fig.colorbar(im, ax=ax, fraction=0.046, label="recall")
    if title:
        ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_results(res: dict[str, Any], out_dir: str | Path, title: str = "") -> None:
    """Write ``results.json``, ``confusion.txt`` and ``confusion.png`` into ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "results.json").write_text(json.dumps(res, indent=2) + "\n")
    (out_dir / "confusion.txt").write_text(format_confusion(res["confusion"], res["labels"])
                                           + "\n")
    plot_confusion(res["confusion"], res["labels"], out_dir / "confusion.png", title)


def summary_line(res: Mapping[str, Any]) -> str:
    return (f"UA {100 * res['UA']:.2f}  WA {100 * res['WA']:.2f}  "
            f"macro-F1 {100 * res['macro_F1']:.2f}  ({res['num_utts']} utts)")


def aggregate(results: Sequence[Mapping[str, Any]], names: Sequence[str] | None = None
              ) -> dict[str, Any]:
    """Mean and std over folds, and the pooled confusion matrix with its metrics."""
    if not results:
        raise SertkError("aggregate: no fold results")
    labels = results[0]["labels"]
    for res in results[1:]:
        if res["labels"] != labels:
            raise SertkError("aggregate: folds have different label lists")
    out: dict[str, Any] = {"num_folds": len(results), "labels": labels}
    for key in ("UA", "WA", "macro_F1"):
        vals = np.array([r[key] for r in results])
        out[key] = {"mean": float(vals.mean()), "std": float(vals.std()),
                    "folds": vals.tolist()}
    if names is not None:
        out["fold_names"] = list(names)
    pooled = np.sum([np.asarray(r["confusion"]) for r in results], axis=0)
    out["pooled"] = metrics_from_confusion(pooled, labels)
    return out


def results_markdown(agg: Mapping[str, Any], fold_names: Sequence[str],
                     seconds: Sequence[float | None], title: str = "", command: str = ""
                     ) -> str:
    """A Markdown section: per-fold rows, mean ± std, pooled metrics, and the command."""
    pct = 100.0
    lines = [f"## {title}" if title else "## Results", ""]
    if command:
        lines += ["Command:", "", f"    {command}", ""]
    lines += [f"Protocol: {agg['num_folds']} fold(s), {len(agg['labels'])} classes "
              f"({' '.join(agg['labels'])}); UA = unweighted average recall, WA = accuracy; "
              "mean ± std (population) over folds.", "",
              "| fold | UA | WA | macro-F1 | train time (s) |", "|---|---|---|---|---|"]
    for i, name in enumerate(fold_names):
        sec = seconds[i] if i < len(seconds) else None
        lines.append(f"| {name} | {pct * agg['UA']['folds'][i]:.2f} | "
                     f"{pct * agg['WA']['folds'][i]:.2f} | "
                     f"{pct * agg['macro_F1']['folds'][i]:.2f} | "
                     f"{'' if sec is None else f'{sec:.0f}'} |")
    known = [s for s in seconds if s is not None]
    lines.append(f"| **mean ± std** | **{pct * agg['UA']['mean']:.2f} ± "
                 f"{pct * agg['UA']['std']:.2f}** | {pct * agg['WA']['mean']:.2f} ± "
                 f"{pct * agg['WA']['std']:.2f} | {pct * agg['macro_F1']['mean']:.2f} ± "
                 f"{pct * agg['macro_F1']['std']:.2f} | "
                 f"{f'total {sum(known):.0f}' if known else ''} |")
    pooled = agg["pooled"]
    lines += ["", f"Pooled over folds: UA {pct * pooled['UA']:.2f}, WA {pct * pooled['WA']:.2f}, "
              f"macro-F1 {pct * pooled['macro_F1']:.2f} ({pooled['num_utts']} utterances).",
              "", "```", format_confusion(pooled["confusion"], pooled["labels"]), "```", ""]
    return "\n".join(lines)
