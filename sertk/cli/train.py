"""``sertk train``: train a model on dumped features (alone or under torchrun)."""

from __future__ import annotations

from pathlib import Path

import typer


def check_inputs(cfg: dict, config: Path, train_dir: Path, valid_dir: Path | None,
                 cmvn: Path | None, labels: Path | None) -> None:
    """Before training starts, one clear line for what would otherwise be ignored or crash
    later: the config (unknown keys, wrong types), a missing --cmvn, features of different
    dimensions in --train, --valid and --cmvn, and labels without a training utterance."""
    from collections import Counter

    from sertk.config import check_conf_types, check_train_config
    from sertk.data.dataset import read_labels
    from sertk.data.kaldi_table import read_table
    from sertk.errors import DataError, SertkError

    check_train_config(cfg, str(config))
    model = cfg.get("model") or {}
    if model.get("name"):
        from sertk.models.registry import MODELS

        check_conf_types(model.get("conf") or {}, MODELS.get(model["name"]).builder,
                         f"{config}: model.conf")
    if cmvn is not None and not cmvn.is_file():
        raise DataError(f"--cmvn {cmvn}: CMVN statistics not found")
    dims = {}
    for flag, d in (("--train", train_dir), ("--valid", valid_dir)):
        if d is not None and (d / "feat_dim").is_file():
            try:
                dims[flag] = (d, int((d / "feat_dim").read_text()))
            except ValueError:
                raise DataError(f"{d / 'feat_dim'}: not an integer") from None
    if cmvn is not None:
        from sertk.features.cmvn import read_stats

        dims["--cmvn"] = (cmvn, read_stats(cmvn).shape[1] - 1)
    if len({dim for _, dim in dims.values()}) > 1:
        raise DataError("features of different dimensions (dumped with different front "
                        "ends?): " + ", ".join(f"{flag} {d}: {dim}"
                                               for flag, (d, dim) in dims.items()))
    names = read_labels(labels) if labels else cfg.get("labels")
    if names and cfg.get("task", "categorical") == "categorical" and \
            (train_dir / "utt2emo").is_file():
        counts = Counter(read_table(train_dir / "utt2emo", 2, 2).values())
        unseen = [lab for lab in names if counts[lab] == 0]
        if unseen:
            raise SertkError(f"label(s) {' '.join(unseen)} of {labels or config} have no "
                             f"training utterance in {train_dir / 'utt2emo'}: the model could "
                             "never predict them; remove them from the label list")


def register(app: typer.Typer) -> None:
    @app.command()
    def train(config: Path = typer.Option(..., help="training config (conf/model/*.yaml)"),
              train_dir: Path = typer.Option(..., "--train", help="training dump directory"),
              valid_dir: Path = typer.Option(None, "--valid", help="validation dump directory "
                                             "(none: a final model on all the data, chosen "
                                             "by train.select last or average)"),
              exp: Path = typer.Option(..., help="experiment directory"),
              resume: bool = typer.Option(False, help="continue from EXP/checkpoints/last.pt "
                                          "(last.prev.pt when it is unreadable)"),
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
        check_inputs(cfg, config, train_dir, valid_dir, cmvn, labels)
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
