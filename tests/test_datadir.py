"""Kaldi data directories: parsing, validation, fix, split, subset, combine, folds, audio."""

from __future__ import annotations

import shutil
from pathlib import Path

import kaldiio
import numpy as np
import pytest
import soundfile as sf
import torch

from sertk.data.audio import AudioConfig, load_audio
from sertk.data.datadir import DataDir, combine, fix, split, subset, validate, write_utt2spk
from sertk.data.folds import make_folds
from sertk.data.kaldi_table import read_table, write_table
from sertk.errors import DataError


def make_dir(root: Path, n_spk: int = 3, n_utt: int = 2, sr: int = 16000) -> Path:
    """A tiny valid data dir with real wav files."""
    d = root / "data"
    wav_scp, utt2spk, utt2emo = {}, {}, {}
    rng = np.random.default_rng(0)
    for s in range(n_spk):
        for u in range(n_utt):
            utt = f"spk{s}-utt{u}"
            path = root / "wav" / f"{utt}.wav"
            path.parent.mkdir(parents=True, exist_ok=True)
            sf.write(path, (0.1 * rng.standard_normal(sr // 2)).astype(np.float32), sr)
            wav_scp[utt] = str(path)
            utt2spk[utt] = f"spk{s}"
            utt2emo[utt] = ["happy", "sad"][u % 2]
    write_table(d / "wav.scp", wav_scp)
    write_table(d / "utt2emo", utt2emo)
    write_utt2spk(d, utt2spk)
    return d


def test_read_table_errors(tmp_path):
    p = tmp_path / "utt2spk"
    p.write_text("a s1\nb s1\na s2\n")
    with pytest.raises(DataError, match=r"utt2spk:3: duplicate key 'a'"):
        read_table(p, 2, 2)
    p.write_text("a s1 extra\n")
    with pytest.raises(DataError, match=r"utt2spk:1: expected 2 fields, got 3"):
        read_table(p, 2, 2)
    with pytest.raises(DataError, match="file not found"):
        read_table(tmp_path / "nope", 2, 2)


def test_valid_dir_passes_and_sorted_output(tmp_path):
    d = make_dir(tmp_path)
    assert validate(d) == []
    lines = (d / "utt2spk").read_text().splitlines()
    assert lines == sorted(lines)
    assert (d / "spk2utt").read_text().splitlines()[0] == "spk0 spk0-utt0 spk0-utt1"


@pytest.mark.parametrize("breakage, message", [
    (lambda d: (d / "utt2emo").unlink(), "utt2emo is missing"),
    (lambda d: (d / "utt2emo").write_text("spk0-utt0 happy\n"), "utterances of utt2spk missing"),
    (lambda d: (d / "spk2utt").write_text("spk0 spk0-utt0\n"), "does not match utt2spk"),
    (lambda d: (d / "utt2spk").write_text((d / "utt2spk").read_text().replace(
        "spk1-utt0 spk1", "spk1-utt0 zz")), "sorted on speaker id"),
    (lambda d: (d / "utt2emo").write_text("".join(reversed(
        (d / "utt2emo").read_text().splitlines(True)))), "not sorted"),
    (lambda d: (d / "utt2gender").write_text("".join(
        f"{u} x\n" for u in read_table(d / "utt2spk"))), "bad value"),
    (lambda d: Path(read_table(d / "wav.scp")["spk2-utt1"]).unlink(), "audio file not found"),
])
def test_validate_finds_problems(tmp_path, breakage, message):
    d = make_dir(tmp_path)
    breakage(d)
    problems = validate(d)
    assert any(message in p for p in problems), problems


def test_fix_reports_every_drop(tmp_path):
    d = make_dir(tmp_path)
    tab = read_table(d / "utt2emo")
    del tab["spk1-utt1"]
    write_table(d / "utt2emo", tab)
    drops = fix(d)
    assert drops == ["dropped spk1-utt1: missing from utt2emo"]
    assert validate(d) == []
    assert "spk1-utt1" not in DataDir(d).utts
    assert (d / ".backup" / "utt2spk").is_file()


def test_split_subset_combine(tmp_path):
    d = make_dir(tmp_path, n_spk=3, n_utt=3)
    parts = split(d, 4)
    assert [len(DataDir(p).utts) for p in parts] == [2, 2, 3, 2]
    assert sorted(u for p in parts for u in DataDir(p).utts) == DataDir(d).utts
    spk_parts = split(d, 3, per_spk=True)
    assert [set(DataDir(p).utt2spk.values()) for p in spk_parts] == [{"spk0"}, {"spk1"},
                                                                      {"spk2"}]
    a = subset(d, tmp_path / "a", spks=["spk0"])
    b = subset(d, tmp_path / "b", spks=["spk1", "spk2"])
    assert validate(a) == [] and validate(b) == []
    c = combine(tmp_path / "c", [a, b])
    assert DataDir(c).utts == DataDir(d).utts and validate(c) == []
    with pytest.raises(DataError, match="duplicate key"):
        combine(tmp_path / "dup", [a, a])
    with pytest.raises(DataError, match="unknown speakers"):
        subset(d, tmp_path / "x", spks=["nobody"])


def test_segments_pipes_and_ark_entries(tmp_path):
    sr = 16000
    t = np.arange(sr) / sr
    sig = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    wav = tmp_path / "rec.wav"
    sf.write(wav, sig, sr, subtype="FLOAT")
    # segment of a recording
    seg = load_audio(str(wav), AudioConfig(sr), "u", start=0.25, end=0.5)
    np.testing.assert_allclose(seg.numpy(), sig[4000:8000], atol=1e-7)
    # pipe
    piped = load_audio(f"cat {wav} |", AudioConfig(sr), "u")
    np.testing.assert_allclose(piped.numpy(), sig, atol=1e-7)
    # wav stored in a Kaldi ark (file.ark:offset)
    int16 = (sig * 32767).astype(np.int16)
    kaldiio.save_ark(str(tmp_path / "w.ark"), {"u": (sr, int16)},
                     scp=str(tmp_path / "w.scp"))
    entry = (tmp_path / "w.scp").read_text().split()[1]
    from_ark = load_audio(entry, AudioConfig(sr), "u")
    np.testing.assert_allclose(from_ark.numpy(), int16 / 32768.0, atol=1e-6)
    # a failing pipe names the utterance and the command
    with pytest.raises(DataError, match=r"utterance u: command failed .*false"):
        load_audio("false |", AudioConfig(sr), "u")


@pytest.mark.parametrize("fmt", ["WAV", "FLAC"])
def test_16_bit_files_give_libsndfiles_float_samples(tmp_path, fmt):
    """16-bit PCM is read as int16 and scaled here (the fast path): the samples must be
    exactly libsndfile's float read, for a file, a segment, a pipe and a block."""
    from sertk.data.audio import iter_blocks, read_entry

    rng = np.random.default_rng(0)
    x = rng.integers(-32768, 32768, size=(20000, 2), dtype=np.int16)
    x[0] = [-32768, 32767]
    path = tmp_path / f"a.{fmt.lower()}"
    sf.write(path, x, 16000, format=fmt, subtype="PCM_16")
    ref, _ = sf.read(path, dtype="float32", always_2d=True)
    got, sr = read_entry(str(path))
    assert sr == 16000 and got.dtype == np.float32 and np.array_equal(got, ref)
    seg, _ = read_entry(str(path), start=0.25, end=0.5)
    assert np.array_equal(seg, ref[4000:8000])
    piped, _ = read_entry(f"cat {path} |")
    assert np.array_equal(piped, ref)
    assert np.array_equal(np.concatenate(list(iter_blocks(str(path), block_frames=7000))), ref)


def test_resample_downmix_and_channel(tmp_path):
    sr = 48000
    t = np.arange(sr) / sr
    left = 0.5 * np.sin(2 * np.pi * 300 * t)
    stereo = np.stack([left, -left * 0.5], axis=1).astype(np.float32)
    path = tmp_path / "st.flac"
    sf.write(path, stereo, sr)
    mono = load_audio(str(path), AudioConfig(16000))
    assert mono.shape == (16000,)
    sine = torch.from_numpy(np.sin(2 * np.pi * 300 * np.arange(16000) / 16000))
    # mean of 0.5 sin and -0.25 sin
    assert torch.allclose(mono[200:-200].double(), 0.125 * sine[200:-200], atol=2e-3)
    ch1 = load_audio(str(path), AudioConfig(16000, channel=1))
    assert torch.allclose(ch1[200:-200].double(), -0.25 * sine[200:-200], atol=2e-3)
    with pytest.raises(DataError, match="channel 2 requested but the audio has 2 channels"):
        load_audio(str(path), AudioConfig(16000, channel=2), "u")


def test_folds_keep_test_speakers_out(tmp_path):
    d = make_dir(tmp_path, n_spk=8, n_utt=2)
    write_table(d / "utt2gender", {u: "m" if int(s[3]) % 2 else "f"
                                   for u, s in DataDir(d).utt2spk.items()})
    spec = {"f1": ["spk0", "spk1"], "f2": ["spk2", "spk3"]}
    make_folds(d, tmp_path / "folds", spec, dev_speakers=2, seed=0)
    for fold, test_spks in spec.items():
        sets = {p: set(DataDir(tmp_path / "folds" / fold / p).utt2spk.values())
                for p in ("train", "dev", "test")}
        assert sets["test"] == set(test_spks)
        assert not (sets["train"] | sets["dev"]) & set(test_spks)
        assert not sets["train"] & sets["dev"] and len(sets["dev"]) == 2
        genders = {"m" if int(s[3]) % 2 else "f" for s in sets["dev"]}
        assert genders == {"m", "f"}
    shutil.rmtree(tmp_path / "folds")
    make_folds(d, tmp_path / "folds", spec, dev_speakers=0, dev_fraction=0.25, seed=0)
    dev = DataDir(tmp_path / "folds" / "f1" / "dev")
    assert len(dev.utts) == 3 and not set(dev.utt2spk.values()) & {"spk0", "spk1"}


def test_write_table_replaces_the_file_atomically(tmp_path: Path) -> None:
    # a reader that opened the old table (another recipe run sharing the dump) keeps a complete
    # copy: the new table is a new file renamed over the old one, not the old file truncated
    path = tmp_path / "d" / "feats.scp"
    write_table(path, {"b": "x.ark:2", "a": "x.ark:1"})
    old = path.open()
    write_table(path, {"c": "y.ark:1"})
    assert old.read() == "a x.ark:1\nb x.ark:2\n"
    assert path.read_text() == "c y.ark:1\n"
    assert sorted(p.name for p in path.parent.iterdir()) == ["feats.scp"]  # no temp left
    old.close()
