"""The Python API (``from sertk import Recognizer``): files, lists and arrays give what
``sertk infer`` gives on the same audio."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from sertk.data.kaldi_table import read_table
from sertk.errors import SertkError
from tests.conftest import run_sertk


@pytest.fixture(scope="module")
def packed(trained, tmp_path_factory):
    out = tmp_path_factory.mktemp("api") / "model.zip"
    run_sertk("pack", "--exp", trained, "--out", out)
    return out


@pytest.fixture(scope="module")
def wavs(corpus):
    wav = read_table(corpus / "wav.scp")
    return [wav[k] for k in sorted(wav)[:4]]


@pytest.fixture(scope="module")
def recognizer(packed):
    from sertk import Recognizer

    return Recognizer(packed, device="cpu")


def _infer(model, paths, tmp_path, name="list"):
    (tmp_path / name).write_text("".join(f"{p}\n" for p in paths))
    out = run_sertk("infer", "--model", model, "--wav-list", tmp_path / name).stdout
    return [json.loads(line) for line in out.splitlines()]


def _same(a, b, tol=1e-5):
    assert a["label"] == b["label"] and a["posteriors"].keys() == b["posteriors"].keys()
    for lab, p in a["posteriors"].items():
        assert p == pytest.approx(b["posteriors"][lab], abs=tol), lab


def test_import_sertk_stays_light():
    code = ("import sys, sertk; assert 'torch' not in sys.modules; "
            "from sertk import Recognizer; import sertk.api; "
            "assert Recognizer is sertk.api.Recognizer and 'Recognizer' in dir(sertk)")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_paths_and_lists_equal_sertk_infer(recognizer, packed, wavs, tmp_path):
    ref = _infer(packed, wavs, tmp_path)
    one = recognizer(wavs[0])
    assert isinstance(one, dict) and one["key"] == ref[0]["key"] and one["path"] == wavs[0]
    _same(one, ref[0])
    many = recognizer(wavs)
    assert isinstance(many, list) and [r["key"] for r in many] == [r["key"] for r in ref]
    for a, b in zip(many, ref):
        _same(a, b)
    assert recognizer.labels == sorted(one["posteriors"]) and recognizer.sample_rate == 16000


def test_arrays_at_the_model_rate_and_another(recognizer, packed, wavs, tmp_path):
    import torch
    import torchaudio.functional as AF

    ref16 = _infer(packed, wavs[:2], tmp_path, "l16")
    x, sr = sf.read(wavs[0], dtype="float32")
    assert sr == 16000 and x.ndim == 1
    rec = recognizer(x, sample_rate=sr)
    assert rec["key"] == "array0"
    _same(rec, ref16[0])
    # 44.1 kHz audio: a file for `sertk infer`, the same samples as an array for the API
    hi = AF.resample(torch.from_numpy(x), 16000, 44100).numpy()
    hi_path = tmp_path / "hi.wav"
    sf.write(hi_path, hi, 44100, subtype="FLOAT")
    ref44 = _infer(packed, [hi_path], tmp_path, "l44")[0]
    _same(recognizer(hi, sample_rate=44100), ref44)
    _same(recognizer(torch.from_numpy(hi), sample_rate=44100), ref44)  # a torch tensor too
    # int16 samples are scaled to [-1, 1]
    pcm = np.round(x * 32767).astype(np.int16)
    _same(recognizer(pcm, sample_rate=16000), ref16[0], tol=1e-3)
    # a list may mix paths and arrays; results keep the order
    mixed = recognizer([wavs[1], x], sample_rate=16000)
    assert [r["key"] for r in mixed] == [ref16[1]["key"], "array1"]
    _same(mixed[0], ref16[1])
    _same(mixed[1], ref16[0])


def test_segments_like_sertk_infer(packed, tmp_path):
    from sertk import Recognizer

    rng = np.random.default_rng(0)
    x = (0.05 * rng.standard_normal(16000 * 3)).astype(np.float32)
    sf.write(tmp_path / "long.wav", x, 16000, subtype="FLOAT")
    (tmp_path / "l").write_text(f"{tmp_path / 'long.wav'}\n")
    ref = json.loads(run_sertk("infer", "--model", packed, "--wav-list", tmp_path / "l",
                               "--segment", "1.0", "--shift", "0.5").stdout.splitlines()[0])
    rec = Recognizer(packed, segment=1.0, shift=0.5)(x, sample_rate=16000)
    assert [(s["start"], s["end"]) for s in rec["segments"]] == \
        [(s["start"], s["end"]) for s in ref["segments"]]
    _same(rec, ref)
    for a, b in zip(rec["segments"], ref["segments"]):
        _same(a, b)


def test_errors_are_sertk_errors(recognizer, tmp_path):
    from sertk import Recognizer

    with pytest.raises(SertkError, match="audio file not found"):
        recognizer(str(tmp_path / "missing.wav"))
    with pytest.raises(SertkError, match="audio file not found"):
        recognizer([tmp_path / "missing.wav"])
    (tmp_path / "bad.wav").write_bytes(b"not audio")
    with pytest.raises(SertkError, match="bad"):
        recognizer(tmp_path / "bad.wav")
    with pytest.raises(SertkError, match="sample_rate"):
        recognizer(np.zeros(16000, dtype=np.float32))
    with pytest.raises(SertkError, match="1-D"):
        recognizer(np.zeros((2, 16000), dtype=np.float32), sample_rate=16000)
    with pytest.raises(SertkError, match="model not found"):
        Recognizer(tmp_path / "no_model.zip")
