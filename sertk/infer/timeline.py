"""Emotion timelines of long recordings (``sertk infer --segment S --timeline DIR``).

For every recognised file with per-window posteriors (``segments``), ``DIR`` gets
``<key>.csv`` (``start,end,label`` and one column per class: its posterior, or for a
dimensional model its value), ``<key>.json`` (the same rows, with the file's key, path,
label and mean posteriors) and ``<key>.png``: one line per class over time, each point at
its window's centre. Times are seconds in the file (the windows' times plus the leading
silence a trimming model cut, ``offset``).
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path
from typing import Any


def timeline_rows(record: dict[str, Any]) -> tuple[list[str], list[dict[str, Any]]]:
    """``(classes, rows)`` of a record's segments: ``start``, ``end`` (file time),
    ``label`` and one value per class."""
    offset = float(record.get("offset", 0.0))
    segments = record.get("segments") or []
    values_key = "dims" if segments and "dims" in segments[0] else "posteriors"
    classes = list(segments[0][values_key]) if segments else []
    rows = []
    for seg in segments:
        values = seg[values_key]
        rows.append({"start": round(seg["start"] + offset, 3),
                     "end": round(seg["end"] + offset, 3),
                     "label": seg.get("label", ""),
                     **{c: values[c] for c in classes}})
    return classes, rows


def safe_name(key: str) -> str:
    """A file name for a key (path separators and odd characters replaced)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", key).strip("._") or "utt"


def write_timeline(record: dict[str, Any], out_dir: str | Path, plot: bool = True
                   ) -> list[Path]:
    """Write the CSV, JSON and (``plot``) PNG timeline of one record; returns the paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    classes, rows = timeline_rows(record)
    stem = out_dir / safe_name(str(record["key"]))
    paths = [stem.with_suffix(".csv"), stem.with_suffix(".json")]
    with paths[0].open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["start", "end", "label", *classes])
        writer.writeheader()
        writer.writerows(rows)
    summary = {k: record[k] for k in ("key", "path", "label", "posteriors", "dims", "offset")
               if k in record}
    paths[1].write_text(json.dumps({**summary, "classes": classes, "segments": rows},
                                   indent=1) + "\n")
    if plot:
        paths.append(stem.with_suffix(".png"))
        plot_timeline(classes, rows, paths[-1], title=str(record["key"]),
                      ylabel="value" if "dims" in record else "posterior")
    return paths


def plot_timeline(classes: list[str], rows: list[dict[str, Any]], out: str | Path,
                  title: str = "", ylabel: str = "posterior") -> Path:
    """One line per class over time (matplotlib, Agg backend: no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    centres = [(r["start"] + r["end"]) / 2 for r in rows]
    fig, ax = plt.subplots(figsize=(max(6.0, min(24.0, 0.05 * len(rows) + 6)), 3.5))
    try:
        for c in classes:
            ax.plot(centres, [r[c] for r in rows], label=c, linewidth=1.2,
                    marker="." if len(rows) < 60 else None)
        ax.set_xlabel("time (s)")
        ax.set_ylabel(ylabel)
        if ylabel == "posterior":
            ax.set_ylim(0, 1)
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize="small")
        fig.tight_layout()
        fig.savefig(out, dpi=100)
    finally:
        plt.close(fig)
    return Path(out)
