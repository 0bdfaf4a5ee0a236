"""A synthetic emotional speech corpus for offline recipes and tests.

Each utterance is a string of voiced "syllables": a glottal harmonic source whose fundamental
frequency follows a contour, shaped by three formant resonances that change per syllable
(vowels), with pauses between syllables and a little breath noise. The emotion sets the
prosody, as the acoustic-correlates literature describes it (Scherer 2003; Banse & Scherer 1996):

==========  =========  ==========  ===========  ======  =====================
emotion     f0 level   f0 range    contour      energy  tempo / spectral tilt
==========  =========  ==========  ===========  ======  =====================
neutral     1.00       small       flat-falling 0.5     medium / medium
happy       1.30       large       rising       0.8     fast / flat (bright)
sad         0.85       very small  falling      0.3     slow / steep (dark)
angry       1.20       medium      falling      1.0     fast / flat, jittery
==========  =========  ==========  ===========  ======  =====================

Speakers differ in base f0 (male/female), formant scale (vocal-tract length) and their own
speaking rate, so a speaker-independent split is meaningful. Every value is drawn with jitter,
so the task is learnable but not trivial.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from sertk.data.datadir import write_utt2spk
from sertk.data.kaldi_table import write_table


@dataclass(frozen=True)
class EmotionStyle:
    f0_scale: float
    f0_range: float  # semitones of syllable-level f0 movement
    slope: float  # semitones per second of the utterance-level contour
    energy: float
    rate: float  # syllables per second
    tilt: float  # harmonic amplitude ~ h ** -tilt
    jitter: float  # relative cycle-to-cycle f0 noise


STYLES: dict[str, EmotionStyle] = {
    "neutral": EmotionStyle(1.00, 1.5, -1.0, 0.5, 4.0, 1.4, 0.005),
    "happy": EmotionStyle(1.30, 5.0, 2.5, 0.8, 5.0, 0.9, 0.01),
    "sad": EmotionStyle(0.85, 0.7, -2.5, 0.3, 2.8, 2.0, 0.004),
    "angry": EmotionStyle(1.20, 3.0, -1.5, 1.0, 5.5, 0.7, 0.03),
}
VOWELS = np.array([[730, 1090, 2440], [270, 2290, 3010], [300, 870, 2240], [530, 1840, 2480],
                   [570, 840, 2410], [440, 1020, 2240], [660, 1720, 2410]], dtype=float)


@dataclass(frozen=True)
class Speaker:
    name: str
    gender: str
    f0: float
    formant_scale: float
    rate_scale: float


def make_speakers(num: int, seed: int = 0) -> list[Speaker]:
    rng = np.random.default_rng(seed)
    speakers = []
    for i in range(num):
        gender = "m" if i % 2 == 0 else "f"
        f0 = (110 if gender == "m" else 200) * rng.uniform(0.85, 1.15)
        fs = (1.0 if gender == "m" else 1.15) * rng.uniform(0.93, 1.07)
        speakers.append(Speaker(f"spk{i + 1:02d}", gender, f0, fs, rng.uniform(0.85, 1.15)))
    return speakers


def synthesize(style: EmotionStyle, spk: Speaker, rng: np.random.Generator,
               sample_rate: int = 16000, duration: float = 2.0,
               drawn: dict[str, float] | None = None) -> np.ndarray:
    """One utterance as float32 samples in [-1, 1]; ``drawn`` receives the utterance's
    random prosody (``rate`` relative to the style's, ``f0`` relative to the speaker's,
    ``tilt``, ``energy``)."""
    n = int(duration * sample_rate)
    t = np.arange(n) / sample_rate
    out = np.zeros(n)
    rate = style.rate * spk.rate_scale * rng.uniform(0.9, 1.1)
    syl_len = 0.7 / rate
    pos = rng.uniform(0.05, 0.2)
    base = spk.f0 * style.f0_scale * rng.uniform(0.95, 1.05)
    tilt = style.tilt + rng.normal(0, 0.1)
    while pos + syl_len < duration - 0.05:
        start, stop = int(pos * sample_rate), int((pos + syl_len) * sample_rate)
        ts = t[start:stop] - pos
        semis = (style.slope * pos + style.f0_range * np.sin(np.pi * ts / syl_len)
                 * rng.uniform(-1, 1))
        f0 = base * 2 ** (semis / 12) * (1 + style.jitter * rng.standard_normal(ts.size))
        phase = 2 * np.pi * np.cumsum(f0) / sample_rate
        formants = VOWELS[rng.integers(len(VOWELS))] * spk.formant_scale
        seg = np.zeros(ts.size)
        f_mean = float(f0.mean())
        for h in range(1, int(4000 / f_mean) + 1):
            freq = h * f_mean
            env = sum(np.exp(-0.5 * ((freq - fm) / (60 + 0.08 * fm)) ** 2) for fm in formants)
            seg += (h ** -tilt) * (0.15 + env) * np.sin(h * phase)
        window = np.clip(np.sin(np.pi * ts / syl_len), 0, None) ** 0.5
        out[start:stop] += seg * window
        pos += syl_len + rng.uniform(0.3, 0.6) / rate
    out /= np.abs(out).max() + 1e-9
    energy = style.energy * rng.uniform(0.8, 1.0)
    out *= energy * 0.8
    if drawn is not None:
        drawn.update(rate=rate / (style.rate * spk.rate_scale), f0=base / spk.f0, tilt=tilt,
                     energy=energy)
    out += rng.normal(0, 0.003, n)
    return np.clip(out, -1, 1).astype(np.float32)


# a fixed valence per emotion (Russell's circumplex: happy positive, sad/angry negative)
VALENCE = {"neutral": 0.0, "happy": 0.7, "sad": -0.6, "angry": -0.5}
# simulated listeners: (probability of hearing the intended emotion, what they hear otherwise
# (None: any other emotion), probability of labelling a given utterance)
LISTENERS = {"L1": (0.9, None, 1.0), "L2": (0.7, {"sad": "neutral", "angry": "neutral"}, 0.8),
             "L3": (0.7, {"angry": "happy", "happy": "angry"}, 0.8), "L4": (0.5, None, 0.5)}


def dimensions(emotion: str, style: EmotionStyle, drawn: dict[str, float],
               rng: np.random.Generator) -> tuple[float, float, float]:
    """Arousal, valence, dominance in [-1, 1] from the utterance's drawn prosody: arousal
    from energy, tempo and f0 level; valence from the emotion and the contour's slope;
    dominance from energy and spectral tilt; each with a little rating noise."""
    energy, rate = drawn["energy"], style.rate * drawn["rate"]
    f0 = style.f0_scale * drawn["f0"]
    arousal = 2 * (0.5 * energy + 0.3 * (rate - 2.5) / 3.5 + 0.2 * (f0 - 0.8) / 0.55) - 1
    valence = VALENCE.get(emotion, 0.0) + 0.1 * style.slope / 2.5
    dominance = 2 * (0.6 * energy + 0.4 * (2.1 - drawn["tilt"]) / 1.5) - 1
    vals = np.array([arousal, valence, dominance]) + rng.normal(0, 0.08, 3)
    return tuple(float(v) for v in np.clip(vals, -1, 1))


def listener_labels(emotion: str, emotions: list[str], rng: np.random.Generator) -> str:
    """``L1:label L2:label ...`` of the simulated listeners who label this utterance (at
    least one), each with its own accuracy and confusions."""
    tokens = []
    for name, (acc, confusions, p_label) in LISTENERS.items():
        if rng.uniform() >= p_label and (tokens or name != "L4"):
            continue
        heard = emotion
        if rng.uniform() >= acc:
            wrong = (confusions or {}).get(emotion)
            others = [e for e in emotions if e != emotion]
            heard = wrong if wrong in emotions else str(rng.choice(others)) if others else emotion
        tokens.append(f"{name}:{heard}")
    return " ".join(tokens)


def make_corpus(out_dir: str | Path, data_dir: str | Path, num_speakers: int = 10,
                utts_per_emotion: int = 5, emotions: list[str] | None = None, seed: int = 0,
                sample_rate: int = 16000, duration: tuple[float, float] = (1.5, 2.5)
                ) -> Path:
    """Write wav files under ``out_dir`` and a Kaldi data directory at ``data_dir``.

    Utterance ids are ``<spk>_<emotion>_<n>`` so that they sort with their speaker. Every fifth
    speaker's files are written as 2-channel 24 kHz FLAC to exercise resampling and downmixing.
    Besides ``utt2emo`` the data directory gets ``utt2dim`` (arousal valence dominance,
    :func:`dimensions`) and ``utt2listener_emo`` (simulated listeners, :data:`LISTENERS`),
    drawn from a generator of their own so that the audio does not depend on them.
    """
    out_dir, data_dir = Path(out_dir), Path(data_dir)
    emotions = emotions or list(STYLES)
    rng = np.random.default_rng(seed)
    label_rng = np.random.default_rng([seed, 1])
    wav_scp, utt2spk, utt2emo, utt2gender, utt2dur = {}, {}, {}, {}, {}
    utt2dim, utt2listener = {}, {}
    for spk in make_speakers(num_speakers, seed):
        odd_format = spk.name.endswith(("05", "10", "15", "20"))
        for emo in emotions:
            for k in range(utts_per_emotion):
                utt = f"{spk.name}_{emo}_{k:02d}"
                dur = float(rng.uniform(*duration))
                drawn: dict[str, float] = {}
                wav = synthesize(STYLES[emo], spk, rng, sample_rate, dur, drawn)
                dims = dimensions(emo, STYLES[emo], drawn, label_rng)
                utt2dim[utt] = " ".join(f"{v:.3f}" for v in dims)
                utt2listener[utt] = listener_labels(emo, emotions, label_rng)
                path = (out_dir / spk.name / f"{utt}.{'flac' if odd_format else 'wav'}").resolve()
                path.parent.mkdir(parents=True, exist_ok=True)
                if odd_format:
                    import torch
                    import torchaudio.functional as AF

                    sr = 24000
                    up = AF.resample(torch.from_numpy(wav), sample_rate, sr).numpy()
                    sf.write(path, np.stack([up, up * 0.9], axis=1), sr, subtype="PCM_16")
                else:
                    sf.write(path, wav, sample_rate, subtype="PCM_16")
                wav_scp[utt] = str(path)
                utt2spk[utt] = spk.name
                utt2emo[utt] = emo
                utt2gender[utt] = spk.gender
                utt2dur[utt] = f"{dur:.3f}"
    data_dir.mkdir(parents=True, exist_ok=True)
    write_table(data_dir / "wav.scp", wav_scp)
    write_utt2spk(data_dir, utt2spk)
    write_table(data_dir / "utt2emo", utt2emo)
    write_table(data_dir / "utt2gender", utt2gender)
    write_table(data_dir / "utt2dur", utt2dur)
    write_table(data_dir / "utt2dim", utt2dim)
    write_table(data_dir / "utt2listener_emo", utt2listener)
    return data_dir
