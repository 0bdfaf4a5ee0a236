"""Streaming pieces of ``sertk infer``: bounded read-ahead and long audio in chunks.

* :func:`ordered_map`: ``fn`` over an iterable in a thread pool, results in input order, at
  most ``ahead`` items in flight (memory does not grow with the number of inputs).
* :func:`prefetch`: a generator run ahead in a thread, through a bounded queue.
* :class:`StreamResampler`: torchaudio's polyphase resampling block by block; the output
  equals that of the whole signal (each output sample sees the same input samples).
* :class:`FeatureStreamer`: a frame-based front end (log mel, Kaldi fbank/MFCC, spectrogram,
  with deltas or sliding CMVN) over consecutive waveform blocks; each chunk is computed with
  enough context frames on both sides that the frames kept equal the whole-utterance ones.
* :func:`stream_features`: a plain audio file as feature blocks, read, resampled, trimmed
  (two passes: the energies first, as :func:`sertk.data.trim.speech_span` on the whole) and
  featurised in chunks, never holding the whole file.
* :class:`WindowStreamer`: the windows of :func:`sertk.data.segments.windows` over a stream of
  feature blocks.
"""

from __future__ import annotations

import functools
import math
import queue
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import torch

from sertk.data.audio import (
    file_info,
    is_plain_file,
    iter_blocks,
    polyphase,
    resample_kernel,
    to_mono,
)
from sertk.errors import DataError

T = TypeVar("T")
R = TypeVar("R")


# ----------------------------------------------------------------------------- read-ahead
def ordered_map(fn: Callable[[T], R], items: Iterable[T], pool: ThreadPoolExecutor | None,
                ahead: int) -> Iterator[tuple[T, Future]]:
    """``(item, future of fn(item))`` in input order, with at most ``ahead`` futures
    submitted ahead of the consumer (``pool`` None: computed in the caller's thread)."""
    pending: deque[tuple[T, Future]] = deque()
    it = iter(items)
    done = False
    while True:
        while not done and len(pending) < max(1, ahead):
            try:
                item = next(it)
            except StopIteration:
                done = True
                break
            pending.append((item, pool.submit(fn, item) if pool else _now(fn, item)))
        if not pending:
            return
        yield pending.popleft()


def _now(fn: Callable[[T], R], item: T) -> Future:
    fut: Future = Future()
    try:
        fut.set_result(fn(item))
    except BaseException as exc:  # noqa: BLE001  (re-raised by fut.result())
        fut.set_exception(exc)
    return fut


_END = object()


def prefetch(gen: Iterator[T], size: int = 2) -> Iterator[T]:
    """Run ``gen`` in a thread, at most ``size`` items ahead; its exceptions re-raise here.
    Closing the returned generator stops the thread at its next item."""
    q: queue.Queue = queue.Queue(maxsize=max(1, size))
    stop = threading.Event()

    def work() -> None:
        try:
            for x in gen:
                while not stop.is_set():
                    try:
                        q.put((x, None), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put((_END, None))
        except BaseException as exc:  # noqa: BLE001
            q.put((_END, exc))

    th = threading.Thread(target=work, daemon=True)
    th.start()
    try:
        while True:
            x, exc = q.get()
            if x is _END:
                if exc is not None:
                    raise exc
                return
            yield x
    finally:
        stop.set()
        while th.is_alive():  # let it see the stop (it may wait on a full queue)
            try:
                q.get_nowait()
            except queue.Empty:
                th.join(0.05)


# ----------------------------------------------------------------------------- resampling
class StreamResampler:
    """:func:`torchaudio.functional.resample` (its defaults) over consecutive blocks.

    The whole-signal filter pads ``width`` zeros on the left and ``width + orig/g`` on the
    right and takes, for output block ``j`` (``new/g`` samples), the padded input
    ``[j orig/g, j orig/g + 2 width + orig/g)``; here that window is taken from a buffer that
    keeps just the samples still needed, so every output sample is the same sum of the same
    inputs as in the whole-file call.

    The filtering runs in groups of a fixed number of blocks (about a second of input; the
    last group of a signal is zero-padded, as the signal is): one input shape, so oneDNN's
    convolution (called directly, 4x faster than PyTorch's own here) compiles one kernel,
    whereas a new shape per file would make its cache grow with every file. With few output
    phases (48 -> 16 kHz has one) ``B`` consecutive blocks are computed by one filter of
    ``B`` times the phases (:func:`blocked_kernel`): the same products, as a wider matrix
    product, about 2x faster.
    """

    def __init__(self, orig: int, new: int):
        g = math.gcd(orig, new)
        self.o, self.n = orig // g, new // g
        self.kernel, self.width = resample_kernel(orig, new)
        self.span = 2 * self.width + self.o
        self.group = max(1, -(-orig // self.o))  # blocks per convolution: ~1 s of input
        self.blocked, self.stride = blocked_kernel(orig, new, self.group)
        self.buf = torch.zeros(self.width)
        self.pos0 = 0  # index of buf[0] in the padded signal
        self.next_block = 0
        self.n_in = 0
        self.n_out = 0

    def _blocks(self, final: bool = False) -> torch.Tensor:
        avail = self.pos0 + self.buf.numel()
        last = (avail - self.span) // self.o  # the last block the samples allow
        outs = []
        while self.next_block + (0 if final else self.group - 1) <= last:
            first = self.next_block
            seg = self.buf[first * self.o - self.pos0:
                           (first + self.group - 1) * self.o + self.span - self.pos0]
            full = (self.group - 1) * self.o + self.span
            if seg.numel() < full:  # the end of the signal: more zeros, blocks cut below
                seg = torch.cat([seg, seg.new_zeros(full - seg.numel())])
            outs.append(_conv(seg, self.blocked, self.stride)[:(min(last, first + self.group - 1)
                                                          - first + 1) * self.n])
            self.next_block = min(last, first + self.group - 1) + 1
        cut = self.next_block * self.o - self.pos0
        if cut > 0:
            self.buf, self.pos0 = self.buf[cut:], self.pos0 + cut
        return torch.cat(outs) if outs else torch.zeros(0)

    def push(self, x: torch.Tensor) -> torch.Tensor:
        self.n_in += x.numel()
        self.buf = torch.cat([self.buf, x])
        out = self._blocks()
        self.n_out += out.numel()
        return out

    def finish(self) -> torch.Tensor:
        self.buf = torch.cat([self.buf, torch.zeros(self.width + self.o)])
        out = self._blocks(final=True)
        # as torchaudio: ceil(new * length / orig) samples in all (computed the same way)
        target = int(torch.ceil(torch.as_tensor(self.n * self.n_in / self.o)).long())
        out = out[:max(0, target - self.n_out)]
        self.n_out += out.numel()
        return out


def resample(x: torch.Tensor, orig: int, new: int) -> torch.Tensor:
    """A whole 1-D signal through :class:`StreamResampler` (= torchaudio's resample)."""
    r = StreamResampler(orig, new)
    head = r.push(x)
    return torch.cat([head, r.finish()])


@functools.lru_cache(maxsize=8)
def blocked_kernel(orig: int, new: int, group: int, phases: int = 16
                   ) -> tuple[torch.Tensor, int]:
    """``(kernel, stride)``: :func:`sertk.data.audio.resample_kernel` ``[n, 1, K]`` (``n``
    output phases per ``o`` input samples) widened to ``B n`` phases over ``B`` consecutive
    blocks (``B`` the largest power of two with ``B n <= phases`` that divides ``group``):
    row ``b n + i`` is phase ``i`` shifted by ``b o`` samples, the stride ``B o``. The
    convolution then gives the same outputs in the same order (each sums the same products;
    the added taps are zeros) as a wider, faster matrix product."""
    g = math.gcd(orig, new)
    o, n = orig // g, new // g
    kernel, _ = resample_kernel(orig, new)
    b = 1
    while 2 * b * n <= phases and group % (2 * b) == 0:
        b *= 2
    if b == 1:
        return kernel, o
    taps = kernel.shape[-1]
    wide = kernel.new_zeros(b * n, 1, (b - 1) * o + taps)
    for j in range(b):
        wide[j * n:(j + 1) * n, :, j * o:j * o + taps] = kernel
    return wide, b * o


def _conv(seg: torch.Tensor, kernel: torch.Tensor, stride: int) -> torch.Tensor:
    """``conv1d(seg, kernel, stride)`` as a flat signal: oneDNN's convolution when this torch
    has it (whatever ``torch.backends.mkldnn.enabled`` says), else PyTorch's."""
    global _ONEDNN
    x = seg[None, None]
    if _ONEDNN is not False:
        try:
            y = torch.mkldnn_convolution(x, kernel, None, [0], [stride], [1], 1)
            _ONEDNN = True
            return y.transpose(1, 2).reshape(-1)
        except (RuntimeError, AttributeError):
            _ONEDNN = False
    y = torch.nn.functional.conv1d(x, kernel, stride=stride)
    return y.transpose(1, 2).reshape(-1)


_ONEDNN: bool | None = None


# ----------------------------------------------------------------------------- features
@dataclass(frozen=True)
class FrameSpec:
    """How a front end frames the waveform: frame ``k`` of any chunk that starts at a
    multiple of ``hop`` is frame ``start / hop + k`` of the whole, except within ``context``
    frames of the chunk's ends (its support, padding, deltas and sliding statistics)."""

    hop: int
    support: int
    context: int


def frame_spec(frontend: Any) -> FrameSpec | None:
    """The :class:`FrameSpec` of a front end whose frames depend only on nearby samples;
    None for the others (statistics over the whole utterance, fixed lengths, SSL models,
    functionals), which are computed on the whole file."""
    from sertk.features.kaldi import _KaldiFrontEnd
    from sertk.features.logmel import LogMel
    from sertk.features.postprocess import PostProcessed
    from sertk.features.spectrogram import LogPowerSpectrogram

    base, post = frontend, 0
    if isinstance(frontend, PostProcessed):
        if frontend.cmvn == "utterance" or frontend.fixed_frames:
            return None
        base = frontend.base
        post = frontend.order * frontend.window + \
            (frontend.cmvn_window + 1 if frontend.cmvn == "sliding" else 0)
    if isinstance(base, LogMel):
        hop, support = base.hop, base.n_fft
    elif isinstance(base, LogPowerSpectrogram) and base.scale is None:
        hop, support = base.hop, base.win
    elif isinstance(base, _KaldiFrontEnd) and base.kwargs.get("snip_edges", True):
        sr = base.kwargs["sample_frequency"]
        hop = int(sr * base.kwargs["frame_shift"] * 0.001)
        support = int(sr * base.kwargs["frame_length"] * 0.001)
    else:
        return None
    if hop <= 0:
        return None
    return FrameSpec(hop, support, math.ceil(support / hop) + 1 + post)


class FeatureStreamer:
    """Feature frames of an utterance given as consecutive waveform blocks (:meth:`push`,
    then :meth:`finish`), ``block`` frames at a time, equal to ``frontend(whole)``."""

    def __init__(self, frontend: Callable[[torch.Tensor], torch.Tensor], spec: FrameSpec,
                 block: int = 3000):
        self.frontend, self.spec, self.block = frontend, spec, block
        self.buf = torch.zeros(0)
        self.pos0 = 0  # sample index of buf[0]
        self.next_frame = 0

    def _chunk(self, end: int | None) -> torch.Tensor:
        hop, ctx = self.spec.hop, self.spec.context
        a = self.next_frame
        k0 = max(0, a - ctx)
        seg = self.buf[k0 * hop - self.pos0: None if end is None else end - self.pos0]
        with torch.no_grad():
            feats = self.frontend(seg)
        return feats[a - k0: None if end is None else a - k0 + self.block]

    def _drop(self) -> None:
        keep = max(0, self.next_frame - self.spec.context) * self.spec.hop
        if keep > self.pos0:
            self.buf, self.pos0 = self.buf[keep - self.pos0:], keep

    def push(self, x: torch.Tensor) -> Iterator[torch.Tensor]:
        self.buf = torch.cat([self.buf, x])
        hop, ctx = self.spec.hop, self.spec.context
        while True:
            need = (self.next_frame + self.block + ctx) * hop + self.spec.support
            if self.pos0 + self.buf.numel() < need:
                return
            out = self._chunk(need)
            if out.shape[0] < self.block:  # cannot happen for a frame-local front end
                raise DataError("feature streaming: the front end gave fewer frames than "
                                "its framing implies")
            self.next_frame += out.shape[0]
            self._drop()
            yield out

    def finish(self) -> torch.Tensor:
        out = self._chunk(None)
        self.next_frame += out.shape[0]
        self.buf = torch.zeros(0)
        return out


def _speech_span(energy: np.ndarray, n_samples: int, sr: int, threshold_db: float = 40.0,
                 margin: float = 0.1, frame: float = 0.01) -> tuple[float, float]:
    """:func:`sertk.data.trim.speech_span` from the frame energies (dB) it computes."""
    dur = n_samples / sr
    if energy.size == 0:
        return 0.0, dur
    active = np.flatnonzero(energy > energy.max() - threshold_db)
    start = max(0.0, active[0] * frame - margin)
    end = min(dur, (active[-1] + 1) * frame + margin)
    return round(start, 3), round(end, 3)


def _waveform(entry: str, cfg: Any, key: str, block_seconds: float) -> Iterator[torch.Tensor]:
    """The model-rate mono waveform of a plain file in consecutive blocks."""
    sr, _ = file_info(entry, key)
    resampler = StreamResampler(sr, cfg.sample_rate) if sr != cfg.sample_rate else None
    for block in iter_blocks(entry, key, max(1, int(block_seconds * sr))):
        x = to_mono(block, cfg.audio, key, entry)
        if resampler is not None:
            x = resampler.push(x)
        if x.numel():
            yield x
    if resampler is not None:
        tail = resampler.finish()
        if tail.numel():
            yield tail


def _energies(blocks: Iterator[torch.Tensor], sr: int, frame: float = 0.01
              ) -> tuple[np.ndarray, int]:
    """Frame energies (dB) as :func:`sertk.data.trim.speech_span` and the sample count."""
    hop = max(1, int(frame * sr))
    parts, rest, total = [], np.zeros(0, np.float32), 0
    for x in blocks:
        total += x.numel()
        mono = np.concatenate([rest, x.numpy()])
        n = len(mono) // hop
        if n:
            parts.append(10 * np.log10(np.square(mono[: n * hop].reshape(n, hop)).mean(axis=1)
                                       + 1e-12))
        rest = mono[n * hop:]
    return (np.concatenate(parts) if parts else np.zeros(0, np.float32)), total


def can_stream(entry: str, cfg: Any, frontend: Any) -> bool:
    """Whether :func:`stream_features` handles this entry (a plain file, a frame-local
    front end, a rate pair of the polyphase resampler)."""
    if not is_plain_file(entry) or frame_spec(frontend) is None:
        return False
    try:
        sr, _ = file_info(entry)
    except DataError:
        return False
    return sr == cfg.sample_rate or polyphase(sr, cfg.sample_rate)


def stream_features(entry: str, cfg: Any, frontend: Any, key: str,
                    block_seconds: float = 10.0, apply_trim: bool = True
                    ) -> tuple[float, Iterator[torch.Tensor]]:
    """``(offset, blocks)``: the features of a plain audio file as consecutive ``[n, D]``
    blocks, equal to :func:`sertk.features.dump.compute_features` on the whole file;
    ``offset``: the seconds of leading silence trimmed (``cfg.trim``; found in a first pass
    over the audio, so a trimmed file is read twice)."""
    spec = frame_spec(frontend)
    if spec is None:
        raise DataError(f"utterance {key}: front end {cfg.name} cannot be computed in chunks")
    sr = cfg.sample_rate
    first, last = 0, None
    if apply_trim and cfg.trim:
        energy, total = _energies(_waveform(entry, cfg, key, block_seconds), sr)
        s, e = _speech_span(energy, total, sr, **cfg.trim)
        first, last = int(s * sr), int(e * sr)
    block_frames = max(1, int(block_seconds * 1000 / float(cfg.params.get("frame_shift", 10))))

    def gen() -> Iterator[torch.Tensor]:
        streamer = FeatureStreamer(frontend, spec, block_frames)
        pos, frames = 0, 0
        for x in _waveform(entry, cfg, key, block_seconds):
            lo, hi = max(first - pos, 0), x.numel() if last is None else \
                min(x.numel(), last - pos)
            pos += x.numel()
            if hi > lo:
                for f in streamer.push(x[lo:hi]):
                    frames += f.shape[0]
                    yield _checked(f, key, entry)
            if last is not None and pos >= last:
                break
        f = streamer.finish()
        frames += f.shape[0]
        if frames == 0:
            raise DataError(f"utterance {key}: too short for one frame: {entry}")
        if f.shape[0]:
            yield _checked(f, key, entry)

    return first / sr, gen()


def _checked(f: torch.Tensor, key: str, entry: str) -> torch.Tensor:
    if not torch.isfinite(f).all():
        raise DataError(f"utterance {key}: features contain NaN/Inf: {entry}")
    return f.float()


class WindowStreamer:
    """``(start, end, feats[start:end])`` of :func:`sertk.data.segments.windows` (``length``
    frames every ``shift``, the last one moved back to end at the end) over feature blocks,
    holding at most ``length + shift`` frames plus one block."""

    def __init__(self, length: int, shift: int):
        if length <= 0 or shift <= 0:
            raise ValueError("window length and shift must be positive")
        self.length, self.shift = length, shift
        self.buf: torch.Tensor | None = None
        self.buf0 = 0  # frame index of buf[0]
        self.next_start = 0
        self.last_end = 0  # end of the last window given

    def push(self, f: torch.Tensor) -> Iterator[tuple[int, int, torch.Tensor]]:
        self.buf = f if self.buf is None else torch.cat([self.buf, f])
        total = self.buf0 + self.buf.shape[0]
        while self.next_start + self.length <= total:
            s = self.next_start
            yield s, s + self.length, self.buf[s - self.buf0: s - self.buf0 + self.length]
            self.last_end = s + self.length
            self.next_start += self.shift
        keep = min(self.next_start, total - self.length)  # the final window may need these
        if keep > self.buf0:
            self.buf, self.buf0 = self.buf[keep - self.buf0:], keep

    def finish(self) -> Iterator[tuple[int, int, torch.Tensor]]:
        if self.buf is None:
            return
        total = self.buf0 + self.buf.shape[0]
        if total <= self.length and self.last_end == 0:  # one window: the whole
            yield 0, total, self.buf
        elif self.last_end < total:
            s = total - self.length
            yield s, total, self.buf[s - self.buf0:]
