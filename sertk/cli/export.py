"""``sertk export``: a packed model's network for another runtime (ONNX; docs/onnx.md)."""

from __future__ import annotations

from pathlib import Path

import typer

from sertk.errors import SertkError

FORMATS = ("onnx",)


def register(app: typer.Typer) -> None:
    @app.command()
    def export(model: Path = typer.Option(..., help="packed model.zip, experiment dir, or the "
                                                    "name of a shipped model"),
               format: str = typer.Option("onnx", "--format", help="onnx"),  # noqa: A002
               out: Path = typer.Option(None, help="output file (default: beside the pack, "
                                                   "MODEL.onnx; in an experiment dir, "
                                                   "model.onnx; for a shipped model, "
                                                   "./NAME.onnx)"),
               opset: int = typer.Option(17, help="ONNX opset"),
               check: bool = typer.Option(True, help="run the graph with ONNX Runtime on "
                                                     "random features of two other lengths "
                                                     "and refuse it unless it agrees with "
                                                     "PyTorch (1e-4)")) -> None:
        """Export the network (global CMVN included) with dynamic batch and time axes:
        inputs feats (batch x time x dim) and lengths (batch), outputs logits (and
        posteriors). Writes OUT and OUT.json (labels, front end, time multiple, versions)."""
        if format not in FORMATS:
            raise SertkError(f"unknown export format {format!r}; known: {', '.join(FORMATS)}")
        from sertk.export.onnx import export_packed, sidecar_path

        path, meta = export_packed(model, out, opset, check)
        diff = meta["max_abs_diff"]
        checked = f", checked: max |onnxruntime - torch| {diff:.1e}" if diff is not None else \
            ", not checked"
        typer.echo(f"{path} ({path.stat().st_size / 1e6:.1f} MB) and {sidecar_path(path).name}: "
                   f"{meta['model']}, {len(meta['labels'])} "
                   f"{'classes' if meta['task'] == 'categorical' else 'dimensions'}, "
                   f"{meta['input_dim']}-dim {meta['feats']['name']} features, time multiple "
                   f"{meta['time_multiple']}, opset {meta['opset']}{checked}")
