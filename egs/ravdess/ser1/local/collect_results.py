#!/usr/bin/env python3
"""Print a Markdown table row per experiment from ser.sh's stage-4 outputs.

    collect_results.py [--expdir exp] [--baseline TAG0] TAG [TAG ...]

Reads EXPDIR/<tag>/decode_test/results.json (fold aggregation), EXPDIR/<tag>/RESULTS.md (the
command) and EXPDIR/<tag>/<fold>/metrics.csv (epoch times); prints
| tag | folds | UA mean ± std | WA | macro-F1 | training time | command |; with --baseline, also
the paired UA difference from TAG0 (fold by fold, averaged) and on how many folds TAG is better.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path


def results(exp: Path) -> dict:
    return json.loads((exp / "decode_test" / "results.json").read_text())


def paired_delta(agg: dict, base: dict) -> str:
    """Mean over folds of UA(tag) - UA(baseline), and the number of folds where tag is better."""
    ua, ua0 = agg["UA"]["folds"], base["UA"]["folds"]
    if len(ua) != len(ua0):
        raise SystemExit(f"collect_results.py: {len(ua)} folds against {len(ua0)} in the baseline")
    delta = 100.0 * sum(a - b for a, b in zip(ua, ua0)) / len(ua)
    return f"{delta:+.2f} ({sum(a > b for a, b in zip(ua, ua0))}/{len(ua)})"


def command_of(exp: Path) -> str:
    """The command quoted in EXP/RESULTS.md (ser.sh stage 4), or ''."""
    md = exp / "RESULTS.md"
    lines = md.read_text().splitlines() if md.is_file() else []
    return lines[lines.index("Command:") + 2].strip() if "Command:" in lines else ""


def row(exp: Path, base: dict | None = None) -> str:
    agg = results(exp)
    command = command_of(exp)
    seconds = 0.0
    for name in agg.get("fold_names", []):
        metrics = Path(name).parent.parent / "metrics.csv"
        if metrics.is_file():
            seconds += sum(float(r["seconds"]) for r in csv.DictReader(metrics.open()))
    pct = 100.0
    f1 = f"{pct * agg['macro_F1']['mean']:.2f}" if "macro_F1" in agg else "—"
    return (f"| {exp.name} | {agg['num_folds']} | **{pct * agg['UA']['mean']:.2f} ± "
            f"{pct * agg['UA']['std']:.2f}** | {pct * agg['WA']['mean']:.2f} ± "
            f"{pct * agg['WA']['std']:.2f} | {f1} | "
            f"{seconds / 60:.0f} min |"
            + (f" {paired_delta(agg, base)} |" if base is not None else "") + f" `{command}` |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--expdir", default="exp")
    ap.add_argument("--baseline", help="tag to compare every row with, fold by fold")
    ap.add_argument("tags", nargs="+")
    args = ap.parse_args()
    base = results(Path(args.expdir) / args.baseline) if args.baseline else None
    delta = " ΔUA vs baseline (folds better) |" if base is not None else ""
    print("| experiment | folds | UA % | WA % | macro-F1 % | training time (sum of epochs) |"
          f"{delta} command |")
    print("|---|---|---|---|---|---|" + ("---|" if base is not None else "") + "---|")
    for tag in args.tags:
        print(row(Path(args.expdir) / tag, base))


if __name__ == "__main__":
    main()
