"""Extra model inputs (sertk.data.inputs): transcripts and other modalities' features kept
with their utterance, each padded with its own lengths; clear errors for missing entries."""

from __future__ import annotations

import kaldiio
import numpy as np
import pytest
import torch

from sertk.data.inputs import batch_inputs, build_inputs
from sertk.errors import DataError
from sertk.text.tokenizer import Tokenizer, train_tokenizer


@pytest.fixture(scope="module")
def tok(dumped, tmp_path_factory) -> Tokenizer:
    out = tmp_path_factory.mktemp("tok") / "char"
    train_tokenizer(dumped / "fold1" / "train" / "text", out, kind="char")
    return Tokenizer(out)


def _write(path, text: str):
    path.write_text(text)
    return path


def test_text_tokens_follow_the_batch_keys_with_their_own_lengths(dumped, tok):
    d = dumped / "fold1" / "train"
    keys = sorted(d.joinpath("utt2spk").read_text().split()[::2])
    tables = build_inputs(d, {"text": "tokens"}, keys, tok)
    assert tables["text"].size == len(tok)
    texts = dict(line.split(maxsplit=1) for line in d.joinpath("text").read_text().splitlines())
    batch = [keys[3], keys[0], keys[5]]
    ids, lengths = batch_inputs(tables, batch)["text"]
    assert ids.shape == (3, int(lengths.max()))
    for row, (key, n) in enumerate(zip(batch, lengths.tolist())):
        assert tok.decode(ids[row, :n].tolist()) == " ".join(texts[key].split())
        assert (ids[row, n:] == 0).all() and (ids[row, :n] > 0).all()
    assert batch_inputs({}, batch) is None


def test_missing_and_empty_transcripts_name_the_utterance_and_file(dumped, tok, tmp_path):
    d = dumped / "fold1" / "dev"
    keys = sorted(d.joinpath("utt2spk").read_text().split()[::2])
    lines = d.joinpath("text").read_text().splitlines()
    bad = tmp_path / "bad"
    bad.mkdir()
    for name in ("utt2spk", "feats.scp"):
        bad.joinpath(name).write_text(d.joinpath(name).read_text())
    _write(bad / "text", "".join(f"{ln}\n" for ln in lines[1:]))
    with pytest.raises(DataError, match=rf"utterance {keys[0]}: no entry in {bad / 'text'} "
                                        rf"\(1 of {len(keys)} utterances"):
        build_inputs(bad, {"text": "tokens"}, keys, tok)
    _write(bad / "text", "".join(f"{ln}\n" for ln in lines[:-1]) + f"{keys[-1]}\n")
    with pytest.raises(DataError, match=rf"utterance {keys[-1]}: empty transcript in "
                                        rf"{bad / 'text'}"):
        build_inputs(bad, {"text": "tokens"}, keys, tok)
    bad.joinpath("text").unlink()
    with pytest.raises(DataError, match=r"the model reads text \(tokens\), which .* does not"):
        build_inputs(bad, {"text": "tokens"}, keys, tok)


def test_feature_scp_input_pads_each_modality_separately(tmp_path):
    rng = np.random.default_rng(0)
    mats = {"a": rng.normal(size=(7, 5)), "b": rng.normal(size=(3, 5)),
            "c": rng.normal(size=(4, 5))}
    with kaldiio.WriteHelper(f"ark,scp:{tmp_path / 'v.ark'},{tmp_path / 'feats_video.scp'}"
                             ) as w:
        for k, m in mats.items():
            w(k, m.astype(np.float32))
    tables = build_inputs(tmp_path, {"feats_video.scp": "feats"}, list(mats))
    assert tables["feats_video.scp"].size == 5
    x, lengths = batch_inputs(tables, ["b", "a"])["feats_video.scp"]
    assert x.shape == (2, 7, 5) and lengths.tolist() == [3, 7]
    torch.testing.assert_close(x[0, :3], torch.tensor(mats["b"], dtype=torch.float32))
    assert (x[0, 3:] == 0).all()
    with pytest.raises(DataError, match=r"utterance z: no entry in .*feats_video.scp"):
        tables["feats_video.scp"].batch(["a", "z"])
    nan = mats["c"].copy()
    nan[1, 2] = np.nan
    with kaldiio.WriteHelper(f"ark,scp:{tmp_path / 'n.ark'},{tmp_path / 'n.scp'}") as w:
        w("c", nan.astype(np.float32))
    (tmp_path / "feats_video.scp").write_text(
        (tmp_path / "feats_video.scp").read_text().replace(
            next(ln for ln in (tmp_path / "feats_video.scp").read_text().splitlines()
                 if ln.startswith("c ")) + "\n",
            (tmp_path / "n.scp").read_text()))
    tables = build_inputs(tmp_path, {"feats_video.scp": "feats"}, list(mats))
    with pytest.raises(DataError, match=r"utterance c: NaN/Inf in .*n.ark"):
        tables["feats_video.scp"].batch(["c"])


def test_text_model_trains_predicts_packs_and_infers_with_transcripts(corpus, dumped, tok,
                                                                      tmp_path):
    """rajan_self_cross (audio + text) through train, predict, pack and infer; infer without
    transcripts is one clear error line."""
    import json

    from sertk.train.trainer import train
    from tests.conftest import run_sertk

    cfg = {"model": {"name": "rajan_self_cross",
                     "conf": {"modalities": ["audio", "text"], "fusion": "cross",
                              "gru_hidden": 8, "heads": 2, "audio_max_len": 200,
                              "audio_conv_len": 50, "embedding_dim": 16, "fc_dim": 8,
                              "tokenizer": str(tok.path)}},
           "loss": {"name": "ce"}, "optim": {"name": "adam", "lr": 0.003},
           "train": {"epochs": 1, "batch_size": 8, "seed": 0}}
    exp = tmp_path / "exp"
    res = train(cfg, dumped / "fold1" / "train", dumped / "fold1" / "dev", exp, device="cpu",
                progress=False)
    assert 0.0 <= res["UA"] <= 1.0
    resolved = (exp / "config.yaml").read_text()
    assert f"text: {len(tok)}" in resolved and (exp / "tokenizer" / "tokens.txt").is_file()
    run_sertk("predict", "--model", str(exp), "--data", str(dumped / "fold1" / "test"),
              "--out-dir", str(tmp_path / "dec"), "--no-progress")
    n_test = len((dumped / "fold1" / "test" / "utt2spk").read_text().splitlines())
    assert len((tmp_path / "dec" / "hyp.txt").read_text().splitlines()) == n_test
    run_sertk("pack", "--exp", str(exp), "--out", str(tmp_path / "m.zip"))
    wavs = dict(ln.split(maxsplit=1) for ln in (corpus / "wav.scp").read_text().splitlines())
    texts = dict(ln.split(maxsplit=1) for ln in (corpus / "text").read_text().splitlines())
    keys = sorted(wavs)[:3]
    jl = tmp_path / "in.jsonl"
    jl.write_text("".join(json.dumps({"key": k, "wav": wavs[k], "text": texts[k]}) + "\n"
                          for k in keys))
    out = run_sertk("infer", "--model", str(tmp_path / "m.zip"), "--jsonl", str(jl),
                    "--no-progress").stdout.splitlines()
    assert [json.loads(ln)["key"] for ln in out] == keys
    scp = tmp_path / "wav.scp"
    scp.write_text("".join(f"{k} {wavs[k]}\n" for k in keys))
    bad = run_sertk("infer", "--model", str(tmp_path / "m.zip"), "--wav-scp", str(scp),
                    check=False)
    assert bad.returncode != 0
    assert bad.stderr.strip().splitlines() == [
        "sertk: error: this model reads a transcript: give one per input (--text FILE with 'key "
        "transcript' lines, or --jsonl with a \"text\" field)"]
    txt = tmp_path / "text"
    txt.write_text("".join(f"{k} {texts[k]}\n" for k in keys[:2]))
    bad = run_sertk("infer", "--model", str(tmp_path / "m.zip"), "--wav-scp", str(scp),
                    "--text", str(txt), check=False)
    assert bad.stderr.strip().splitlines()[-1] == (
        f"sertk: error: {keys[2]}: no transcript (the model reads one; see --text)")
