"""``sertk models``: list registered models, show one model's size."""

from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(help="The model zoo.", no_args_is_help=True)


@app.command("list")
def list_() -> None:
    """Every registered model with its paper."""
    from sertk.models import MODELS

    for e in MODELS.entries():
        typer.echo(f"{e.name:<20} {e.summary}  [{e.paper}]")


@app.command()
def info(name: str = typer.Argument(..., help="model id (uses conf/model/<id>.yaml) or a "
                                              "config path"),
         seconds: float = typer.Option(3.0, help="audio length for the FLOP count"),
         num_classes: int = typer.Option(None, help="default: the config's labels, else 4")
         ) -> None:
    """Parameters and MFLOPs for SECONDS of audio, with the config's front end."""
    from sertk.models.info import info as run

    r = run(name, seconds, num_classes)
    typer.echo(f"{r['model']}: {r['params']:,} parameters, {r['mflops']:.1f} MFLOPs for "
               f"{r['seconds']:g} s of audio (input {r['input'][0]} x {r['input'][1]} from "
               f"{Path(r['feats']).name}, {r['num_classes']} classes)")
