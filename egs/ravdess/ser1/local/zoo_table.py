#!/usr/bin/env python3
"""Update the model-zoo table (between ``<!-- zoo table -->`` markers) from experiment dirs.

    local/zoo_table.py [--expdir exp] [--fold fold1] [--results RESULTS.md] \
        [--readme ../../../README.md] CONFIG=TAG|CONFIG=+TAG ...

For each ``CONFIG=TAG`` (CONFIG a ``conf/model/<id>.yaml`` stem) the row of CONFIG gets:
parameters and MFLOPs for 3 s of audio of the config (``sertk models table``); the UA of
EXPDIR/TAG/<fold>/decode_test/results.json; the 6-fold UA mean ± std of
EXPDIR/TAG/decode_test/results.json when that aggregates 6 folds; and the command quoted in
EXPDIR/TAG/RESULTS.md. When the trained model differs from the config (``--override`` of its
size), the UA cell says so with the trained model's parameters and MFLOPs (from
EXPDIR/TAG/<fold>/config.yaml). ``CONFIG=+TAG`` keeps the row's fold-1 cell and command
(the run the model was selected on) and fills in the 6-fold cell from TAG, whose command is
added as "6 folds: ...". Rows of configs not named are kept as they are; a config without a
row gets one (rows sorted by config). RESULTS.md's table (``<!-- zoo table -->``)
has the paper's first author; the README's (``<!-- models table -->``) is rewritten from it
with the full paper reference, so the two never disagree (``--readme`` alone just syncs).
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from collect_results import command_of, results  # local/collect_results.py (same dir)

from sertk.models import MODELS
from sertk.models.info import info, model_config

RESULTS_TABLE = ("zoo table", ["| config | paper | parameters | MFLOPs / 3 s | UA % fold 1 | "
                                 "UA % 6 folds | command |", "|---|---|---|---|---|---|---|"])
README_TABLE = ("models table", ["| config | paper | parameters (8 classes) | MFLOPs / 3 s | "
                                 "RAVDESS UA % fold 1 | RAVDESS UA % 6 folds | "
                                 "command (in egs/ravdess/ser1) |",
                                 "|---|---|---|---|---|---|---|"])


def six_folds(exp: Path) -> str:
    """UA mean ± std of EXP's fold aggregation if it covers 6 folds, else ''."""
    if not (exp / "decode_test" / "results.json").is_file():
        return ""
    agg = results(exp)
    if agg.get("num_folds") != 6:
        return ""
    return f"{100 * agg['UA']['mean']:.2f} ± {100 * agg['UA']['std']:.2f}"


def quoted_command(exp: Path) -> str:
    cmd = command_of(exp)
    return f"`{cmd}`" if cmd else ""


def run_columns(config: str, exp: Path, fold: str) -> list[str]:
    """RESULTS.md zoo-table columns of CONFIG from the run EXP."""
    ref = info(config, 3.0, 8)
    ua1 = f"{100 * results(exp / fold)['UA']:.2f}"
    trained_cfg = exp / fold / "config.yaml"
    if trained_cfg.is_file():
        run = info(str(trained_cfg), 3.0, 8)
        if run["params"] != ref["params"]:
            ua1 += f" (trained variant: {run['params']:,} parameters, {run['mflops']:.1f} MFLOPs)"
    return [f"`{config}`", MODELS.get(ref["model"]).paper.split(",")[0], f"{ref['params']:,}",
            f"{ref['mflops']:.1f}", ua1, six_folds(exp) or "—", quoted_command(exp)]


def with_six_folds(columns: list[str], exp: Path) -> list[str]:
    """An existing row's columns with the 6-fold cell and command of EXP added."""
    six = six_folds(exp)
    if not six:
        raise SystemExit(f"zoo_table.py: {exp} has no 6-fold aggregation")
    fold1_cmd = columns[6].removeprefix("fold 1: ").split("; 6 folds:")[0]
    return columns[:5] + [six, f"fold 1: {fold1_cmd}; 6 folds: {quoted_command(exp)}"]


def read_table(path: Path, marker: str) -> tuple[str, dict[str, list[str]], str]:
    """Text before the table, its rows' columns keyed by config, and the text after it."""
    start, end = f"<!-- {marker} -->", f"<!-- /{marker} -->"
    text = path.read_text()
    i, j = text.index(start) + len(start), text.index(end)
    rows = [ln for ln in text[i:j].strip().splitlines() if ln.startswith("| `")]
    columns = [[c.strip() for c in ln.strip().strip("|").split(" | ")] for ln in rows]
    return text[:i], {re.match(r"`([^`]+)`", c[0]).group(1): c for c in columns}, text[j:]


def write_table(path: Path, head: str, header: list[str], rows: dict[str, list[str]],
                tail: str) -> None:
    body = header + ["| " + " | ".join(rows[k]) + " |" for k in sorted(rows)]
    path.write_text(head + "\n" + "\n".join(body) + "\n" + tail)


def sync_readme(readme: Path, results_md: Path) -> None:
    """README's models table = RESULTS.md's zoo table with the full paper reference."""
    _, table, _ = read_table(results_md, RESULTS_TABLE[0])
    head, _, tail = read_table(readme, README_TABLE[0])
    for config, cols in table.items():
        cols[1] = MODELS.get(model_config(config)[0]["model"]["name"]).paper
    write_table(readme, head, README_TABLE[1], table, tail)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--expdir", type=Path, default=Path("exp"))
    ap.add_argument("--fold", default="fold1")
    ap.add_argument("--results", type=Path, default=Path("RESULTS.md"),
                    help="RESULTS.md whose zoo table the CONFIG=TAG rows update")
    ap.add_argument("--readme", type=Path, help="README.md to update")
    ap.add_argument("pairs", nargs="*", metavar="CONFIG=TAG")
    args = ap.parse_args()
    if args.pairs:
        head, table, tail = read_table(args.results, RESULTS_TABLE[0])
        for pair in args.pairs:
            config, _, tag = pair.partition("=")
            if not tag:
                raise SystemExit(f"zoo_table.py: expected CONFIG=TAG, got {pair!r}")
            if tag.startswith("+"):
                if config not in table:
                    raise SystemExit(f"zoo_table.py: {pair} needs an existing row of {config}")
                table[config] = with_six_folds(table[config], args.expdir / tag[1:])
            else:
                table[config] = run_columns(config, args.expdir / tag, args.fold)
            print(" | ".join(table[config]))
        write_table(args.results, head, RESULTS_TABLE[1], table, tail)
    if args.readme:
        sync_readme(args.readme, args.results)


if __name__ == "__main__":
    main()
