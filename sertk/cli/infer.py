"""``sertk infer``: emotion posteriors for audio files with a packed model."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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
              batch_size: int = typer.Option(None, help="files (or windows) per model call; "
                                                         "default 1 on a CPU, 16 on a GPU"),
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
              backend: str = typer.Option("torch", help="torch or onnxruntime (the graph "
                                                        "of `sertk export`; docs/onnx.md)"),
              nj: int = typer.Option(0, "--nj", help="processes, each recognising every "
                                                      "N-th file in one thread (0: one per "
                                                      "CPU core for 64 files or more, else "
                                                      "1); CPU and torch backend only"),
              num_workers: int = typer.Option(2, help="with --nj 1: threads reading, "
                                                      "resampling and featurising files "
                                                      "ahead of the model (0: all in one "
                                                      "thread)"),
              timeline: Path = typer.Option(None, help="with --segment: per file, write "
                                                       "DIR/<key>.csv, .json and .png, the "
                                                       "posteriors of its windows over time"),
              progress: bool = typer.Option(True)) -> None:
        """Write one JSON line per file: key, label and the posterior of every class (and
        text, the transcript, for a model with a CTC head packed with its tokenizer).

        On a CPU, --nj processes forked after the model is loaded share the files (every
        N-th each); otherwise --num-workers threads read and featurise files ahead of the
        model. Results stream out in input order; memory does not grow with the number of
        files.
        With --segment, files longer than a minute are read in chunks (an hour of audio in
        bounded memory) and --timeline DIR draws each file's emotions over time."""
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
        if timeline is not None and not segment:
            raise SertkError("--timeline needs --segment (the window length in seconds)")
        if num_workers < 0 or nj < 0:
            raise SertkError(f"--num-workers and --nj must be 0 or more, got {num_workers} "
                             f"and {nj}")
        from sertk.data.kaldi_table import read_table

        texts = read_table(text, 1) if text else None
        if jsonl:
            items, from_json = inputs_from_jsonl(jsonl)
            texts = {**from_json, **(texts or {})} if from_json or texts else None
        else:
            items = (inputs_from_wav_list(wav_list) if wav_list else
                     inputs_from_wav_scp(wav_scp) if wav_scp else inputs_from_dir(directory))
        from sertk.export.onnx_runtime import load_backend

        nj = _jobs(nj, items, device, backend)
        if nj > 1:  # each process runs in one thread, this one too: a pool of more threads
            import torch  # inherited by the forked processes costs them ~30 % more CPU

            torch.set_num_threads(1)
        packed = load_backend(load_packed(model, device), backend, model, device)
        rec = Recognizer(packed, device, batch_size, segment, shift,
                         read_table(utt2spk, 2, 2) if utt2spk else None, texts,
                         num_workers=num_workers)
        if timeline is not None:
            from sertk.infer.timeline import write_timeline
        fh = out.open("w") if out else sys.stdout
        n_ok, errors = 0, []
        records = _records(rec, items, nj, skip_bad, progress and out is not None)
        try:
            for r in records:
                if "error" in r:
                    errors.append(r["error"])
                    continue
                fh.write(json.dumps(r) + "\n")
                if timeline is not None:
                    write_timeline(r, timeline)
                n_ok += 1
        finally:
            if out:
                fh.close()
        for e in errors:
            typer.echo(f"skipped: {e}", err=True)
        typer.echo(f"{n_ok} files recognised" + (f", {len(errors)} skipped" if errors else "")
                   + (f" -> {out}" if out else "")
                   + (f"; timelines in {timeline}" if timeline is not None else ""), err=True)
        _skip_teardown()


def _jobs(nj: int, items: list[tuple[str, str]], device: str, backend: str) -> int:
    """``--nj``: 0 is one process per usable core for 64 files or more (else 1); 1 for a
    GPU, the onnxruntime backend or a single file."""
    import os

    if device != "cpu" or backend != "torch" or len(items) < 2:
        return 1
    if nj == 0:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else \
            (os.cpu_count() or 1)
        nj = cores if len(items) >= 64 else 1
    return min(nj, len(items))


def _records(rec: Any, items: list[tuple[str, str]], nj: int, skip_bad: bool,
             progress: bool) -> Iterator[dict[str, Any]]:
    """The recogniser's records for ``items``: in ``nj`` forked processes where it can
    (:mod:`sertk.infer.shards`), else in this one with its threads."""
    from sertk.infer.shards import can_shard, recognize_sharded

    if nj > 1 and can_shard(rec):
        return recognize_sharded(rec, items, nj, skip_bad, progress)
    return rec.recognize(items, skip_bad=skip_bad, progress=progress)


def _skip_teardown() -> None:
    """End the ``sertk`` process now that everything is written: the interpreter's teardown
    after importing torch (its libraries' static destructors) touches ~190 MB more than
    the whole recognition did and takes a few tenths of a second. Only when this process is
    the command-line tool itself, never when ``main()`` runs inside another program."""
    import logging
    import os

    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    if getattr(spec, "name", None) != "sertk.cli.main" and Path(sys.argv[0]).name != "sertk":
        return
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
