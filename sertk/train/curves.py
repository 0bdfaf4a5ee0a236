"""Training diagnostics: learning curves, TensorBoard scalars and the data-waiting fraction.

At the end of every epoch the trainer calls :func:`record_epoch`, which redraws
``EXP/curves.png`` from ``EXP/metrics.csv`` (loss train/dev; train accuracy and dev UA, or
dev CCC for a dimensional run) and, when TensorBoard is installed, appends the epoch's scalars
to event files under ``EXP/tensorboard`` (the ESPnet / SpeechBrain convention; without it this
is skipped, logged once). :func:`plot_folds` draws the folds of a recipe run in one figure
(``sertk plot curves``). :class:`WaitTimer` measures the time a training loop is blocked on its
DataLoader iterator.
"""

from __future__ import annotations

import atexit
import csv
import logging
import math
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from sertk.errors import SertkError

log = logging.getLogger(__name__)
_WRITERS: dict[Path, Any] = {}
_NO_TENSORBOARD: list[bool] = []  # non-empty once "not installed" has been logged


class WaitTimer:
    """Wraps an iterable and adds up the time spent inside its ``next()``: the time a
    training loop waits for its data. ``fraction`` is that time over the time since the timer
    was made."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.wait = 0.0

    def wrap(self, items: Iterable) -> Iterator:
        it = iter(items)
        while True:
            t = time.perf_counter()
            try:
                item = next(it)
            except StopIteration:
                self.wait += time.perf_counter() - t
                return
            self.wait += time.perf_counter() - t
            yield item

    @property
    def fraction(self) -> float:
        total = time.perf_counter() - self.start
        return min(1.0, self.wait / total) if total > 0 else 0.0


def read_metrics(path: str | Path) -> list[dict[str, str]]:
    """Rows of a ``metrics.csv``."""
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _column(rows: list[dict[str, str]], name: str) -> list[float]:
    """A column as floats (NaN where missing or empty)."""
    out = []
    for r in rows:
        try:
            out.append(float(r.get(name) or "nan"))
        except ValueError:
            out.append(math.nan)
    return out


def _metric_name(rows: list[dict[str, str]]) -> str:
    """``CCC`` for a dimensional run's metrics, ``UA`` otherwise."""
    return "CCC" if rows and "valid_CCC" in rows[0] else "UA"


def _figure(ncols: int) -> tuple[Any, Any]:
    """A figure on the Agg canvas, without pyplot (no GUI backend, no global state)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5 * ncols, 3.6))
    FigureCanvasAgg(fig)
    return fig, fig.subplots(1, ncols)


def _save(fig: Any, out: Path) -> None:
    fig.tight_layout()
    tmp = out.with_name(out.name + ".tmp.png")
    fig.savefig(tmp, dpi=100)
    tmp.replace(out)  # a reader never sees a half-written file


def plot_run(metrics_csv: str | Path, out: str | Path, title: str | None = None) -> Path:
    """``out`` (PNG): loss (train, dev) and the selection metric (train accuracy and dev UA,
    or dev CCC) per epoch of one training run."""
    rows, out = read_metrics(metrics_csv), Path(out)
    if not rows:
        raise SertkError(f"{metrics_csv}: no epochs yet")
    metric = _metric_name(rows)
    epochs = _column(rows, "epoch")
    fig, (ax_loss, ax_metric) = _figure(2)
    ax_loss.plot(epochs, _column(rows, "train_loss"), "o-", label="train")
    ax_loss.plot(epochs, _column(rows, "valid_loss"), "s--", label="dev")
    ax_loss.set(xlabel="epoch", ylabel="loss", title="loss")
    if metric == "UA":
        ax_metric.plot(epochs, _column(rows, "train_acc"), "o-", label="train accuracy")
    ax_metric.plot(epochs, _column(rows, f"valid_{metric}"), "s--", label=f"dev {metric}")
    ax_metric.set(xlabel="epoch", ylabel=metric, title=metric)
    for ax in (ax_loss, ax_metric):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    _save(fig, out)
    return out


def plot_folds(exp_dirs: list[str | Path], out: str | Path, title: str | None = None
               ) -> list[Path]:
    """``out`` (PNG): one line per experiment directory (a recipe's folds, named by the
    directory) in three panels: train loss, dev loss, dev UA (or CCC). Directories without a
    ``metrics.csv`` are left out with a warning; returns those drawn."""
    runs = []
    for d in map(Path, exp_dirs):
        path = d / "metrics.csv"
        rows = read_metrics(path) if path.is_file() else []
        if rows:
            runs.append((d, rows))
        else:
            log.warning("%s: no metrics.csv rows, left out of %s", d, out)
    if not runs:
        raise SertkError(f"none of {', '.join(map(str, exp_dirs))} has a metrics.csv")
    metric = _metric_name(runs[0][1])
    fig, axes = _figure(3)
    panels = [("train_loss", "train loss"), ("valid_loss", "dev loss"),
              (f"valid_{metric}", f"dev {metric}")]
    for d, rows in runs:
        for ax, (col, _) in zip(axes, panels):
            ax.plot(_column(rows, "epoch"), _column(rows, col), ".-", label=d.name)
    for ax, (_, name) in zip(axes, panels):
        ax.set(xlabel="epoch", title=name)
        ax.grid(alpha=0.3)
    axes[-1].legend(fontsize=8, ncol=1 + len(runs) // 8)
    if title:
        fig.suptitle(title)
    _save(fig, Path(out))
    return [d for d, _ in runs]


def restart_events(exp: Path, after_epoch: int) -> None:
    """Start ``exp``'s TensorBoard events as its metrics.csv starts: a fresh run
    (``after_epoch`` 0) removes an earlier run's event files; a run resumed after
    ``after_epoch`` hides the killed run's events of later epochs (TensorBoard's
    ``purge_step``), as the trainer drops their metrics.csv rows."""
    writer = _WRITERS.pop(exp, None)
    if writer is not None:
        writer.close()
    if after_epoch == 0:
        for f in (exp / "tensorboard").glob("events.out.tfevents.*"):
            f.unlink()
    elif (exp / "tensorboard").is_dir():
        _writer(exp, purge_step=after_epoch + 1)


def _writer(exp: Path, purge_step: int | None = None) -> Any:
    """The TensorBoard SummaryWriter of ``exp`` (one per process), or None when TensorBoard
    is not installed; a new one hides the events from step ``purge_step`` on."""
    if exp in _WRITERS:
        return _WRITERS[exp]
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        if not _NO_TENSORBOARD:
            log.info("tensorboard is not installed: no event files (pip install tensorboard)")
            _NO_TENSORBOARD.append(True)
        return None
    _WRITERS[exp] = writer = SummaryWriter(str(exp / "tensorboard"), purge_step=purge_step)
    return writer


@atexit.register
def close_writers() -> None:
    """Close (and flush) every open TensorBoard writer."""
    while _WRITERS:
        writer = _WRITERS.popitem()[1]
        if writer is not None:
            writer.close()


def _scalars(row: dict[str, Any]) -> dict[str, float]:
    """The numeric columns of a metrics row as TensorBoard tags (``train/loss``,
    ``valid/UA``, ...)."""
    out = {}
    for k, v in row.items():
        if k in ("epoch", "best"):
            continue
        try:
            value = float(v)
        except (TypeError, ValueError):
            continue
        split, _, name = k.partition("_")
        tag = f"{split}/{name}" if split in ("train", "valid") and name else f"misc/{k}"
        out[tag] = value
    return out


def record_epoch(exp: Path, row: dict[str, Any]) -> None:
    """After an epoch: redraw ``exp/curves.png`` from ``exp/metrics.csv`` and add ``row``'s
    scalars to TensorBoard. A failure here is logged, never fatal to the training."""
    try:
        plot_run(exp / "metrics.csv", exp / "curves.png", title=exp.name)
        writer = _writer(exp)
        if writer is not None:
            for tag, value in _scalars(row).items():
                writer.add_scalar(tag, value, int(row["epoch"]))
            writer.flush()
    except Exception as exc:  # noqa: BLE001 - diagnostics must not stop a training
        log.warning("could not write the training curves of %s: %s", exp, exc)
