"""Recipes: the mini recipe end to end (the CI integration test) and RAVDESS data preparation.

The RAVDESS fold tests build a fake corpus with the official file names; the check on the real
corpus runs only where ../shared/corpora/ravdess exists.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from sertk.data.datadir import DataDir, validate
from tests.conftest import REPO

RAVDESS_RECIPE = REPO / "egs" / "ravdess" / "ser1"
REAL_RAVDESS = REPO.parent / "shared" / "corpora" / "ravdess"
EMOBOX = {"fold1": [1, 11, 20, 21], "fold2": [4, 10, 12, 14], "fold3": [8, 9, 19, 23],
          "fold4": [3, 5, 7, 24], "fold5": [2, 15, 16, 18], "fold6": [6, 13, 17, 22]}


def bash(cmd: str, cwd: Path, timeout: int = 900) -> subprocess.CompletedProcess:
    proc = subprocess.run(["bash", "-c", cmd], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, f"{cmd}\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
    return proc


def test_mini_recipe_end_to_end(tmp_path):
    recipe = REPO / "egs" / "mini_emo" / "ser1"
    dirs = f"--datadir {tmp_path}/data --dumpdir {tmp_path}/dump --expdir {tmp_path}/exp"
    proc = bash(f"./run.sh {dirs} --progress false", recipe)
    m = re.search(r"1 folds: UA ([\d.]+) ± ([\d.]+)", proc.stdout + proc.stderr)
    assert m, proc.stderr[-2000:]
    assert float(m.group(1)) > 50.0  # 4 balanced classes: chance is 25
    exp = tmp_path / "exp" / "light_sernet_mini"
    for f in ("RESULTS.md", "fold1/decode_test/confusion.png", "fold1/model.zip",
              "fold1/train.log", "fold1/metrics.csv", "fold1/logs/stage3.log"):
        assert (exp / f).is_file(), f
    # RESULTS.md quotes the command that made it
    assert f"    ./run.sh {dirs} --progress false\n" in (exp / "RESULTS.md").read_text()
    # every stage is safe to rerun: finished work is detected and reused
    again = bash(f"./run.sh {dirs} --stage 2 --progress false", recipe)
    assert "already trained" in again.stderr and "features already dumped" in again.stderr
    assert m.group(0) in again.stdout + again.stderr


def _processes_naming(text: str) -> list[int]:
    """Pids of the processes whose command line contains ``text``."""
    pids = []
    for d in Path("/proc").iterdir():
        try:
            if d.name.isdigit() and text in (d / "cmdline").read_bytes().decode(errors="replace"):
                pids.append(int(d.name))
        except OSError:  # ended meanwhile
            pass
    return pids


@pytest.mark.parametrize("fold_jobs", [1, 2])
def test_a_stopped_recipe_stops_its_training(tmp_path, fold_jobs):
    """`kill` of run.sh (SIGTERM; it execs ser.sh) during stage 3 ends the fold's training
    too (it runs in the background, in a process group of its own), whether the folds run
    one after the other or side by side."""
    recipe = REPO / "egs" / "mini_emo" / "ser1"
    dirs = f"--datadir {tmp_path}/data --dumpdir {tmp_path}/dump --expdir {tmp_path}/exp"
    bash(f"./run.sh {dirs} --stop_stage 2 --progress false", recipe)
    proc = subprocess.Popen(["bash", "-c", f"exec ./run.sh {dirs} --stage 3 --stop_stage 3 "
                             f"--fold_jobs {fold_jobs} --progress false"], cwd=recipe,
                            text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    exp = tmp_path / "exp" / "light_sernet_mini"
    try:
        for _ in range(600):  # the training has started
            if (exp / "fold1" / "train.log").is_file():
                break
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.1)
        assert [p for p in _processes_naming(f"{exp}/fold1") if p != proc.pid]
        assert "ser.sh" in Path(f"/proc/{proc.pid}/cmdline").read_text()  # run.sh exec'd it
        proc.terminate()
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 143, err[-2000:]
        assert "stage 3 stopped by SIGTERM: 1 fold job(s) ended; rerun to resume" in err
        assert _processes_naming(f"{exp}/fold1") == []
        assert "# killed: launcher received SIGTERM" in (exp / "fold1" / "logs" /
                                                         "stage3.log").read_text()
    finally:
        for p in _processes_naming(str(tmp_path)):
            os.kill(p, signal.SIGKILL)
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_shell_quote_round_trip():
    """RESULTS.md's command line must paste back into a shell with the same arguments."""
    args = ["./run.sh", "--folds", "fold1", "--train_args", "--override train.epochs=4", "",
            '--override augment=[{"name":"vtlp","low":0.9}]', "it's", "a$b"]
    line = subprocess.run([str(REPO / "bin" / "shell_quote.sh"), *args], capture_output=True,
                          text=True, check=True).stdout.strip()
    assert line.startswith("./run.sh --folds fold1 --train_args '--override train.epochs=4' ''")
    back = subprocess.run(["bash", "-c", f'for a in {line}; do printf "%s\\0" "$a"; done'],
                          capture_output=True, text=True, check=True).stdout
    assert back.split("\0")[:-1] == args


def fake_ravdess(root: Path, per_actor: int = 3) -> Path:
    """Official layout, short 48 kHz files; one file of Actor_02 is stereo, one is a song."""
    rng = np.random.default_rng(0)
    for actor in range(1, 25):
        d = root / f"Actor_{actor:02d}"
        d.mkdir(parents=True)
        for k in range(per_actor):
            emo = 1 + (actor + k) % 8
            inten = 1 if emo == 1 else 1 + k % 2
            name = f"03-01-{emo:02d}-{inten:02d}-{1 + k % 2:02d}-01-{actor:02d}"
            sig = (0.1 * rng.standard_normal(4800)).astype(np.float32)
            if actor == 2 and k == 0:
                sig = np.stack([sig, sig], axis=1)
            sf.write(d / f"{name}.{'wav' if k % 2 else 'flac'}", sig, 48000)
        sf.write(d / f"03-02-01-01-01-01-{actor:02d}.wav", np.zeros(480, np.float32), 48000)
    return root


def test_ravdess_emobox_folds_keep_test_actors_out(tmp_path):
    root = fake_ravdess(tmp_path / "RAVDESS")
    data = tmp_path / "data"
    proc = bash(f". ./path.sh && local/data.sh --datadir {data} --corpus_root {root} "
                "--trim_silence false", RAVDESS_RECIPE)
    assert "72 utterances from 24 actors; skipped 24 non-speech files" in proc.stdout
    assert validate(data / "all") == []
    d = DataDir(data / "all")
    utt = "actor02_03-01-03-01-01-01-02"
    assert d.utt2emo[utt] == "happy" and d.table("utt2gender")[utt] == "f"
    assert d.table("text")[utt] == "KIDS ARE TALKING BY THE DOOR"
    folds = sorted(p.name for p in (data / "folds").iterdir())
    assert folds == sorted(EMOBOX)
    for fold, actors in EMOBOX.items():
        test_spk = {f"actor{a:02d}" for a in actors}
        spks = {part: set(DataDir(data / "folds" / fold / part).utt2spk.values())
                for part in ("train", "dev", "test")}
        assert spks["test"] == test_spk
        assert not spks["train"] & test_spk, f"{fold}: test actor in train"
        assert not spks["dev"] & test_spk, f"{fold}: test actor in dev"
        assert not spks["train"] & spks["dev"]
        assert len(spks["dev"]) == 2
        assert {int(s[-2:]) % 2 for s in spks["dev"]} == {0, 1}  # one female, one male
        assert len(spks["train"]) + len(spks["dev"]) + len(spks["test"]) == 24


def test_ravdess_leave_one_actor_out_with_trimming(tmp_path):
    root = fake_ravdess(tmp_path / "RAVDESS", per_actor=2)
    data = tmp_path / "data"
    bash(f". ./path.sh && local/data.sh --datadir {data} --corpus_root {root} "
         "--protocol loao", RAVDESS_RECIPE)
    folds = sorted(p.name for p in (data / "folds").iterdir())
    assert len(folds) == 24
    for fold in folds:
        actor = f"actor{fold[-2:]}"
        assert set(DataDir(data / "folds" / fold / "test").utt2spk.values()) == {actor}
        for part in ("train", "dev"):
            assert actor not in set(DataDir(data / "folds" / fold / part).utt2spk.values())
    assert (data / "all" / "segments").is_file() and validate(data / "all") == []


def test_readme_models_table_matches_results_md(tmp_path):
    """The README's zoo table is RESULTS.md's (with full paper names): they may not drift."""
    readme = tmp_path / "README.md"
    readme.write_text((REPO / "README.md").read_text())
    bash(f". ./path.sh && local/zoo_table.py --readme {readme}", RAVDESS_RECIPE)
    assert readme.read_text() == (REPO / "README.md").read_text()
    rows = [ln for ln in readme.read_text().splitlines() if ln.startswith("| `")]
    configs = {re.match(r"\| `([^`]+)`", ln).group(1) for ln in rows}
    assert configs == {p.stem for p in (REPO / "conf" / "model").glob("*.yaml")}
    assert all(ln.endswith("` |") for ln in rows), "every row names its command"


def test_zoo_table_adds_six_folds_to_a_selected_row(tmp_path):
    results_md = tmp_path / "RESULTS.md"
    results_md.write_text((RAVDESS_RECIPE / "RESULTS.md").read_text())
    exp = tmp_path / "exp" / "m6"
    (exp / "decode_test").mkdir(parents=True)
    (exp / "decode_test" / "results.json").write_text(
        '{"num_folds": 6, "UA": {"mean": 0.4512, "std": 0.0345, "folds": [0.45]}}')
    (exp / "RESULTS.md").write_text("# m6\n\nCommand:\n\n    ./run.sh --tag m6\n")
    bash(f". ./path.sh && local/zoo_table.py --expdir {tmp_path / 'exp'} --results {results_md}"
         " compact_gcn=+m6", RAVDESS_RECIPE)
    row = next(ln for ln in results_md.read_text().splitlines() if ln.startswith("| `compact_gcn`"))
    old = next(ln for ln in (RAVDESS_RECIPE / "RESULTS.md").read_text().splitlines()
               if ln.startswith("| `compact_gcn`"))
    assert row.split(" | ")[:5] == old.split(" | ")[:5]  # fold-1 cell and the rest kept
    assert " | 45.12 ± 3.45 | fold 1: `./run.sh --train_on_dev false --folds fold1 " in row
    assert row.endswith("; 6 folds: `./run.sh --tag m6` |")


@pytest.mark.skipif(not REAL_RAVDESS.is_dir(), reason="real RAVDESS corpus not available")
def test_real_ravdess_data_preparation(tmp_path):
    proc = bash(f". ./path.sh && python local/prepare_ravdess.py {REAL_RAVDESS} "
                f"{tmp_path}/all", RAVDESS_RECIPE)
    assert "1440 utterances from 24 actors" in proc.stdout
    d = DataDir(tmp_path / "all")
    counts = {lab: list(d.utt2emo.values()).count(lab) for lab in d.labels()}
    assert counts == {"angry": 192, "calm": 192, "disgust": 192, "fearful": 192, "happy": 192,
                      "neutral": 96, "sad": 192, "surprised": 192}
    assert validate(tmp_path / "all", check_audio=False) == []


def test_readme_reading_list_maps_every_paper_to_registered_models():
    """The README's paper -> model id -> config table: 27 papers in order, every model id
    registered (or the augmentation / layer named), every config shipped, and every shipped
    config listed."""
    from sertk.models import MODELS

    text = (REPO / "README.md").read_text()
    table = text[text.index("<!-- papers table -->"):text.index("<!-- /papers table -->")]
    rows = [ln.split(" | ") for ln in table.splitlines() if re.match(r"\| \d+ \|", ln)]
    assert [int(r[0].strip("| ")) for r in rows] == list(range(1, 28))
    listed = set()
    for r in rows:
        ids = re.findall(r"`([a-z0-9_]+)`", r[2])
        assert ids, r
        assert any(i in MODELS.names() for i in ids) or r[3] == "—", r
        for cfg in re.findall(r"`([a-z0-9_/]+\.yaml)`", r[3]):
            path = REPO / (cfg if "/" in cfg else f"conf/model/{cfg}")
            assert path.is_file(), cfg
            listed.add(path.stem)
    shipped = {p.stem for p in (REPO / "conf" / "model").glob("*.yaml")}
    assert shipped - listed <= {"cnn_asp", "cnn_asp_ref", "cnn_asp_small"}, shipped - listed
