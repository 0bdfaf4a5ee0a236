"""``sertk tokenizer``: train a tokenizer on transcripts, encode text to ids, decode ids."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

app = typer.Typer(help="Tokenizers for transcripts: sentencepiece (unigram, bpe) or characters.",
                  no_args_is_help=True)


def _lines(path: str) -> list[tuple[str, str]]:
    """``key rest`` lines of a file, or of standard input for ``-``."""
    from sertk.errors import DataError

    if path != "-" and not Path(path).is_file():
        raise DataError(f"{path}: file not found")
    text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    out = []
    for line in text.splitlines():
        if line.strip():
            key, _, rest = line.strip().partition(" ")
            out.append((key, rest.strip()))
    return out


@app.command()
def train(source: Path = typer.Argument(..., help="data dir (its text) or a Kaldi text file"),
          out: Path = typer.Argument(..., help="tokenizer directory to write"),
          kind: str = typer.Option("unigram", help="unigram, bpe or char"),
          vocab_size: int = typer.Option(500, help="sentencepiece units incl. <unk> (an upper "
                                                   "bound on small corpora)")) -> None:
    """Train a tokenizer on the transcripts of SOURCE."""
    from sertk.text.tokenizer import train_tokenizer

    tok = train_tokenizer(source, out, kind, vocab_size)
    typer.echo(f"{out}: {kind} tokenizer, {len(tok)} tokens (<blank> = 0, <unk> = 1)")


@app.command()
def encode(tokenizer: Path, text: str = typer.Argument("-", help="Kaldi text file (utt words), "
                                                                  "- for standard input"),
           pieces: bool = typer.Option(False, help="print the units instead of their ids")
           ) -> None:
    """Kaldi text -> ``utt id id ...`` (or ``utt unit unit ...``)."""
    from sertk.text.tokenizer import Tokenizer

    tok = Tokenizer(tokenizer)
    for key, words in _lines(text):
        units = tok.pieces(words) if pieces else map(str, tok.encode(words))
        typer.echo(" ".join([key, *units]))


@app.command()
def decode(tokenizer: Path, ids: str = typer.Argument("-", help="lines 'utt id id ...', - for "
                                                                "standard input")) -> None:
    """``utt id id ...`` -> Kaldi text (``<blank>`` ids dropped)."""
    from sertk.errors import DataError
    from sertk.text.tokenizer import Tokenizer

    tok = Tokenizer(tokenizer)
    for key, rest in _lines(ids):
        try:
            values = [int(v) for v in rest.split()]
        except ValueError:
            raise DataError(f"utterance {key}: ids must be integers, got {rest!r}") from None
        typer.echo(f"{key} {tok.decode(values)}".rstrip())
