"""copypaste_resnet, cnn14_transfer, replk_ser, daae: forward/backward, padding invariance,
size/cost, checkpoint initialisation, RepLK re-parameterisation, Cnn14 transfer modes and layer
distances, DAAE auxiliary losses and a real two-stage training run through the trainer."""

from __future__ import annotations

import copy
import logging

import pytest
import torch
from safetensors.torch import load_file, save_file

import sertk.models.cnn14  # noqa: F401  (registers the models)
import sertk.models.daae  # noqa: F401
import sertk.models.replk  # noqa: F401
import sertk.models.resnet  # noqa: F401
from sertk import models
from sertk.errors import SertkError
from sertk.models.cnn14 import layer_cosine_distances
from sertk.models.layers import MaskedBatchNorm
from sertk.models.replk import ConvBN, ReparamLargeKernelConv
from tests.conftest import REPO
from tests.model_checks import check_forward_backward, check_padding_invariance

SMALL = {
    "copypaste_resnet": (23, {"channels": (8, 16, 16, 32)}),
    "cnn14_transfer": (64, {"channels": (8, 16, 16, 32, 32, 64), "fc_dim": 32}),
    "replk_ser": (64, {"channels": (8, 16, 16, 32), "blocks": (1, 1, 2, 1)}),
    "daae": (129, {"aux_classes": {"utt2spk": 3, "utt2corpus": 2}, "stage": "classifier",
                   "encoder_update": "all", "alpha": 1.0}),
    "daae_autoencoder": (129, {"aux_classes": {"utt2spk": 3, "utt2corpus": 2},
                               "stage": "autoencoder", "pretrain_emotion_weight": 1.0}),
}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Small convolutions run much faster single-threaded on a shared machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def build(case: str, num_classes: int = 5, **over) -> torch.nn.Module:
    dim, conf = SMALL[case]
    return models.build(case.split("_autoencoder")[0], input_dim=dim, num_classes=num_classes,
                        **{**conf, **over})


def daae_auxiliary_loss(net: torch.nn.Module) -> torch.Tensor:
    """The DAAE's speaker/corpus losses for the 3-utterance batch (one unknown speaker)."""
    return net.auxiliary_loss({"utt2spk": torch.tensor([0, 2, -1]),
                               "utt2corpus": torch.tensor([1, 0, 1])})


@pytest.mark.parametrize("case", list(SMALL))
def test_forward_backward_and_padding_invariance(case):
    torch.manual_seed(0)
    net = build(case)
    dim = SMALL[case][0]
    lengths = torch.tensor([83, 50, 17])
    x = torch.randn(3, 83, dim)
    extra = daae_auxiliary_loss if hasattr(net, "auxiliary_loss") else None
    check_forward_backward(net, x, lengths, num_classes=5, extra_loss=extra)
    check_padding_invariance(net, x, lengths, extra_frames=57)


def _randomize_bn(net: torch.nn.Module) -> None:
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, MaskedBatchNorm):
                m.bn.weight.uniform_(0.5, 1.5)
                m.bn.bias.uniform_(-0.5, 0.5)
                m.bn.running_mean.uniform_(-0.5, 0.5)
                m.bn.running_var.uniform_(0.5, 2.0)


def test_replk_fuse_matches_unfused_in_eval():
    torch.manual_seed(0)
    net = build("replk_ser", num_classes=4)
    lengths = torch.tensor([90, 61, 23])
    x = torch.randn(3, 90, 64)
    net.train()
    for _ in range(2):  # a few training-mode passes give non-trivial BN statistics
        net(x, lengths)
    _randomize_bn(net)
    net.eval()
    with torch.no_grad():
        before = net(x, lengths)
        net.fuse()
        after = net(x, lengths)
    diff = float((before - after).abs().max())
    print(f"replk_ser fused vs unfused: max abs diff {diff:.3e}")
    assert diff <= 1e-5
    lks = [m for m in net.modules() if isinstance(m, ReparamLargeKernelConv)]
    assert lks and all(m.fused is not None and m.small is None for m in lks)
    assert all(m.fused.bias is not None and m.fused.kernel_size == m.kernel for m in lks)
    assert all(m.bn is None for m in net.modules() if isinstance(m, ConvBN))
    check_padding_invariance(net, x, lengths, extra_frames=57)


def test_replk_kernel_sizes_fit_the_spectrogram():
    net = models.build("replk_ser", input_dim=64, num_classes=4, channels=(8, 8, 8, 8),
                       blocks=(1, 1, 1, 1))
    assert net.kernels == [(31, 31), (29, 15), (27, 7), (13, 3)]
    square = models.build("replk_ser", input_dim=64, num_classes=4, channels=(8, 8, 8, 8),
                          blocks=(1, 1, 1, 1), kernel_sizes=(13, 13, 13, 13),
                          freq_kernel_sizes=(13, 13, 13, 13))
    assert square.kernels == [(13, 13)] * 4


def test_cnn14_finetune_modes_and_frozen_statistics():
    net = build("cnn14_transfer", finetune="linear")
    trainable = sorted(n for n, p in net.named_parameters() if p.requires_grad)
    assert trainable == ["fc_out.bias", "fc_out.weight"]
    net.train()
    assert not any(m.training for m in net.modules() if isinstance(m, MaskedBatchNorm))
    both = build("cnn14_transfer", finetune="linear_layers")
    assert sorted(n for n, p in both.named_parameters() if p.requires_grad) == [
        "fc1.bias", "fc1.weight", "fc_out.bias", "fc_out.weight"]
    full = build("cnn14_transfer")
    assert all(p.requires_grad for p in full.parameters())


def test_cnn14_layer_cosine_distances():
    torch.manual_seed(0)
    net = build("cnn14_transfer", num_classes=3)
    initial = copy.deepcopy(net.state_dict())
    same = layer_cosine_distances(initial, net.state_dict())
    layers = {f"conv_block{i}.conv{j}" for i in range(1, 7) for j in (1, 2)} | {"fc1", "fc_out"}
    assert set(same) == layers
    assert all(abs(d) < 1e-12 for d in same.values())
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    net.train()
    loss = torch.nn.functional.cross_entropy(net(torch.randn(4, 40, 64),
                                                 torch.tensor([40, 33, 20, 12])),
                                             torch.tensor([0, 1, 2, 1]))
    loss.backward()
    opt.step()
    moved = layer_cosine_distances(initial, net.state_dict())
    print("cosine distances after one step:", {k: f"{v:.2e}" for k, v in moved.items()})
    assert set(moved) == layers and all(d > 0 for d in moved.values())


@pytest.mark.parametrize("case, out_layer", [("copypaste_resnet", "output."),
                                             ("cnn14_transfer", "fc_out.")])
@pytest.mark.parametrize("fmt", ["pt", "safetensors"])
def test_init_checkpoint_round_trip(case, out_layer, fmt, tmp_path, caplog):
    torch.manual_seed(0)
    src = build(case, num_classes=7)
    state = {k: v.clone() for k, v in src.state_dict().items()}
    path = tmp_path / f"src.{fmt}"
    if fmt == "pt":
        torch.save({"model": state, "epoch": 3}, path)
    else:
        save_file(state, str(path))
    torch.manual_seed(1)
    with caplog.at_level(logging.INFO, logger="sertk.models.layers.pretrained"):
        dst = build(case, num_classes=3, init_checkpoint=str(path))
    for k, v in dst.state_dict().items():
        if k.startswith(out_layer):  # 3 emotion classes vs 7: kept its initialisation
            assert v.shape != state[k].shape
        else:
            assert torch.equal(v, state[k]), k
    assert f"{out_layer}weight" in caplog.text and "shape differs" in caplog.text


def test_cnn14_loads_panns_layout(tmp_path, caplog):
    torch.manual_seed(0)
    src = build("cnn14_transfer", num_classes=3, bn0=True)
    panns = {}
    for k, v in src.state_dict().items():
        if k.startswith("fc_out."):
            continue
        panns[k.replace(".bn.", ".")] = v.clone()  # conv_block1.bn1.bn.weight -> ...bn1.weight
    panns["fc_audioset.weight"] = torch.randn(527, 32)
    panns["fc_audioset.bias"] = torch.randn(527)
    panns["spectrogram_extractor.stft.conv_real.weight"] = torch.randn(257, 1, 512)
    panns["logmel_extractor.melW"] = torch.randn(257, 64)
    assert "conv_block1.bn1.running_var" in panns and "bn0.weight" in panns
    torch.save({"model": panns, "iteration": 0}, tmp_path / "Cnn14_16k.pth")
    with caplog.at_level(logging.INFO, logger="sertk.models.layers.pretrained"):
        dst = build("cnn14_transfer", num_classes=3, bn0=True,
                    init_checkpoint=str(tmp_path / "Cnn14_16k.pth"), finetune="linear")
    for k, v in dst.state_dict().items():
        if not k.startswith("fc_out."):
            assert torch.equal(v, src.state_dict()[k]), k
    assert "fc_audioset.weight" in caplog.text and "logmel_extractor.melW" in caplog.text


def test_init_checkpoint_missing_file_warns(caplog):
    with caplog.at_level(logging.WARNING):
        build("copypaste_resnet", init_checkpoint="/nonexistent/xvector.pt")
    assert "not found" in caplog.text


def test_daae_stages_and_auxiliary_loss():
    torch.manual_seed(0)
    aux = {"utt2spk": 3, "utt2corpus": 2}
    pre = models.build("daae", input_dim=129, num_classes=4, aux_classes=aux,
                       stage="autoencoder")
    assert pre.emotion_loss_weight == 0
    assert not any(p.requires_grad for n, p in pre.named_parameters()
                   if n.startswith(("cnn.", "blstm.", "attention.", "classifier.")))
    clf = models.build("daae", input_dim=129, num_classes=4, aux_classes=aux, alpha=0.0)
    assert clf.emotion_loss_weight == 1
    assert not any(p.requires_grad for n, p in clf.named_parameters()
                   if n.startswith(("adversaries.", "emotion_head.")))
    assert tuple(type(clf).aux_tables) == ("utt2spk", "utt2corpus")

    x, lengths = torch.randn(4, 32, 129), torch.tensor([32, 32, 20, 9])
    targets = {"utt2spk": torch.tensor([0, 1, 2, -1]), "utt2corpus": torch.tensor([0, 1, 1, 0])}
    pre.train()
    pre(x, lengths)
    loss = pre.auxiliary_loss(targets)
    assert torch.isfinite(loss) and loss > 0
    # unknown targets only: the reconstruction term remains, finite
    none = pre.auxiliary_loss({t: torch.full((4,), -1) for t in aux})
    assert torch.isfinite(none) and 0 < none < loss
    recon = pre._cache["recon"]
    torch.testing.assert_close(none, recon * pre.recon_weight)
    # a table with weight 0 is ignored
    only_spk = models.build("daae", input_dim=129, num_classes=4, aux_classes=aux,
                            stage="autoencoder", beta=1.0, recon_weight=0.0)
    only_spk.train()
    only_spk(x, lengths)
    a = only_spk.auxiliary_loss(targets)
    b = only_spk.auxiliary_loss({"utt2spk": targets["utt2spk"],
                                 "utt2corpus": torch.tensor([1, 0, 0, 1])})
    assert torch.equal(a, b)
    with pytest.raises(RuntimeError, match="training-mode forward"):
        only_spk.eval()
        only_spk(x, lengths)
        only_spk.auxiliary_loss(targets)


def test_daae_gradient_reversal_sign():
    torch.manual_seed(0)
    net = models.build("daae", input_dim=129, num_classes=4, stage="autoencoder",
                       aux_classes={"utt2spk": 3, "utt2corpus": 2}, recon_weight=0.0,
                       grl_lambda=0.7)
    net.train()
    net(torch.randn(4, 32, 129), torch.tensor([32, 30, 20, 9]))
    loss = net.auxiliary_loss({"utt2spk": torch.tensor([0, 1, 2, 1]),
                               "utt2corpus": torch.tensor([0, 1, 1, 0])})
    latent, reversed_ = net._cache["pooled"], net._cache["reversed"]
    g_latent, g_heads = torch.autograd.grad(loss, [latent, reversed_])
    assert g_heads.abs().max() > 0
    # the encoder side receives -lambda times the gradient the adversary heads receive
    torch.testing.assert_close(g_latent, -0.7 * g_heads)
    # and descending it moves the representation up the adversaries' loss
    assert float((g_latent * g_heads).sum()) < 0


def test_daae_two_stage_training(tmp_path):
    from sertk.data.datadir import DataDir, subset
    from sertk.data.kaldi_table import write_table
    from sertk.data.synth import make_corpus
    from sertk.features import FeatureConfig
    from sertk.features.dump import dump
    from sertk.models.info import model_config
    from sertk.train.trainer import train

    data = make_corpus(tmp_path / "wav", tmp_path / "data", num_speakers=6, utts_per_emotion=2,
                       seed=2, duration=(0.6, 0.9))
    d = DataDir(data)
    write_table(data / "utt2corpus", {u: f"corpus{int(s[-2:]) % 2}"
                                      for u, s in d.utt2spk.items()})
    feats = FeatureConfig.load(REPO / "conf" / "feats" / "spectrogram129.yaml")
    dump(data, tmp_path / "dump", feats, nj=1, progress=False)
    assert (tmp_path / "dump" / "feat_dim").read_text().strip() == "129"
    subset(tmp_path / "dump", tmp_path / "train", spks=["spk01", "spk02", "spk03", "spk04"])
    subset(tmp_path / "dump", tmp_path / "dev", spks=["spk05", "spk06"])
    assert DataDir(tmp_path / "train").has("utt2corpus")

    tiny = {"ae_channels": [4, 8, 8], "cnn_channels": [4, 8, 8], "head_hidden": 8,
            "fusion_dim": 8, "att_heads": 2, "att_head_dim": 4, "lstm_hidden": 8}
    stage1, _ = model_config("daae_pretrain")
    stage1["model"]["conf"].update(tiny, grl_warmup_steps=4)
    stage1["train"].update(epochs=2, batch_size=32, valid_batch_size=16)
    assert stage1["train"]["select"] == "last"  # no emotion objective: dev UA can't select
    exp1 = tmp_path / "exp" / "pretrain"
    res1 = train(stage1, tmp_path / "train", tmp_path / "dev", exp1, device="cpu",
                 progress=False)
    assert 0.0 <= res1["best_ua"] <= 1.0
    log1 = (exp1 / "train.log").read_text()
    assert "epoch 2/2" in log1
    last = torch.load(exp1 / "checkpoints" / "last.pt", weights_only=True)["model"]
    assert int(last["net.grl_steps"]) > 0
    kept = load_file(str(exp1 / "model.safetensors"))  # the last epoch's weights
    assert torch.equal(kept["net.encoder.0.conv.weight"], last["net.encoder.0.conv.weight"])

    missing, _ = model_config("daae")
    missing["model"]["conf"].update(tiny, init_checkpoint=str(tmp_path / "no_such.safetensors"))
    with pytest.raises(SertkError, match="no_such.safetensors not found"):
        train(missing, tmp_path / "train", tmp_path / "dev", tmp_path / "exp" / "missing",
              device="cpu", progress=False)

    stage2, _ = model_config("daae")
    stage2["model"]["conf"].update(tiny, init_checkpoint=str(exp1 / "model.safetensors"))
    stage2["train"].update(epochs=1, batch_size=32, valid_batch_size=16)
    exp2 = tmp_path / "exp" / "classifier"
    res2 = train(stage2, tmp_path / "train", tmp_path / "dev", exp2, device="cpu",
                 progress=False)
    assert 0.0 <= res2["best_ua"] <= 1.0
    log2 = (exp2 / "train.log").read_text()
    assert "init_checkpoint" in log2 and "loaded" in log2
    w1, w2 = load_file(str(exp1 / "model.safetensors")), load_file(str(exp2 /
                                                                       "model.safetensors"))
    # the frozen DANN predictor came from stage 1 unchanged; the encoder was fine-tuned
    assert torch.equal(w1["net.emotion_head.0.weight"], w2["net.emotion_head.0.weight"])
    assert not torch.equal(w1["net.encoder.0.conv.weight"], w2["net.encoder.0.conv.weight"])


def _ddp_daae_worker(rank: int, world: int, port: int, queue) -> None:
    import os

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      LOCAL_RANK=str(rank), WORLD_SIZE=str(world))
    torch.set_num_threads(1)
    import torch.distributed as dist

    import sertk.models.daae  # noqa: F401
    from sertk.models.classifier import EmotionClassifier
    from sertk.train.distributed import cleanup, init_distributed

    info = init_distributed("cpu")
    torch.manual_seed(0)
    conf = {"stage": "autoencoder", "ae_channels": [4, 8, 8], "head_hidden": 8}
    model = EmotionClassifier("daae", 129, 4, conf, aux_classes={"utt2spk": 3, "utt2corpus": 2})
    net = model.net
    ddp = torch.nn.parallel.DistributedDataParallel(
        model, find_unused_parameters=net.ddp_find_unused_parameters)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    torch.manual_seed(100 + rank)
    status = "ok"
    try:
        for step in range(2):
            logits = ddp(torch.randn(3, 32, 129), torch.tensor([32, 20, 9]))
            corpus = torch.tensor([0, 1, 1]) if step == 0 or rank == 0 else torch.full((3,), -1)
            loss = net.emotion_loss_weight * torch.nn.functional.cross_entropy(
                logits, torch.tensor([0, 1, 2])) + net.auxiliary_loss(
                {"utt2spk": torch.tensor([0, 1, 2]), "utt2corpus": corpus})
            opt.zero_grad()
            loss.backward()
            opt.step()
        flat = torch.cat([p.detach().flatten() for p in model.parameters()])
        gathered = [torch.zeros_like(flat) for _ in range(world)]
        dist.all_gather(gathered, flat)
        diff = float(max((g - flat).abs().max() for g in gathered))
    except RuntimeError as exc:
        status, diff = str(exc)[:200], -1.0
    queue.put((rank, status, diff))
    cleanup(info)


def test_daae_auxiliary_path_under_ddp():
    """The decoder and adversaries are reached only through ``auxiliary_loss`` (outside the
    DDP forward's output): DDP must not treat them as unused."""
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = mp.get_context("spawn")
    queue = ctx.SimpleQueue()
    mp.start_processes(_ddp_daae_worker, args=(2, port, queue), nprocs=2, start_method="spawn")
    for rank, status, diff in sorted(queue.get() for _ in range(2)):
        assert status == "ok", f"rank {rank}: {status}"
        assert diff == 0.0, f"rank {rank} diverged by {diff}"
