"""Text units for the models that read or predict transcripts (CTC heads, text encoders).

Three kinds, one interface (:class:`Tokenizer`): sentencepiece ``unigram`` or ``bpe``
(Kudo & Richardson 2018) trained on a data dir's ``text``, or ``char`` (every character seen,
space written ``▁`` as sentencepiece does). Ids follow ESPnet's token lists: 0 is ``<blank>``
(CTC), 1 is ``<unk>``, then the units. A tokenizer is a directory: ``tokens.txt`` (one unit per
line, line number = id), ``tokenizer.yaml`` (kind) and, for sentencepiece, ``sp.model``.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import yaml

from sertk.data.kaldi_table import read_table
from sertk.errors import DataError

KINDS = ("unigram", "bpe", "char")
BLANK, UNK, SPACE = "<blank>", "<unk>", "\u2581"


def read_transcripts(source: str | Path) -> list[str]:
    """Transcripts of a data dir (its ``text``) or of a Kaldi ``text`` file; empty ones dropped
    (callers report how many)."""
    path = Path(source)
    if path.is_dir():
        path = path / "text"
    if not path.is_file():
        raise DataError(f"no transcripts: {path} not found")
    return [t for t in read_table(path, min_fields=1).values() if t.strip()]


class Tokenizer:
    """Encode text to ids and back; see the module docstring for the ids."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        conf_file = self.path / "tokenizer.yaml"
        if not conf_file.is_file():
            raise DataError(f"not a tokenizer directory (no tokenizer.yaml): {self.path}")
        self.kind = (yaml.safe_load(conf_file.read_text()) or {}).get("kind")
        if self.kind not in KINDS:
            raise DataError(f"{conf_file}: kind must be one of {', '.join(KINDS)}")
        self.tokens = (self.path / "tokens.txt").read_text(encoding="utf-8").split("\n")[:-1]
        self.index = {t: i for i, t in enumerate(self.tokens)}
        self._sp = None
        if self.kind != "char":
            import sentencepiece as spm

            sp_model = self.path / "sp.model"
            try:
                self._sp = spm.SentencePieceProcessor(model_file=str(sp_model))
            except (RuntimeError, OSError) as exc:
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else "unreadable"
                raise DataError(f"{sp_model}: not a sentencepiece model ({first[:120]})") \
                    from None

    def __len__(self) -> int:
        return len(self.tokens)

    def pieces(self, text: str) -> list[str]:
        if self._sp is not None:
            return self._sp.encode(text, out_type=str)
        return [SPACE if c == " " else c for c in " ".join(text.split())]

    def encode(self, text: str) -> list[int]:
        unk = self.index[UNK]
        return [self.index.get(p, unk) for p in self.pieces(text)]

    def decode(self, ids: list[int]) -> str:
        bad = [i for i in ids if not 0 <= i < len(self.tokens)]
        if bad:
            raise DataError(f"token id {bad[0]} outside 0..{len(self.tokens) - 1}")
        pieces = [self.tokens[i] for i in ids if i != 0]
        if self._sp is not None:
            return self._sp.decode_pieces(pieces).strip()
        return "".join(" " if p == SPACE else p for p in pieces).strip()


def train_tokenizer(source: str | Path, out: str | Path, kind: str = "unigram",
                    vocab_size: int = 500, character_coverage: float = 1.0) -> Tokenizer:
    """Train a tokenizer on the transcripts of ``source`` (data dir or ``text`` file).

    For sentencepiece, ``vocab_size`` counts the learned units plus ``<unk>`` and is an upper
    bound (a small corpus yields fewer units); ``char`` ignores it.
    """
    if kind not in KINDS:
        raise DataError(f"unknown tokenizer kind {kind!r}: {', '.join(KINDS)}")
    texts = read_transcripts(source)
    if not texts:
        raise DataError(f"no non-empty transcripts in {source}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if kind == "char":
        chars = Counter(SPACE if c == " " else c for t in texts for c in " ".join(t.split()))
        units = sorted(chars)
    else:
        units = _train_sentencepiece(texts, out, kind, vocab_size, character_coverage)
    (out / "tokens.txt").write_text("".join(f"{t}\n" for t in [BLANK, UNK, *units]),
                                    encoding="utf-8")
    (out / "tokenizer.yaml").write_text(yaml.safe_dump({"kind": kind, "trained_on": str(source),
                                                        "transcripts": len(texts)}))
    return Tokenizer(out)


def _train_sentencepiece(texts: list[str], out: Path, kind: str, vocab_size: int,
                         character_coverage: float) -> list[str]:
    import sentencepiece as spm

    corpus = out / "train_text.txt"
    corpus.write_text("".join(f"{' '.join(t.split())}\n" for t in texts), encoding="utf-8")
    try:
        spm.SentencePieceTrainer.train(
            input=str(corpus), model_prefix=str(out / "sp"), model_type=kind,
            vocab_size=vocab_size, character_coverage=character_coverage,
            hard_vocab_limit=False, unk_id=0, bos_id=-1, eos_id=-1, pad_id=-1,
            minloglevel=2)
    except RuntimeError as exc:
        raise DataError(f"sentencepiece training on {len(texts)} transcripts failed: "
                        f"{str(exc).strip().splitlines()[-1]}") from None
    finally:
        corpus.unlink(missing_ok=True)
    sp = spm.SentencePieceProcessor(model_file=str(out / "sp.model"))
    return [sp.id_to_piece(i) for i in range(1, sp.get_piece_size())]  # 0 is sp's <unk>
