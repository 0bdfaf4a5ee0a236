"""``sertk plot``: figures of finished runs."""

from __future__ import annotations

from pathlib import Path

import typer

from sertk.cli.common import init_logging

app = typer.Typer(help="Figures of training runs.", no_args_is_help=True)


@app.command()
def curves(exp_dirs: list[Path] = typer.Argument(..., help="experiment directories (with "
                                                           "metrics.csv), e.g. a recipe's folds"),
           out: Path = typer.Option(..., help="output PNG"),
           title: str = typer.Option(None, help="figure title")) -> None:
    """Training curves of several runs in one figure, one line per directory: train loss,
    dev loss and dev UA (CCC for dimensional runs) per epoch."""
    from sertk.train.curves import plot_folds

    init_logging()
    drawn = plot_folds(exp_dirs, out, title)
    typer.echo(f"{out}: curves of {len(drawn)} run(s): {' '.join(d.name for d in drawn)}")
