"""``manifest.json`` in packed models: written by ``sertk pack``, shown by ``sertk pack-info``,
checked by every load (a changed, added or removed member is one error line naming the pack
and the member); packs without one still load, with a warning."""

from __future__ import annotations

import hashlib
import json
import logging
import zipfile

import pytest

from sertk.version import __version__
from tests.conftest import run_sertk

LABELS = ["angry", "happy", "neutral", "sad"]


@pytest.fixture(scope="module")
def packed(trained, tmp_path_factory):
    out = tmp_path_factory.mktemp("manifest") / "model.zip"
    run_sertk("pack", "--exp", trained, "--out", out, "--corpus", "synthetic")
    return out


@pytest.fixture(scope="module")
def wav_list(corpus, tmp_path_factory):
    from sertk.data.kaldi_table import read_table

    wav = read_table(corpus / "wav.scp")
    path = tmp_path_factory.mktemp("wavs") / "list"
    path.write_text("".join(f"{wav[k]}\n" for k in sorted(wav)[:2]))
    return path


def _rezip(src, dst, drop=(), change=None, add=None):
    """A copy of the pack ``src`` without ``drop``, with ``change`` ({name: bytes}) and
    ``add`` ({name: bytes}) members."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for name in zin.namelist():
            if name not in drop:
                zout.writestr(name, (change or {}).get(name, zin.read(name)))
        for name, data in (add or {}).items():
            zout.writestr(name, data)
    return dst


def test_pack_writes_a_manifest_of_every_member(packed):
    with zipfile.ZipFile(packed) as zf:
        names = zf.namelist()
        manifest = json.loads(zf.read("manifest.json"))
        digests = {n: hashlib.sha256(zf.read(n)).hexdigest() for n in names
                   if n != "manifest.json"}
    assert names[-1] == "manifest.json"
    assert {n: m["sha256"] for n, m in manifest["members"].items()} == digests
    assert {"config.yaml", "model.safetensors", "metrics.csv", "meta.json"} <= set(digests)
    assert manifest["sertk_version"] == __version__
    assert manifest["classes"] == LABELS and manifest["model"] == "light_sernet"
    assert manifest["front_end"]["name"] == "fbank" and manifest["front_end"]["dim"] == 40
    assert manifest["front_end"]["sample_rate"] == 16000
    assert manifest["corpus"] == "synthetic"  # --corpus; the path says nothing here
    assert manifest["train_data"].endswith("train")  # from train.log
    dev = manifest["result"]["dev"]  # the best validation row of metrics.csv
    assert 0.0 <= dev["UA"] <= 1.0 and dev["epoch"] in (1, 2) and "macro_F1" in dev


def test_pack_info_prints_the_metadata_and_verifies(packed):
    out = run_sertk("pack-info", packed).stdout
    for text in (f"sertk version  {__version__}", "light_sernet (categorical)",
                 "4: angry happy neutral sad", "fbank, 40 dims at 16000 Hz", "synthetic",
                 "dev UA ", "model.safetensors", "checksums      all "):
        assert text in out, text
    member_lines = [line for line in out.splitlines() if line.startswith("    ")]
    assert member_lines and all(line.rstrip().endswith(" ok") for line in member_lines)
    res = json.loads(run_sertk("pack-info", packed, "--json").stdout)
    assert res["verified"] is True and res["classes"] == LABELS
    assert all(m["size"] > 0 for m in res["members"])


@pytest.mark.parametrize("how, member, phrase", [
    ("change", "model.safetensors", "model.safetensors does not match its sha256"),
    ("add", "extra.txt", "extra.txt not in manifest"),
    ("drop", "metrics.csv", "metrics.csv missing"),
])
def test_a_tampered_pack_is_one_error_line(packed, wav_list, tmp_path, how, member, phrase):
    with zipfile.ZipFile(packed) as zf:
        data = zf.read("model.safetensors")
    bad = tmp_path / "bad.zip"
    if how == "change":  # one byte of the weights
        _rezip(packed, bad, change={member: data[:-1] + bytes([data[-1] ^ 1])})
    elif how == "add":
        _rezip(packed, bad, add={member: b"hello\n"})
    else:
        _rezip(packed, bad, drop=(member,))
    for args in (("infer", "--model", bad, "--wav-list", wav_list),
                 ("predict", "--model", bad, "--data", tmp_path, "--out-dir", tmp_path / "p")):
        proc = run_sertk(*args, check=False)
        assert proc.returncode == 1 and "Traceback" not in proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("sertk: error: ")
        assert str(bad) in lines[0] and phrase in lines[0] and "manifest.json" in lines[0]
    info = run_sertk("pack-info", bad, check=False)
    assert info.returncode == 1 and phrase in info.stderr and "FAILED" in info.stdout


def test_a_pack_without_manifest_loads_with_a_warning(packed, trained, wav_list, tmp_path,
                                                     caplog):
    from sertk.infer.packed import load_packed

    old = _rezip(packed, tmp_path / "old.zip", drop=("manifest.json",))
    proc = run_sertk("infer", "--model", old, "--wav-list", wav_list)
    assert len(proc.stdout.splitlines()) == 2
    assert "no manifest.json" in proc.stderr and str(old) in proc.stderr
    with caplog.at_level(logging.WARNING):
        assert load_packed(old).labels == LABELS
    assert any("no manifest.json" in r.getMessage() for r in caplog.records)
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        load_packed(trained)  # an experiment directory: nothing to verify, no warning
        load_packed(packed)
    assert not [r for r in caplog.records if "manifest" in r.getMessage()]
    out = run_sertk("pack-info", old).stdout
    assert "unknown (no manifest)" in out and "not verified" in out and "dev UA " in out


def test_an_unreadable_manifest_is_one_error_line(packed, tmp_path):
    bad = _rezip(packed, tmp_path / "bad.zip", change={"manifest.json": b"{not json"})
    proc = run_sertk("pack-info", bad, check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "manifest.json is not valid JSON" in proc.stderr


def test_provenance_from_a_recipe_experiment(tmp_path):
    """The corpus comes from egs/<corpus>/ in the path, the training data from train.log,
    the dev result from the best row of metrics.csv, the test result from decode_test."""
    from sertk.infer.manifest import provenance

    exp = tmp_path / "egs" / "emodb" / "ser1" / "exp" / "tag" / "fold1"
    (exp / "decode_test").mkdir(parents=True)
    (exp / "train.log").write_text(
        "2026-01-01 (trainer:275) INFO: train dump/fbank/fold1/train: 300 items; valid "
        "dump/fbank/fold1/dev: 50 utts; 7 classes\n")
    (exp / "metrics.csv").write_text(
        "epoch,lr,train_loss,train_acc,valid_loss,valid_WA,valid_UA,valid_macro_F1,seconds,best\n"
        "1,1e-3,1.9,0.2,1.8,0.30,0.25,0.20,1.0,1\n"
        "2,1e-3,1.5,0.4,1.4,0.50,0.45,0.40,1.0,1\n"
        "3,1e-3,1.2,0.5,1.5,0.48,0.40,0.38,1.0,0\n")
    (exp / "decode_test" / "results.json").write_text(json.dumps(
        {"UA": 0.41, "WA": 0.44, "macro_F1": 0.39, "num_utts": 60, "confusion": [[1]]}))
    prov = provenance(exp)
    assert prov["corpus"] == "emodb" and prov["train_data"] == "dump/fbank/fold1/train"
    assert prov["result"]["dev"] == {"epoch": 2, "WA": 0.5, "UA": 0.45, "macro_F1": 0.4}
    assert prov["result"]["test"] == {"num_utts": 60, "UA": 0.41, "WA": 0.44,
                                      "macro_F1": 0.39}
    assert provenance(exp, corpus="other")["corpus"] == "other"
    (exp / "metrics.csv").write_text("epoch,valid_UA,best\n1,nan,1\n")  # no dev set
    (exp / "decode_test" / "results.json").unlink()
    assert provenance(exp)["result"] is None


def test_the_shipped_model_has_a_verified_manifest(caplog):
    from sertk.infer.packed import load_packed

    proc = run_sertk("pack-info", "ravdess_cnn_asp_ref")
    assert "corpus         ravdess" in proc.stdout and "all 7 members verify" in proc.stdout
    with caplog.at_level(logging.WARNING):
        load_packed("ravdess_cnn_asp_ref")
    assert not [r for r in caplog.records if "manifest" in r.getMessage()]
