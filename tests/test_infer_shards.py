"""``sertk infer --nj N`` (issue 17): the recogniser in N forked processes gives the records
of one process, in input order; a bad file or a dead process is one clear error."""

from __future__ import annotations

import json
import os
import signal

import pytest
import soundfile as sf

from sertk.errors import DataError, SertkError
from sertk.infer.packed import load_packed
from sertk.infer.recognizer import Recognizer
from sertk.infer.shards import can_shard, recognize_sharded
from tests.conftest import run_sertk
from tests.test_infer_stream import MODEL, _voice


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("shard_wavs")
    items = []
    for i in range(9):
        sr = (16000, 48000, 22050)[i % 3]
        path = root / f"u{i:02d}.wav"
        sf.write(path, _voice(0.8 + 0.3 * i, sr, i), sr)
        items.append((path.stem, str(path)))
    return items


def _same_records(got: list[dict], ref: list[dict]) -> None:
    """Same keys, paths and labels; posteriors equal up to float summation order (the
    processes compute in one thread, this one maybe in several)."""
    assert [{k: v for k, v in r.items() if k != "posteriors"} for r in got] == \
        [{k: v for k, v in r.items() if k != "posteriors"} for r in ref]
    for a, b in zip(got, ref):
        assert a["posteriors"].keys() == b["posteriors"].keys()
        assert all(abs(a["posteriors"][c] - b["posteriors"][c]) <= 1e-5 for c in a["posteriors"])


@pytest.mark.parametrize("jobs", [2, 3])
def test_sharded_records_equal_one_process(files, jobs):
    rec = Recognizer(load_packed(MODEL), num_workers=0)
    assert can_shard(rec)
    ref = list(rec.recognize(files, progress=False))
    got = list(recognize_sharded(rec, files, jobs, progress=False))
    assert [r["key"] for r in got] == [k for k, _ in files]
    _same_records(got, ref)


def test_bad_file_is_raised_at_its_place_or_skipped(files, tmp_path):
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF1234WAVEjunk")
    items = files[:4] + [("bad", str(bad))] + files[4:]
    rec = Recognizer(load_packed(MODEL), num_workers=0)
    records = list(recognize_sharded(rec, items, 2, skip_bad=True, progress=False))
    assert [r["key"] for r in records] == [k for k, _ in items]
    assert "cannot decode" in records[4]["error"]
    seen = []
    with pytest.raises(DataError, match="utterance bad"):
        for r in recognize_sharded(rec, items, 2, progress=False):
            seen.append(r["key"])
    assert seen == [k for k, _ in files[:4]]  # the files before it are still given


def test_a_dead_process_is_one_error(files, monkeypatch):
    rec = Recognizer(load_packed(MODEL), num_workers=0)
    original = rec.recognize

    def dies_on_third(items, **kw):
        for n, r in enumerate(original(items, **kw)):
            if n == 2 and os.getpid() != parent:
                os.kill(os.getpid(), signal.SIGKILL)  # as the OOM killer would
            yield r

    parent = os.getpid()
    monkeypatch.setattr(rec, "recognize", dies_on_third)
    with pytest.raises(SertkError, match=r"process sertk-infer-\d ended \(exit code -9\)"):
        list(recognize_sharded(rec, files, 2, progress=False))


def test_cli_nj_gives_the_same_lines(files, tmp_path):
    wav_list = tmp_path / "list.txt"
    wav_list.write_text("".join(f"{p}\n" for _, p in files))
    outs = {}
    for nj in (1, 2):
        out = tmp_path / f"nj{nj}.jsonl"
        proc = run_sertk("infer", "--model", MODEL, "--wav-list", wav_list, "--out", out,
                         "--nj", nj, "--no-progress")
        assert f"{len(files)} files recognised" in proc.stderr
        outs[nj] = [json.loads(line) for line in out.read_text().splitlines()]
    _same_records(outs[2], outs[1])
    bad = run_sertk("infer", "--model", MODEL, "--wav-list", wav_list, "--nj", "-1",
                    check=False)
    assert bad.returncode != 0 and "--nj must be 0 or more" in bad.stderr
    assert "Traceback" not in bad.stderr
