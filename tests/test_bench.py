"""``sertk bench``: the quick run end to end (real child processes on generated audio), and
the pieces it is built from."""

from __future__ import annotations

import json
import re
import sys
import time

import numpy as np
import pytest
import soundfile as sf

from sertk.bench.common import Row, corpus_datadir, markdown_table, run_child
from sertk.errors import SertkError
from tests.conftest import run_sertk

QUICK_ROWS = ["| feature dump | fbank, 1 job |",
              "| training data | data wait, num_workers 0 |",
              "| training data | data wait, num_workers 1 |",
              "| training data | data wait, num_workers 2 |",
              "| DDP (gloo) | 1 process |", "| DDP (gloo) | 2 processes |",
              "| DDP (gloo) | scaling, 2 processes / 1 |",
              "| inference | `sertk infer`, 8 files |", "| inference | peak RSS |"]


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def test_quick_bench_synthetic(tmp_path):
    t0 = time.perf_counter()
    res = run_sertk("bench", "--quick", "--synthetic", "8", "--work-dir", tmp_path / "w",
                    "--out", tmp_path / "bench.md")
    seconds = time.perf_counter() - t0
    lines = res.stdout.splitlines()
    assert "Corpus: synthetic (sertk.data.synth), 8 files" in res.stdout
    assert re.search(r"Machine: .+, \d+ cores", res.stdout)
    table = [x for x in lines if x.startswith("| ") and not x.startswith("| part")]
    assert [x[:len(row)] for x, row in zip(table, QUICK_ROWS)] == QUICK_ROWS
    assert len(table) == len(QUICK_ROWS)
    for line in table:
        part, case, sertk, plain, ratio, unit, note = _cells(line)
        assert float(sertk) > 0 or case.startswith("data wait")
    waits = [float(_cells(x)[2]) for x in table if "data wait" in x]
    assert all(0.0 <= w <= 1.0 for w in waits)
    infer_note = _cells(table[7])[6]
    assert "same label for 8/8 files" in infer_note  # sertk infer and the plain loop agree
    rss = _cells(table[8])
    assert 50 < float(rss[2]) < 8000 and 50 < float(rss[3]) < 8000
    assert (tmp_path / "bench.md").read_text().startswith("Command: `sertk bench --quick")
    # the plain feature loop wrote the same number of frames as sertk feats dump
    assert "frames differ" not in res.stdout
    assert (tmp_path / "w" / "plain" / "fbank" / "feats.scp").is_file()
    assert seconds < 240, f"sertk bench --quick took {seconds:.0f} s"  # ~45 s on 2 idle cores


def test_corpus_datadir_subset(tmp_path):
    for spk in ("Actor_01", "Actor_02"):
        (tmp_path / "c" / spk).mkdir(parents=True)
        for k in range(5):
            sf.write(tmp_path / "c" / spk / f"u{k}.wav", np.zeros(1600, np.float32), 16000)
    d = corpus_datadir(tmp_path / "c", tmp_path / "w", max_files=4)
    utt2spk = dict(x.split() for x in (d / "utt2spk").read_text().splitlines())
    assert len(utt2spk) == 4 and set(utt2spk.values()) == {"Actor_01", "Actor_02"}
    assert all(k.startswith(v) for k, v in utt2spk.items())
    assert (d / "spk2utt").is_file() and len((d / "utt2emo").read_text().splitlines()) == 4


def test_run_child_measures_own_peak_rss(tmp_path):
    big = run_child([sys.executable, "-c", "b = bytearray(300 * 2**20); print(len(b))"],
                    tmp_path, "big")
    small = run_child([sys.executable, "-c", "print(1)"], tmp_path, "small")
    assert big.max_rss_mb > 300 and small.max_rss_mb < 100  # per child, not a running max
    assert big.stdout.strip() == str(300 * 2**20)
    with pytest.raises(SertkError, match="bench step bad failed"):
        run_child([sys.executable, "-c", "raise SystemExit(3)"], tmp_path, "bad")


def test_markdown_table_ratio():
    text = markdown_table([Row("p", "c", "s", 2.0, 4.0), Row("p", "d", "x", 3.0)])
    assert "| p | c | 2.0 | 4.0 | 0.50× | s (lower) |  |" in text
    assert "| p | d | 3.0 | – | – | x (lower) |  |" in text


def test_bench_argument_errors():
    res = run_sertk("bench", "--quick", check=False)
    assert res.returncode == 1 and "exactly one of --corpus DIR and --synthetic N" in res.stderr
    res = run_sertk("bench", "--synthetic", "4", "--parts", "feats,gpu", check=False)
    assert res.returncode == 1 and "unknown bench part(s) gpu" in res.stderr


def test_plain_ddp_single_process(tmp_path):
    """The plain DDP baseline trains on a dumped feature set and reports samples/s."""
    import kaldiio

    rng = np.random.default_rng(0)
    with kaldiio.WriteHelper(f"ark,scp:{tmp_path}/f.ark,{tmp_path}/feats.scp") as w:
        for i in range(6):
            w(f"u{i}", rng.standard_normal((50 + i, 40)).astype(np.float32))
    (tmp_path / "utt2emo").write_text("".join(f"u{i} {'ab'[i % 2]}\n" for i in range(6)))
    conf = json.dumps({"path_channels": 4, "lflb_channels": [8, 8, 8, 8], "final_channels": 16})
    out = run_child([sys.executable, "-m", "sertk.bench.plain", "ddp", str(tmp_path / "feats.scp"),
                     str(tmp_path / "utt2emo"), str(tmp_path / "r.json"), "--epochs", "1",
                     "--batch", "4", "--conf", conf], tmp_path, "ddp")
    res = json.loads(out.stdout.splitlines()[-1])
    assert res["samples_per_s"] > 0 and res["seconds"] > 0
