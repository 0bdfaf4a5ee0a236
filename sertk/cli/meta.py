"""``sertk train-meta``: pre-train on source corpora (first-order MAML, transfer or multitask;
Chopra et al., ICASSP 2021), then fine-tune on a low-resource target corpus."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    @app.command("train-meta")
    def train_meta(
            config: Path = typer.Option(..., help="config (conf/model/meta_ser.yaml)"),
            source: list[Path] = typer.Option(..., help="source corpus dump directory "
                                              "(repeatable; one task each)"),
            target_train: Path = typer.Option(..., help="target training dump directory"),
            target_valid: Path = typer.Option(None, help="target validation dump directory"),
            exp: Path = typer.Option(..., help="experiment directory (for the target)"),
            method: str = typer.Option(None, help="fomaml | transfer | multitask (default: "
                                       "the config's method)"),
            shots: int = typer.Option(None, help="K support shots per class in an episode "
                                      "(meta.shots)"),
            target_shots: int = typer.Option(None, help="use K target training utterances "
                                             "per class (target.shots)"),
            target_fraction: float = typer.Option(None, help="use this stratified fraction "
                                                  "of the target training data "
                                                  "(target.fraction)"),
            device: str = typer.Option(None, help="cpu or cuda (default: cuda if available)"),
            override: list[str] = typer.Option(None, help="config override, e.g. "
                                               "meta.episodes=100 (repeatable)"),
            progress: bool = typer.Option(True, help="show progress bars")) -> None:
        """Learn an initialisation on --source corpora, fine-tune it on the target; EXP is a
        normal experiment directory (sertk predict / pack)."""
        from sertk.config import apply_overrides, load_yaml
        from sertk.train.lock import exp_lock
        from sertk.train.meta import resolve_method
        from sertk.train.meta import train_meta as run

        extra = [f"{key}={value}" for key, value in (("meta.shots", shots),
                                                     ("target.shots", target_shots),
                                                     ("target.fraction", target_fraction))
                 if value is not None]
        override = override or []
        method = method or next((o.split("=", 1)[1] for o in override
                                 if o.startswith("method=")), None)
        cfg = apply_overrides(resolve_method(load_yaml(config), method), [*extra, *override])
        with exp_lock(exp):  # EXP/.lock: one run per experiment directory
            res = run(cfg, source, target_train, target_valid, exp, device=device,
                      progress=progress)
        if target_valid is None:
            typer.echo(f"{res['pretrain']['method']}: fine-tuned {res['best_epoch']} epochs "
                       f"without a validation set; model: {exp / 'model.safetensors'}")
        else:
            typer.echo(f"{res['pretrain']['method']}: best valid UA "
                       f"{100 * res['best_ua']:.2f} at epoch {res['best_epoch']}; model: "
                       f"{exp / 'model.safetensors'}")
