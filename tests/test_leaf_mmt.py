"""leaf_mmt (Dutta & Ganapathy 2022, papers.md section 25): every stage's forward/backward and
padding invariance, the frozen stage-3 networks of stage 4, conversation matrices, and the
staged pipeline through a recipe's folds (bin/leaf_mmt_stages.sh)."""

from __future__ import annotations

import os
import subprocess

import kaldiio
import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from sertk import models
from sertk.data.conversation import dialogues, write_conversation_dir
from sertk.data.datadir import DataDir
from sertk.errors import DataError, SertkError
from tests.conftest import REPO, run_sertk
from tests.model_checks import check_forward_backward, check_padding_invariance
from tests.multimodal_checks import check_invariance, forward_backward, one_thread  # noqa: F401

SMALL = {"audio_dim": 4, "text_dim": 3, "context_hidden": 6, "d_model": 12, "heads": 3,
         "layers": 2, "ff_dim": 16}


def conversations(lengths: list[int], dim: int = 8, seed: int = 0) -> torch.Tensor:
    """Padded conversation matrices: random embeddings, the own turn marked in the last column."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(len(lengths), max(lengths), dim, generator=g)
    x[..., -1] = 0.0
    for i, n in enumerate(lengths):
        x[i, int(torch.randint(n, (1,), generator=g)), -1] = 1.0
    return x


def test_audio_stage_leaf_cnn():
    torch.manual_seed(0)
    net = models.build("leaf_mmt", input_dim=160, num_classes=4, stage="audio",
                       channels=[4, 4, 8, 8])
    lengths = torch.tensor([90, 61, 40])
    x = torch.randn(3, 90, 160) * 0.1
    check_forward_backward(net, x, lengths, num_classes=4)
    check_padding_invariance(net, x, lengths, extra_frames=23, atol=1e-4, rtol=1e-4)
    assert net.embed(x, lengths).shape == (3, 100)
    assert net.embedder.leaf.stride == 480  # the paper's 30 ms at 16 kHz


def test_text_stage_bigru():
    torch.manual_seed(0)
    net = models.build("leaf_mmt", input_dim=40, num_classes=4, stage="text",
                       input_sizes={"text": 30}, embedding_dim=8, text_hidden=5, embed_dim=7)
    feats, lengths = torch.randn(3, 20, 40), torch.tensor([20, 11, 5])
    inputs = {"text": (torch.randint(1, 30, (3, 9)), torch.tensor([9, 4, 1]))}
    forward_backward(net, feats, lengths, inputs, num_classes=4)
    check_invariance(net, feats, lengths, inputs, "text")
    assert net.embed(feats, lengths, inputs).shape == (3, 7)
    with pytest.raises(SertkError, match="needs the text input"):
        net(feats, lengths)


@pytest.mark.parametrize("stage", ["context_audio", "context_text", "fusion"])
def test_conversation_stages(stage):
    torch.manual_seed(0)
    net = models.build("leaf_mmt", input_dim=8, num_classes=4, stage=stage, **SMALL)
    lengths = torch.tensor([6, 4, 1])
    x = conversations(lengths.tolist())
    if stage == "fusion":  # only the Transformer and the head train
        net.train()
        net(x, lengths).logsumexp(-1).mean().backward()
        trainable = {n.split(".")[0] for n, p in net.named_parameters() if p.requires_grad}
        assert trainable == {"proj", "transformer", "head"}
        assert all(p.grad is None for p in net.context.parameters())
        assert not net.context.training  # frozen networks stay in eval mode
    else:
        check_forward_backward(net, x, lengths, num_classes=4)
    check_padding_invariance(net, x, lengths, extra_frames=5)


def test_own_turn_and_the_rest_of_the_conversation_matter():
    torch.manual_seed(0)
    net = models.build("leaf_mmt", input_dim=8, num_classes=4, stage="context_audio",
                       **SMALL).eval()
    x = conversations([5])
    moved = x.clone()
    moved[0, :, -1] = torch.roll(x[0, :, -1], 1)
    other_turn = x.clone()
    other_turn[0, x[0, :, -1].argmax() - 1, :4] += 1.0  # another turn's audio embedding
    with torch.no_grad():
        out = net(x, torch.tensor([5]))
        assert not torch.allclose(out, net(moved, torch.tensor([5])))
        assert not torch.allclose(out, net(other_turn, torch.tensor([5])))
        # the marker survives an affine CMVN with positive scale
        assert torch.allclose(out, net(torch.cat([x[..., :-1], x[..., -1:] * 3 - 2], -1),
                                       torch.tensor([5])), atol=1e-6)


def test_fusion_loads_and_freezes_stage3_weights(tmp_path):
    torch.manual_seed(0)
    paths = {}
    for m in ("audio", "text"):
        ctx = models.build("leaf_mmt", input_dim=8, num_classes=4, stage=f"context_{m}",
                           **SMALL)
        paths[m] = tmp_path / f"{m}.safetensors"
        save_file({f"net.{k}": v.contiguous() for k, v in ctx.state_dict().items()},
                  str(paths[m]))
    fused = models.build("leaf_mmt", input_dim=8, num_classes=4, stage="fusion",
                         init_audio=str(paths["audio"]), init_text=str(paths["text"]), **SMALL)
    from safetensors.torch import load_file

    want = load_file(str(paths["text"]))
    for k, v in fused.context["text"].state_dict().items():
        assert torch.equal(v, want[f"net.context.text.{k}"])
    with pytest.raises(SertkError, match="has no text context network"):
        models.build("leaf_mmt", input_dim=8, num_classes=4, stage="fusion",
                     init_audio=str(paths["audio"]), init_text=str(paths["audio"]), **SMALL)
    with pytest.raises(SertkError, match="init_audio .* not found"):
        models.build("leaf_mmt", input_dim=8, num_classes=4, stage="fusion",
                     init_audio=str(tmp_path / "none"), **SMALL)
    with pytest.raises(SertkError, match="audio_dim \\+ text_dim \\+ 1 = 8 columns, the "
                                         "features have 9"):
        models.build("leaf_mmt", input_dim=9, num_classes=4, stage="fusion", **SMALL)
    with pytest.raises(SertkError, match="stage must be one of"):
        models.build("leaf_mmt", input_dim=9, num_classes=4, stage="bert")


def test_conversation_matrices(tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    utts = ["a1", "a2", "b1", "b2", "c1"]
    (d / "utt2spk").write_text("".join(f"{u} s{u[0]}\n" for u in utts))
    (d / "utt2emo").write_text("".join(f"{u} ang\n" for u in utts))
    (d / "utt2dialog").write_text("a1 D1 3\na2 D1 1\nb1 D1 2\nb2 D2 1\n")  # c1: none
    scps = []
    for name, dim in (("aud", 2), ("txt", 3)):
        with kaldiio.WriteHelper(f"ark,scp:{tmp_path}/{name}.ark,{tmp_path}/{name}.scp") as w:
            for i, u in enumerate(utts):
                w(u, np.full((1, dim), i, dtype=np.float32))
        scps.append(tmp_path / f"{name}.scp")
    rep = write_conversation_dir(d, scps, tmp_path / "conv")
    assert (rep.utts, rep.dialogs, rep.outside_dialogs, rep.dim) == (5, 3, 1, 6)
    mats = dict(kaldiio.load_scp(str(tmp_path / "conv" / "feats.scp")).items())
    # D1 in turn order: a2 (index 1), b1 (2), a1 (0); a1 is the third turn
    np.testing.assert_array_equal(mats["a1"], [[1, 1, 1, 1, 1, 0], [2, 2, 2, 2, 2, 0],
                                               [0, 0, 0, 0, 0, 1]])
    assert mats["c1"].tolist() == [[4, 4, 4, 4, 4, 1]]
    assert (tmp_path / "conv" / "feat_dim").read_text() == "6\n"
    assert DataDir(tmp_path / "conv").table("utt2emo")["b2"] == "ang"
    with pytest.raises(DataError, match="dialogue D has turn 1 twice"):
        dialogues({"x": "D 1", "y": "D 1"}, ["x", "y"], "u2d")
    (tmp_path / "short.scp").write_text((tmp_path / "aud.scp").read_text().splitlines()[0])
    with pytest.raises(DataError, match="utterance a2: no embedding in .*short.scp"):
        write_conversation_dir(d, [tmp_path / "short.scp"], tmp_path / "c2")


def test_staged_pipeline_through_the_recipe_folds(corpus, dumped, tmp_path):
    """Stages 1-2 trained per fold as a recipe does (exp/<tag>/<fold>), then
    bin/leaf_mmt_stages.sh: embeddings, conversation matrices, stages 3 and 4, test scores."""
    from sertk.train.trainer import train

    tiny = {"loss": {"name": "ce"}, "optim": {"name": "adam", "lr": 0.003},
            "train": {"epochs": 1, "batch_size": 8, "seed": 0}}
    fold = dumped / "fold1"
    run_sertk("tokenizer", "train", str(fold / "train"), str(tmp_path / "units"),
              "--kind", "char")
    # stage 1 reads the fbank dump here (the recipe uses waveform16k: the same code path)
    train({**tiny, "model": {"name": "leaf_mmt", "conf": {
        "stage": "audio", "sample_rate": 400, "window_ms": 25.0, "stride_ms": 25.0,
        "n_filters": 16, "channels": [4, 4, 4, 4], "embed_dim": 5}}},
        fold / "train", fold / "dev", tmp_path / "A" / "fold1", device="cpu", progress=False)
    train({**tiny, "model": {"name": "leaf_mmt", "conf": {
        "stage": "text", "embedding_dim": 6, "text_hidden": 4, "embed_dim": 3,
        "tokenizer": str(tmp_path / "units")}}},
        fold / "train", fold / "dev", tmp_path / "T" / "fold1", device="cpu", progress=False)
    conf = tmp_path / "conf"
    conf.mkdir()
    for st in ("context_audio", "context_text", "fusion"):
        text = (REPO / "conf" / "model" / "leaf_mmt" / f"{st}.yaml").read_text()
        (conf / f"{st}.yaml").write_text(text.replace("audio_dim: 100", "audio_dim: 5")
                                         .replace("text_dim: 100", "text_dim: 3"))
    env = {**os.environ, "PATH": f"{REPO / 'bin'}:{os.path.dirname(os.sys.executable)}:"
                                 f"{os.environ['PATH']}"}
    args = "--override train.epochs=2 --override model.conf.context_hidden=4"
    proc = subprocess.run(
        ["bash", str(REPO / "bin" / "leaf_mmt_stages.sh"), "--conf_dir", str(conf),
         "--train_args", args + " --override model.conf.d_model=8 --override model.conf.heads=2",
         str(dumped), str(tmp_path / "A"), str(tmp_path / "T"), str(tmp_path / "out")],
        capture_output=True, text=True, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    n_test = len(DataDir(fold / "test").utts)
    for st in ("context_audio", "context_text", "fusion"):
        hyp = (tmp_path / "out" / "fold1" / st / "decode_test" / "hyp.txt").read_text()
        assert len(hyp.splitlines()) == n_test
        assert (tmp_path / "out" / st / "decode_test" / "results.json").is_file()
        assert f"{st}: 1 folds: UA" in proc.stdout
    test_dir = DataDir(tmp_path / "out" / "fold1" / "data" / "test")
    assert sorted(test_dir.utts) == sorted(DataDir(fold / "test").utts)
    mat = kaldiio.load_mat(test_dir.table("feats.scp")[test_dir.utts[0]])
    assert mat.shape[1] == 5 + 3 + 1
    # the frozen stage-3 weights are those of the stage-3 runs
    from safetensors.torch import load_file

    fused = load_file(str(tmp_path / "out" / "fold1" / "fusion" / "model.safetensors"))
    ctx = load_file(str(tmp_path / "out" / "fold1" / "context_text" / "model.safetensors"))
    k = next(k for k in ctx if k.startswith("net.context.text."))
    assert torch.equal(fused[k], ctx[k])
