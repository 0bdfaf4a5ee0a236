"""Emotion recognition from features or audio with a trained model.

* :func:`predict_dump`: posteriors for a dumped data directory (recipe stage 4).
* :class:`Recognizer`: audio in, posteriors out (``sertk infer``); features and CMVN come from
  the packed model. Long files can be cut into windows (``segment``/``shift`` seconds): each
  window gets its own posteriors and the file gets their mean.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from sertk.data.dataset import FeatsDataset, pad_collate
from sertk.data.inputs import InputTable, batch_inputs, build_inputs
from sertk.data.kaldi_table import read_table, write_table
from sertk.data.sampler import BucketBatchSampler
from sertk.data.segments import windows
from sertk.errors import DataError, SertkError
from sertk.features.dump import compute_features
from sertk.features.registry import build_frontend
from sertk.infer.packed import PackedModel
from sertk.models.classifier import input_tables

log = logging.getLogger(__name__)
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif", ".au", ".sph")


@torch.no_grad()
def posteriors(packed: PackedModel, feats: list[torch.Tensor], device: torch.device | str,
               inputs: dict[str, tuple[torch.Tensor, torch.Tensor]] | None = None
               ) -> torch.Tensor:
    """Softmax posteriors ``[N, C]`` for a padded batch of ``[T, D]`` features (the
    predicted values of a dimensional model); ``inputs``: the batch's extra model inputs."""
    lengths = torch.tensor([f.shape[0] for f in feats])
    x = torch.nn.utils.rnn.pad_sequence(feats, batch_first=True).to(device)
    out = packed.model(x, lengths.to(device), inputs=inputs).float()
    return (out if is_dimensional(packed) else torch.softmax(out, dim=-1)).cpu()


def is_dimensional(packed: PackedModel) -> bool:
    """A model of ``task: dimensional``: its labels are dimension names, outputs values."""
    return packed.config.get("task") == "dimensional"


def predict_dump(packed: PackedModel, data_dir: str | Path, out_dir: str | Path,
                 device: str = "cpu", batch_size: int = 32, progress: bool = True
                 ) -> dict[str, str]:
    """Write ``posteriors.jsonl`` and ``hyp.txt`` (``utt label``; a dimensional model:
    ``utt v1 v2 ...`` in its dimension order, an ``utt2dim``-style table) for a dump directory.

    A model trained with ``train.eval_segment`` scores each utterance as the mean posterior
    of its windows, as in its validation.
    """
    from sertk.train.evaluate import segment_posteriors

    segment = (packed.config.get("train") or {}).get("eval_segment")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ds = FeatsDataset(data_dir, None, require_labels=False)  # labels are the scorer's job
    tables = model_inputs(packed, data_dir, ds.keys)
    sampler = BucketBatchSampler(ds.lengths, batch_size, shuffle=False)
    loader = torch.utils.data.DataLoader(ds, batch_sampler=sampler, collate_fn=pad_collate)
    hyp: dict[str, str] = {}
    records: dict[str, dict[str, Any]] = {}
    packed.model.to(device).eval()
    for batch in tqdm(loader, desc="predict", disable=not progress, unit="batch"):
        with torch.no_grad():
            if segment:
                post = segment_posteriors(packed.model, batch["feats"], batch["lengths"],
                                          tuple(segment), device)
            else:
                post = posteriors(packed, [f[:n] for f, n in zip(batch["feats"],
                                                                 batch["lengths"].tolist())],
                                  device, batch_inputs(tables, batch["keys"], device))
        for key, p in zip(batch["keys"], post):
            records[key] = _record(key, p, packed.labels, is_dimensional(packed))
            hyp[key] = " ".join(f"{v:.4f}" for v in p.tolist()) if is_dimensional(packed) \
                else records[key]["label"]
    with (out_dir / "posteriors.jsonl").open("w") as fh:
        for key in sorted(records):
            fh.write(json.dumps(records[key]) + "\n")
    write_table(out_dir / "hyp.txt", hyp)
    return hyp


def model_inputs(packed: PackedModel, data_dir: str | Path, keys: list[str]
                 ) -> dict[str, InputTable]:
    """The extra input tables the packed model reads, from ``data_dir`` (every key needs an
    entry; a text input uses the pack's tokenizer)."""
    mcfg = packed.config["model"]
    kinds = input_tables(mcfg["name"], mcfg.get("conf"))
    if "tokens" in kinds.values() and packed.tokenizer is None:
        raise SertkError("the model reads a transcript but its tokenizer is missing")
    return build_inputs(data_dir, kinds, keys, packed.tokenizer)


def _record(key: str, post: torch.Tensor, labels: list[str], dimensional: bool = False
            ) -> dict[str, Any]:
    if dimensional:
        return {"key": key, "dims": {n: round(float(v), 6) for n, v in zip(labels, post)}}
    return {"key": key, "label": labels[int(post.argmax())],
            "posteriors": {lab: round(float(p), 6) for lab, p in zip(labels, post)}}


# ----------------------------------------------------------------------------- audio inputs
def inputs_from_wav_list(path: str | Path) -> list[tuple[str, str]]:
    """One audio path per line; the key is the file name without extension."""
    path = Path(path)
    if not path.is_file():
        raise SertkError(f"wav list not found: {path}")
    items, seen = [], {}
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        wav = line.strip()
        key = Path(wav).stem
        if key in seen:
            raise DataError(f"{path}:{lineno}: duplicate key {key!r} (also line {seen[key]}); "
                            "use --wav-scp to give unique keys")
        seen[key] = lineno
        items.append((key, wav))
    return items


def inputs_from_jsonl(path: str | Path) -> tuple[list[tuple[str, str]], dict[str, str]]:
    """JSON lines ``{"wav": path, "key": optional, "text": optional}`` -> the audio items and
    the transcripts given (the key defaults to the file name without extension)."""
    path = Path(path)
    if not path.is_file():
        raise SertkError(f"JSON-lines input not found: {path}")
    items, texts, seen = [], {}, {}
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}:{lineno}: not JSON: {exc.msg}") from None
        if not isinstance(rec, dict) or not isinstance(rec.get("wav"), str):
            raise DataError(f"{path}:{lineno}: needs a \"wav\" field (the audio path)")
        key = str(rec.get("key") or Path(rec["wav"]).stem)
        if key in seen:
            raise DataError(f"{path}:{lineno}: duplicate key {key!r} (also line {seen[key]})")
        seen[key] = lineno
        items.append((key, rec["wav"]))
        if rec.get("text") is not None:
            texts[key] = str(rec["text"])
    return items, texts


def inputs_from_wav_scp(path: str | Path) -> list[tuple[str, str]]:
    return sorted(read_table(path, 2, None).items())


def inputs_from_dir(path: str | Path) -> list[tuple[str, str]]:
    """Every audio file under ``path`` (recursively); key = path relative to ``path`` with
    separators replaced by '-' and no extension."""
    root = Path(path)
    if not root.is_dir():
        raise SertkError(f"directory not found: {root}")
    items = []
    for dirpath, _, files in os.walk(root):
        for name in files:
            if name.lower().endswith(AUDIO_EXTENSIONS):
                full = Path(dirpath) / name
                key = str(full.relative_to(root).with_suffix("")).replace(os.sep, "-")
                items.append((key, str(full)))
    if not items:
        raise SertkError(f"no audio files ({', '.join(AUDIO_EXTENSIONS)}) under {root}")
    return sorted(items)


@dataclass
class Recognizer:
    """Audio -> features (the packed front end) -> posteriors, in batches.

    A model trained with per-speaker CMVN (``speaker_cmvn`` in its ``feats.yaml``) needs the
    speaker of every input (``utt2spk``): features are normalised with the statistics of all
    inputs of the same speaker, as in training. A model trained with ``train.eval_segment``
    averages the posteriors of those windows, as in its validation; ``segment``/``shift``
    (seconds) override that and also report per-window posteriors. A model that reads a
    transcript (``text`` input) needs ``texts`` (``{key: transcript}``); every window of a
    file gets the file's transcript.
    """

    packed: PackedModel
    device: str = "cpu"
    batch_size: int = 16
    segment: float | None = None
    shift: float | None = None
    utt2spk: dict[str, str] | None = None
    texts: dict[str, str] | None = None

    def __post_init__(self) -> None:
        self.frontend = build_frontend(self.packed.feats)
        self.packed.model.to(self.device).eval()
        self.fps = _frames_per_second(self.packed.feats.params)
        if self.segment:
            self.window = (max(1, round(self.segment * self.fps)),
                           max(1, round((self.shift or self.segment) * self.fps)))
        else:
            seg = (self.packed.config.get("train") or {}).get("eval_segment")
            self.window = (int(seg[0]), int(seg[1])) if seg else None
        if self.packed.feats.speaker_cmvn and self.utt2spk is None:
            raise SertkError("this model normalises features per speaker (trained with "
                             "--cmvn_type speaker): give the speaker of every input "
                             "(--utt2spk FILE with 'key speaker' lines)")
        mcfg = self.packed.config["model"]
        self.input_kinds = input_tables(mcfg["name"], mcfg.get("conf"))
        other = [t for t, k in self.input_kinds.items() if k != "tokens"]
        if other:
            raise SertkError(f"this model reads {', '.join(other)} besides audio: run `sertk "
                             "predict` on a data directory that has it")
        if self.input_kinds and self.texts is None:
            raise SertkError("this model reads a transcript: give one per input (--text FILE "
                             "with 'key transcript' lines, or --jsonl with a \"text\" field)")
        if self.input_kinds and self.packed.tokenizer is None:
            raise SertkError("the model reads a transcript but its tokenizer is missing")

    def _inputs(self, keys: list[str]) -> dict[str, tuple[torch.Tensor, torch.Tensor]] | None:
        """The transcripts of ``keys`` as token ids, padded (None for an audio-only model)."""
        if not self.input_kinds:
            return None
        seqs = []
        for key in keys:
            text = (self.texts or {}).get(key, "")
            ids = self.packed.tokenizer.encode(text) if text.strip() else []
            if not ids:
                raise DataError(f"{key}: no transcript (the model reads one; see --text)")
            seqs.append(torch.tensor(ids, dtype=torch.long))
        lengths = torch.tensor([len(s) for s in seqs])
        padded = torch.nn.utils.rnn.pad_sequence(seqs, batch_first=True)
        return {t: (padded.to(self.device), lengths.to(self.device)) for t in self.input_kinds}

    def _features(self, items: list[tuple[str, str]], skip_bad: bool
                  ) -> Iterator[tuple[str, str, torch.Tensor | None, str | None]]:
        for key, entry in items:
            try:
                feats = compute_features(entry, self.packed.feats, self.frontend, key,
                                         apply_trim=True)
            except DataError as exc:
                if not skip_bad:
                    raise
                yield key, entry, None, str(exc)
                continue
            yield key, entry, torch.from_numpy(feats), None

    def _speaker_normalised(self, feats: list[tuple[str, str, torch.Tensor | None, str | None]]
                            ) -> list[tuple[str, str, torch.Tensor | None, str | None]]:
        from sertk.features.cmvn import accumulate, stats_to_mean_std

        spk_of = {}
        for key, _, f, _ in feats:
            if f is not None:
                if key not in self.utt2spk:
                    raise DataError(f"utterance {key}: no speaker in --utt2spk")
                spk_of[key] = self.utt2spk[key]
        stats = {}
        for spk in sorted(set(spk_of.values())):
            mats = [f.numpy() for k, _, f, _ in feats if f is not None and spk_of[k] == spk]
            stats[spk] = stats_to_mean_std(accumulate(mats))
        norm_vars = self.packed.feats.speaker_cmvn.get("norm_vars", True)
        out = []
        for key, entry, f, err in feats:
            if f is not None:
                mean, std = stats[spk_of[key]]
                f = f - torch.from_numpy(mean).float()
                f = f / torch.from_numpy(std).float() if norm_vars else f
            out.append((key, entry, f, err))
        return out

    def _add_transcripts(self, chunk: list[tuple[str, str, torch.Tensor | None, str | None]],
                         results: list[dict[str, Any]]) -> None:
        """``text``: the transcript of every recognised input (a model with a CTC head and
        its tokenizer); with windows, of consecutive windows of their length, joined."""
        ok = [(rec, feats) for rec, (_, _, feats, _) in zip(results, chunk) if feats is not None]
        texts = self.packed.transcribe([f for _, f in ok], self.device,
                                       self.window[0] if self.window else None,
                                       self.batch_size)
        for (rec, _), text in zip(ok, texts):
            rec["text"] = text

    def recognize(self, items: Iterable[tuple[str, str]], skip_bad: bool = False,
                  progress: bool = True) -> Iterator[dict[str, Any]]:
        """Yield one record per input; bad audio raises, or with ``skip_bad`` yields
        ``{"key", "error"}`` so the caller can count and report it."""
        items = list(items)
        bar = tqdm(total=len(items), desc="infer", unit="file", disable=not progress)
        stream: Iterable = self._features(items, skip_bad)
        if self.packed.feats.speaker_cmvn:
            stream = self._speaker_normalised(list(stream))
        stream = iter(stream)
        while True:
            chunk = [x for _, x in zip(range(self.batch_size), stream)]
            if not chunk:
                break
            pieces: list[tuple[int, int, int, torch.Tensor]] = []
            results: list[dict[str, Any]] = []
            for key, entry, feats, err in chunk:
                if feats is None:
                    results.append({"key": key, "error": err})
                    continue
                results.append({"key": key, "path": entry})
                spans = windows(feats.shape[0], *self.window) if self.window else \
                    [(0, feats.shape[0])]
                for s, e in spans:
                    pieces.append((len(results) - 1, s, e, feats[s:e]))
            post = posteriors(self.packed, [p[3] for p in pieces], self.device,
                              self._inputs([results[p[0]]["key"] for p in pieces])) \
                if pieces else torch.empty(0)
            for ridx, rec in enumerate(results):
                if "error" in rec:
                    continue
                rows = [(p, piece) for p, piece in zip(post, pieces) if piece[0] == ridx]
                mean = torch.stack([p for p, _ in rows]).mean(0)
                dims = is_dimensional(self.packed)
                rec.update(_record(rec["key"], mean, self.packed.labels, dims))
                if self.segment:
                    rec["segments"] = [
                        {"start": round(s / self.fps, 3), "end": round(e / self.fps, 3),
                         **{k: v for k, v in _record("", p, self.packed.labels, dims).items()
                            if k != "key"}}
                        for p, (_, s, e, _) in rows]
            if self.packed.transcribes:
                self._add_transcripts(chunk, results)
            bar.update(len(chunk))
            yield from results
        bar.close()


def _frames_per_second(params: dict[str, Any]) -> float:
    return 1000.0 / float(params.get("frame_shift", 10.0))
