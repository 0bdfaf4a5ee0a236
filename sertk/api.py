"""The Python API: emotion recognition in three lines.

    >>> from sertk import Recognizer
    >>> r = Recognizer("model.zip")                 # or an experiment dir, or a shipped name
    >>> r("a.wav")                                  # one dict, like a `sertk infer` line
    {'key': 'a', 'path': 'a.wav', 'label': 'angry', 'posteriors': {'angry': 0.91, ...}}
    >>> r(["a.wav", "b.wav"])                       # a list of dicts, in order
    >>> r(samples, sample_rate=44100)               # a 1-D float array (numpy or torch)

Files go through the same code as ``sertk infer`` (:class:`sertk.infer.recognizer.Recognizer`),
so the results are the same. An array is taken as mono samples in [-1, 1] at ``sample_rate``
(integer arrays are scaled from their type's range), resampled to the model's front-end rate,
trimmed if the model was trained on trimmed audio, then featurised and scored the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Union

import numpy as np
import torch

from sertk.errors import DataError, SertkError

Audio = Union[str, Path, np.ndarray, torch.Tensor]


class Recognizer:
    """A packed model ready to recognise audio: ``Recognizer(model, device="cpu")``.

    ``model``: a packed ``model.zip``, an experiment directory or the name of a shipped model
    (``sertk/pretrained``). ``segment``/``shift`` (seconds): also report the posteriors of
    windows of long audio (``"segments"``), as ``sertk infer --segment``.
    """

    def __init__(self, model: str | Path, device: str | torch.device = "cpu",
                 batch_size: int = 16, segment: float | None = None,
                 shift: float | None = None) -> None:
        from sertk.infer.packed import PackedModel, load_packed
        from sertk.infer.recognizer import Recognizer as _Recognizer
        from sertk.models.classifier import input_tables

        self.device = str(device)
        self.packed = model if isinstance(model, PackedModel) else load_packed(model,
                                                                                self.device)
        if self.packed.feats.speaker_cmvn:
            raise SertkError("this model normalises features per speaker (trained with "
                             "--cmvn_type speaker): use `sertk infer --utt2spk`")
        mcfg = self.packed.config["model"]
        if input_tables(mcfg["name"], mcfg.get("conf")):
            raise SertkError("this model reads a transcript or other inputs besides audio: use "
                             "`sertk infer --text` or `sertk predict`")
        self._rec = _Recognizer(self.packed, self.device, batch_size, segment, shift)
        self.segment, self.shift = segment, shift
        self.batch_size = batch_size

    @property
    def labels(self) -> list[str]:
        """The classes, in the order of the model's outputs (dimension names for a
        dimensional model)."""
        return list(self.packed.labels)

    @property
    def sample_rate(self) -> int:
        """The rate the model's front end works at (arrays at other rates are resampled)."""
        return int(self.packed.feats.sample_rate)

    def __repr__(self) -> str:
        return (f"Recognizer({self.packed.config['model']['name']}, {len(self.labels)} classes"
                f", {self.packed.feats.name} at {self.sample_rate} Hz, device={self.device})")

    def __call__(self, audio: Audio | Sequence[Audio], sample_rate: int | None = None
                 ) -> dict[str, Any] | list[dict[str, Any]]:
        """Recognise one input (a dict) or a list/tuple of them (a list of dicts, in order).

        An input is an audio path (anything ``sertk infer`` reads, with the file name without
        extension as ``key``) or a 1-D float array of samples at ``sample_rate`` (``key``:
        ``array<i>``, its position in the call).
        """
        single = not isinstance(audio, (list, tuple))
        items = [audio] if single else list(audio)
        out: list[dict[str, Any] | None] = [None] * len(items)
        files = [(i, x) for i, x in enumerate(items) if isinstance(x, (str, Path))]
        arrays = [(i, x) for i, x in enumerate(items) if not isinstance(x, (str, Path))]
        if arrays and sample_rate is None:
            raise SertkError("give the sample_rate of the audio arrays (e.g. sample_rate=16000)")
        for _, path in files:
            if not str(path).rstrip().endswith("|") and not _exists(str(path)):
                raise SertkError(f"audio file not found: {path}")
        records = self._rec.recognize([(Path(str(p)).stem, str(p)) for _, p in files],
                                      progress=False) if files else []
        for (i, _), rec in zip(files, records):
            out[i] = rec
        if arrays:
            feats = [self._features(x, int(sample_rate), f"array{i}") for i, x in arrays]
            for (i, _), rec in zip(arrays, self._recognize_feats(
                    [f"array{i}" for i, _ in arrays], feats)):
                out[i] = rec
        return out[0] if single else out

    # --------------------------------------------------------------------------- arrays
    def _features(self, x: Any, sample_rate: int, key: str) -> torch.Tensor:
        """The model's features of a 1-D array of samples (as ``compute_features`` of a file:
        resampled, trimmed as the model's ``feats.yaml`` says, featurised)."""
        from sertk.data.audio import to_model_input

        if isinstance(x, torch.Tensor):
            x = x.detach().cpu().numpy()
        x = np.asarray(x)
        if x.ndim != 1:
            raise SertkError(f"{key}: audio arrays must be 1-D (mono samples), got shape "
                             f"{tuple(x.shape)}")
        if np.issubdtype(x.dtype, np.integer):
            x = x.astype(np.float32) / float(-np.iinfo(x.dtype).min)
        elif not np.issubdtype(x.dtype, np.floating):
            raise SertkError(f"{key}: audio arrays must hold numbers, got {x.dtype}")
        if x.size == 0:
            raise DataError(f"utterance {key}: no samples")
        wav = to_model_input(x.astype(np.float32)[:, None], sample_rate,
                             self.packed.feats.audio, key)
        return self._rec.featurise(wav, key)[0]

    def _windows(self) -> tuple[int, int] | None:
        """Frames per window and shift: ``segment``/``shift``, else the model's
        ``train.eval_segment`` (as the file path does), else None (the whole input)."""
        fps = 1000.0 / float(self.packed.feats.params.get("frame_shift", 10.0))
        if self.segment:
            return (max(1, round(self.segment * fps)),
                    max(1, round((self.shift or self.segment) * fps)))
        seg = (self.packed.config.get("train") or {}).get("eval_segment")
        return (int(seg[0]), int(seg[1])) if seg else None

    def _recognize_feats(self, keys: list[str], feats: list[torch.Tensor]
                         ) -> list[dict[str, Any]]:
        from sertk.data.segments import windows
        from sertk.infer.recognizer import posteriors

        window = self._windows()
        fps = 1000.0 / float(self.packed.feats.params.get("frame_shift", 10.0))
        pieces = [(k, s, e, f[s:e]) for k, f in zip(keys, feats)
                  for s, e in (windows(f.shape[0], *window) if window else [(0, f.shape[0])])]
        post = torch.cat([posteriors(self.packed, [p[3] for p in pieces[i:i + self.batch_size]],
                                     self.device)
                          for i in range(0, len(pieces), self.batch_size)])
        out = []
        for key in keys:
            rows = [(p, piece) for p, piece in zip(post, pieces) if piece[0] == key]
            rec = {"key": key, **self._record(torch.stack([p for p, _ in rows]).mean(0))}
            if self.segment:
                rec["segments"] = [{"start": round(s / fps, 3), "end": round(e / fps, 3),
                                    **self._record(p)} for p, (_, s, e, _) in rows]
            out.append(rec)
        if self.packed.transcribes:
            texts = self.packed.transcribe(feats, self.device, window[0] if window else None,
                                           self.batch_size)
            for rec, text in zip(out, texts):
                rec["text"] = text
        return out

    def _record(self, post: torch.Tensor) -> dict[str, Any]:
        """As a ``sertk infer`` line: the label and posteriors (a dimensional model: dims)."""
        labels = self.packed.labels
        if self.packed.config.get("task") == "dimensional":
            return {"dims": {n: round(float(v), 6) for n, v in zip(labels, post)}}
        return {"label": labels[int(post.argmax())],
                "posteriors": {lab: round(float(p), 6) for lab, p in zip(labels, post)}}


def _exists(entry: str) -> bool:
    """A plain file, or a Kaldi ``file.ark:offset`` entry whose ark exists."""
    import re

    m = re.match(r"^(.+\.ark):(\d+)$", entry)
    return Path(m.group(1) if m else entry).is_file()
