"""Bad input, end to end: the cases of docs/bad_input.md.

Every case runs the real ``sertk`` CLI on files written here -- in this process through
``sertk.cli.main.main`` (fast), or as a subprocess (``sub``) for a few of them, to show what a
user sees -- and checks: exit status 1, no traceback, exactly one ``sertk: error:`` line that
names the file or utterance, nothing else on stderr but log lines (and the ``ERROR:`` lines of
``sertk data validate``). Where going on is right, the input is accepted, or skipped, counted and
reported. Cases already in tests/test_errors.py are not repeated (the table points at them).

The second part checks that loading never unpickles: every loading path is fed a pickle whose
``__reduce__`` would create a marker file; the marker must never appear, and the error must be
clear. A static test checks the source (``torch.load(weights_only=True)``, no pickle loads,
every Kaldi ark read through :mod:`sertk.data.ark`).

``SERTK_BAD_INPUT_RECORD=FILE`` appends ``case<TAB>error line`` for every case (for the doc).
"""

from __future__ import annotations

import ast
import io
import json
import logging
import os
import pickle
import re
import shlex
import shutil
import struct
import traceback
import zipfile
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path

import kaldiio
import numpy as np
import pytest
import soundfile as sf
import yaml

from sertk.data.kaldi_table import read_table, write_table
from sertk.errors import SertkError
from tests.conftest import REPO, TINY_CONFIG, run_sertk
from tests.test_infer import packed  # noqa: F401  (the tiny model, packed once per module)

FBANK = REPO / "conf" / "feats" / "fbank40.yaml"
LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ \(\w+:\d+\) [A-Z]+: ")
SR = 16000


# ----------------------------------------------------------------------------- helpers
@dataclass
class Res:
    code: int
    stdout: str
    stderr: str


def sertk(*args: object, sub: bool = False) -> Res:
    """Run ``sertk ARGS``: in this process (the CLI's own entry point, stdout/stderr captured)
    or, with ``sub``, as a subprocess."""
    if sub:
        proc = run_sertk(*args, check=False)
        return Res(proc.returncode, proc.stdout, proc.stderr)
    from sertk.cli.main import main

    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    for h in handlers:  # as in a fresh process: the command sets up its own logging
        root.removeHandler(h)
    out, err = io.StringIO(), io.StringIO()
    try:
        with redirect_stdout(out), redirect_stderr(err):
            try:
                main([str(a) for a in args])
                code = 0
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 1
            except Exception:  # what a user would see as a traceback
                traceback.print_exc()
                code = 1
    finally:
        for h in list(root.handlers):
            root.removeHandler(h)
        for h in handlers:
            root.addHandler(h)
        root.setLevel(level)
    return Res(code, out.getvalue(), err.getvalue())


def _record(case: str, line: str) -> None:
    if os.environ.get("SERTK_BAD_INPUT_RECORD"):
        with open(os.environ["SERTK_BAD_INPUT_RECORD"], "a") as fh:
            fh.write(f"{case}\t{line}\n")


def one_error(res: Res, case: str, *must: object, allow: tuple[str, ...] = ()) -> str:
    """Exit 1, no traceback, one ``sertk: error:`` line containing every ``must``; every other
    stderr line a log line, a ``data validate`` ``ERROR:`` line, or containing an ``allow``."""
    assert "Traceback" not in res.stderr, res.stderr
    assert res.code == 1, (res.code, res.stderr)
    lines = [ln for ln in res.stderr.replace("\r", "\n").splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("sertk: error:")]
    assert len(errors) == 1, res.stderr
    other = [ln for ln in lines if not (LOG_LINE.match(ln) or ln.startswith(("ERROR: ",
                                                                              "sertk: error:"))
                                        or any(a in ln for a in allow))]
    assert not other, res.stderr
    for text in must:
        assert str(text) in errors[0], errors[0]
    _record(case, errors[0])
    return errors[0]


def tone(n: int = SR, sr: int = SR, seed: int = 0) -> np.ndarray:
    """A 220 Hz tone in light noise (every mel band has energy)."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / sr
    return (0.1 * np.sin(2 * np.pi * 220 * t) + 0.01 * rng.standard_normal(n)).astype(np.float32)


def data_dir(path: Path, wav: dict[str, str], label: str = "angry") -> Path:
    """A one-speaker data directory over ``{utt: wav.scp entry}``."""
    path.mkdir(parents=True)
    write_table(path / "wav.scp", wav)
    write_table(path / "utt2spk", {u: "s1" for u in wav})
    write_table(path / "spk2utt", {"s1": " ".join(sorted(wav))})
    write_table(path / "utt2emo", {u: label for u in wav})
    return path


def dump(data: Path, out: Path, conf: Path = FBANK, *extra: object, sub: bool = False) -> Res:
    return sertk("feats", "dump", "--conf", conf, "--no-progress", *extra, data, out, sub=sub)


def feats_of(dump_dir: Path) -> dict[str, np.ndarray]:
    return {k: np.asarray(v) for k, v in kaldiio.load_scp(str(dump_dir / "feats.scp")).items()}


# ----------------------------------------------------------------------------- audio
def test_sample_formats_channels_rates_clipping_and_paths_are_accepted(tmp_path):
    """8-bit / 16-bit / 24-bit PCM, 32-bit float, stereo, 8 kHz, clipped and over-range
    audio, a path with spaces, a CRLF wav.scp: all read (converted as Kaldi would), same
    frames, finite features; lossless variants give the float file's features."""
    x = tone()
    w = tmp_path / "wav"
    (w / "dir with space").mkdir(parents=True)
    files = {
        "a_float": (x, SR, "FLOAT"), "b_pcm16": (x, SR, "PCM_16"), "c_pcm24": (x, SR, "PCM_24"),
        "d_u8": (x, SR, "PCM_U8"), "e_stereo": (np.stack([x, x], 1), SR, "FLOAT"),
        "f_8k": (tone(SR // 2, SR // 2), SR // 2, "PCM_16"),
        "g_clipped": (np.clip(20 * x, -1, 1), SR, "PCM_16"),
        "h_over_range": (30 * x, SR, "FLOAT"), "i_space": (x, SR, "PCM_16"),
    }
    entries = {}
    for key, (sig, sr, subtype) in files.items():
        path = w / ("dir with space/a b.wav" if key == "i_space" else f"{key}.wav")
        sf.write(path, sig, sr, subtype=subtype)
        entries[key] = str(path)
    d = data_dir(tmp_path / "data", entries)
    (d / "wav.scp").write_bytes((d / "wav.scp").read_bytes().replace(b"\n", b"\r\n"))
    res = dump(d, tmp_path / "dump")
    assert res.code == 0, res.stderr
    assert "9 utterances" in res.stdout
    f = feats_of(tmp_path / "dump")
    assert sorted(f) == sorted(files)
    for key, mat in f.items():
        assert mat.shape == (98, 40) and np.isfinite(mat).all(), key
    np.testing.assert_allclose(f["e_stereo"], f["a_float"], atol=1e-4)  # mean of the channels
    np.testing.assert_allclose(f["c_pcm24"], f["a_float"], atol=1e-3)
    np.testing.assert_allclose(f["b_pcm16"], f["a_float"], atol=0.05)
    np.testing.assert_allclose(f["i_space"], f["b_pcm16"])
    assert np.abs(f["d_u8"] - f["a_float"]).mean() < 1.0  # 8-bit: quantisation noise only


def _wav(path: Path, sig: np.ndarray, subtype: str = "PCM_16", sr: int = SR) -> str:
    sf.write(path, sig, sr, subtype=subtype)
    return str(path)


def _nan(tmp: Path) -> str:
    x = tone()
    x[100] = np.nan
    return _wav(tmp / "nan.wav", x, "FLOAT")


def _inf(tmp: Path) -> str:
    x = tone()
    x[100:103] = np.inf
    return _wav(tmp / "inf.wav", x, "FLOAT")


def _codec(tmp: Path) -> str:
    """A WAV header announcing MPEG layer 3 (format tag 0x55), which libsndfile rejects."""
    data = bytes(range(256)) * 16
    hdr = (b"RIFF" + struct.pack("<I", 36 + len(data)) + b"WAVEfmt "
           + struct.pack("<IHHIIHH", 16, 0x55, 1, SR, 2000, 1, 0)
           + b"data" + struct.pack("<I", len(data)))
    (tmp / "mp3.wav").write_bytes(hdr + data)
    return str(tmp / "mp3.wav")


def _ark(tmp: Path, offset: int) -> str:
    kaldiio.save_ark(str(tmp / "w.ark"), {"u1": (SR, (tone() * 32767).astype(np.int16))})
    return f"{tmp / 'w.ark'}:{offset}"


def _conf(tmp: Path, **params) -> Path:
    path = tmp / "conf.yaml"
    path.write_text(yaml.safe_dump({**yaml.safe_load(FBANK.read_text()), **params}))
    return path


# (case, entry writer, feature-config params, expected in the error, subprocess)
AUDIO_CASES = [
    ("header_only_wav", lambda t: _wav(t / "h.wav", np.zeros(0, np.float32)), None,
     ["audio file has no samples", "h.wav"], False),
    ("one_sample_wav", lambda t: _wav(t / "one.wav", tone()[:1]), None,
     ["too short for one frame (1 samples at 16000 Hz)", "one.wav"], True),
    ("nan_in_float_wav", _nan, None,
     ["audio contains NaN or Inf samples (1 of 16000)", "nan.wav"], False),
    ("inf_in_float_wav", _inf, None,
     ["audio contains NaN or Inf samples (3 of 16000)", "inf.wav"], False),
    ("unsupported_codec", _codec, None, ["cannot decode audio file", "mp3.wav"], False),
    ("directory_as_audio", lambda t: str(t), None, ["a directory, not an audio file"], False),
    ("channel_beyond_mono", lambda t: _wav(t / "mono.wav", tone()), {"channel": 1},
     ["channel 1 requested but the audio has 1 channels", "mono.wav"], False),
    ("pipe_fails", lambda t: "sertk-no-such-tool in.wav |", None,
     ["command failed (exit 127): sertk-no-such-tool in.wav", "not found"], False),
    ("pipe_gives_nothing", lambda t: "true |", None, ["empty audio from true |"], False),
    ("pipe_gives_no_audio", lambda t: "echo hello |", None,
     ["cannot decode audio from echo hello |: Format not recognised"], False),
    ("ark_offset_past_end", lambda t: _ark(t, 999999), None,
     ["offset 999999 is past the end of", "w.ark"], False),
    ("ark_file_missing", lambda t: f"{t / 'gone.ark'}:13", None,
     ["ark file not found", "gone.ark"], False),
]


@pytest.mark.parametrize("case, writer, params, must, sub", AUDIO_CASES,
                         ids=[c[0] for c in AUDIO_CASES])
def test_bad_audio_is_one_line(tmp_path, case, writer, params, must, sub):
    entry = writer(tmp_path)
    d = data_dir(tmp_path / "data", {"u1": entry})
    conf = _conf(tmp_path, **params) if params else FBANK
    one_error(dump(d, tmp_path / "dump", conf, sub=sub), case, "utterance u1", *must)


def test_dump_skip_bad_counts_lists_and_goes_on(tmp_path):
    d = data_dir(tmp_path / "data", {"a_ok": _wav(tmp_path / "a.wav", tone()),
                                     "b_nan": _nan(tmp_path),
                                     "c_ok": _wav(tmp_path / "c.wav", tone(seed=1))})
    res = dump(d, tmp_path / "dump", FBANK, "--skip-bad")
    assert res.code == 0, res.stderr
    assert "2 utterances" in res.stdout and "1 skipped" in res.stdout
    assert "skipped 1 of 3 utterances" in res.stderr
    assert "utterance b_nan: audio contains NaN" in (tmp_path / "dump" / "skipped").read_text()
    assert sorted(read_table(tmp_path / "dump" / "feats.scp")) == ["a_ok", "c_ok"]
    assert sorted(read_table(tmp_path / "dump" / "utt2spk")) == ["a_ok", "c_ok"]


FEATURE_CONFIG_CASES = [
    ("feature_config_unknown_key", {"num_mel_binz": 40},
     ["bad options for feature front end 'fbank'", "num_mel_binz"]),
    ("feature_config_wrong_type", {"num_mel_bins": "forty"},
     ["feature config fbank: num_mel_bins must be a number", "'forty'"]),
    ("feature_config_bad_sample_rate", {"sample_rate": "fast"},
     ["sample_rate must be a positive integer", "'fast'"]),
    ("feature_config_zero_frame_length", {"frame_length": 0},
     ["bad options for feature front end fbank", "frame_length 0 ms"]),
    ("feature_config_without_name", {"name": None}, ["feature config needs a 'name'"]),
]


@pytest.mark.parametrize("case, params, must", FEATURE_CONFIG_CASES,
                         ids=[c[0] for c in FEATURE_CONFIG_CASES])
def test_bad_feature_config_is_one_line(tmp_path, case, params, must):
    d = data_dir(tmp_path / "data", {"u1": _wav(tmp_path / "a.wav", tone())})
    conf = _conf(tmp_path, **params)
    if params.get("name", "") is None:
        conf.write_text(yaml.safe_dump({k: v for k, v in yaml.safe_load(conf.read_text()).items()
                                        if k != "name"}))
    one_error(dump(d, tmp_path / "dump", conf), case, *must)


# ----------------------------------------------------------------------------- data dirs
def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines(True)


def _swap_first(d: Path) -> None:
    lines = _lines(d / "wav.scp")
    (d / "wav.scp").write_text("".join([lines[1], lines[0], *lines[2:]]))


def _dup_wav(d: Path) -> None:
    lines = _lines(d / "wav.scp")
    (d / "wav.scp").write_text("".join([*lines[:3], lines[2], *lines[3:]]))


def _segments(d: Path, first: str) -> None:
    """A segments file (recording = utterance), whose first line's fields after the utterance
    are ``first``."""
    utts = sorted(read_table(d / "wav.scp"))
    (d / "segments").write_text("".join(
        f"{u} {first if i == 0 else f'{u} 0.1 0.8'}\n" for i, u in enumerate(utts)))


def _spk2utt_mismatch(d: Path) -> None:
    lines = _lines(d / "spk2utt")
    first = lines[0].split()
    (d / "spk2utt").write_text("".join([" ".join([first[0], *first[2:]]) + "\n", *lines[1:]]))


def _empty_dir(d: Path) -> None:
    for f in d.iterdir():
        f.unlink()


def _empty_utt2spk(d: Path) -> None:
    for f in d.iterdir():
        if f.name in ("utt2spk", "spk2utt", "wav.scp", "utt2emo"):
            f.write_text("")
        else:
            f.unlink()


def _drop_first(name: str):
    def go(d: Path) -> None:
        (d / name).write_text("".join(_lines(d / name)[1:]))
    return go


def _extra_field(d: Path) -> None:
    lines = _lines(d / "utt2spk")
    (d / "utt2spk").write_text("".join([lines[0].rstrip() + " extra\n", *lines[1:]]))


def _latin1(d: Path) -> None:
    raw = (d / "text").read_bytes()
    (d / "text").write_bytes(raw.replace(b"\n", " caf\xe9\n".encode("latin-1"), 1))


def _empty_line(d: Path) -> None:
    lines = _lines(d / "utt2emo")
    (d / "utt2emo").write_text("".join([*lines[:2], "\n", *lines[2:]]))


# (case, mutation, expected in validate's ERROR line, expected in the dump's error, options
# of validate, run validate as a subprocess)
DATA_DIR_CASES = [
    ("unsorted_keys", _swap_first, "wav.scp: keys are not sorted", None, ["--no-audio"], False),
    ("duplicate_key_in_wav_scp", _dup_wav, "wav.scp:4: duplicate key 'spk01_angry_02'", None,
     ["--no-audio"], False),
    ("segments_recording_missing", lambda d: _segments(d, "rec_gone 0.1 0.8"),
     "wav.scp: 1 recordings missing, e.g. rec_gone", None, ["--no-audio"], False),
    ("segment_past_recording_end", lambda d: _segments(d, "spk01_angry_00 30.0 31.0"),
     "segment end 31.00s beyond", "utterance spk01_angry_00: segment 30.00-31.0s outside",
     [], False),
    ("segment_end_before_start", lambda d: _segments(d, "spk01_angry_00 0.8 0.2"),
     "segments: bad value for spk01_angry_00", None, ["--no-audio"], False),
    ("spk2utt_inconsistent", _spk2utt_mismatch, "spk2utt: does not match utt2spk", None,
     ["--no-audio"], False),
    ("spk2utt_missing", lambda d: (d / "spk2utt").unlink(), "spk2utt is missing", None,
     ["--no-audio"], False),
    ("empty_data_dir", _empty_dir, "utt2spk is missing", None, ["--no-audio"], False),
    ("empty_utt2spk", _empty_utt2spk, "utt2spk: no utterances (empty file)", None,
     ["--no-audio"], False),
    ("utterance_missing_from_wav_scp", _drop_first("wav.scp"),
     "wav.scp: 1 utterances missing, e.g. spk01_angry_00", None, ["--no-audio"], False),
    ("wrong_field_count", _extra_field, "utt2spk:1: expected 2 fields, got 3", None,
     ["--no-audio"], False),
    ("not_utf8_table", _latin1, "text:1: not UTF-8 text (byte 0xe9)", None, ["--no-audio"],
     True),
    ("empty_line_in_table", _empty_line, "utt2emo:3: empty line", None, ["--no-audio"], False),
]


@pytest.mark.parametrize("case, mutate, must_validate, must_dump, opts, sub", DATA_DIR_CASES,
                         ids=[c[0] for c in DATA_DIR_CASES])
def test_bad_data_dir_is_one_line(tmp_path, corpus, case, mutate, must_validate, must_dump,
                                  opts, sub):
    d = tmp_path / "data"
    shutil.copytree(corpus, d)
    mutate(d)
    res = sertk("data", "validate", *opts, d, sub=sub)
    one_error(res, f"{case} (validate)", str(d), "1 problem(s) found (listed above); first:",
              must_validate)
    assert any(ln.startswith("ERROR: ") and must_validate in ln
               for ln in res.stderr.splitlines()), res.stderr
    one_error(dump(d, tmp_path / "dump"), case, str(d) if must_dump is None else "",
              must_dump or must_validate)


def test_missing_data_dir_is_one_line(tmp_path):
    one_error(sertk("data", "validate", tmp_path / "nowhere"), "data_dir_missing (validate)",
              "data directory not found", "nowhere")
    one_error(dump(tmp_path / "nowhere", tmp_path / "dump"), "data_dir_missing",
              "data directory not found", "nowhere")


def test_dump_dir_with_whitespace_is_refused_before_any_work(tmp_path):
    d = data_dir(tmp_path / "data", {"u1": _wav(tmp_path / "a.wav", tone())})
    one_error(dump(d, tmp_path / "my dump"), "dump_dir_with_space",
              "my dump: output directory path contains whitespace")
    assert not (tmp_path / "my dump").exists()


# ----------------------------------------------------------------------------- training
def _config(tmp: Path, **sections) -> Path:
    cfg = {**TINY_CONFIG, "train": {**TINY_CONFIG["train"], "epochs": 1}}
    for key, value in sections.items():
        if value is None:
            cfg.pop(key, None)
        else:
            cfg[key] = value
    path = tmp / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _labels(tmp: Path, *labels: str) -> Path:
    (tmp / "labels.txt").write_text("".join(f"{x}\n" for x in labels))
    return tmp / "labels.txt"


def _set_entry(d: Path, entry_of) -> str:
    scp = read_table(d / "feats.scp")
    utt = sorted(scp)[0]
    scp[utt] = entry_of(scp[utt])
    write_table(d / "feats.scp", scp)
    return utt


def _other_dim(src: Path, dst: Path, dim: int) -> Path:
    """A copy of a dump whose features are cut (or tiled) to ``dim``."""
    d = _copy(src, dst)
    mats = {k: np.resize(np.asarray(v), (v.shape[0], dim)).astype(np.float32)
            for k, v in kaldiio.load_scp(str(d / "feats.scp")).items()}
    kaldiio.save_ark(str(d / "f.ark"), mats, scp=str(d / "feats.scp"))
    (d / "feat_dim").write_text(f"{dim}\n")
    return d


def _mixed_dim(src: Path, dst: Path) -> tuple[Path, str]:
    """A copy of a dump in which one utterance has 30-dimensional features."""
    d = _copy(src, dst)
    scp = read_table(d / "feats.scp")
    utt = sorted(scp)[3]
    kaldiio.save_ark(str(d / "m.ark"), {utt: np.asarray(kaldiio.load_mat(scp[utt]))[:, :30]},
                     scp=str(d / "m.scp"))
    scp[utt] = (d / "m.scp").read_text().split()[1]
    write_table(d / "feats.scp", scp)
    return d, utt


def _train_case(name, dumped, tmp):
    """``(args of sertk train, expected in the error, subprocess)`` of a training case."""
    tr, dev = dumped / "fold1" / "train", dumped / "fold1" / "dev"
    cfg = _config(tmp)
    base = ["--train", tr, "--valid", dev, "--config", cfg]

    def with_train(d, *more):
        return ["--train", d, "--valid", dev, "--config", cfg, *more]

    def with_config(**sections):
        return ["--train", tr, "--valid", dev, "--config", _config(tmp, **sections)]

    def with_yaml(text):
        (tmp / "raw.yaml").write_text(text)
        return ["--train", tr, "--valid", dev, "--config", tmp / "raw.yaml"]

    if name == "labels_absent_from_training":
        return [*base, "--labels", _labels(tmp, "angry", "happy", "neutral", "sad",
                                           "surprise")], \
            ["label(s) surprise of", "have no training utterance in", "utt2emo"], False
    if name == "labels_miss_a_training_label":
        return [*base, "--labels", _labels(tmp, "angry", "happy", "neutral")], \
            ["unknown label 'sad' in", "train/utt2emo"], False
    if name == "labels_duplicated":
        return [*base, "--labels", _labels(tmp, "angry", "happy", "angry", "sad")], \
            ["labels.txt: duplicate labels"], False
    if name == "feats_scp_missing":
        d = _copy(tr, tmp / "tr")
        (d / "feats.scp").unlink()
        return with_train(d), ["tr: feats.scp is missing (run `sertk feats dump`)"], False
    if name == "feats_offset_past_end":
        d = _copy(tr, tmp / "tr")
        utt = _set_entry(d, lambda e: e.rsplit(":", 1)[0] + ":99999999")
        return with_train(d), [f"utterance {utt}: offset 99999999 is past the end of",
                               ".ark"], False
    if name == "feats_ark_missing":
        d = _copy(tr, tmp / "tr")
        utt = _set_entry(d, lambda e: f"{tmp / 'gone.ark'}:13")
        return with_train(d), [f"utterance {utt}: ark file not found", "gone.ark"], False
    if name == "feature_dims_train_vs_valid":
        v = _other_dim(dev, tmp / "dev80", 80)
        return ["--train", tr, "--valid", v, "--config", cfg], \
            ["features of different dimensions", "--train", ": 40", "--valid", ": 80"], False
    if name == "feature_dims_mixed_in_train":
        d, utt = _mixed_dim(tr, tmp / "tr")
        return with_train(d), [f"utterance {utt}: feature dim 30 differs from 40",
                               "feats.scp"], False
    if name == "feature_dims_mixed_with_given_cmvn":
        d, utt = _mixed_dim(tr, tmp / "tr")
        from sertk.features.cmvn import compute_global_stats

        compute_global_stats(tr / "feats.scp", tmp / "cmvn.ark")
        return with_train(d, "--cmvn", tmp / "cmvn.ark"), \
            [f"utterance {utt}: features of dimension 30 in", "feat_dim says 40"], False
    if name == "cmvn_of_other_dim":
        from sertk.features.cmvn import compute_global_stats

        compute_global_stats(_other_dim(dev, tmp / "dev80", 80) / "feats.scp",
                             tmp / "cmvn80.ark")
        return [*base, "--cmvn", tmp / "cmvn80.ark"], \
            ["features of different dimensions", "--cmvn", "cmvn80.ark: 80"], False
    if name == "cmvn_missing":
        return [*base, "--cmvn", tmp / "gone.ark"], ["--cmvn", "gone.ark",
                                                     "CMVN statistics not found"], False
    if name == "empty_train_dump":
        d = _copy(tr, tmp / "tr")
        for f in ("feats.scp", "utt2emo", "utt2spk", "spk2utt", "utt2num_frames"):
            (d / f).write_text("")
        return with_train(d), ["tr/feats.scp: no utterances (empty file)"], False
    if name == "utt2emo_missing":
        d = _copy(tr, tmp / "tr")
        (d / "utt2emo").unlink()
        return with_train(d), ["tr/utt2emo: file not found"], False
    if name == "utterance_without_label":
        d = _copy(tr, tmp / "tr")
        emo = read_table(d / "utt2emo")
        utt = sorted(emo)[0]
        del emo[utt]
        write_table(d / "utt2emo", emo)
        return with_train(d), [f"utterance {utt}: no label in", "tr/utt2emo"], False
    if name == "train_dir_missing":
        return with_train(tmp / "nowhere"), ["data directory not found", "nowhere"], False
    if name == "config_missing":
        return ["--train", tr, "--config", tmp / "gone.yaml"], \
            ["config file not found", "gone.yaml"], False
    if name == "config_yaml_syntax":
        return with_yaml("model: {name: light_sernet\ntrain: {epochs: 1}\n"), \
            ["cannot parse YAML config", "raw.yaml", "line 2"], False
    if name == "config_unknown_top_level_key":
        return with_config(trian={"epochs": 1}), \
            ["c.yaml: unknown top-level key(s) trian (known: model,"], False
    if name == "config_unknown_model_key":
        return with_config(model={"name": "light_sernet", "confs": {}}), \
            ["c.yaml: unknown model key(s) confs"], False
    if name == "config_unknown_train_option":
        return with_config(train={"epochz": 1}), ["unknown train options: epochz"], False
    if name == "config_unknown_scheduler_option":
        return with_config(scheduler={"name": "exp_step", "stpe": 10}), \
            ["c.yaml: unknown scheduler option(s) stpe (known for exp_step: start_epoch"], False
    if name == "config_wrong_type":
        return with_config(train={"epochs": "five"}), \
            ["c.yaml: train.epochs must be an integer, got 'five'"], True
    if name == "config_wrong_type_optim":
        return with_config(optim={"name": "adam", "lr": "fast"}), \
            ["c.yaml: optim.lr must be a number, got 'fast'"], False
    if name == "config_section_not_a_mapping":
        return with_config(train=[1, 2]), ["c.yaml: train must be a mapping"], False
    if name == "config_model_conf_wrong_type":
        return with_config(model={"name": "light_sernet", "conf": {"path_channels": "four"}}), \
            ["c.yaml: model.conf.path_channels must be a number", "'four'"], False
    if name == "config_model_conf_unknown_key":
        return with_config(model={"name": "light_sernet", "conf": {"pth_channels": 4}}), \
            ["bad options for model 'light_sernet'", "pth_channels"], False
    if name == "config_unknown_model":
        return with_config(model={"name": "nosuchnet"}), \
            ["unknown model 'nosuchnet'; known:"], False
    if name == "override_wrong_type":
        return [*base, "--override", "train.epochs=abc"], \
            ["train.epochs must be an integer, got 'abc'"], False
    if name == "override_malformed":
        return [*base, "--override", "trainepochs"], \
            ["override must look like key.sub=value, got 'trainepochs'"], False
    raise AssertionError(name)


TRAIN_CASES = [
    "labels_absent_from_training", "labels_miss_a_training_label", "labels_duplicated",
    "feats_scp_missing", "feats_offset_past_end", "feats_ark_missing",
    "feature_dims_train_vs_valid", "feature_dims_mixed_in_train",
    "feature_dims_mixed_with_given_cmvn", "cmvn_of_other_dim", "cmvn_missing",
    "empty_train_dump", "utt2emo_missing", "utterance_without_label", "train_dir_missing",
    "config_missing", "config_yaml_syntax", "config_unknown_top_level_key",
    "config_unknown_model_key", "config_unknown_train_option",
    "config_unknown_scheduler_option", "config_wrong_type", "config_wrong_type_optim",
    "config_section_not_a_mapping", "config_model_conf_wrong_type",
    "config_model_conf_unknown_key", "config_unknown_model", "override_wrong_type",
    "override_malformed",
]


@pytest.mark.parametrize("case", TRAIN_CASES)
def test_bad_training_input_is_one_line(tmp_path, dumped, case):
    args, must, sub = _train_case(case, dumped, tmp_path)
    res = sertk("train", *args, "--exp", tmp_path / "exp", "--no-progress", "--device", "cpu",
                sub=sub)
    one_error(res, case, *must)
    assert not (tmp_path / "exp" / "model.safetensors").exists()


def test_test_label_the_model_never_saw(tmp_path):
    """Scoring a test set with a label outside the model's: an error naming the utterance, or,
    with --subset, scored without it and the utterance counted."""
    ref = {"u1": "angry", "u2": "surprise", "u3": "sad"}
    write_table(tmp_path / "ref", ref)
    write_table(tmp_path / "hyp", {"u1": "angry", "u2": "happy", "u3": "sad"})
    labels = _labels(tmp_path, "angry", "happy", "neutral", "sad")
    args = ["score", "--ref", tmp_path / "ref", "--hyp", tmp_path / "hyp", "--labels", labels,
            "--out-dir", tmp_path / "out"]
    one_error(sertk(*args), "test_label_never_seen", "utterance u2: unknown label 'surprise'")
    res = sertk(*args, "--subset")
    assert res.code == 0, res.stderr
    assert "1 utterances of other labels not scored: surprise 1" in res.stdout


# ----------------------------------------------------------------------------- inference
def _rezip(src: Path, dst: Path, drop: tuple[str, ...] = (),
           replace: dict[str, bytes] | None = None) -> Path:
    with zipfile.ZipFile(src) as zi, zipfile.ZipFile(dst, "w") as zo:
        for name in zi.namelist():
            if name not in drop:
                zo.writestr(name, (replace or {}).get(name, zi.read(name)))
    return dst


NO_MANIFEST = ("manifest.json",)


def _model_case(name, pack, tmp):
    """``(--model value, expected in the error, extra stderr allowed)``."""
    if name == "model_missing":
        return tmp / "gone.zip", ["model not found", "gone.zip"], ()
    if name == "zip_truncated":
        (tmp / "cut.zip").write_bytes(pack.read_bytes()[:2000])
        return tmp / "cut.zip", ["cut.zip is not a packed sertk model (not a zip file)"], ()
    if name == "zip_not_a_zip":
        (tmp / "text.zip").write_text("not a zip\n")
        return tmp / "text.zip", ["text.zip is not a packed sertk model"], ()
    if name == "zip_member_altered":
        return _rezip(pack, tmp / "alt.zip", replace={"labels.txt": b"a\nb\nc\nd\n"}), \
            ["alt.zip", "labels.txt"], ()
    if name == "zip_member_missing":
        return _rezip(pack, tmp / "miss.zip", drop=("model.safetensors", *NO_MANIFEST)), \
            ["miss.zip: not a complete sertk model, missing model.safetensors"], ("manifest",)
    if name == "zip_corrupt_weights":
        return _rezip(pack, tmp / "w.zip", drop=NO_MANIFEST,
                      replace={"model.safetensors": b"garbage" * 10}), \
            ["w.zip", "model.safetensors"], ("manifest",)
    if name == "zip_config_not_yaml":
        return _rezip(pack, tmp / "y.zip", drop=NO_MANIFEST,
                      replace={"config.yaml": b"model: {name: light_sernet\n"}), \
            ["y.zip", "config.yaml"], ("manifest",)
    if name == "zip_feature_dims_mismatch":
        return _rezip(pack, tmp / "f.zip", drop=NO_MANIFEST,
                      replace={"feats.yaml": b"name: fbank\nnum_mel_bins: 80\n"}), \
            ["f.zip", "80", "40"], ("manifest",)
    raise AssertionError(name)


MODEL_CASES = [
    "model_missing", "zip_truncated", "zip_not_a_zip", "zip_member_altered",
    "zip_member_missing",
    "zip_corrupt_weights", "zip_config_not_yaml", "zip_feature_dims_mismatch",
]


@pytest.mark.parametrize("case", MODEL_CASES)
def test_bad_model_is_one_line(tmp_path, packed, corpus, case):  # noqa: F811
    model, must, allow = _model_case(case, packed, tmp_path)
    wav = sorted(read_table(corpus / "wav.scp").values())[0]
    (tmp_path / "list").write_text(f"{wav}\n")
    one_error(sertk("infer", "--model", model, "--wav-list", tmp_path / "list"), case, *must,
              allow=allow)


def test_predict_on_features_of_other_dims_is_one_line(tmp_path, trained, dumped):
    d = _other_dim(dumped / "fold1" / "test", tmp_path / "test80", 80)
    one_error(sertk("predict", "--model", trained, "--data", d, "--out-dir", tmp_path / "o"),
              "predict_feature_dims_mismatch", "80", "40")


def test_bad_infer_inputs_are_one_line(tmp_path, packed, corpus):  # noqa: F811
    wav = read_table(corpus / "wav.scp")
    keys = sorted(wav)
    scp = tmp_path / "wav.scp"
    scp.write_text("".join(f"{k} {wav[k]}\n" for k in [*keys[:3], keys[0]]))
    one_error(sertk("infer", "--model", packed, "--wav-scp", scp), "infer_wav_scp_duplicate_key",
              f"{scp}:4: duplicate key '{keys[0]}'")
    one_error(sertk("infer", "--model", packed, "--wav-list", tmp_path / "gone"),
              "infer_wav_list_missing", "wav list not found", "gone")
    (tmp_path / "empty").mkdir()
    one_error(sertk("infer", "--model", packed, "--dir", tmp_path / "empty"),
              "infer_dir_without_audio", "no audio files", "empty")
    (tmp_path / "nan.list").write_text(_nan(tmp_path) + "\n")
    one_error(sertk("infer", "--model", packed, "--wav-list", tmp_path / "nan.list"),
              "infer_nan_audio", "utterance nan: audio contains NaN", "nan.wav")


def test_one_sample_file_at_infer_end_to_end(tmp_path, packed):  # noqa: F811
    (tmp_path / "l").write_text(_wav(tmp_path / "one.wav", tone()[:1]) + "\n")
    one_error(sertk("infer", "--model", packed, "--wav-list", tmp_path / "l", sub=True),
              "infer_one_sample_wav", "utterance one: too short for one frame", "one.wav")


def test_infer_skip_bad_counts_and_goes_on(tmp_path, packed):  # noqa: F811
    good = _wav(tmp_path / "good.wav", tone())
    (tmp_path / "l").write_text(f"{good}\n{_nan(tmp_path)}\n")
    res = sertk("infer", "--model", packed, "--wav-list", tmp_path / "l", "--skip-bad")
    assert res.code == 0 and "Traceback" not in res.stderr, res.stderr
    assert [json.loads(ln)["key"] for ln in res.stdout.splitlines()] == ["good"]
    assert "skipped: utterance nan: audio contains NaN" in res.stderr
    assert "1 files recognised, 1 skipped" in res.stderr


# ----------------------------------------------------------------------------- no unpickling
class Payload:
    """Unpickling this runs ``touch MARKER``."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {shlex.quote(str(self.marker))}",))


@dataclass
class Evil:
    """Malicious files, each of which creates ``marker`` when unpickled."""

    tmp: Path
    marker: Path
    raw: bytes     # a plain pickle
    torch: Path    # a torch.save zip whose data.pkl holds the payload

    def pkl_ark(self, name: str, key: str | None = None) -> str:
        """An ark with one kaldiio 'PKL' record (optionally after ``key``); its entry."""
        head = f"{key} ".encode() if key else b""
        (self.tmp / name).write_bytes(head + b"PKL" + self.raw)
        return f"{self.tmp / name}:{len(head)}"


@pytest.fixture()
def evil(tmp_path) -> Evil:
    import torch

    marker = tmp_path / "PWNED"
    raw = pickle.dumps({"model": Payload(marker)})
    torch.save({"model": Payload(marker)}, tmp_path / "evil.pt")
    return Evil(tmp_path, marker, raw, tmp_path / "evil.pt")


def test_the_payloads_are_real(evil):
    """Control: the payload does create the marker when unpickled, and kaldiio itself (which
    sertk no longer calls to read) unpickles a 'PKL' record."""
    pickle.loads(evil.raw)
    assert evil.marker.exists()
    evil.marker.unlink()
    kaldiio.load_mat(evil.pkl_ark("control.ark"))
    assert evil.marker.exists()


def _file(entry: str) -> Path:
    return Path(entry.rsplit(":", 1)[0])


def _copy_exp(trained: Path, dst: Path) -> Path:
    shutil.copytree(trained, dst, ignore=shutil.ignore_patterns("checkpoints", "tensorboard"))
    (dst / "checkpoints").mkdir()
    return dst


def _ssl_dir(evil: Evil) -> Path:
    """A tiny HuggingFace wav2vec 2.0 checkpoint directory whose weights are the payload."""
    d = evil.tmp / "ssl"
    d.mkdir()
    (d / "config.json").write_text(json.dumps({
        "model_type": "wav2vec2", "hidden_size": 16, "num_hidden_layers": 1,
        "num_attention_heads": 2, "intermediate_size": 16, "conv_dim": [8] * 7,
        "num_conv_pos_embeddings": 4, "num_conv_pos_embedding_groups": 2}))
    shutil.copy(evil.torch, d / "pytorch_model.bin")
    return d


def _load(case: str, evil: Evil, dumped: Path, trained: Path, packed: Path):  # noqa: F811
    """Try to load the malicious file of ``case``: a CLI result, or the exception raised."""
    tr, dev = dumped / "fold1" / "train", dumped / "fold1" / "dev"
    tmp = evil.tmp
    cfg = _config(tmp)
    train = ["train", "--config", cfg, "--valid", dev, "--exp", tmp / "exp", "--no-progress",
             "--device", "cpu"]
    try:
        if case == "resume_last_pt":
            exp = _copy_exp(trained, tmp / "exp")
            shutil.copy(evil.torch, exp / "checkpoints" / "last.pt")
            return sertk(*train, "--train", tr, "--resume")
        if case == "cmvn_ark_given":
            return sertk(*train, "--train", tr, "--cmvn", _file(evil.pkl_ark("cmvn.ark")))
        if case == "cmvn_ark_in_exp":
            exp = _copy_exp(trained, tmp / "exp")
            (exp / "cmvn.ark").unlink()
            evil.pkl_ark("exp/cmvn.ark")
            return sertk(*train, "--train", tr)
        if case == "cmvn_ark_per_speaker":
            ark = evil.pkl_ark("cmvn_spk.ark", key="spk01")
            return sertk("feats", "apply-cmvn", tr, tmp / "out", "--stats", _file(ark),
                         "--per-spk")
        if case == "feats_scp_ark":
            d = _copy(tr, tmp / "tr")
            _set_entry(d, lambda e: evil.pkl_ark("feats.ark", key="x"))
            return sertk(*train, "--train", d)
        if case == "feats_scp_ark_for_cmvn_stats":
            d = _copy(tr, tmp / "tr")
            _set_entry(d, lambda e: evil.pkl_ark("feats.ark", key="x"))
            return sertk("feats", "cmvn", d)
        if case == "wav_scp_ark":
            d = data_dir(tmp / "data", {"u1": evil.pkl_ark("wav.ark", key="u1")})
            return dump(d, tmp / "dump")
        if case == "extra_input_scp":
            from sertk.data.datadir import DataDir
            from sertk.data.inputs import feats_input

            d = _copy(tr, tmp / "tr")
            keys = sorted(read_table(d / "utt2spk"))
            write_table(d / "feats_video.scp", {k: evil.pkl_ark("video.ark", key="x")
                                                for k in keys})
            feats_input(DataDir(d), "feats_video.scp")
            return None
        if case == "exp_model_safetensors":
            exp = _copy_exp(trained, tmp / "exp")
            (exp / "model.safetensors").write_bytes(evil.raw)
            (tmp / "l").write_text(_wav(tmp / "a.wav", tone()) + "\n")
            return sertk("infer", "--model", exp, "--wav-list", tmp / "l")
        if case in ("pack_model_safetensors", "pack_model_safetensors_no_manifest"):
            z = _rezip(packed, tmp / "m.zip",
                       drop=NO_MANIFEST if case.endswith("no_manifest") else (),
                       replace={"model.safetensors": evil.raw})
            (tmp / "l").write_text(_wav(tmp / "a.wav", tone()) + "\n")
            return sertk("infer", "--model", z, "--wav-list", tmp / "l")
        if case == "init_checkpoint_pt":
            cfg = _config(tmp, model={"name": "meta_ser", "conf": {
                "hidden": 8, "layers": 1, "fc_dim": 8, "init_checkpoint": str(evil.torch)}})
            return sertk("train", "--config", cfg, "--train", tr, "--valid", dev, "--exp",
                         tmp / "exp", "--no-progress", "--device", "cpu")
        if case == "init_checkpoint_safetensors":
            from sertk.models.layers.pretrained import read_state_dict

            (tmp / "init.safetensors").write_bytes(evil.raw)
            read_state_dict(tmp / "init.safetensors")
            return None
        if case == "weights_pt":
            import torch

            from sertk.train.checkpoint import load_weights

            load_weights(torch.nn.Linear(2, 2), evil.torch)
            return None
        if case == "ssl_pytorch_model_bin":
            from sertk.features.ssl import load_ssl_encoder

            load_ssl_encoder(_ssl_dir(evil))
            return None
        if case == "tokenizer_sp_model":
            from sertk.text.tokenizer import Tokenizer

            d = tmp / "tok"
            d.mkdir()
            (d / "tokenizer.yaml").write_text("kind: unigram\n")
            (d / "tokens.txt").write_text("<blank>\na\n")
            (d / "sp.model").write_bytes(evil.raw)
            Tokenizer(d)
            return None
        if case == "cross_modal_map_npy":
            from sertk.text.cross_modal import load_map

            (tmp / "map.npy").write_bytes(evil.raw)
            load_map(tmp / "map.npy")
            return None
    except Exception as exc:  # noqa: BLE001  (a library path: the exception is the result)
        return exc
    raise AssertionError(case)


PICKLE_CASES = [
    ("resume_last_pt", None), ("cmvn_ark_given", None), ("cmvn_ark_in_exp", None),
    ("cmvn_ark_per_speaker", None), ("feats_scp_ark", None),
    ("feats_scp_ark_for_cmvn_stats", None), ("wav_scp_ark", None), ("extra_input_scp", None),
    ("exp_model_safetensors", None), ("pack_model_safetensors", None),
    ("pack_model_safetensors_no_manifest", None), ("init_checkpoint_pt", None),
    ("init_checkpoint_safetensors", None), ("weights_pt", None),
    ("ssl_pytorch_model_bin", None), ("tokenizer_sp_model", None),
    ("cross_modal_map_npy", None),
]


@pytest.mark.parametrize("case", [c for c, _ in PICKLE_CASES])
def test_loading_never_unpickles(evil, dumped, trained, packed, case):  # noqa: F811
    """Every loading path refuses the payload (never xfail: this is the security property)."""
    out = _load(case, evil, dumped, trained, packed)
    assert not evil.marker.exists(), f"{case}: the payload ran"
    assert out is not None and (isinstance(out, BaseException) or out.code != 0), out


@pytest.mark.parametrize("case", [pytest.param(c, marks=m) if m else c
                                  for c, m in PICKLE_CASES])
def test_malicious_file_gives_a_clear_error(evil, dumped, trained, packed, case):  # noqa: F811
    """...and says so in one line: a CLI error line, or a one-line SertkError."""
    out = _load(case, evil, dumped, trained, packed)
    assert not evil.marker.exists()
    if isinstance(out, Res):
        one_error(out, f"pickle:{case}", allow=("manifest",))
    else:
        assert isinstance(out, SertkError), repr(out)
        assert len(str(out).splitlines()) == 1, str(out)
        _record(f"pickle:{case}", str(out))


def _calls(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and \
                isinstance(node.func.value, ast.Name):
            yield node, node.func.value.id, node.func.attr


def _kw(node: ast.Call, name: str):
    for kw in node.keywords:
        if kw.arg == name and isinstance(kw.value, ast.Constant):
            return kw.value.value
    return "missing"


def test_source_never_unpickles():
    """Static: every ``torch.load`` passes ``weights_only=True``; every ``np.load``
    ``allow_pickle=False``; no pickle/dill/joblib/pandas pickle loads or unsafe YAML loads; and
    Kaldi arks are read only through sertk.data.ark (kaldiio would unpickle 'PKL' records)."""
    bad = []
    files = [*(REPO / "sertk").rglob("*.py"), *(REPO / "bin").glob("*.py")]
    for path in files:
        rel = path.relative_to(REPO)
        tree = ast.parse(path.read_text(), str(rel))
        for node, mod, attr in _calls(tree):
            where = f"{rel}:{node.lineno}"
            if mod == "torch" and attr == "load" and _kw(node, "weights_only") is not True:
                bad.append(f"{where}: torch.load without weights_only=True")
            if mod in ("np", "numpy") and attr == "load" and \
                    _kw(node, "allow_pickle") is not False:
                bad.append(f"{where}: np.load without allow_pickle=False")
            if mod in ("pickle", "_pickle", "cPickle", "dill", "cloudpickle", "joblib") and \
                    attr in ("load", "loads", "Unpickler"):
                bad.append(f"{where}: {mod}.{attr}")
            if mod in ("pd", "pandas") and attr == "read_pickle":
                bad.append(f"{where}: pandas.read_pickle")
            if mod == "yaml" and attr in ("load", "load_all", "full_load", "unsafe_load",
                                          "unsafe_load_all"):
                bad.append(f"{where}: yaml.{attr} (use yaml.safe_load)")
            if mod == "kaldiio" and attr not in ("save_ark", "save_mat", "WriteHelper") and \
                    rel.as_posix() != "sertk/data/ark.py":
                bad.append(f"{where}: kaldiio.{attr} (read arks with sertk.data.ark)")
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("kaldiio") \
                    and rel.as_posix() != "sertk/data/ark.py" and \
                    any(a.name.startswith(("load", "read", "Read")) for a in node.names):
                bad.append(f"{rel}:{node.lineno}: from {node.module} import ... (read arks "
                           "with sertk.data.ark)")
    assert not bad, "\n".join(bad)
