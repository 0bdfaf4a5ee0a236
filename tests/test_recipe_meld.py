"""egs/meld: a fixture release (mp4 clips + MELD's annotation CSVs) through local/data.sh and
./run.sh."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import soundfile as sf

from sertk.data.datadir import DataDir
from tests import corpus_recipes as cr

LABELS = {"anger": "angry", "fear": "fearful", "joy": "happy", "sadness": "sad",
          "surprise": "surprised"}
HEADER = ["Sr No.", "Utterance", "Speaker", "Emotion", "Sentiment", "Dialogue_ID",
          "Utterance_ID", "Season", "Episode", "StartTime", "EndTime"]
# train and test clip names that exist in one split of the table only: sertk.data.release
# falls back to matching by file name, and a listed clip left out of a fixture would otherwise
# take the other split's clip of the same name (the recipe then skips it: wrong split)
TRAIN = [f"meld-dia1000_utt{u}-train" for u in range(4)] + \
    [f"meld-dia1001_utt{u}-train" for u in range(10)]
TEST = [f"meld-dia100_utt{u}-test" for u in range(8, 16)]
ABSENT = "meld-dia1001_utt10-train"
SPEAKERS = {"Chandler": "chandler", "Monica": "monica", "Fireman #1": "fireman_1",
            "The Interviewer": "the_interviewer", "Mrs. Geller": "mrs_geller"}
# odd characters of MELD's CSVs: UTF-8 read as cp1252, a stray cp1252 byte, typographic quotes
TEXTS = {"meld-dia1000_utt1-train": ("You must\u00e2\u20ac\u2122ve had your hands full.",
                                     "You must've had your hands full."),
         "meld-dia1000_utt2-train": ("I don\x92t know, \"Ross\".", "I don't know, \"Ross\"."),
         "meld-dia100_utt8-test": ("Oh. That\u2019s so Monica\u2026 \u2018Where\u2019s 27?!\u2019",
                                   "Oh. That's so Monica... 'Where's 27?!'")}


def _mp4(path: Path, seconds: float = 0.4, rate: int = 44100, layout: str = "mono",
         audio: bool = True, video: bool = False, seed: int = 0) -> None:
    """A tiny mp4: AAC audio and/or an MPEG-4 video stream (PyAV)."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w", format="mp4") as out:
        v = out.add_stream("mpeg4", rate=10) if video else None
        if v is not None:
            v.width, v.height, v.pix_fmt = 32, 32, "yuv420p"
        if audio:
            a = out.add_stream("aac", rate=rate, layout=layout)
            n = int(seconds * rate)
            t = np.arange(n) / rate
            x = 0.3 * np.sin(2 * np.pi * (150 + 30 * seed) * t)
            x = np.tile(x.astype(np.float32), (a.codec_context.layout.nb_channels, 1))
            step = a.codec_context.frame_size or 1024
            for i in range(0, n, step):
                frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(x[:, i:i + step]),
                                                   format="fltp", layout=layout)
                frame.sample_rate, frame.pts = rate, i
                for packet in a.encode(frame):
                    out.mux(packet)
            for packet in a.encode(None):
                out.mux(packet)
        if v is not None:
            for k in range(int(seconds * 10)):
                img = np.full((32, 32, 3), 20 * k, np.uint8)
                for packet in v.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                    out.mux(packet)
            for packet in v.encode(None):
                out.mux(packet)


def _csv(path: Path, rows: list[list], bom: bool = False, crlf: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8-sig" if bom else "utf-8", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\r\n" if crlf else "\n")
        writer.writerow(HEADER)
        writer.writerows(rows)


def _release(root: Path) -> tuple[dict, dict]:
    """The fixture release; returns (usable rows: key -> (row, speaker id, text), skipped
    clips: key -> reason fragment).

    Quirks: a 48 kHz stereo clip with a video stream, a 5.1 clip, a clip of corrupt bytes, a
    video-only clip, a listed clip left out, a CSV row missing, a CSV emotion differing from the
    table, MELD's dev split (one clip named like a train clip), a final_videos_test* variant,
    the train CSV in train/ with a BOM and CRLF, quoted commas and odd characters.
    """
    table = {r.key: r for r in cr.table("meld")}
    names = list(SPEAKERS)
    usable, skipped, csv_rows = {}, {}, {"train": [], "test": []}
    for i, key in enumerate(TRAIN + TEST):
        row = table[key]
        clip, split = key.split("-")[1], key.split("-")[2]
        dia, utt = (int(x) for x in clip[3:].split("_utt"))
        speaker = names[i % 3] if split == "train" else names[[0, 3, 4, 1][i % 4]]
        raw, text = TEXTS.get(key, (f"Okay, line {i}, \"quoted\".", f"Okay, line {i}, "
                                    f"\"quoted\"."))
        emotion = row.emotion
        path = root / row.wav
        if key == "meld-dia1000_utt0-train":
            _mp4(path, rate=48000, layout="stereo", video=True, seed=i)
        elif key == "meld-dia1000_utt1-train":
            _mp4(path, rate=48000, layout="5.1", seed=i)
        elif key == "meld-dia1001_utt9-train":
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 4)
            skipped[key] = "cannot decode"
        elif key == "meld-dia100_utt15-test":
            _mp4(path, audio=False, video=True)
            skipped[key] = "no audio stream"
        else:
            _mp4(path, seconds=0.3 + 0.02 * (i % 5), seed=i)
        if key == "meld-dia1001_utt8-train":
            skipped[key] = "no row for dia1001_utt8 in train_sent_emo.csv"
            continue
        if key == "meld-dia100_utt14-test":
            emotion = "joy"
            skipped[key] = f"test_sent_emo.csv says joy, the table {row.emotion}"
        csv_rows[split].append([i + 1, raw, speaker, emotion, "neutral", dia, utt, 8, 21,
                                "00:16:16,059", "00:16:21,731"])
        if key not in skipped:
            usable[key] = (row, SPEAKERS[speaker], text)
    _csv(root / "train" / "train_sent_emo.csv", csv_rows["train"], bom=True, crlf=True)
    _csv(root / "test_sent_emo.csv", csv_rows["test"])
    _csv(root / "dev_sent_emo.csv", [[1, "Dev line.", "Ross", "joy", "positive", 0, 14, 1, 1,
                                      "00:00:01,000", "00:00:02,000"]])
    _mp4(root / "dev" / "dev_splits_complete" / "dia0_utt14.mp4", seed=3)
    _mp4(root / "dev" / "dev_splits_complete" / "dia1000_utt0.mp4", seed=4)
    _mp4(root / "output_repeated_splits_test" / "final_videos_testdia100_utt8.mp4", seed=5)
    return usable, skipped


def test_meld_data_and_emobox_fold(tmp_path):
    root = tmp_path / "MELD.Raw"
    usable, skipped = _release(root)
    proc = cr.run_data("meld", tmp_path / "data", root, "--nj 2")
    assert f"{len(usable)} utterances of " in proc.stdout
    all_ = DataDir(tmp_path / "data" / "all")
    key2utt = {k: u for u, k in all_.table("utt2key").items()}
    assert set(key2utt) == set(usable)
    text = all_.table("text")
    for key, (row, spk, words) in usable.items():
        utt = key2utt[key]
        assert all_.utt2emo[utt] == LABELS.get(row.emotion, row.emotion)
        assert all_.table("utt2sentiment")[utt] == "neutral"
        assert all_.utt2spk[utt] == spk and utt.startswith(f"{spk}-")
        assert text[utt] == words
        wav = Path(all_.wav_scp[utt])
        assert wav.parent == tmp_path / "data" / "local" / "wav"
        info = sf.info(wav)
        assert (info.samplerate, info.channels) == (16000, 1) and info.duration > 0.25
    assert not all_.has("utt2gender")
    lines = cr.report(tmp_path / "data")
    missing = [f for kind, f, _ in lines if kind == "missing"]
    assert "train/train_splits/dia1001_utt10.mp4" in missing
    assert len(missing) == len(cr.table("meld")) - len(TRAIN) - len(TEST)
    extra = {f: why for kind, f, why in lines if kind == "extra"}
    assert extra == {
        "dev/dev_splits_complete/dia0_utt14.mp4": "MELD dev split: not in EmoBox's table",
        "dev/dev_splits_complete/dia1000_utt0.mp4": "MELD dev split: not in EmoBox's table",
        "output_repeated_splits_test/final_videos_testdia100_utt8.mp4":
            "a final_videos_test* variant of a test clip: EmoBox's table lists the plain name"}
    skips = {Path(f).name: why for kind, f, why in lines if kind == "skipped"}
    assert len(skips) == len(skipped)
    for key, why in skipped.items():
        assert why in skips[key.split("-")[1] + ".mp4"], (key, skips)
    # EmoBox's one fold is MELD's train/test split: not speaker-independent
    present = [row for row, _, _ in usable.values()]
    cr.check_folds(tmp_path / "data", present, speaker_independent=False)
    # a rerun keeps the decoded WAVs
    wavs = {p: p.stat().st_mtime_ns for p in (tmp_path / "data" / "local" / "wav").iterdir()}
    cr.run_data("meld", tmp_path / "data", root)
    assert {p: p.stat().st_mtime_ns for p in wavs} == wavs


def test_meld_stage2(tmp_path):
    root = tmp_path / "MELD release"
    usable, _ = _release(root)
    cr.run_to_stage2("meld", tmp_path, root)
    assert len(DataDir(tmp_path / "dump" / "logmel64" / "all").table("feats.scp")) == len(usable)


def test_meld_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    proc = cr.run_data("meld", tmp_path / "data", tmp_path / "empty", check=False)
    assert proc.returncode != 0
    assert "error: nothing usable" in proc.stderr and "Traceback" not in proc.stderr
    # clips without MELD's annotation tables
    _mp4(tmp_path / "clips" / "train" / "train_splits" / "dia1000_utt0.mp4")
    proc = cr.run_data("meld", tmp_path / "data2", tmp_path / "clips", check=False)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "train_sent_emo.csv not found" in proc.stderr
