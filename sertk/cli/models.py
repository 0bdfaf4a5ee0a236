"""``sertk models``: list registered models, show one model's size."""

from __future__ import annotations

import typer

app = typer.Typer(help="The model zoo.", no_args_is_help=True)


@app.command("list")
def list_() -> None:
    """Every registered model with its paper."""
    from sertk.models import MODELS

    for e in MODELS.entries():
        typer.echo(f"{e.name:<20} {e.summary}  [{e.paper}]")


@app.command()
def info(name: str, input_dim: int = typer.Option(40), num_classes: int = typer.Option(8)
         ) -> None:
    """Parameter count of a model."""
    from sertk import models

    net = models.build(name, input_dim=input_dim, num_classes=num_classes)
    n = sum(p.numel() for p in net.parameters())
    typer.echo(f"{name}: {n} parameters ({n / 1e6:.3f} M) for input_dim={input_dim}, "
               f"num_classes={num_classes}")
