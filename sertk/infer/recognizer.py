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
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from sertk.data.audio import file_info, is_plain_file, polyphase
from sertk.data.dataset import FeatsDataset, pad_collate
from sertk.data.inputs import InputTable, batch_inputs, build_inputs
from sertk.data.kaldi_table import read_table, write_table
from sertk.data.sampler import BucketBatchSampler
from sertk.data.segments import windows
from sertk.errors import DataError, SertkError
from sertk.features.registry import build_frontend
from sertk.infer.packed import PackedModel
from sertk.infer.stream import (
    WindowStreamer,
    can_stream,
    ordered_map,
    prefetch,
    resample,
    stream_features,
)
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
    want = packed.config.get("input_dim")
    if ds.dim is not None and want is not None and ds.dim != int(want):
        raise SertkError(f"{data_dir}: features of dimension {ds.dim} (feat_dim), but the "
                         f"model was trained on {want}: dump with the model's front end")
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


_LONG = "long"  # a file to stream in chunks (see Recognizer.stream_seconds)


@dataclass
class Recognizer:
    """Audio -> features (the packed front end) -> posteriors, streamed over the inputs.

    A model trained with per-speaker CMVN (``speaker_cmvn`` in its ``feats.yaml``) needs the
    speaker of every input (``utt2spk``): features are normalised with the statistics of all
    inputs of the same speaker, as in training (a first pass over the inputs gathers them,
    so each file is read twice). A model trained with ``train.eval_segment`` averages the
    posteriors of those windows, as in its validation; ``segment``/``shift`` (seconds)
    override that and also report per-window posteriors. A model that reads a transcript
    (``text`` input) needs ``texts`` (``{key: transcript}``); every window of a file gets the
    file's transcript.

    On a CPU a model with 2-D convolutions runs in the channels-last layout
    (``channels_last``; :func:`use_channels_last`) when that gives its posteriors on a probe
    input: about 1.8x faster for ``cnn_asp``, whose NCHW max pooling is slow on a CPU. Its
    conv blocks run in their inference form (batch norm folded in, oneDNN over bucketed
    lengths; ``deploy_convs``, :func:`use_deployed_convs`), checked the same way.

    Memory does not grow with the number of inputs: ``num_workers`` threads read, resample
    and featurise files ahead of the model (at most ``lookahead`` files, default
    ``max(4 batch_size, 2 num_workers)``); within those, pieces are sorted by length into
    batches of ``batch_size`` (None: 1 on a CPU, where a padded batch costs more per file
    than single calls; 16 on a GPU) and records come out in input order. With windows, a
    plain audio file longer than ``stream_seconds`` is read, resampled and featurised in
    chunks (:mod:`sertk.infer.stream`) so that an hour of audio needs no more memory than a
    minute. On a CPU, while recognising, torch runs one thread per worker (``torch_threads``,
    default 1 with workers: the parallelism is the workers') and oneDNN is off (``onednn``):
    it keeps compiled kernels for every input shape it meets, about 1 MB per new length.
    """

    packed: PackedModel
    device: str = "cpu"
    batch_size: int | None = None
    segment: float | None = None
    shift: float | None = None
    utt2spk: dict[str, str] | None = None
    texts: dict[str, str] | None = None
    num_workers: int = 2
    lookahead: int | None = None
    stream_seconds: float = 60.0
    torch_threads: int | None = None
    onednn: bool = False
    channels_last: bool = True
    deploy_convs: bool = True

    def __post_init__(self) -> None:
        self.frontend = build_frontend(self.packed.feats)
        self.packed.model.to(self.device).eval()
        self.on_cpu = torch.device(self.device).type == "cpu"
        if (self.packed.config.get("train") or {}).get("channels_last"):
            # as trained (sertk.train.trainer): NHWC 2-D convolutions and pooling, 1.5-2x
            # faster on a CPU (max pooling of an NCHW map is slow there)
            self.packed.model.to(memory_format=torch.channels_last)
        elif self.on_cpu and self.channels_last:
            self.channels_last = use_channels_last(self.packed)
        if self.deploy_convs:
            self.deploy_convs = use_deployed_convs(self.packed, self.device)
        if self.batch_size is None:
            self.batch_size = 1 if self.on_cpu else 16
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
        self._spk_stats: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self._model_pool: ThreadPoolExecutor | None = None

    # ------------------------------------------------------------------------ the model
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

    def _score(self, pieces: list[tuple[str, torch.Tensor]]) -> list[torch.Tensor]:
        """Posteriors of ``(key, feats)`` pieces, in their order: batches of similar length
        (sorted, so that padding is small)."""
        order = sorted(range(len(pieces)), key=lambda i: pieces[i][1].shape[0])
        batches = [order[s:s + self.batch_size] for s in range(0, len(order), self.batch_size)]

        def run(idx: list[int]) -> torch.Tensor:
            return posteriors(self.packed, [pieces[i][1] for i in idx], self.device,
                              self._inputs([pieces[i][0] for i in idx]))

        pool = self._model_pool if len(batches) > 1 else None
        posts = [f.result() for f in [pool.submit(run, b) for b in batches]] if pool else \
            [run(b) for b in batches]
        out: list[torch.Tensor | None] = [None] * len(pieces)
        for idx, post in zip(batches, posts):
            for i, p in zip(idx, post):
                out[i] = p
        return out  # type: ignore[return-value]

    def _finish_record(self, rec: dict[str, Any], rows: list[tuple[int, int, torch.Tensor]],
                       offset: float = 0.0) -> dict[str, Any]:
        """``rec`` with the file's label and mean posterior over its ``(start, end, post)``
        windows, and the windows (``segment`` given); ``offset``: seconds of leading silence
        trimmed (windows are timed from the trimmed start, as ever)."""
        dims = is_dimensional(self.packed)
        mean = torch.stack([p for _, _, p in rows]).mean(0)
        rec.update(_record(rec["key"], mean, self.packed.labels, dims))
        if self.segment:
            rec["segments"] = [
                {"start": round(s / self.fps, 3), "end": round(e / self.fps, 3),
                 **{k: v for k, v in _record("", p, self.packed.labels, dims).items()
                    if k != "key"}}
                for s, e, p in rows]
            if offset:
                rec["offset"] = round(offset, 3)
        return rec

    # ------------------------------------------------------------------------ features
    def _is_long(self, entry: str) -> bool:
        if self.window is None or not is_plain_file(entry):
            return False
        try:
            sr, frames = file_info(entry.strip())
        except DataError:
            return False  # the whole-file path reports it
        return frames / sr > self.stream_seconds and \
            can_stream(entry.strip(), self.packed.feats, self.frontend)

    def _featurise(self, item: tuple[str, str]) -> tuple[torch.Tensor, float] | str:
        """A worker's job: the (speaker-normalised) features of one file and the seconds of
        leading silence trimmed, or ``_LONG``."""
        key, entry = item
        if self._is_long(entry):
            return _LONG
        feats, offset = self._features(key, entry)
        return self._normalise(key, feats), offset

    def _features(self, key: str, entry: str) -> tuple[torch.Tensor, float]:
        """:func:`sertk.features.dump.compute_features` with ``apply_trim`` (the same steps,
        which the tests compare), also giving the seconds trimmed at the start; resampling
        by :func:`sertk.infer.stream.resample` (oneDNN in fixed-size blocks: the same filter,
        4x faster than PyTorch's own convolution, which inference uses otherwise)."""
        from sertk.data.audio import _resample, read_entry, to_mono

        cfg = self.packed.feats
        raw, sr = read_entry(entry, key)
        wav = to_mono(raw, cfg.audio, key, entry)
        del raw
        if sr != cfg.sample_rate:
            wav = resample(wav, sr, cfg.sample_rate) if polyphase(sr, cfg.sample_rate) \
                else _resample(wav, sr, cfg.sample_rate)
        return self.featurise(wav, key, f": {entry}")

    def featurise(self, wav: torch.Tensor, key: str, where: str = ""
                  ) -> tuple[torch.Tensor, float]:
        """Features of a mono waveform at the front end's rate, trimmed as the model's
        ``feats.yaml`` says; also the seconds trimmed at the start. ``where`` ends the
        error lines (e.g. ``": <entry>"``)."""
        from sertk.data.trim import speech_span

        cfg, offset = self.packed.feats, 0.0
        if cfg.trim:
            s, e = speech_span(wav.numpy(), cfg.sample_rate, **cfg.trim)
            wav, offset = wav[int(s * cfg.sample_rate):int(e * cfg.sample_rate)], s
        with torch.no_grad():
            feats = self.frontend(wav)
        if feats.shape[0] == 0:
            raise DataError(f"utterance {key}: too short for one frame ({wav.numel()} samples "
                            f"at {cfg.sample_rate} Hz){where}")
        if not torch.isfinite(feats).all():
            raise DataError(f"utterance {key}: features contain NaN/Inf{where}")
        return feats.float(), offset

    def _normalise(self, key: str, feats: torch.Tensor) -> torch.Tensor:
        if not self.packed.feats.speaker_cmvn:
            return feats
        mean, std = self._spk_stats[self.utt2spk[key]]
        feats = feats - mean
        return feats / std if self.packed.feats.speaker_cmvn.get("norm_vars", True) else feats

    def _speaker_stats(self, items: list[tuple[str, str]], pool: ThreadPoolExecutor | None,
                       skip_bad: bool) -> None:
        """First pass for a per-speaker CMVN model: every speaker's feature statistics."""
        from sertk.features.cmvn import accumulate, stats_to_mean_std

        def stats(item: tuple[str, str]) -> np.ndarray:
            key, entry = item
            if self._is_long(entry):
                _, blocks = stream_features(entry.strip(), self.packed.feats, self.frontend,
                                            key)
                return sum(accumulate([b.numpy()]) for b in blocks)
            return accumulate([self._features(key, entry)[0].numpy()])

        for key, _ in items:
            if key not in self.utt2spk:
                raise DataError(f"utterance {key}: no speaker in --utt2spk")
        sums: dict[str, np.ndarray] = {}
        for (key, _), fut in ordered_map(stats, items, pool, self._lookahead()):
            try:
                st = fut.result()
            except DataError:
                if not skip_bad:
                    raise
                continue  # reported by the second pass
            spk = self.utt2spk[key]
            sums[spk] = st if spk not in sums else sums[spk] + st
        for spk, st in sums.items():
            mean, std = stats_to_mean_std(st)
            self._spk_stats[spk] = (torch.from_numpy(mean).float(), torch.from_numpy(std).float())

    def _lookahead(self) -> int:
        return self.lookahead or max(4 * self.batch_size, 2 * self.num_workers, 1)

    # ------------------------------------------------------------------------ recognition
    @contextmanager
    def _runtime(self) -> Iterator[ThreadPoolExecutor | None]:
        threads, onednn = torch.get_num_threads(), torch.backends.mkldnn.enabled
        want = (self.torch_threads or (1 if self.num_workers > 0 else None)) \
            if self.on_cpu else None

        def init() -> None:  # OpenMP's thread count is per thread: set it in each worker
            if want:
                torch.set_num_threads(want)

        pool = ThreadPoolExecutor(self.num_workers, thread_name_prefix="sertk-infer",
                                  initializer=init) if self.num_workers > 0 else None
        # on a CPU the batches of a window run concurrently too, one per worker (the network
        # is in eval mode: calls share no state that their outputs depend on)
        self._model_pool = ThreadPoolExecutor(self.num_workers, thread_name_prefix="sertk-model",
                                              initializer=init) \
            if self.num_workers > 1 and self.on_cpu else None
        try:
            init()
            if self.on_cpu:
                torch.backends.mkldnn.enabled = bool(self.onednn and onednn)
            yield pool
        finally:
            for p in (pool, self._model_pool):
                if p is not None:
                    p.shutdown(wait=True, cancel_futures=True)
            self._model_pool = None
            torch.set_num_threads(threads)
            torch.backends.mkldnn.enabled = onednn

    def recognize(self, items: Iterable[tuple[str, str]], skip_bad: bool = False,
                  progress: bool = True) -> Iterator[dict[str, Any]]:
        """Yield one record per input, in input order; bad audio raises, or with
        ``skip_bad`` yields ``{"key", "error"}`` so the caller can count and report it.
        ``items`` may be any iterable (a generator is read as it goes)."""
        total = len(items) if hasattr(items, "__len__") else None  # type: ignore[arg-type]
        bar = tqdm(total=total, desc="infer", unit="file", disable=not progress)
        with self._runtime() as pool:
            if self.packed.feats.speaker_cmvn:
                items = list(items)
                self._speaker_stats(items, pool, skip_bad)
            window: list[tuple[tuple[str, str], Future]] = []
            ahead = self._lookahead()
            for entry in ordered_map(self._featurise, items, pool, ahead):
                window.append(entry)
                if len(window) >= ahead:
                    for rec in self._window(window, skip_bad):
                        bar.update(1)
                        yield rec
                    window = []
            for rec in self._window(window, skip_bad):
                bar.update(1)
                yield rec
        bar.close()

    def _window(self, window: list[tuple[tuple[str, str], Future]], skip_bad: bool
                ) -> Iterator[dict[str, Any]]:
        """The records of a window of files, scored together (sorted by length)."""
        records: list[dict[str, Any] | tuple[str, str]] = []
        done: list[tuple[dict[str, Any], torch.Tensor, float]] = []
        failure = None
        for (key, entry), fut in window:
            try:
                out = fut.result()
            except DataError as exc:
                if not skip_bad:
                    failure = exc  # the files before it are still given
                    break
                records.append({"key": key, "error": str(exc)})
                continue
            if isinstance(out, str):  # _LONG: streamed when its turn comes
                records.append((key, entry))
                continue
            records.append({"key": key, "path": entry})
            done.append((records[-1], *out))  # type: ignore[arg-type]
        pieces: list[tuple[int, int, int]] = []
        for i, (_, feats, _) in enumerate(done):
            spans = windows(feats.shape[0], *self.window) if self.window else \
                [(0, feats.shape[0])]
            pieces += [(i, s, e) for s, e in spans]
        post = self._score([(done[i][0]["key"], done[i][1][s:e]) for i, s, e in pieces])
        rows: list[list[tuple[int, int, torch.Tensor]]] = [[] for _ in done]
        for (i, s, e), p in zip(pieces, post):
            rows[i].append((s, e, p))
        for (rec, _, offset), r in zip(done, rows):
            self._finish_record(rec, r, offset)
        if self.packed.transcribes and done:
            texts = self.packed.transcribe([f for _, f, _ in done], self.device,
                                           self.window[0] if self.window else None,
                                           self.batch_size)
            for (rec, _, _), text in zip(done, texts):
                rec["text"] = text
        done.clear()
        for rec in records:
            if isinstance(rec, tuple):
                yield self._recognize_long(*rec, skip_bad=skip_bad)
            else:
                yield rec
        if failure is not None:
            raise failure

    def _recognize_long(self, key: str, entry: str, skip_bad: bool) -> dict[str, Any]:
        """One long file in chunks: features computed ahead in a thread, windows scored as
        they come; holds a few chunks, never the file."""
        try:
            offset, blocks = stream_features(entry.strip(), self.packed.feats, self.frontend,
                                             key)
            length, shift = self.window  # type: ignore[misc]
            streamer = WindowStreamer(length, shift)
            rows: list[tuple[int, int, torch.Tensor]] = []
            pending: list[tuple[int, int, torch.Tensor]] = []
            texts: list[str] = []
            piece: list[torch.Tensor] = []

            def flush(final: bool = False) -> None:
                if len(pending) >= self.batch_size or (final and pending):
                    post = self._score([(key, w) for _, _, w in pending])
                    rows.extend((s, e, p) for (s, e, _), p in zip(pending, post))
                    pending.clear()

            def transcribe(final: bool = False) -> None:
                # consecutive pieces of one window's length, as PackedModel.transcribe
                cat = torch.cat(piece) if piece else torch.zeros(0)
                cut = (cat.shape[0] // length) * length if not final else cat.shape[0]
                chunks = [cat[s:s + length] for s in range(0, cut, length)]
                if final and not chunks and not texts:
                    chunks = [cat]
                if chunks:
                    texts.extend(self.packed.transcribe(chunks, self.device, None,
                                                        self.batch_size))
                piece[:] = [cat[cut:]] if cut < cat.shape[0] else []

            for f in prefetch(blocks, 2):
                f = self._normalise(key, f)
                for w in streamer.push(f):
                    pending.append(w)
                    flush()
                if self.packed.transcribes:
                    piece.append(f)
                    if sum(p.shape[0] for p in piece) >= 4 * length:
                        transcribe()
            pending.extend(streamer.finish())
            flush(final=True)
            rec = self._finish_record({"key": key, "path": entry}, rows, offset)
            if self.packed.transcribes:
                transcribe(final=True)
                rec["text"] = " ".join(t for t in texts if t)
            return rec
        except DataError as exc:
            if not skip_bad:
                raise
            return {"key": key, "error": str(exc)}


def use_channels_last(packed: PackedModel, tol: float = 1e-5) -> bool:
    """Switch a model with 2-D convolutions or pooling to the channels-last layout if its
    posteriors for a probe input stay within ``tol`` of the contiguous layout's (see
    :func:`keep_if_same`). True when switched."""
    model = packed.model
    layers = (torch.nn.Conv2d, torch.nn.MaxPool2d, torch.nn.AvgPool2d)
    if not any(isinstance(m, layers) for m in model.modules()):
        return False

    def change() -> Callable[[], None]:
        model.to(memory_format=torch.channels_last)
        return lambda: model.to(memory_format=torch.contiguous_format)

    return keep_if_same(packed, change, "cpu", tol)


def use_deployed_convs(packed: PackedModel, device: torch.device | str, tol: float = 1e-5
                       ) -> bool:
    """The model's conv blocks in their inference form (batch norm folded into the
    convolution, oneDNN's convolution over time-bucketed inputs on a CPU:
    :func:`sertk.models.layers.conv.deploy_conv_blocks`; about 25 % of ``cnn_asp``'s time on
    a CPU) if the posteriors for a probe input stay within ``tol`` (see
    :func:`keep_if_same`). True when changed."""
    from sertk.models.layers.conv import ConvBlock2d, deploy_conv_blocks

    model = packed.model
    if not isinstance(model, torch.nn.Module) or model.training or \
            not any(isinstance(m, ConvBlock2d) for m in model.modules()):
        return False
    return keep_if_same(packed, lambda: deploy_conv_blocks(model) or (lambda: None), device,
                        tol)


def keep_if_same(packed: PackedModel, change: Callable[[], Callable[[], None]],
                 device: torch.device | str, tol: float = 1e-5, frames: int = 200) -> bool:
    """Apply ``change`` to the packed model (it returns its undo) and keep it if the
    posteriors for a probe input (``frames`` random feature frames) stay within ``tol`` of
    those before; otherwise, or if the changed model fails, undo it. True when kept."""
    gen = torch.Generator().manual_seed(0)
    probe = [torch.randn(frames, int(packed.config["input_dim"]), generator=gen)]
    undo = None
    try:
        with torch.no_grad():
            ref = posteriors(packed, probe, device)
            undo = change()
            out = posteriors(packed, probe, device)
        if (out - ref).abs().max().item() <= tol:
            return True
    except Exception:  # noqa: BLE001  (e.g. a .view() of an NHWC map: keep the model as it is)
        pass
    if undo is not None:
        undo()
    return False


def _frames_per_second(params: dict[str, Any]) -> float:
    return 1000.0 / float(params.get("frame_shift", 10.0))
