"""The feature dump as a Kaldi job array (issue 17): ``sertk feats dump --nj N --job J`` per
part, then ``--merge``, gives the dump of one ``sertk feats dump --nj N`` call; the recipe's
stage 2 runs it through ``--dump_cmd`` (a cluster's submitter; launch.sh here)."""

from __future__ import annotations

import subprocess

import kaldiio
import numpy as np
import pytest

from tests.conftest import REPO, run_sertk

CONF = REPO / "conf" / "feats" / "fbank40.yaml"
TABLES = ("feats.scp", "utt2num_frames", "feat_dim", "utt2spk", "utt2emo", "feats.yaml")


def _features(dump) -> dict[str, np.ndarray]:
    return dict(kaldiio.load_scp(str(dump / "feats.scp")))


def _same_dump(a, b) -> None:
    fa, fb = _features(a), _features(b)
    assert fa.keys() == fb.keys() and fa
    for k in fa:
        np.testing.assert_array_equal(fa[k], fb[k])
    for name in TABLES[1:]:
        assert (a / name).read_text() == (b / name).read_text(), name


def test_parts_then_merge_equal_one_call(corpus, tmp_path):
    run_sertk("feats", "dump", "--conf", CONF, "--nj", "3", "--no-progress", corpus,
              tmp_path / "whole")
    parts = tmp_path / "parts"
    for job in (2, 1):  # any order, as a cluster runs them
        proc = run_sertk("feats", "dump", "--conf", CONF, "--nj", "3", "--job", job,
                         "--no-progress", corpus, parts)
        assert f"part {job} of 3:" in proc.stdout
        assert not (parts / "feats.scp").exists()  # no table before the merge
    early = run_sertk("feats", "dump", "--conf", CONF, "--nj", "3", "--merge", corpus, parts,
                      check=False)
    assert early.returncode != 0 and "part 3 of 3 is not finished" in early.stderr
    assert "Traceback" not in early.stderr
    run_sertk("feats", "dump", "--conf", CONF, "--nj", "3", "--job", "3", "--no-progress",
              corpus, parts)
    run_sertk("feats", "dump", "--conf", CONF, "--nj", "3", "--merge", corpus, parts)
    _same_dump(tmp_path / "whole", parts)


@pytest.mark.parametrize("args,message", [(["--job", "4"], "--job must be in 1..3"),
                                          (["--job", "1", "--merge"], "not both")])
def test_bad_part_options(corpus, tmp_path, args, message):
    proc = run_sertk("feats", "dump", "--conf", CONF, "--nj", "3", *args, corpus,
                     tmp_path / "d", check=False)
    assert proc.returncode != 0 and message in proc.stderr and "Traceback" not in proc.stderr


def test_recipe_stage2_through_dump_cmd(tmp_path):
    recipe = REPO / "egs" / "mini_emo" / "ser1"
    common = (f"--datadir {tmp_path}/data --progress false --nj 2 --feats_config "
              "conf/feats/fbank40.yaml --local_data_opts '--speakers 6 --utts_per_emotion 2'")

    def run(extra: str) -> None:
        subprocess.run(["bash", "-c", f"./run.sh {common} {extra}"], cwd=recipe, check=True,
                       capture_output=True, text=True)

    run(f"--stop_stage 2 --dumpdir {tmp_path}/own")
    run(f"--stage 2 --stop_stage 2 --dumpdir {tmp_path}/array --dump_cmd launch.sh")
    own, array = tmp_path / "own" / "fbank40" / "all", tmp_path / "array" / "fbank40" / "all"
    _same_dump(own, array)
    for j in (1, 2):  # the submitter's log per task, beside the dump's own
        assert "# ended (exit 0)" in (array / "log" / f"dump_task.{j}.log").read_text()
        assert (array / "log" / f"dump.{j}.log").is_file()
    assert (tmp_path / "array" / "fbank40" / "fold1" / "train" / "cmvn.ark").is_file()
