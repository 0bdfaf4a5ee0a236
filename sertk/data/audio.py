"""Audio loading for ``wav.scp`` entries: plain paths, ``cmd |`` pipes and ``file.ark:offset``.

Any libsndfile format is read (wav, flac, ...), at any sample rate (resampled to the requested
rate with :func:`torchaudio.functional.resample`), with any channel count (averaged to mono by
default, or one channel selected). Every failure is a :class:`DataError` that names the key and
the entry, so the CLI can print one line instead of a traceback.
"""

from __future__ import annotations

import functools
import io
import math
import os
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import soundfile as sf
import torch

from sertk.errors import DataError

_ARK_RE = re.compile(r"^(.+\.ark):(\d+)$")


@dataclass(frozen=True)
class AudioConfig:
    """How to turn a file into the model's input waveform."""

    sample_rate: int = 16000
    channel: int | None = None  # None: average all channels; k: keep channel k (0-based)


def _describe(entry: str) -> str:
    return entry if len(entry) < 200 else entry[:200] + "..."


def _decode_bytes(data: bytes, key: str, entry: str) -> tuple[np.ndarray, int]:
    if not data:
        raise DataError(f"utterance {key}: empty audio from {_describe(entry)}")
    try:
        with sf.SoundFile(io.BytesIO(data)) as f:
            wav, sr = read_frames(f, -1), f.samplerate
    except (sf.LibsndfileError, RuntimeError, TypeError) as exc:
        # libsndfile names the in-memory buffer ("Error opening <_io.BytesIO object at 0x..>")
        why = re.sub(r"^Error opening <[^>]*>: ", "", str(exc))
        raise DataError(f"utterance {key}: cannot decode audio from {_describe(entry)}: "
                        f"{why}") from None
    return wav, sr


def _run_pipe(entry: str, key: str) -> bytes:
    cmd = entry.rstrip()[:-1].strip()
    proc = subprocess.run(cmd, shell=True, capture_output=True)
    if proc.returncode != 0:
        err = proc.stderr.decode(errors="replace").strip().splitlines()
        raise DataError(f"utterance {key}: command failed (exit {proc.returncode}): {cmd}"
                        + (f": {err[-1]}" if err else ""))
    return proc.stdout


def read_entry(entry: str, key: str = "?", start: float = 0.0, end: float | None = None
               ) -> tuple[np.ndarray, int]:
    """Read a ``wav.scp`` entry as ``(samples [n, channels] float32, sample_rate)``.

    ``start``/``end`` (seconds) select a segment, as in a Kaldi ``segments`` file.
    """
    entry = entry.strip()
    if entry.endswith("|"):
        wav, sr = _decode_bytes(_run_pipe(entry, key), key, entry)
    elif (m := _ARK_RE.match(entry)) is not None:
        wav, sr = _read_ark_wav(m.group(1), int(m.group(2)), key, entry)
    else:
        wav, sr = _read_file(entry, key, start, end)
        return wav, sr
    return _slice(wav, sr, start, end, key, entry), sr


def _check_file(path: str, key: str) -> None:
    """A clear error for a path that is a directory, missing or an empty file."""
    if os.path.isdir(path):
        raise DataError(f"utterance {key}: a directory, not an audio file: {path}")
    if not os.path.isfile(path):
        raise DataError(f"utterance {key}: audio file not found: {path}")
    if os.path.getsize(path) == 0:
        raise DataError(f"utterance {key}: audio file is empty (0 bytes): {path}")


def _read_file(path: str, key: str, start: float, end: float | None) -> tuple[np.ndarray, int]:
    _check_file(path, key)
    try:
        with sf.SoundFile(path) as f:
            sr = f.samplerate
            first = int(round(start * sr))
            last = f.frames if end is None else min(int(round(end * sr)), f.frames)
            if first >= last and f.frames > 0:
                raise DataError(f"utterance {key}: segment {start:.2f}-{end}s outside "
                                f"{path} ({f.frames / sr:.2f}s)")
            f.seek(first)
            wav = read_frames(f, last - first)
    except (sf.LibsndfileError, RuntimeError) as exc:
        raise DataError(f"utterance {key}: cannot decode audio file {path}: {exc}") from None
    if wav.shape[0] == 0:
        raise DataError(f"utterance {key}: audio file has no samples: {path}")
    return wav, sr


_PCM16_SCALE = np.float32(1.0 / 0x8000)


def read_frames(f: sf.SoundFile, frames: int) -> np.ndarray:
    """``frames`` frames (-1: to the end) of an open file as float32 ``[n, channels]``, the
    values libsndfile's float read gives. A 16-bit PCM file is read as int16 and scaled by
    2^-15 here: libsndfile's own conversion multiplies by the same power of two (exact, so the
    samples are identical), at about 6x its cost."""
    if f.subtype == "PCM_16":
        return f.read(frames, dtype="int16", always_2d=True).astype(np.float32) * _PCM16_SCALE
    return f.read(frames, dtype="float32", always_2d=True)


def _read_ark_wav(ark: str, offset: int, key: str, entry: str) -> tuple[np.ndarray, int]:
    from sertk.data.ark import load_mat

    if not os.path.isfile(ark):
        raise DataError(f"utterance {key}: ark file not found: {ark}")
    obj = load_mat(entry, key)  # never unpickles; errors name the key and the entry
    if not isinstance(obj, tuple):
        raise DataError(f"utterance {key}: {entry} holds a matrix, not a waveform")
    sr, data = obj
    data = np.asarray(data)
    if np.issubdtype(data.dtype, np.integer):
        data = data.astype(np.float32) / float(np.iinfo(data.dtype).max + 1)
    data = data.astype(np.float32)
    return (data[:, None] if data.ndim == 1 else data), int(sr)


def _slice(wav: np.ndarray, sr: int, start: float, end: float | None, key: str, entry: str
           ) -> np.ndarray:
    first = int(round(start * sr))
    last = wav.shape[0] if end is None else min(int(round(end * sr)), wav.shape[0])
    if wav.shape[0] == 0:
        raise DataError(f"utterance {key}: no samples in {_describe(entry)}")
    if first >= last:
        raise DataError(f"utterance {key}: segment {start:.2f}-{end}s outside "
                        f"{_describe(entry)} ({wav.shape[0] / sr:.2f}s)")
    return wav[first:last]


def to_model_input(wav: np.ndarray, sr: int, cfg: AudioConfig, key: str = "?",
                   entry: str | None = None) -> torch.Tensor:
    """Downmix or select a channel, then resample; returns a 1-D float32 tensor.
    ``entry``: where the audio comes from, named in errors."""
    x = to_mono(wav, cfg, key, entry)
    if sr != cfg.sample_rate:
        x = _resample(x, sr, cfg.sample_rate)
    return x


def to_mono(wav: np.ndarray, cfg: AudioConfig, key: str = "?", entry: str | None = None
            ) -> torch.Tensor:
    """Downmix or select a channel of ``wav [n, channels]`` (no resampling), checking that the
    samples are finite; a 1-D float32 tensor."""
    if cfg.channel is None:
        mono = wav[:, 0] if wav.shape[1] == 1 else wav.mean(axis=1)
    else:
        if cfg.channel >= wav.shape[1]:
            raise DataError(f"utterance {key}: channel {cfg.channel} requested but the audio "
                            f"has {wav.shape[1]} channels"
                            + (f": {_describe(entry)}" if entry else ""))
        mono = wav[:, cfg.channel]
    mono = np.ascontiguousarray(mono, dtype=np.float32)
    if not np.isfinite(mono).all():  # numpy's check: ~20x faster than torch's here
        bad = int((~np.isfinite(mono)).sum())
        raise DataError(f"utterance {key}: audio contains NaN or Inf samples ({bad} of "
                        f"{mono.size})" + (f": {_describe(entry)}" if entry else ""))
    return torch.from_numpy(mono)


# torchaudio's polyphase filter has (rate / gcd) phases: fine for 48000 -> 16000 (3:1) or 44100
# (441:160), but TESS's 24414 Hz gives 12207:8000 phases, a 12207 x 8000-tap kernel (~400 MB,
# 10-20 s per file). Beyond this many phases the band-limited FFT method is used instead.
MAX_POLYPHASE = 1000


def _resample(x: torch.Tensor, orig: int, new: int) -> torch.Tensor:
    if polyphase(orig, new):
        from torchaudio.functional.functional import _apply_sinc_resample_kernel

        kernel, width = resample_kernel(orig, new)
        return _apply_sinc_resample_kernel(x, orig, new, math.gcd(orig, new), kernel, width)
    return _resample_fft(x, orig, new)


def polyphase(orig: int, new: int) -> bool:
    """Whether ``orig -> new`` Hz is resampled with torchaudio's polyphase filter (else FFT)."""
    return max(orig, new) // math.gcd(orig, new) <= MAX_POLYPHASE


@functools.lru_cache(maxsize=8)
def resample_kernel(orig: int, new: int) -> tuple[torch.Tensor, int]:
    """``(kernel, width)``: the filter of :func:`torchaudio.functional.resample` with its
    defaults, made once per pair of rates (torchaudio makes it again on every call, which
    costs more than the filtering of a file of a few seconds)."""
    from torchaudio.functional.functional import _get_sinc_resample_kernel

    return _get_sinc_resample_kernel(orig, new, math.gcd(orig, new), 6, 0.99,
                                     "sinc_interp_hann", None, torch.device("cpu"),
                                     torch.float32)


def _resample_fft(x: torch.Tensor, orig: int, new: int) -> torch.Tensor:
    """Resampling by truncating (or zero-padding) the spectrum: an ideal low-pass at the lower
    Nyquist frequency, any rate ratio, O(n log n) (as scipy.signal.resample)."""
    n = x.shape[-1]
    n_out = max(1, round(n * new / orig))
    spec = torch.fft.rfft(x.double(), dim=-1)
    keep = min(spec.shape[-1], n_out // 2 + 1)
    out_spec = torch.zeros(*spec.shape[:-1], n_out // 2 + 1, dtype=spec.dtype)
    out_spec[..., :keep] = spec[..., :keep]
    return (torch.fft.irfft(out_spec, n=n_out, dim=-1) * (n_out / n)).to(x.dtype)


def load_audio(entry: str, cfg: AudioConfig = AudioConfig(), key: str = "?",
               start: float = 0.0, end: float | None = None) -> torch.Tensor:
    """Read a ``wav.scp`` entry (optionally a segment of it) as a mono waveform at
    ``cfg.sample_rate``."""
    wav, sr = read_entry(entry, key, start, end)
    return to_model_input(wav, sr, cfg, key, entry)


def probe_audio(entry: str, key: str = "?") -> float:
    """Check that an entry is readable and non-empty; return its duration in seconds.

    Plain files are checked from their header; pipes and arks are decoded.
    """
    entry = entry.strip()
    if entry.endswith("|") or _ARK_RE.match(entry):
        wav, sr = read_entry(entry, key)
        return wav.shape[0] / sr
    sr, frames = file_info(entry, key)
    return frames / sr


def is_plain_file(entry: str) -> bool:
    """A ``wav.scp`` entry that is a file path (not a ``cmd |`` pipe or an ``ark:offset``)."""
    entry = entry.strip()
    return not entry.endswith("|") and _ARK_RE.match(entry) is None


def file_info(path: str, key: str = "?") -> tuple[int, int]:
    """``(sample_rate, frames)`` of a plain audio file, from its header."""
    _check_file(path, key)
    try:
        info = sf.info(path)
    except (sf.LibsndfileError, RuntimeError) as exc:
        raise DataError(f"utterance {key}: cannot decode audio file {path}: {exc}") from None
    if info.frames <= 0:
        raise DataError(f"utterance {key}: audio file has no samples: {path}")
    return info.samplerate, info.frames


def iter_blocks(path: str, key: str = "?", block_frames: int = 480000
                ) -> Iterator[np.ndarray]:
    """A plain audio file as consecutive ``[n, channels]`` float32 blocks of ``block_frames``
    samples (the last one shorter), so that a long file is never held whole."""
    file_info(path, key)
    try:
        with sf.SoundFile(path) as f:
            while True:
                block = read_frames(f, block_frames)
                if block.shape[0] == 0:
                    return
                yield block
    except (sf.LibsndfileError, RuntimeError) as exc:
        raise DataError(f"utterance {key}: cannot decode audio file {path}: {exc}") from None
