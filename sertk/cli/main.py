"""The ``sertk`` command: one Typer sub-app per command group.

User errors (:class:`sertk.errors.SertkError`) print one line ``sertk: error: ...`` and exit 1.
"""

from __future__ import annotations

import sys

import typer

from sertk.errors import SertkError

app = typer.Typer(help="sertk: speech emotion recognition toolkit (Kaldi/ESPnet-style).",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)


def _register() -> None:
    from sertk.cli import (
        bench,
        data,
        export,
        feats,
        infer,
        meta,
        models,
        plot,
        pretrain,
        score,
        tokenizer,
        train,
    )

    app.add_typer(data.app, name="data")
    app.add_typer(feats.app, name="feats")
    app.add_typer(models.app, name="models")
    app.add_typer(pretrain.app, name="pretrain")
    app.add_typer(tokenizer.app, name="tokenizer")
    train.register(app)
    score.register(app)
    infer.register(app)
    meta.register(app)
    export.register(app)
    app.add_typer(plot.app, name="plot")
    bench.register(app)


_register()


def _clear_progress_bars() -> None:
    """Erase unfinished tqdm bars, so that an error message starts on a line of its own."""
    from tqdm import tqdm

    for bar in list(getattr(tqdm, "_instances", ())):
        bar.leave = False
        bar.close()


def main(argv: list[str] | None = None) -> None:
    try:
        app(args=argv, standalone_mode=False, prog_name="sertk")
    except SertkError as exc:
        _clear_progress_bars()
        print(f"sertk: error: {exc}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        _clear_progress_bars()
        print("sertk: interrupted", file=sys.stderr)
        sys.exit(130)
    except Exception as exc:  # click usage errors arrive here in non-standalone mode
        import click

        if isinstance(exc, click.exceptions.Exit):
            sys.exit(exc.exit_code)
        if isinstance(exc, click.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        if isinstance(exc, click.exceptions.Abort):
            sys.exit(1)
        raise


if __name__ == "__main__":
    main()
