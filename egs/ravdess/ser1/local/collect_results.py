#!/usr/bin/env python3
"""Print a Markdown table row per experiment from ser.sh's stage-4 outputs.

    collect_results.py [--expdir exp] TAG [TAG ...]

Reads EXPDIR/<tag>/decode_test/results.json (fold aggregation), EXPDIR/<tag>/RESULTS.md (the
command) and EXPDIR/<tag>/<fold>/metrics.csv (epoch times); prints
| tag | folds | UA mean ± std | WA | macro-F1 | training time | command |.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path


def row(exp: Path) -> str:
    agg = json.loads((exp / "decode_test" / "results.json").read_text())
    command = ""
    md = exp / "RESULTS.md"
    if md.is_file():
        lines = md.read_text().splitlines()
        if "Command:" in lines:
            command = lines[lines.index("Command:") + 2].strip()
    seconds = 0.0
    for name in agg.get("fold_names", []):
        metrics = Path(name).parent.parent / "metrics.csv"
        if metrics.is_file():
            seconds += sum(float(r["seconds"]) for r in csv.DictReader(metrics.open()))
    pct = 100.0
    return (f"| {exp.name} | {agg['num_folds']} | **{pct * agg['UA']['mean']:.2f} ± "
            f"{pct * agg['UA']['std']:.2f}** | {pct * agg['WA']['mean']:.2f} ± "
            f"{pct * agg['WA']['std']:.2f} | {pct * agg['macro_F1']['mean']:.2f} | "
            f"{seconds / 60:.0f} min | `{command}` |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--expdir", default="exp")
    ap.add_argument("tags", nargs="+")
    args = ap.parse_args()
    print("| experiment | folds | UA % | WA % | macro-F1 % | training time (sum of epochs) "
          "| command |")
    print("|---|---|---|---|---|---|---|")
    for tag in args.tags:
        print(row(Path(args.expdir) / tag))


if __name__ == "__main__":
    main()
