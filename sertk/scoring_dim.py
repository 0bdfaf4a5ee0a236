"""Scoring of dimensional emotion (arousal, valence, dominance): CCC, MSE and Pearson's r per
dimension, their mean ± std over folds, and a scatter plot of predicted against true values.

The concordance correlation coefficient (Lin 1989) is the measure of the dimensional SER
literature (e.g. Atmaja & Akagi; Tzirakis et al.):
``CCC = 2 cov(x, y) / (var(x) + var(y) + (mean(x) - mean(y))^2)`` (population moments).
Tables are Kaldi ``utt2dim`` files: ``<utt> <arousal> <valence> <dominance>``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sertk.data.kaldi_table import read_table
from sertk.errors import DataError, SertkError

DIMS = ("arousal", "valence", "dominance")


def ccc(x: np.ndarray, y: np.ndarray) -> float:
    """Concordance correlation coefficient of two 1-D arrays (0 when both are constant)."""
    mx, my = x.mean(), y.mean()
    denom = x.var() + y.var() + (mx - my) ** 2
    return float(2 * ((x - mx) * (y - my)).mean() / denom) if denom > 0 else 0.0


def pearson(x: np.ndarray, y: np.ndarray) -> float:
    sx, sy = x.std(), y.std()
    return float(((x - x.mean()) * (y - y.mean())).mean() / (sx * sy)) if sx * sy > 0 else 0.0


def read_dims(path: str | Path) -> dict[str, np.ndarray]:
    """An ``utt2dim``-style table as ``{utt: array([a, v, d])}``; a non-number or NaN is an
    error naming the utterance and the file."""
    out = {}
    for utt, rest in read_table(path, 4, 4).items():
        try:
            vals = np.array([float(v) for v in rest.split()])
        except ValueError:
            raise DataError(f"{path}: utterance {utt}: values must be numbers: {rest!r}") from None
        if not np.isfinite(vals).all():
            raise DataError(f"{path}: utterance {utt}: NaN or infinite value")
        out[utt] = vals
    return out


def score_dims(ref: Mapping[str, np.ndarray], hyp: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """CCC, MSE and Pearson's r per dimension over the reference utterances (every one must
    have a prediction)."""
    missing = sorted(set(ref) - set(hyp))
    if missing:
        raise SertkError(f"{len(missing)} reference utterances have no prediction, e.g. "
                         f"{missing[0]}")
    if len(ref) < 2:
        raise SertkError("dimensional scoring needs at least 2 utterances")
    keys = sorted(ref)
    r = np.stack([ref[k] for k in keys])
    h = np.stack([hyp[k] for k in keys])
    return {"task": "dimensional", "dims": list(DIMS), "num_utts": len(keys),
            "CCC": [ccc(h[:, i], r[:, i]) for i in range(3)],
            "MSE": [float(((h[:, i] - r[:, i]) ** 2).mean()) for i in range(3)],
            "Pearson": [pearson(h[:, i], r[:, i]) for i in range(3)]}


def aggregate_dims(results: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Mean and std over folds of each metric and dimension."""
    if not results:
        raise SertkError("aggregate: no fold results")
    out: dict[str, Any] = {"task": "dimensional", "dims": list(DIMS),
                           "num_folds": len(results)}
    for metric in ("CCC", "MSE", "Pearson"):
        vals = np.array([r[metric] for r in results])  # [folds, 3]
        out[metric] = {"mean": vals.mean(0).tolist(), "std": vals.std(0).tolist(),
                       "folds": vals.tolist()}
    return out


def summary_dims(res: Mapping[str, Any]) -> str:
    """One line: CCC (and MSE) per dimension, for one test set or the fold means."""
    def val(metric: str, i: int) -> str:
        m = res[metric]
        return (f"{m['mean'][i]:.3f} ± {m['std'][i]:.3f}" if isinstance(m, dict)
                else f"{m[i]:.3f}")
    return "  ".join(f"{d}: CCC {val('CCC', i)} MSE {val('MSE', i)}"
                     for i, d in enumerate(DIMS))


def results_markdown_dims(agg: Mapping[str, Any], fold_names: Sequence[str], title: str = "",
                          command: str = "") -> str:
    """A Markdown section for dimensional folds: CCC per fold and dimension, mean ± std of
    CCC, MSE and Pearson's r, and the command."""
    dims = agg["dims"]
    lines = [f"## {title}" if title else "## Results", ""]
    if command:
        lines += ["Command:", "", f"    {command}", ""]
    lines += [f"Protocol: {agg['num_folds']} fold(s), dimensions {' '.join(dims)}; CCC = "
              "concordance correlation coefficient; mean ± std (population) over folds.", "",
              "| fold | " + " | ".join(f"CCC {d}" for d in dims) + " |",
              "|---|" + "---|" * len(dims)]
    for i, name in enumerate(fold_names):
        lines.append(f"| {name} | " + " | ".join(f"{v:.3f}" for v in agg["CCC"]["folds"][i])
                     + " |")
    for metric in ("CCC", "MSE", "Pearson"):
        m = agg[metric]
        lines.append(f"| **{metric} mean ± std** | " + " | ".join(
            f"{mu:.3f} ± {sd:.3f}" for mu, sd in zip(m["mean"], m["std"])) + " |")
    return "\n".join(lines + [""])


def plot_scatter(ref: Mapping[str, np.ndarray], hyp: Mapping[str, np.ndarray],
                 path: str | Path, title: str = "") -> None:
    """Predicted against true values, one panel per dimension, with the identity line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = sorted(ref)
    r = np.stack([ref[k] for k in keys])
    h = np.stack([hyp[k] for k in keys])
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.8))
    for i, (ax, name) in enumerate(zip(axes, DIMS)):
        ax.scatter(r[:, i], h[:, i], s=6, alpha=0.5)
        lo, hi = min(r[:, i].min(), h[:, i].min()), max(r[:, i].max(), h[:, i].max())
        ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
        ax.set_xlabel(f"true {name}")
        ax.set_ylabel(f"predicted {name}")
        ax.set_title(f"{name}: CCC {ccc(h[:, i], r[:, i]):.3f}")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
