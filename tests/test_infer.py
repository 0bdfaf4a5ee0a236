"""`sertk predict`, `sertk pack` and `sertk infer` end to end on generated audio."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest
import soundfile as sf

from sertk.data.kaldi_table import read_table
from tests.conftest import run_sertk


@pytest.fixture(scope="module")
def packed(trained, tmp_path_factory):
    out = tmp_path_factory.mktemp("packed") / "model.zip"
    res = run_sertk("pack", "--exp", trained, "--out", out)
    assert "light_sernet, 4 classes (angry happy neutral sad), features fbank" in res.stdout
    with zipfile.ZipFile(out) as zf:
        assert {"config.yaml", "feats.yaml", "labels.txt", "cmvn.ark",
                "model.safetensors"} <= set(zf.namelist())
    return out


def _records(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def _check(records, labels=("angry", "happy", "neutral", "sad")):
    for r in records:
        assert set(r["posteriors"]) == set(labels)
        assert sum(r["posteriors"].values()) == pytest.approx(1.0, abs=1e-4)
        assert r["label"] == max(r["posteriors"], key=r["posteriors"].get)


def test_infer_wav_list_dir_and_scp(packed, corpus, tmp_path):
    wav = read_table(corpus / "wav.scp")
    keys = sorted(wav)[:10]
    (tmp_path / "list").write_text("".join(f"{wav[k]}\n" for k in keys))
    run_sertk("infer", "--model", packed, "--wav-list", tmp_path / "list", "--out",
              tmp_path / "a.jsonl", "--batch-size", "4")
    recs = _records(tmp_path / "a.jsonl")
    assert [r["key"] for r in recs] == keys
    _check(recs)

    scp = tmp_path / "wav.scp"
    scp.write_text("".join(f"{k} cat {wav[k]} |\n" for k in keys[:3]))  # pipes too
    run_sertk("infer", "--model", packed, "--wav-scp", scp, "--out", tmp_path / "b.jsonl")
    recs_b = _records(tmp_path / "b.jsonl")
    for ra, rb in zip(recs[:3], recs_b):
        assert ra["key"] == rb["key"]
        for lab in ra["posteriors"]:
            assert ra["posteriors"][lab] == pytest.approx(rb["posteriors"][lab], abs=1e-5)

    spk_dir = corpus.parent / "wav" / "spk02"
    run_sertk("infer", "--model", packed, "--dir", spk_dir, "--out", tmp_path / "c.jsonl")
    recs_c = _records(tmp_path / "c.jsonl")
    assert len(recs_c) == len(list(spk_dir.iterdir()))
    _check(recs_c)


def test_infer_long_audio_segments(packed, tmp_path):
    rng = np.random.default_rng(0)
    long = tmp_path / "long.wav"
    sf.write(long, (0.05 * rng.standard_normal(16000 * 5)).astype(np.float32), 16000)
    (tmp_path / "l").write_text(f"{long}\n")
    out = run_sertk("infer", "--model", packed, "--wav-list", tmp_path / "l", "--segment",
                    "2.0", "--shift", "1.0").stdout
    rec = json.loads(out.splitlines()[0])
    assert [(s["start"], s["end"]) for s in rec["segments"]][:2] == [(0.0, 2.0), (1.0, 3.0)]
    assert rec["segments"][-1]["end"] == pytest.approx(4.98, abs=0.03)
    _check(rec["segments"] + [rec])
    mean = np.mean([[s["posteriors"][k] for k in sorted(s["posteriors"])]
                    for s in rec["segments"]], axis=0)
    np.testing.assert_allclose([rec["posteriors"][k] for k in sorted(rec["posteriors"])],
                               mean, atol=1e-4)


def test_predict_and_score_dump(trained, dumped, tmp_path):
    run_sertk("predict", "--model", trained, "--data", dumped / "fold1" / "test", "--out-dir",
              tmp_path, "--no-progress")
    hyp = read_table(tmp_path / "hyp.txt")
    assert set(hyp) == set(read_table(dumped / "fold1" / "test" / "utt2emo"))
    _check(_records(tmp_path / "posteriors.jsonl"))
    out = run_sertk("score", "--ref", dumped / "fold1" / "test" / "utt2emo", "--hyp",
                    tmp_path / "hyp.txt", "--labels", trained / "labels.txt", "--out-dir",
                    tmp_path).stdout
    assert out.startswith("UA ")


def test_packed_model_normalises_as_in_training(dumped, tmp_path):
    """``cmvn.norm_vars: false`` (mean-only CMVN, e.g. attpool_cnn) must hold at inference too:
    the packed model's logits equal those of the model the trainer evaluated."""
    import torch

    from sertk.features.cmvn import GlobalCMVN
    from sertk.infer.packed import load_packed
    from sertk.models.classifier import EmotionClassifier
    from sertk.train.trainer import train
    from tests.conftest import TINY_CONFIG

    cfg = {**TINY_CONFIG, "cmvn": {"norm_vars": False},
           "train": {**TINY_CONFIG["train"], "epochs": 1}}
    exp = tmp_path / "exp"
    train(cfg, dumped / "fold1" / "train", dumped / "fold1" / "dev", exp, device="cpu",
          progress=False)
    packed = load_packed(exp)
    ref = EmotionClassifier("light_sernet", 40, 4, cfg["model"]["conf"],
                            GlobalCMVN.from_file(exp / "cmvn.ark", norm_vars=False))
    ref.load_state_dict(packed.model.state_dict())
    assert not bool(torch.allclose(ref.cmvn.std, torch.ones(40)))  # the test can tell
    x = 3.0 * torch.randn(2, 120, 40) + 5.0
    lengths = torch.tensor([120, 90])
    with torch.no_grad():
        torch.testing.assert_close(packed.model(x, lengths), ref.eval()(x, lengths))


def test_trimmed_training_data_means_trimmed_inference(corpus, tmp_path):
    """A model trained on `sertk data trim`-med data trims raw audio the same way at infer."""
    from sertk.config import load_yaml
    from sertk.data.datadir import subset
    from sertk.data.trim import trim
    from sertk.features import FeatureConfig
    from sertk.features.dump import dump
    from sertk.train.trainer import train
    from tests.conftest import REPO, TINY_CONFIG

    trim(corpus, tmp_path / "trimmed", progress=False)
    dump(tmp_path / "trimmed", tmp_path / "dump", FeatureConfig.load(
        REPO / "conf" / "feats" / "fbank40.yaml"), progress=False)
    assert load_yaml(tmp_path / "dump" / "feats.yaml")["trim"] == {"threshold_db": 40.0,
                                                                  "margin": 0.1}
    utts = sorted(read_table(corpus / "utt2spk"))
    subset(tmp_path / "dump", tmp_path / "tr", utts=utts[:-12])
    subset(tmp_path / "dump", tmp_path / "dv", utts=utts[-12:])
    cfg = {**TINY_CONFIG, "train": {**TINY_CONFIG["train"], "epochs": 1}}
    train(cfg, tmp_path / "tr", tmp_path / "dv", tmp_path / "exp", device="cpu",
          progress=False)
    run_sertk("pack", "--exp", tmp_path / "exp", "--out", tmp_path / "m.zip")
    run_sertk("predict", "--model", tmp_path / "m.zip", "--data", tmp_path / "dv",
              "--out-dir", tmp_path / "pred", "--no-progress")
    wav = read_table(corpus / "wav.scp")
    (tmp_path / "l").write_text("".join(f"{wav[u]}\n" for u in utts[-12:]))
    run_sertk("infer", "--model", tmp_path / "m.zip", "--wav-list", tmp_path / "l",
              "--out", tmp_path / "i.jsonl")
    dumped = {r["key"]: r for r in _records(tmp_path / "pred" / "posteriors.jsonl")}
    for r in _records(tmp_path / "i.jsonl"):
        ref = dumped[r["key"]]["posteriors"]
        for lab, p in r["posteriors"].items():
            assert p == pytest.approx(ref[lab], abs=1e-4), r["key"]


def test_speaker_cmvn_model_normalises_inputs_per_speaker(corpus, dumped, tmp_path):
    """A model trained on per-speaker-normalised features normalises per speaker at infer."""
    from sertk.data.datadir import subset
    from sertk.features.cmvn import apply_cmvn, compute_speaker_stats
    from sertk.train.trainer import train
    from tests.conftest import TINY_CONFIG

    compute_speaker_stats(dumped / "all", tmp_path / "spk.ark")
    norm = apply_cmvn(dumped / "all", tmp_path / "norm", tmp_path / "spk.ark", per_speaker=True)
    utts = sorted(read_table(corpus / "utt2spk"))
    spk = read_table(corpus / "utt2spk")
    test = [u for u in utts if spk[u] in ("spk05", "spk06")]
    subset(norm, tmp_path / "tr", utts=[u for u in utts if u not in test])
    subset(norm, tmp_path / "te", utts=test)
    cfg = {**TINY_CONFIG, "train": {**TINY_CONFIG["train"], "epochs": 1}}
    train(cfg, tmp_path / "tr", tmp_path / "te", tmp_path / "exp", device="cpu", progress=False)
    run_sertk("pack", "--exp", tmp_path / "exp", "--out", tmp_path / "m.zip")
    run_sertk("predict", "--model", tmp_path / "m.zip", "--data", tmp_path / "te",
              "--out-dir", tmp_path / "pred", "--no-progress")
    wav = read_table(corpus / "wav.scp")
    (tmp_path / "l").write_text("".join(f"{wav[u]}\n" for u in test))
    missing = run_sertk("infer", "--model", tmp_path / "m.zip", "--wav-list", tmp_path / "l",
                        check=False)
    assert missing.returncode == 1 and "--utt2spk" in missing.stderr
    (tmp_path / "u2s").write_text("".join(f"{u} {spk[u]}\n" for u in test))
    run_sertk("infer", "--model", tmp_path / "m.zip", "--wav-list", tmp_path / "l",
              "--utt2spk", tmp_path / "u2s", "--out", tmp_path / "i.jsonl")
    dumped_post = {r["key"]: r for r in _records(tmp_path / "pred" / "posteriors.jsonl")}
    recs = _records(tmp_path / "i.jsonl")
    assert len(recs) == len(test)
    for r in recs:
        for lab, p in r["posteriors"].items():
            assert p == pytest.approx(dumped_post[r["key"]]["posteriors"][lab], abs=1e-4)
