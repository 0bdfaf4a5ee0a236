#!/usr/bin/env python3
"""Inputs of docs/benchmarks.md's `sertk infer` comparison (bench/infer_vs_commit.py).

``wav SRC_DIR OUT_DIR``: every audio file under SRC_DIR as 16-bit WAV (same rate and channels)
under OUT_DIR, and OUT_DIR/list.txt (the issue measured WAV files).

``pack OLD_CHECKOUT OUT.zip``: a ``cnn_asp`` pack that OLD_CHECKOUT (e.g. a clone at 6a59310)
and this checkout both read and build the same way: the shipped ``ravdess_cnn_asp_ref``'s
front end, CMVN, labels and convolution weights, with the head options that version knew
(``att_hidden`` and ``embed_dim`` 128; those weights seeded, not trained). Built by
OLD_CHECKOUT's own code, so it loads there.

    tools/venv/bin/python bench/infer_inputs.py wav ../shared/corpora/ravdess /tmp/rav_wav
    git clone -q . /tmp/old && git -C /tmp/old checkout -q 6a59310
    tools/venv/bin/python bench/infer_inputs.py pack /tmp/old /tmp/cnn_asp_both.zip
"""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "sertk" / "pretrained" / "ravdess_cnn_asp_ref.zip"
AUDIO = (".wav", ".flac", ".ogg", ".mp3")

BUILD = """
import io, sys, zipfile, yaml, torch
from safetensors.torch import load, save
from sertk.models.classifier import EmotionClassifier
src = zipfile.ZipFile(sys.argv[1])
config = yaml.safe_load(src.read("config.yaml"))
config["model"]["conf"].update(att_hidden=128, embed_dim=128)
labels = [x for x in src.read("labels.txt").decode().split("\\n") if x.strip()]
torch.manual_seed(0)
model = EmotionClassifier("cnn_asp", int(config["input_dim"]), len(labels),
                          config["model"]["conf"])
shipped = load(src.read("model.safetensors"))
state = {**model.state_dict(),
         **{k: v for k, v in shipped.items() if k.startswith(("cmvn", "net.blocks"))}}
model.load_state_dict(state)
with zipfile.ZipFile(sys.argv[2], "w") as out:
    out.writestr("config.yaml", yaml.safe_dump(config, sort_keys=False))
    out.writestr("model.safetensors", save({k: v.contiguous() for k, v in state.items()}))
    for name in ("feats.yaml", "labels.txt", "cmvn.ark", "meta.json"):
        out.writestr(name, src.read(name))
"""


def to_wav(src: Path, out: Path) -> None:
    import soundfile as sf

    files = sorted(p for p in src.rglob("*") if p.suffix.lower() in AUDIO)
    if not files:
        sys.exit(f"no audio files under {src}")
    lines = []
    for p in files:
        dst = out / p.relative_to(src).with_suffix(".wav")
        dst.parent.mkdir(parents=True, exist_ok=True)
        x, sr = sf.read(p, dtype="int16")
        sf.write(dst, x, sr, subtype="PCM_16")
        lines.append(str(dst))
    (out / "list.txt").write_text("\n".join(lines) + "\n")
    print(f"{len(lines)} files -> {out}/list.txt")


def make_pack(old: Path, out: Path) -> None:
    subprocess.run([sys.executable, "-c", BUILD, str(SHIPPED), str(out)], check=True,
                   env={"PYTHONPATH": str(old), "PATH": "/usr/bin:/bin"})
    with zipfile.ZipFile(out) as z:
        print(f"{out}: {', '.join(sorted(z.namelist()))}")


def main() -> None:
    if len(sys.argv) != 4 or sys.argv[1] not in ("wav", "pack"):
        sys.exit(__doc__)
    a, b = Path(sys.argv[2]), Path(sys.argv[3])
    to_wav(a, b) if sys.argv[1] == "wav" else make_pack(a, b)


if __name__ == "__main__":
    main()
