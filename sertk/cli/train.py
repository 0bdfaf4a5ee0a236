"""``sertk train``: train a model on dumped features (alone or under torchrun)."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    @app.command()
    def train(config: Path = typer.Option(..., help="training config (conf/model/*.yaml)"),
              train_dir: Path = typer.Option(..., "--train", help="training dump directory"),
              valid_dir: Path = typer.Option(None, "--valid", help="validation dump directory "
                                             "(none: a final model on all the data, chosen "
                                             "by train.select last or average)"),
              exp: Path = typer.Option(..., help="experiment directory"),
              resume: bool = typer.Option(False, help="continue from EXP/checkpoints/last.pt"),
              cmvn: Path = typer.Option(None, help="global CMVN stats (default: from --train)"),
              labels: Path = typer.Option(None, help="label list (default: from --train)"),
              device: str = typer.Option(None, help="cpu or cuda (default: cuda if available)"),
              override: list[str] = typer.Option(None, help="config override, e.g. "
                                                            "train.epochs=5 (repeatable)"),
              progress: bool = typer.Option(True, help="show progress bars")) -> None:
        """Train; under `torchrun --nproc_per_node N -m sertk.cli.main train ...` with DDP."""
        from sertk.config import apply_overrides, load_yaml
        from sertk.train.trainer import train as run

        cfg = apply_overrides(load_yaml(config), override or [])
        res = run(cfg, train_dir, valid_dir, exp, resume=resume,
                  cmvn_file=str(cmvn) if cmvn else None,
                  labels_file=str(labels) if labels else None, device=device,
                  progress=progress)
        import os

        if os.environ.get("RANK", "0") == "0" and valid_dir is None:
            typer.echo(f"trained {res['best_epoch']} epochs without a validation set; "
                       f"model: {exp / 'model.safetensors'}")
        elif os.environ.get("RANK", "0") == "0":
            best = f"CCC {res['best_ua']:.4f}" if cfg.get("task") == "dimensional" \
                else f"UA {100 * res['best_ua']:.2f}"
            typer.echo(f"best valid {best} at epoch {res['best_epoch']}; "
                       f"model: {exp / 'model.safetensors'}")
