"""CPC (Li et al., ICASSP 2021): the encoder, InfoNCE learning, ``sertk pretrain cpc`` end to end
and the ``cpc`` recogniser (on CPC features or plain features) with a pre-trained checkpoint."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml
from safetensors.torch import load_file

from sertk import models
from sertk.cli.main import main
from sertk.errors import SertkError
from sertk.models.cpc import CPC, CPCEncoder
from sertk.pretrain.cpc import CropDataset, audio_items, resolve_config
from tests.conftest import REPO
from tests.model_checks import check_forward_backward, check_padding_invariance

TINY_CPC = {"channels": 16, "hidden": 16}
TINY_HEAD = {"heads": 2, "att_dim": 16, "fc_dim": 8}
PRETRAIN_OVERRIDES = ["model.channels=16", "model.hidden=16", "model.horizon=4",
                      "model.negatives=8", "data.crop_seconds=1.0", "train.epochs=2",
                      "train.batch_size=2", "train.lr=0.003"]


def test_encoder_stride_160_and_output_lengths():
    enc = CPCEncoder()
    assert enc.stride == 160 and [c.stride[0] for c in enc.convs] == [5, 4, 4, 2]
    assert [c.kernel_size[0] for c in enc.convs] == [10, 8, 8, 4]
    z, frames = enc(torch.randn(2, 16000), torch.tensor([16000, 8000]))
    assert z.shape == (2, 100, 128) and frames.tolist() == [100, 50]  # 100 frames/s
    for n in (160, 1000, 4321):  # the length formula matches an unpadded utterance
        z, frames = enc(torch.randn(1, n), torch.tensor([n]))
        assert z.shape[1] == int(frames) == int(enc.frame_lengths(torch.tensor(n)))


def _modulated_tones(b: int, n: int, gen: torch.Generator) -> torch.Tensor:
    """Tones whose pitch and loudness swing periodically (3-7 Hz): predictable futures."""
    t = torch.arange(n) / 16000
    f0 = 200 + 400 * torch.rand(b, 1, generator=gen)
    fm = 3 + 4 * torch.rand(b, 1, generator=gen)
    ph = 2 * math.pi * torch.rand(b, 1, generator=gen)
    inst = f0 * (1 + 0.5 * torch.sin(2 * math.pi * fm * t + ph))
    env = 0.5 + 0.5 * torch.sin(2 * math.pi * fm * t + ph + 1.0)
    return env * torch.sin(2 * math.pi * torch.cumsum(inst, 1) / 16000)


@pytest.mark.parametrize("scale", [1.0, 0.02])
def test_info_nce_decreases_and_accuracy_rises_above_chance(scale):
    """Loud or quiet (RMS 0.02, like RAVDESS) audio: the waveform normalisation makes both
    learnable; without it the quiet one stays at the chance loss."""
    chance = 1 / 11
    for normalize in (True, False):
        torch.manual_seed(0)
        net = CPC(channels=32, hidden=32, horizon=4, negatives=10, normalize=normalize)
        wave = _modulated_tones(4, 8000, torch.Generator().manual_seed(0)) * scale
        lengths = torch.full((4,), 8000)
        opt = torch.optim.Adam(net.parameters(), lr=3e-3)
        history = []
        for _ in range(60):
            loss, acc = net.info_nce(wave, lengths)
            opt.zero_grad()
            loss.backward()
            opt.step()
            history.append((loss.item(), acc.item()))
        assert history[0][0] == pytest.approx(math.log(11), abs=0.1)  # uninformed at the start
        if normalize or scale == 1.0:
            assert history[-1][0] < 0.6 * history[0][0]
            assert history[-1][1] > 3 * chance
        else:
            assert history[-1][0] > 0.9 * history[0][0]


def test_info_nce_masks_padding_and_temperature():
    torch.manual_seed(0)
    net = CPC(channels=8, hidden=8, horizon=3, negatives=5, temperature=0.5)
    wave = torch.randn(2, 3200)
    loss, acc = net.info_nce(wave, torch.tensor([3200, 1600]))
    assert torch.isfinite(loss) and 0 <= float(acc) <= 1
    with pytest.raises(SertkError, match="too short"):
        net.info_nce(wave[:, :160], torch.tensor([160, 160]))  # one frame


@pytest.mark.parametrize("frontend, dim, freeze",
                         [("cpc", 160, True), ("cpc", 160, False), ("none", 40, False)])
def test_cpc_model_forward_backward_and_padding_invariance(frontend, dim, freeze):
    torch.manual_seed(0)
    conf = {"frontend": frontend, **TINY_HEAD}
    if frontend == "cpc":  # freeze concerns the CPC front end only
        conf.update(cpc=TINY_CPC, freeze=freeze)
    net = models.build("cpc", input_dim=dim, num_classes=3, **conf)
    lengths = torch.tensor([40, 23, 6])
    x = torch.randn(3, 40, dim) * (0.1 if frontend == "cpc" else 1.0)
    check_forward_backward(net, x, lengths, num_classes=3)
    check_padding_invariance(net, x, lengths, extra_frames=17)
    if frontend == "cpc":
        assert all(p.requires_grad != freeze for p in net.cpc.parameters())
        assert all(p.requires_grad for p in net.recogniser.parameters())


def test_frozen_cpc_cache_gives_the_same_outputs_and_is_not_packed():
    torch.manual_seed(0)
    conf = {"frontend": "cpc", "cpc": TINY_CPC, "freeze": True, **TINY_HEAD}
    plain = models.build("cpc", input_dim=160, num_classes=3, **conf).eval()
    cached = models.build("cpc", input_dim=160, num_classes=3, cache_frames=10_000, **conf).eval()
    cached.load_state_dict(plain.state_dict())
    lengths = torch.tensor([40, 23, 6])
    x = torch.randn(3, 40, 160) * 0.1
    with torch.no_grad():
        ref = plain(x, lengths)
        first = cached(x, lengths)
        assert (cached.cache.misses, cached.cache.hits, len(cached.cache)) == (3, 0, 3)
        # the same utterances in another order and another padding: all from the cache
        order = torch.tensor([2, 0, 1])
        again = cached(torch.cat([x[order], torch.zeros(3, 9, 160)], 1), lengths[order])
        assert (cached.cache.misses, cached.cache.hits) == (3, 3)
        # a new utterance next to cached ones: only it goes through CPC
        y = x.clone()
        y[1, :5] += 0.01
        mixed = cached(y, lengths)
        assert (cached.cache.misses, cached.cache.hits) == (4, 5)
        ref_y = plain(y, lengths)
    torch.testing.assert_close(first, ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(again, ref[order], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(mixed, ref_y, atol=1e-5, rtol=1e-5)
    # a full cache computes but stores no more; a fine-tuned CPC is never cached
    small = models.build("cpc", input_dim=160, num_classes=3, cache_frames=30, **conf)
    small(x, lengths)
    assert len(small.cache) == 2 and small.cache.frames == 23 + 6  # 40 frames did not fit
    tuned = models.build("cpc", input_dim=160, num_classes=3, cache_frames=10_000,
                         **{**conf, "freeze": False})
    tuned(x, lengths)
    assert len(tuned.cache) == 0
    packed = models.MODELS.get("cpc").builder.portable_conf(
        {**conf, "cache_frames": 10_000, "init_checkpoint": "/elsewhere/cpc.safetensors"})
    assert packed["cache_frames"] == 0 and "init_checkpoint" not in packed


def test_cpc_model_config_errors():
    with pytest.raises(SertkError, match="frontend must be one of cpc, none"):
        models.build("cpc", input_dim=160, num_classes=2, frontend="mfcc")
    with pytest.raises(SertkError, match="needs waveform frames"):
        models.build("cpc", input_dim=40, num_classes=2, frontend="cpc")
    with pytest.raises(SertkError, match="init_checkpoint needs frontend: cpc"):
        models.build("cpc", input_dim=40, num_classes=2, frontend="none",
                     init_checkpoint="x.safetensors")


def _write_data_dir(root, durations=(1.3, 0.6, 2.1, 0.9)):
    """Short tones of a few lengths (one shorter than the 1 s crop) as a wav.scp data dir."""
    rng = np.random.default_rng(0)
    (root / "wav").mkdir(parents=True)
    (root / "data").mkdir()
    lines = []
    for i, dur in enumerate(durations):
        t = np.arange(int(dur * 16000)) / 16000
        wav = 0.3 * np.sin(2 * np.pi * rng.uniform(150, 400) * t * (1 + 0.2 * np.sin(9 * t)))
        path = root / "wav" / f"u{i}.wav"
        sf.write(path, wav.astype(np.float32), 16000)
        lines.append(f"u{i} {path}\n")
    (root / "data" / "wav.scp").write_text("".join(lines))
    return root / "data"


def test_audio_items_use_segments_and_crops_repeat_short_audio(tmp_path):
    data = _write_data_dir(tmp_path, durations=(1.0, 2.0))
    assert [i[0] for i in audio_items(data)] == ["u0", "u1"]
    (data / "segments").write_text("s1 u1 0.50 0.80\ns2 u0 0.00 1.00\n")
    items = audio_items(data)
    assert [(k, s, e) for k, _, s, e in items] == [("s1", 0.5, 0.8), ("s2", 0.0, 1.0)]
    crops = CropDataset(items, 16000, 0.5)
    short = crops[0]  # 0.3 s segment repeated to 0.5 s
    assert short.shape == (8000,)
    torch.testing.assert_close(short[4800:], short[:3200])
    with pytest.raises(SertkError, match="unknown key train.epoch "):
        resolve_config({"train": {"epoch": 3}})


def test_pretrain_cli_end_to_end_and_init_checkpoint(tmp_path, capsys):
    data = _write_data_dir(tmp_path)
    out = tmp_path / "cpc"
    args = [a for o in PRETRAIN_OVERRIDES for a in ("--override", o)]
    main(["pretrain", "cpc", "--data", str(data), "--out", str(out), "--device", "cpu",
          "--no-progress", *args])  # the CLI, in-process (saves a second torch import)
    assert "weights: " in capsys.readouterr().out
    for name in ("cpc.safetensors", "config.yaml", "train.log", "metrics.csv"):
        assert (out / name).is_file(), name
    cfg = yaml.safe_load((out / "config.yaml").read_text())
    assert cfg["model"]["channels"] == 16 and cfg["data"]["crop_seconds"] == 1.0
    assert cfg["train"]["weight_decay"] == 1e-5  # the paper's, from conf/pretrain/cpc.yaml
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    assert [r["epoch"] for r in rows] == ["1", "2"]
    assert all(0 <= float(r["accuracy"]) <= 1 and math.isfinite(float(r["loss"]))
               for r in rows)
    assert "epoch 2/2" in (out / "train.log").read_text()

    weights = load_file(str(out / "cpc.safetensors"))  # weights only, no pickle
    assert {k.split(".")[0] for k in weights} == {"encoder", "gru", "predictors"}
    for freeze in (True, False):
        net = models.build("cpc", input_dim=160, num_classes=4, cpc=TINY_CPC, freeze=freeze,
                           init_checkpoint=str(out / "cpc.safetensors"), **TINY_HEAD)
        own = net.state_dict()
        for key, value in weights.items():
            if not key.startswith("predictors."):
                assert torch.equal(own[f"cpc.{key}"], value), key
        assert all(p.requires_grad != freeze for p in net.cpc.parameters())

    with pytest.raises(SertkError, match="does not match model.conf.cpc"):
        models.build("cpc", input_dim=160, num_classes=4, cpc={"channels": 32, "hidden": 16},
                     init_checkpoint=str(out / "cpc.safetensors"))
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:  # a user error: one line, status 1
        main(["pretrain", "cpc", "--data", str(tmp_path / "nope"), "--out", str(out)])
    assert exc.value.code == 1
    err = capsys.readouterr().err
    assert err.strip() == f"sertk: error: data directory not found: {tmp_path / 'nope'}"


def test_trainer_fits_cpc_on_a_pretrained_checkpoint(tmp_path):
    """The ``cpc`` config's path: waveform dump -> frozen pre-trained CPC -> recogniser; a
    missing init_checkpoint is a clear error."""
    from sertk.data.synth import make_corpus
    from sertk.features import FeatureConfig
    from sertk.features.dump import dump
    from sertk.pretrain.cpc import pretrain
    from sertk.train.trainer import train

    corpus = make_corpus(tmp_path / "wav", tmp_path / "data", num_speakers=2,
                         utts_per_emotion=1, seed=2, duration=(0.8, 1.2))
    cfg_pre = resolve_config({"model": {**TINY_CPC, "horizon": 3, "negatives": 6},
                              "data": {"crop_seconds": 0.5}, "train": {"epochs": 1}})
    pretrain(corpus, tmp_path / "pre", cfg_pre, device="cpu", progress=False)
    dump(corpus, tmp_path / "dump", FeatureConfig.load(REPO / "conf/feats/waveform16k.yaml"),
         progress=False)
    cfg = yaml.safe_load((REPO / "conf/model/cpc.yaml").read_text())
    cfg["model"]["conf"].update(cpc=TINY_CPC, **TINY_HEAD,
                                init_checkpoint=str(tmp_path / "pre" / "cpc.safetensors"))
    cfg["train"].update(epochs=1, batch_size=4, select="last")
    train(cfg, tmp_path / "dump", None, tmp_path / "exp", device="cpu", progress=False)
    pre = load_file(str(tmp_path / "pre" / "cpc.safetensors"))
    fitted = load_file(str(tmp_path / "exp" / "model.safetensors"))
    assert torch.equal(fitted["net.cpc.encoder.convs.0.weight"], pre["encoder.convs.0.weight"])

    cfg["model"]["conf"]["init_checkpoint"] = str(tmp_path / "missing.safetensors")
    with pytest.raises(SertkError, match="missing.safetensors not found"):
        train(cfg, tmp_path / "dump", None, tmp_path / "exp2", device="cpu", progress=False)


def test_recipe_pretrains_each_fold_on_its_training_speakers_only(tmp_path):
    """ser.sh --pretrain cpc: pre-training reads the fold's train (+ dev) audio, never its test
    speakers, and stage 3 starts from the result (init_checkpoint)."""
    import subprocess

    from sertk.data.datadir import DataDir

    recipe = REPO / "egs" / "mini_emo" / "ser1"
    dirs = f"--datadir {tmp_path}/data --dumpdir {tmp_path}/dump --expdir {tmp_path}/exp"
    pre = " ".join(f"--override {o}" for o in ("model.channels=16", "model.hidden=16",
                                               "train.epochs=1", "data.crop_seconds=1.0"))
    cmd = (f"./run.sh {dirs} --progress false --stop_stage 3 --train_on_dev true "
           "--local_data_opts '--speakers 6 --utts_per_emotion 2' "
           "--feats_config conf/feats/waveform16k.yaml --train_config conf/model/cpc.yaml "
           f"--tag cpc_mini --pretrain cpc --pretrain_args '{pre}' "
           "--train_args '--override train.epochs=1 --override train.select=last "
           "--override model.conf.cpc.channels=16 --override model.conf.cpc.hidden=16'")
    proc = subprocess.run(["bash", "-c", cmd], cwd=recipe, capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    fold = tmp_path / "exp" / "cpc_mini" / "fold1"
    data = tmp_path / "data" / "folds" / "fold1"
    seen = set(DataDir(fold / "pretrain" / "data").utt2spk.values())
    assert seen == {*DataDir(data / "train").utt2spk.values(),
                    *DataDir(data / "dev").utt2spk.values()}
    assert not seen & set(DataDir(data / "test").utt2spk.values())
    assert "CPC pre-training on 32 utterances" in (fold / "pretrain" / "train.log").read_text()
    assert f"init_checkpoint {fold}/pretrain/cpc.safetensors: loaded 12 of 12 tensors" in \
        (fold / "train.log").read_text()
