"""Lean inference (issue 17): ``Recognizer`` streams over its inputs with read-ahead workers
and length-sorted batches, giving the posteriors of the plain one-file-at-a-time path; long
files are read, resampled and featurised in chunks (:mod:`sertk.infer.stream`)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import torch

from sertk.data.segments import windows
from sertk.errors import DataError
from sertk.features import FeatureConfig, build_frontend
from sertk.features.dump import compute_features
from sertk.infer.packed import load_packed
from sertk.infer.recognizer import Recognizer, posteriors
from sertk.infer.stream import (
    StreamResampler,
    WindowStreamer,
    frame_spec,
    ordered_map,
    prefetch,
    stream_features,
)
from tests.conftest import REPO

MODEL = "ravdess_cnn_asp_ref"  # shipped: cnn_asp (masked), logmel64, trims silence


def _voice(seconds: float, sr: int, seed: int, lead: float = 0.4) -> np.ndarray:
    """A gliding tone with noise, silent for ``lead`` s at both ends (trimming has work)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(sr * seconds)) / sr
    f0 = 120 + 60 * rng.random() + 40 * np.sin(2 * np.pi * 0.7 * t)
    tone = 0.3 * np.sin(2 * np.pi * np.cumsum(f0) / sr) * ((t > lead) & (t < seconds - lead))
    return (tone + 0.0005 * rng.standard_normal(t.size)).astype(np.float32)


@pytest.fixture(scope="module")
def wavs(tmp_path_factory):
    """Files of varied lengths and rates (one stereo)."""
    root = tmp_path_factory.mktemp("stream_wavs")
    items = []
    for i, (seconds, sr) in enumerate([(1.3, 16000), (2.9, 48000), (0.8, 16000), (3.6, 44100),
                                       (2.2, 16000), (1.7, 48000), (4.1, 16000), (1.1, 22050),
                                       (2.5, 16000), (3.0, 48000), (0.6, 16000)]):
        x = _voice(seconds, sr, i)
        if i == 3:
            x = np.stack([x, 0.5 * x], axis=1)
        path = root / f"f{i:02d}.wav"
        sf.write(path, x, sr)
        items.append((path.stem, str(path)))
    return items


def _reference(items):
    """The straightforward path: each file alone through the front end and the model."""
    packed = load_packed(MODEL)
    fe = build_frontend(packed.feats)
    out = {}
    for key, path in items:
        feats = torch.from_numpy(compute_features(path, packed.feats, fe, key, apply_trim=True))
        out[key] = posteriors(packed, [feats], "cpu")[0]
    return packed.labels, out


@pytest.mark.parametrize("kwargs", [{}, {"batch_size": 4, "lookahead": 5},
                                    {"batch_size": 3, "num_workers": 0},
                                    {"deploy_convs": False, "channels_last": False}])
def test_streamed_posteriors_equal_one_by_one(wavs, kwargs):
    labels, ref = _reference(wavs)
    threads, onednn = torch.get_num_threads(), torch.backends.mkldnn.enabled
    rec = Recognizer(load_packed(MODEL), **kwargs)
    # the fast forms (folded batch norm, oneDNN over bucketed lengths, NHWC) are in use
    assert rec.deploy_convs == rec.channels_last == kwargs.get("deploy_convs", True)
    records = list(rec.recognize(iter(wavs), progress=False))  # a generator is fine
    assert (torch.get_num_threads(), torch.backends.mkldnn.enabled) == (threads, onednn)
    assert [r["key"] for r in records] == [k for k, _ in wavs]  # input order
    for r in records:
        got = torch.tensor([r["posteriors"][lab] for lab in labels])
        torch.testing.assert_close(got, ref[r["key"]], atol=1e-5, rtol=0)
        assert r["label"] == labels[int(ref[r["key"]].argmax())]


def test_inputs_are_read_lazily_with_bounded_lookahead(wavs):
    """Memory does not grow with the inputs: before the first record comes out, only the
    files of the look-ahead window have been taken from the input iterator."""
    taken = []

    def gen():
        for item in wavs * 3:
            taken.append(item)
            yield item

    rec = Recognizer(load_packed(MODEL), batch_size=2, lookahead=4, num_workers=2)
    it = rec.recognize(gen(), progress=False)
    next(it)
    assert len(taken) <= 2 * 4 + 1
    assert len(list(it)) == 3 * len(wavs) - 1


def test_bad_file_in_the_middle(wavs, tmp_path):
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF1234WAVEjunk")
    items = wavs[:3] + [("bad", str(bad))] + wavs[3:6]
    rec = Recognizer(load_packed(MODEL), batch_size=2, lookahead=5)
    records = list(rec.recognize(items, skip_bad=True, progress=False))
    assert [r["key"] for r in records] == [k for k, _ in items]
    assert "cannot decode" in records[3]["error"] and "error" not in records[2]
    seen = []
    with pytest.raises(DataError, match="utterance bad"):
        for r in rec.recognize(items, progress=False):
            seen.append(r["key"])
    assert seen == [k for k, _ in wavs[:3]]  # the files before it are still given


# ----------------------------------------------------------------------------- chunking
@pytest.mark.parametrize("rates", [(48000, 16000), (44100, 16000), (8000, 16000),
                                   (22050, 16000), (16000, 8000)])
def test_stream_resampler_equals_whole_signal(rates):
    import torchaudio.functional as AF

    rng = np.random.default_rng(1)
    x = torch.from_numpy(rng.standard_normal(54321).astype(np.float32))
    r = StreamResampler(*rates)
    parts, i = [], 0
    while i < x.numel():
        n = int(rng.integers(1, 9000))
        parts.append(r.push(x[i:i + n]))
        i += n
    parts.append(r.finish())
    ref = AF.resample(x, *rates)
    got = torch.cat(parts)
    assert got.shape == ref.shape
    torch.testing.assert_close(got, ref, atol=2e-6, rtol=0)


@pytest.mark.parametrize("rates", [(48000, 16000), (8000, 16000), (44100, 16000)])
def test_blocked_resampling_kernel_gives_the_same_samples(rates):
    """The widened filter (several blocks per row) sums the same products as the plain one:
    the same samples, bit for bit, in the same order."""
    from sertk.data.audio import resample_kernel
    from sertk.infer.stream import _conv, blocked_kernel

    r = StreamResampler(*rates)
    wide, stride = blocked_kernel(*rates, r.group)
    kernel, _ = resample_kernel(*rates)
    assert (wide.shape[0] > kernel.shape[0]) == (rates != (44100, 16000))
    seg = torch.randn((r.group - 1) * r.o + r.span, generator=torch.Generator().manual_seed(0))
    assert torch.equal(_conv(seg, wide, stride), _conv(seg, kernel, r.o))


FEATS = {"logmel_trim": {"name": "logmel", "n_mels": 64, "n_fft": 512, "f_min": 20,
                         "f_max": 8000, "trim": {"threshold_db": 40.0, "margin": 0.1}},
         "logmel_centred": {"name": "logmel", "n_mels": 40, "center": True},
         "fbank_deltas_sliding": {"name": "fbank", "num_mel_bins": 40, "deltas": 2,
                                  "cmvn": "sliding", "cmvn_window": 120, "norm_vars": True},
         "mfcc": {"name": "mfcc"},
         "spectrogram": {"name": "spectrogram", "n_fft": 512, "frame_length": 25.0,
                         "max_freq": 4000.0}}


@pytest.mark.parametrize("sr", [16000, 48000])
@pytest.mark.parametrize("name", sorted(FEATS))
def test_chunked_features_equal_whole_file(tmp_path, name, sr):
    path = tmp_path / "a.wav"
    sf.write(path, np.stack([_voice(7.3, sr, 5, lead=1.1)] * 2, axis=1), sr)
    cfg = FeatureConfig.from_dict({**FEATS[name], "sample_rate": 16000})
    fe = build_frontend(cfg)
    assert frame_spec(fe) is not None
    whole = torch.from_numpy(compute_features(str(path), cfg, fe, "a", apply_trim=True))
    offset, blocks = stream_features(str(path), cfg, fe, "a", block_seconds=0.37)
    blocks = list(blocks)
    assert len(blocks) > 5  # really in chunks
    got = torch.cat(blocks)
    assert got.shape == whole.shape
    if sr == 16000:  # the same samples give the same frames
        torch.testing.assert_close(got, whole, atol=1e-5, rtol=1e-5)
    else:  # resampled per chunk, the waveform differs by float rounding (~1e-7), which the
        # log of near-silent bins magnifies a little
        torch.testing.assert_close(got, whole, atol=2e-2, rtol=1e-3)
        assert float((got - whole).abs().mean()) < 1e-3
    if "trim" in FEATS[name]:
        assert offset == pytest.approx(1.0, abs=0.02)


def test_whole_utterance_front_ends_are_not_chunked():
    for extra in ({"cmvn": "utterance"}, {"fixed_frames": 100}):
        assert frame_spec(build_frontend(FeatureConfig.from_dict(
            {"name": "fbank", "num_mel_bins": 40, **extra}))) is None
    assert frame_spec(build_frontend(FeatureConfig.from_dict(
        {"name": "spectrogram", "scale": "minmax"}))) is None


@pytest.mark.parametrize("total", [1, 9, 10, 11, 37, 100])
@pytest.mark.parametrize("length,shift", [(10, 5), (10, 3), (7, 7), (10, 20)])
def test_window_streamer_equals_windows(total, length, shift):
    feats = torch.arange(total, dtype=torch.float32)[:, None]
    ws, got = WindowStreamer(length, shift), []
    for i in range(0, total, 4):
        got += [(s, e, w[:, 0].tolist()) for s, e, w in ws.push(feats[i:i + 4])]
    got += [(s, e, w[:, 0].tolist()) for s, e, w in ws.finish()]
    assert got == [(s, e, [float(v) for v in range(s, e)])
                   for s, e in windows(total, length, shift)]


def test_ordered_map_and_prefetch():
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(3) as pool:
        out = [f.result() for _, f in ordered_map(lambda x: x * x, range(50), pool, 4)]
    assert out == [x * x for x in range(50)]

    def gen():
        yield 1
        yield 2
        raise DataError("boom")

    got = []
    with pytest.raises(DataError, match="boom"):
        for x in prefetch(gen(), 1):
            got.append(x)
    assert got == [1, 2]
    it = prefetch(iter(range(10 ** 6)), 2)
    assert next(it) == 0
    it.close()  # the thread stops


# ----------------------------------------------------------------------------- long audio
def test_long_file_in_chunks_equals_whole_file(tmp_path):
    """A file longer than ``stream_seconds`` goes through the chunked path; its windows'
    posteriors equal those of the whole-file path."""
    path = tmp_path / "talk.wav"
    sf.write(path, np.concatenate([_voice(3.0, 16000, s) for s in range(4)]), 16000)
    items = [("talk", str(path))]
    whole = next(Recognizer(load_packed(MODEL), segment=2.0, shift=1.0,
                            stream_seconds=1e9).recognize(items, progress=False))
    rec = Recognizer(load_packed(MODEL), segment=2.0, shift=1.0, stream_seconds=5.0)
    calls = []
    real = rec._recognize_long
    rec._recognize_long = lambda *a, **k: calls.append(a) or real(*a, **k)
    chunked = next(rec.recognize(items, progress=False))
    assert calls  # it was streamed
    assert chunked["offset"] == pytest.approx(0.3, abs=0.02)
    assert [(s["start"], s["end"]) for s in chunked["segments"]] == \
        [(s["start"], s["end"]) for s in whole["segments"]]
    for a, b in zip(chunked["segments"] + [chunked], whole["segments"] + [whole]):
        assert a["posteriors"] == pytest.approx(b["posteriors"], abs=1e-5)


LONG_SCRIPT = r"""
import json, resource, sys
import sertk.data.audio as audio
from sertk.infer.packed import load_packed
from sertk.infer.recognizer import Recognizer

reads = []
real = audio.sf.SoundFile.read
def read(self, frames=-1, *a, **k):
    reads.append(frames)
    return real(self, frames, *a, **k)
audio.sf.SoundFile.read = read
rec = Recognizer(load_packed("ravdess_cnn_asp_ref"), segment=2.0, shift=2.0)
out = list(rec.recognize([("long", sys.argv[1])], progress=False))[0]
print(json.dumps({"rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "max_read": max(reads), "n_segments": len(out["segments"]),
                  "label": out["label"]}))
"""


def test_ten_minutes_in_bounded_memory(tmp_path):
    """10 minutes at 48 kHz (115 MB as float32 samples, before the mono copy, the resampled
    signal and the spectrogram the whole-file path would also hold): read in blocks of
    10 s, and the process's peak memory is within a few tens of MB of a 20 s file's."""
    sr, minutes = 48000, 10
    long, short = tmp_path / "long.wav", tmp_path / "short.wav"
    rng = np.random.default_rng(0)
    with sf.SoundFile(long, "w", sr, 1, "PCM_16") as f:
        for i in range(minutes * 6):  # 10 s at a time: the test itself stays small
            f.write(_voice(10.0, sr, i, lead=0.0) + 0.01 * rng.standard_normal(10 * sr))
    sf.write(short, _voice(20.0, sr, 0, lead=0.0), sr)
    runs = {}
    for name in ("short", "long"):
        proc = subprocess.run([sys.executable, "-c", LONG_SCRIPT, str(tmp_path / f"{name}.wav")],
                              capture_output=True, text=True, cwd=REPO)
        assert proc.returncode == 0, proc.stderr
        runs[name] = json.loads(proc.stdout.splitlines()[-1])
    assert runs["long"]["n_segments"] == minutes * 30
    assert runs["long"]["max_read"] <= 10 * sr  # blocks of 10 s, never the whole file
    whole_decoded_mb = minutes * 60 * sr * 4 / 2 ** 20
    grew = runs["long"]["rss_mb"] - runs["short"]["rss_mb"]
    assert grew < whole_decoded_mb / 3, runs
