"""``sertk infer --segment S --timeline DIR``: per file a CSV, a JSON and a PNG of the
posteriors of its windows over time (:mod:`sertk.infer.timeline`)."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import soundfile as sf

from sertk.infer.timeline import safe_name, timeline_rows, write_timeline
from tests.conftest import run_sertk

EMOTIONS = ["angry", "calm", "disgust", "fearful", "happy", "neutral", "sad", "surprised"]


def _talk(path, seconds, sr, lead=0.5):
    rng = np.random.default_rng(2)
    t = np.arange(int(sr * seconds)) / sr
    f0 = 130 + 50 * np.sin(2 * np.pi * 0.3 * t)
    x = 0.3 * np.sin(2 * np.pi * np.cumsum(f0) / sr) * (t > lead)
    sf.write(path, (x + 0.0005 * rng.standard_normal(t.size)).astype(np.float32), sr)


def test_infer_writes_timelines(tmp_path):
    _talk(tmp_path / "talk.wav", 7.0, 48000)
    _talk(tmp_path / "short.wav", 1.5, 16000, lead=0.0)
    (tmp_path / "list").write_text(f"{tmp_path / 'talk.wav'}\n{tmp_path / 'short.wav'}\n")
    out = tmp_path / "out.jsonl"
    res = run_sertk("infer", "--model", "ravdess_cnn_asp_ref", "--wav-list", tmp_path / "list",
                    "--segment", "2.0", "--shift", "0.5", "--timeline", tmp_path / "tl",
                    "--out", out, "--no-progress", "--num-workers", "1")
    assert "timelines in" in res.stderr
    records = {r["key"]: r for r in map(json.loads, out.read_text().splitlines())}
    rec = records["talk"]
    assert rec["offset"] == pytest.approx(0.4, abs=0.02)  # 0.5 s lead-in less the margin
    for key in ("talk", "short"):
        segs = records[key]["segments"]
        with (tmp_path / "tl" / f"{key}.csv").open() as fh:
            rows = list(csv.DictReader(fh))
        assert list(rows[0]) == ["start", "end", "label", *EMOTIONS]
        assert len(rows) == len(segs)
        off = records[key].get("offset", 0.0)
        for row, seg in zip(rows, segs):
            assert float(row["start"]) == pytest.approx(seg["start"] + off, abs=1e-3)
            assert float(row["end"]) == pytest.approx(seg["end"] + off, abs=1e-3)
            assert row["label"] == seg["label"]
            assert sum(float(row[e]) for e in EMOTIONS) == pytest.approx(1.0, abs=1e-4)
        doc = json.loads((tmp_path / "tl" / f"{key}.json").read_text())
        assert doc["key"] == key and doc["classes"] == EMOTIONS
        assert doc["label"] == records[key]["label"] and len(doc["segments"]) == len(segs)
        png = (tmp_path / "tl" / f"{key}.png").read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    # 6.6 s of trimmed audio in 2 s windows every 0.5 s, the last one ending at the end
    # (its last frame: 32 ms of the FFT short of it)
    assert [s["start"] for s in rec["segments"]][:3] == [0.0, 0.5, 1.0]
    assert rec["segments"][-1]["end"] + rec["offset"] == pytest.approx(7.0, abs=0.05)


def test_timeline_needs_segment(tmp_path):
    _talk(tmp_path / "a.wav", 1.0, 16000)
    proc = run_sertk("infer", "--model", "ravdess_cnn_asp_ref", "--dir", tmp_path,
                     "--timeline", tmp_path / "tl", check=False)
    assert proc.returncode != 0 and "--timeline needs --segment" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_timeline_of_a_dimensional_record(tmp_path):
    rec = {"key": "spk1/utt 7", "path": "x.wav", "dims": {"valence": 0.1, "arousal": 0.4},
           "segments": [{"start": 0.0, "end": 2.0, "dims": {"valence": 0.1, "arousal": 0.5}},
                        {"start": 1.0, "end": 3.0, "dims": {"valence": 0.2, "arousal": 0.3}}]}
    classes, rows = timeline_rows(rec)
    assert classes == ["valence", "arousal"] and rows[1]["arousal"] == 0.3
    paths = write_timeline(rec, tmp_path)
    assert [p.name for p in paths] == [f"{safe_name('spk1/utt 7')}.{x}"
                                       for x in ("csv", "json", "png")]
    assert all(p.is_file() for p in paths)
    assert "/" not in safe_name("spk1/utt 7")
