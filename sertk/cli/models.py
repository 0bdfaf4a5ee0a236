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


@app.command()
def table(seconds: float = typer.Option(3.0), num_classes: int = typer.Option(8)) -> None:
    """Markdown table of every conf/model/*.yaml: model, paper, parameters, MFLOPs."""
    from sertk.models import MODELS
    from sertk.models.info import REPO_CONF
    from sertk.models.info import info as run

    typer.echo(f"| config | model | paper | parameters | MFLOPs / {seconds:g} s |")
    typer.echo("|---|---|---|---|---|")
    for path in sorted((REPO_CONF / "model").glob("*.yaml")):
        r = run(str(path), seconds, num_classes)
        typer.echo(f"| `{path.stem}` | `{r['model']}` | {MODELS.get(r['model']).paper} | "
                   f"{r['params']:,} | {r['mflops']:.1f} |")


@app.command("compare-weights")
def compare_weights(initial: Path, finetuned: Path) -> None:
    """Per-layer cosine distance between two checkpoints of one model (Triantafyllopoulos &
    Schuller 2021's layer-adaptation analysis), e.g. a transfer init vs its fine-tuned
    EXP/model.safetensors."""
    from sertk.models.cnn14 import layer_cosine_distances
    from sertk.models.layers.pretrained import read_state_dict

    a, b = read_state_dict(initial), read_state_dict(finetuned)
    strip = {k.removeprefix("net."): v for k, v in a.items()}
    dist = layer_cosine_distances(strip, {k.removeprefix("net."): v for k, v in b.items()})
    if not dist:
        from sertk.errors import SertkError

        raise SertkError("the checkpoints share no conv/linear layer of the same shape")
    for name, d in dist.items():
        typer.echo(f"{name:<40} {d:.6f}")
