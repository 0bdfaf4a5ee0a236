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

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

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
# the emotion of the same arousal and the other valence: with ``audio_valence`` below 1 a style
# moves towards the mean of its pair, so the audio tells arousal but less of valence
AROUSAL_PARTNER = {"happy": "angry", "angry": "happy", "sad": "neutral", "neutral": "sad"}


def audio_style(emotion: str, audio_valence: float = 1.0) -> EmotionStyle:
    """The prosody of ``emotion`` with a fraction ``audio_valence`` of what sets it apart from
    its :data:`AROUSAL_PARTNER` (1: :data:`STYLES` as they are; 0: the pair sounds alike, so
    only the words can tell it apart)."""
    if not 0.0 <= audio_valence <= 1.0:
        raise ValueError(f"audio_valence must be in [0, 1], got {audio_valence}")
    own = STYLES[emotion]
    partner = STYLES.get(AROUSAL_PARTNER.get(emotion, ""))
    if audio_valence == 1.0 or partner is None:
        return own
    mix = {f.name: (0.5 + 0.5 * audio_valence) * getattr(own, f.name)
           + (0.5 - 0.5 * audio_valence) * getattr(partner, f.name) for f in fields(own)}
    return EmotionStyle(**mix)


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
               drawn: dict[str, Any] | None = None) -> np.ndarray:
    """One utterance as float32 samples in [-1, 1]; ``drawn`` receives the utterance's
    random prosody (``rate`` relative to the style's, ``f0`` relative to the speaker's,
    ``tilt``, ``energy``), its number of ``syllables`` and their ``spans`` (start, duration
    in seconds)."""
    n = int(duration * sample_rate)
    t = np.arange(n) / sample_rate
    out = np.zeros(n)
    rate = style.rate * spk.rate_scale * rng.uniform(0.9, 1.1)
    syl_len = 0.7 / rate
    pos = rng.uniform(0.05, 0.2)
    base = spk.f0 * style.f0_scale * rng.uniform(0.95, 1.05)
    tilt = style.tilt + rng.normal(0, 0.1)
    spans = []
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
        spans.append((pos, syl_len))
        pos += syl_len + rng.uniform(0.3, 0.6) / rate
    out /= np.abs(out).max() + 1e-9
    energy = style.energy * rng.uniform(0.8, 1.0)
    out *= energy * 0.8
    if drawn is not None:
        drawn.update(rate=rate / (style.rate * spk.rate_scale), f0=base / spk.f0, tilt=tilt,
                     energy=energy, syllables=len(spans), spans=spans)
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


# transcripts: one word per syllable (or a fixed number of words); content words carry valence
# (happy positive, sad and angry negative, neutral neutral) in a fraction TEXT_INFORMATIVE of the
# utterances, and a class drawn at random otherwise, so the words tell valence but not arousal
# (with one word per syllable, the length follows the speaking rate), and only in part
WORDS = {
    "positive": "great wonderful lovely glad fun sunny win gift smile party sweet bright".split(),
    "negative": "awful terrible lost broken late pain alone rain wrong hate worst fail".split(),
    "neutral": "table paper window train morning street letter number chair coffee box door"
               .split(),
}
FUNCTION_WORDS = "the a to and it is was so we that this my".split()
WORD_CLASS = {"happy": "positive", "sad": "negative", "angry": "negative", "neutral": "neutral"}
TEXT_INFORMATIVE = 0.6


def transcript(emotion: str, num_words: int, rng: np.random.Generator) -> str:
    """Upper-case words, one per syllable (at least one): content words of the emotion's
    valence class (:data:`WORD_CLASS`) with probability :data:`TEXT_INFORMATIVE`, else of a
    random class, mixed with function words."""
    informative = rng.uniform() < TEXT_INFORMATIVE
    cls = WORD_CLASS.get(emotion, "neutral") if informative else str(rng.choice(list(WORDS)))
    n = max(1, num_words)
    content = rng.uniform(size=n) < 0.5
    content[rng.integers(n)] = True
    words = [str(rng.choice(WORDS[cls])) if c else str(rng.choice(FUNCTION_WORDS))
             for c in content]
    return " ".join(words).upper()


def ctm_lines(utt: str, spans: list[tuple[float, float]], text: str) -> list[str]:
    """The word alignment of an utterance, Kaldi CTM lines ``utt 1 start dur WORD``: the
    ``k``-th word spans the ``k``-th syllable (a word beyond the syllables, as in the
    one-word transcript of a syllable-less utterance, gets no line)."""
    return [f"{utt} 1 {start:.3f} {dur:.3f} {word}\n"
            for (start, dur), word in zip(spans, text.split())]


# dialogues: the speakers of a pair (spk01 + spk02, ...) take turns; each dialogue has a mood
# and a turn keeps it with probability DIALOG_MOOD_KEEP, so previous turns inform the current one
DIALOG_TURNS = 6
DIALOG_MOOD_KEEP = 0.7


def make_dialogues(utt2spk: dict[str, str], utt2emo: dict[str, str],
                   rng: np.random.Generator, turns: int = DIALOG_TURNS) -> dict[str, str]:
    """``utt -> "<dialog> <turn>"`` (turn 1-based) for every utterance: speakers paired in
    sorted order alternate within a dialogue (a speaker left without a partner talks alone),
    the emotion of a turn follows the dialogue's mood with probability
    :data:`DIALOG_MOOD_KEEP`, and a dialogue ends after ``turns`` turns or when the speaker
    due has no utterance left."""
    speakers = sorted(set(utt2spk.values()))
    pools: dict[str, dict[str, list[str]]] = {s: {} for s in speakers}
    for utt in sorted(utt2spk):
        pools[utt2spk[utt]].setdefault(utt2emo[utt], []).append(utt)
    out: dict[str, str] = {}
    for p in range(0, len(speakers), 2):
        pair = speakers[p:p + 2]
        n = 0
        while any(u for s in pair for u in pools[s].values()):
            n += 1
            dialog = f"{'-'.join(pair)}_d{n:02d}"
            first = max(pair, key=lambda s: sum(map(len, pools[s].values())))
            order = [first] + [s for s in pair if s != first]
            left = {e: sum(len(pools[s].get(e, [])) for s in pair) for e in utt2emo.values()}
            mood = max(sorted(left), key=lambda e: left[e])
            for t in range(turns):
                spk = order[t % len(order)]
                avail = sorted(e for e, u in pools[spk].items() if u)
                if not avail:
                    break
                keep = mood in avail and rng.uniform() < DIALOG_MOOD_KEEP
                emo = mood if keep else str(rng.choice(avail))
                utt = pools[spk][emo].pop(int(rng.integers(len(pools[spk][emo]))))
                out[utt] = f"{dialog} {t + 1}"
    return out


def make_corpus(out_dir: str | Path, data_dir: str | Path, num_speakers: int = 10,
                utts_per_emotion: int = 5, emotions: list[str] | None = None, seed: int = 0,
                sample_rate: int = 16000, duration: tuple[float, float] = (1.5, 2.5),
                words: int | None = None, audio_valence: float = 1.0) -> Path:
    """Write wav files under ``out_dir`` and a Kaldi data directory at ``data_dir``.

    Utterance ids are ``<spk>_<emotion>_<n>`` so that they sort with their speaker. Every fifth
    speaker's files are written as 2-channel 24 kHz FLAC to exercise resampling and downmixing.
    Besides ``utt2emo`` the data directory gets ``utt2dim`` (arousal valence dominance,
    :func:`dimensions`), ``utt2listener_emo`` (simulated listeners, :data:`LISTENERS`),
    ``text`` (:func:`transcript`), its word alignment ``ctm`` (:func:`ctm_lines`) and
    ``utt2dialog`` (:func:`make_dialogues`), drawn from
    generators of their own so that the audio does not depend on them.

    The defaults give the corpus of the mini recipe's results. For fusion experiments,
    ``words`` fixes the transcript length (one word per syllable otherwise, so the length
    follows the speaking rate and tells arousal) and ``audio_valence`` < 1 blends each
    emotion's prosody with that of the other valence at the same arousal
    (:func:`audio_style`): with ``words=6, audio_valence=0`` the audio tells arousal only and
    the words valence only (in part), so neither modality alone is enough.
    """
    out_dir, data_dir = Path(out_dir), Path(data_dir)
    emotions = emotions or list(STYLES)
    styles = {emo: audio_style(emo, audio_valence) for emo in emotions}
    rng = np.random.default_rng(seed)
    label_rng = np.random.default_rng([seed, 1])
    text_rng = np.random.default_rng([seed, 2])
    wav_scp, utt2spk, utt2emo, utt2gender, utt2dur = {}, {}, {}, {}, {}
    utt2dim, utt2listener, text = {}, {}, {}
    ctm: list[str] = []
    for spk in make_speakers(num_speakers, seed):
        odd_format = spk.name.endswith(("05", "10", "15", "20"))
        for emo in emotions:
            for k in range(utts_per_emotion):
                utt = f"{spk.name}_{emo}_{k:02d}"
                dur = float(rng.uniform(*duration))
                drawn: dict[str, Any] = {}
                wav = synthesize(styles[emo], spk, rng, sample_rate, dur, drawn)
                dims = dimensions(emo, styles[emo], drawn, label_rng)
                utt2dim[utt] = " ".join(f"{v:.3f}" for v in dims)
                utt2listener[utt] = listener_labels(emo, emotions, label_rng)
                text[utt] = transcript(emo, words or int(drawn["syllables"]), text_rng)
                ctm += ctm_lines(utt, drawn["spans"], text[utt])
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
    write_table(data_dir / "text", text)
    (data_dir / "ctm").write_text("".join(ctm), encoding="utf-8")
    write_table(data_dir / "utt2dialog",
                make_dialogues(utt2spk, utt2emo, np.random.default_rng([seed, 3])))
    return data_dir
