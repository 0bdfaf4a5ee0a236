"""Energy-based trimming of leading and trailing silence, written as a Kaldi ``segments`` file.

For each utterance the audio is cut into 10 ms frames; the first and last frame whose energy is
within ``threshold_db`` of the utterance's loudest frame bound the speech, widened by ``margin``
seconds. Nothing inside that span is removed. The output data directory keeps the utterance
ids: ``segments`` maps each utterance to its recording (``wav.scp`` keyed by recording), and
``utt2dur`` holds the trimmed durations. ``trim.yaml`` records the settings; the feature dump
copies them into ``feats.yaml`` so that a packed model trims its input the same way.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from tqdm import tqdm

from sertk.config import save_yaml
from sertk.data.audio import read_entry
from sertk.data.datadir import UTT_TABLES, DataDir, write_utt2spk
from sertk.data.kaldi_table import write_table

log = logging.getLogger(__name__)


def speech_span(wav: np.ndarray, sr: int, threshold_db: float = 40.0, margin: float = 0.1,
                frame: float = 0.01) -> tuple[float, float]:
    """``(start, end)`` in seconds of the non-silent part of ``wav [n, channels]``."""
    mono = wav.mean(axis=1) if wav.ndim == 2 else wav
    hop = max(1, int(frame * sr))
    n = len(mono) // hop
    dur = len(mono) / sr
    if n == 0:
        return 0.0, dur
    energy = 10 * np.log10(np.square(mono[: n * hop].reshape(n, hop)).mean(axis=1) + 1e-12)
    active = np.flatnonzero(energy > energy.max() - threshold_db)
    start = max(0.0, active[0] * frame - margin)
    end = min(dur, (active[-1] + 1) * frame + margin)
    return round(start, 3), round(end, 3)


def trim(src: str | Path, dst: str | Path, threshold_db: float = 40.0, margin: float = 0.1,
         progress: bool = True) -> dict[str, float]:
    """Write ``dst`` = ``src`` with ``segments`` bounding each utterance's speech.

    Returns the total duration before and after trimming (seconds).
    """
    d = DataDir(src)
    entries = d.audio_entries()
    segments, utt2dur = {}, {}
    before = after = 0.0
    for utt in tqdm(d.utts, desc="trim", unit="utt", disable=not progress):
        reco, entry, seg = entries[utt]
        wav, sr = read_entry(entry, utt, seg.start if seg else 0.0, seg.end if seg else None)
        start, end = speech_span(wav, sr, threshold_db, margin)
        offset = seg.start if seg else 0.0
        segments[utt] = f"{reco} {offset + start:.3f} {offset + end:.3f}"
        utt2dur[utt] = f"{end - start:.3f}"
        before += wav.shape[0] / sr
        after += end - start
    dst = Path(dst)
    dst.mkdir(parents=True, exist_ok=True)
    for name in UTT_TABLES:
        if d.has(name) and name not in ("segments", "utt2dur", "feats.scp", "utt2num_frames"):
            write_table(dst / name, d.table(name))
    write_table(dst / "wav.scp", d.wav_scp)
    write_table(dst / "segments", segments)
    write_table(dst / "utt2dur", utt2dur)
    write_utt2spk(dst, d.utt2spk)
    # recorded so that the feature dump passes it on to models, which trim at inference too
    save_yaml({"threshold_db": threshold_db, "margin": margin}, dst / "trim.yaml")
    log.info("trimmed %s: %.1f s -> %.1f s of audio (%.0f%% kept)", src, before, after,
             100 * after / max(before, 1e-9))
    return {"before": before, "after": after}
