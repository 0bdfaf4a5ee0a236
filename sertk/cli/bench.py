"""``sertk bench``: sertk's hot paths against the plain code a user would write."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    @app.command()
    def bench(corpus: Path = typer.Option(None, help="directory of audio files to measure on"),
              synthetic: int = typer.Option(None, help="generate N synthetic wav files instead"),
              max_files: int = typer.Option(None, help="at most N files of --corpus (spread "
                                                       "evenly)"),
              quick: bool = typer.Option(False, help="a tiny run: fbank only, a tiny model, "
                                                     "1 epoch"),
              parts: str = typer.Option("feats,pipeline,ddp,infer",
                                        help="comma-separated subset of the measurements"),
              model: str = typer.Option("ravdess_cnn_asp_ref", help="packed model for the "
                                                                    "inference part"),
              work_dir: Path = typer.Option(None, help="keep intermediate files here "
                                                       "(default: a temporary directory)"),
              out: Path = typer.Option(None, help="also write the markdown report here")
              ) -> None:
        """Measure feature dump per front end, the training data pipeline (data wait with
        0/1/2 workers), DDP scaling (1 vs 2 gloo processes) and `sertk infer` (time, peak
        RSS) side by side with plain baselines; print a markdown table of ratios."""
        from sertk.bench import run_bench

        rep = run_bench(corpus, synthetic, quick, max_files,
                        [p.strip() for p in parts.split(",") if p.strip()], model, work_dir,
                        progress=lambda msg: typer.echo(msg, err=True))
        text = rep.markdown()
        typer.echo(text)
        if out:
            cmd = "sertk " + " ".join(shlex.quote(a) for a in sys.argv[1:])
            out.write_text(f"Command: `{cmd}`\n\n{text}")
