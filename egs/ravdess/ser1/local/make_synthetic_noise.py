#!/usr/bin/env python3
"""Synthetic noise and room impulse responses for augmentation when MUSAN/RIR corpora are not
available offline.

    make_synthetic_noise.py OUT_DIR [--seed 0]

Writes OUT_DIR/noise/{white,pink,brown}/*.wav (10 s each, 16 kHz; coloured by shaping white
Gaussian noise with 1/f^a spectra, a = 0, 1, 2) and OUT_DIR/rirs/*.wav (exponentially decaying
Gaussian noise with RT60 drawn from 0.2-0.8 s, a direct path at t = 0): stand-ins for MUSAN
noise and simulated RIRs (Ko et al. 2017). Turn them into data dirs with
``sertk data from-dir``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import soundfile as sf

SR = 16000


def coloured(n: int, exponent: float, rng: np.random.Generator) -> np.ndarray:
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1 / SR)
    f[0] = f[1]
    x = np.fft.irfft(spec / f ** (exponent / 2), n)
    return (0.3 * x / np.abs(x).max()).astype(np.float32)


def rir(rt60: float, rng: np.random.Generator) -> np.ndarray:
    n = int(SR * rt60 * 1.2)
    t = np.arange(n) / SR
    h = rng.standard_normal(n) * np.exp(-6.9 * t / rt60)  # -60 dB at rt60
    h[0] = np.abs(h).max() * 2.0  # direct path
    return (h / np.abs(h).max()).astype(np.float32)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--per-colour", type=int, default=4)
    ap.add_argument("--rirs", type=int, default=12)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    out = Path(args.out)
    for name, exponent in (("white", 0.0), ("pink", 1.0), ("brown", 2.0)):
        (out / "noise" / name).mkdir(parents=True, exist_ok=True)
        for k in range(args.per_colour):
            sf.write(out / "noise" / name / f"{name}{k:02d}.wav",
                     coloured(10 * SR, exponent, rng), SR)
    (out / "rirs").mkdir(parents=True, exist_ok=True)
    for k in range(args.rirs):
        sf.write(out / "rirs" / f"rir{k:02d}.wav", rir(float(rng.uniform(0.2, 0.8)), rng), SR)
    print(f"{out}: {3 * args.per_colour} noises, {args.rirs} RIRs")


if __name__ == "__main__":
    main()
