"""``sertk infer``: emotion posteriors for audio files with a packed model."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer

from sertk.errors import SertkError


def register(app: typer.Typer) -> None:
    @app.command()
    def infer(model: Path = typer.Option(..., help="packed model.zip, experiment dir, or the "
                                                   "name of a shipped model (sertk/pretrained)"),
              wav_list: Path = typer.Option(None, help="file with one audio path per line"),
              wav_scp: Path = typer.Option(None, help="Kaldi wav.scp (paths, pipes, arks)"),
              directory: Path = typer.Option(None, "--dir", help="all audio files under DIR"),
              out: Path = typer.Option(None, help="output JSON lines (default: stdout)"),
              device: str = typer.Option("cpu", help="cpu or cuda"),
              batch_size: int = typer.Option(16),
              segment: float = typer.Option(None, help="window length in seconds for long "
                                                       "audio (per-segment posteriors)"),
              shift: float = typer.Option(None, help="window shift in seconds (default: "
                                                     "--segment)"),
              skip_bad: bool = typer.Option(False, help="report unreadable files and go on"),
              utt2spk: Path = typer.Option(None, help="'key speaker' lines; needed by models "
                                                      "trained with per-speaker CMVN"),
              text: Path = typer.Option(None, help="'key transcript' lines (Kaldi text); "
                                                   "needed by models that read a transcript"),
              jsonl: Path = typer.Option(None, help="JSON lines {\"key\", \"wav\", "
                                                    "\"text\"} (audio and transcript)"),
              progress: bool = typer.Option(True)) -> None:
        """Write one JSON line per file: key, label and the posterior of every class (and
        text, the transcript, for a model with a CTC head packed with its tokenizer)."""
        from sertk.infer.packed import load_packed
        from sertk.infer.recognizer import (
            Recognizer,
            inputs_from_dir,
            inputs_from_jsonl,
            inputs_from_wav_list,
            inputs_from_wav_scp,
        )

        given = [x for x in (wav_list, wav_scp, directory, jsonl) if x is not None]
        if len(given) != 1:
            raise SertkError("give exactly one of --wav-list, --wav-scp, --dir, --jsonl")
        from sertk.data.kaldi_table import read_table

        texts = read_table(text, 1) if text else None
        if jsonl:
            items, from_json = inputs_from_jsonl(jsonl)
            texts = {**from_json, **(texts or {})} if from_json or texts else None
        else:
            items = (inputs_from_wav_list(wav_list) if wav_list else
                     inputs_from_wav_scp(wav_scp) if wav_scp else inputs_from_dir(directory))
        rec = Recognizer(load_packed(model, device), device, batch_size, segment, shift,
                         read_table(utt2spk, 2, 2) if utt2spk else None, texts)
        fh = out.open("w") if out else sys.stdout
        n_ok, errors = 0, []
        try:
            for r in rec.recognize(items, skip_bad=skip_bad, progress=progress and out is not None):
                if "error" in r:
                    errors.append(r["error"])
                    continue
                fh.write(json.dumps(r) + "\n")
                n_ok += 1
        finally:
            if out:
                fh.close()
        for e in errors:
            typer.echo(f"skipped: {e}", err=True)
        typer.echo(f"{n_ok} files recognised" + (f", {len(errors)} skipped" if errors else "")
                   + (f" -> {out}" if out else ""), err=True)
