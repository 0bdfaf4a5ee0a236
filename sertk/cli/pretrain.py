"""``sertk pretrain``: self-supervised pre-training without emotion labels."""

from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(help="Self-supervised pre-training on unlabelled audio.", no_args_is_help=True)

DEFAULT_CONFIG = Path(__file__).resolve().parents[2] / "conf" / "pretrain" / "cpc.yaml"


@app.command()
def cpc(data: Path = typer.Option(..., help="data dir: its wav.scp (and segments if present)"),
        out: Path = typer.Option(..., help="output dir: cpc.safetensors, config.yaml, "
                                           "train.log, metrics.csv"),
        config: Path = typer.Option(None, help="pre-training config (default: "
                                               "conf/pretrain/cpc.yaml; built-in defaults "
                                               "when absent)"),
        override: list[str] = typer.Option(None, help="config override, e.g. "
                                                      "train.epochs=5 (repeatable)"),
        device: str = typer.Option(None, help="cpu or cuda (default: cuda if available)"),
        progress: bool = typer.Option(True, help="show progress bars")) -> None:
    """Contrastive Predictive Coding (Li et al., ICASSP 2021) on fixed crops of DATA's audio;
    OUT/cpc.safetensors is a `cpc` model's init_checkpoint."""
    from sertk.config import apply_overrides, load_yaml
    from sertk.pretrain.cpc import pretrain
    from sertk.train.lock import exp_lock

    if config is None and DEFAULT_CONFIG.is_file():
        config = DEFAULT_CONFIG
    cfg = apply_overrides(load_yaml(config) if config else {}, override or [])
    with exp_lock(out):  # OUT/.lock: one run per output directory
        row = pretrain(data, out, cfg, device=device, progress=progress)
    typer.echo(f"CPC: {row['epoch']} epochs, last loss {row['loss']:.4f}, accuracy "
               f"{row['accuracy']:.3f}; weights: {out / 'cpc.safetensors'}")
