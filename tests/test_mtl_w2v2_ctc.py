"""``mtl_w2v2_ctc`` (Cai et al. 2021): emotion + CTC heads on a tiny random wav2vec 2.0, greedy
CTC decoding, local checkpoints, and transcripts from ``sertk pack`` / ``sertk infer``.

Everything is generated here (random encoders, a char tokenizer from a few sentences, noise
audio); no pretrained weights, no ../shared.
"""

from __future__ import annotations

import json
import shutil
import zipfile

import kaldiio
import numpy as np
import pytest
import soundfile as sf
import torch
import torch.nn.functional as F
import yaml
from safetensors.torch import save_file

from sertk import models
from sertk.data.dataset import write_labels
from sertk.errors import SertkError
from sertk.features.cmvn import GlobalCMVN, accumulate
from sertk.features.ssl import save_ssl_encoder
from sertk.models.classifier import EmotionClassifier, aux_tables
from sertk.models.mtl_w2v2_ctc import MTLWav2Vec2CTC, ctc_greedy, ctc_loss, random_encoder
from sertk.text.tokenizer import train_tokenizer
from tests.conftest import REPO, run_sertk
from tests.model_checks import check_forward_backward, check_padding_invariance

# 2 layers of 32 dims; CNN strides 5 * 4 * 4 = 80 samples: 2 frames per 160-sample row
TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
            conv_dim=[16, 16, 16], conv_kernel=[10, 4, 4], conv_stride=[5, 4, 4],
            num_conv_pos_embeddings=8, num_conv_pos_embedding_groups=4, hidden_dropout=0.0,
            attention_dropout=0.0, activation_dropout=0.0, feat_proj_dropout=0.0, layerdrop=0.0)
SENTENCES = ["HELLO WORLD", "A CAT SAT", "THE DOG'S BONE?", "YES, NO."]
LABELS = ["ang", "hap", "neu", "sad"]


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny models run faster on one intra-op thread on the shared 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    root = tmp_path_factory.mktemp("tok")
    (root / "text").write_text("".join(f"u{i} {s}\n" for i, s in enumerate(SENTENCES)))
    return train_tokenizer(root / "text", root / "char", kind="char")


def _net(vocab: int, seed: int = 0, **conf) -> MTLWav2Vec2CTC:
    torch.manual_seed(seed)
    conf.setdefault("encoder_config", TINY)
    return models.build("mtl_w2v2_ctc", input_dim=160, num_classes=4,
                        aux_classes={"text": vocab}, **conf)


def _batch(*rows: int, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    x = 0.1 * torch.randn(len(rows), max(rows), 160, generator=torch.Generator().manual_seed(seed))
    for i, n in enumerate(rows):
        x[i, n:] = 0.0
    return x, torch.tensor(rows)


def _targets(tokenizer, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    ids = [tokenizer.encode(t) for t in texts]
    out = torch.zeros(len(ids), max(1, *map(len, ids)), dtype=torch.long)
    for i, seq in enumerate(ids):
        out[i, :len(seq)] = torch.tensor(seq, dtype=torch.long)
    return out, torch.tensor([len(s) for s in ids])


def test_contract_and_defaults():
    assert MTLWav2Vec2CTC.aux_kinds == {"text": "tokens"}
    assert aux_tables("mtl_w2v2_ctc", {}) == ("text",)
    assert aux_tables("mtl_w2v2_ctc", {"alpha": 0}) == ()  # single-task ablation
    conf = yaml.safe_load((REPO / "conf/model/mtl_w2v2_ctc.yaml").read_text())
    assert conf["feats"] == "conf/feats/waveform16k.yaml"
    assert conf["model"]["conf"]["alpha"] == 0.1 and conf["model"]["conf"]["pooling"] == "mean"
    assert conf["model"]["conf"]["freeze_cnn"] and not conf["model"]["conf"]["freeze_encoder"]
    net = _net(7)
    assert net.ctc_head.out_features == 7 and net.emotion_head.in_features == 32
    assert all(not p.requires_grad for p in net.encoder.encoder.feature_extractor.parameters())
    with pytest.raises(SertkError, match="not both"):
        _net(7, encoder="x")
    with pytest.raises(SertkError, match="pooling must be"):
        _net(7, pooling="max")
    with pytest.raises(SertkError, match="not found"):
        _net(7, encoder="/nonexistent/w2v2", encoder_config=None)


@pytest.mark.parametrize("pooling", ["mean", "stats", "attention"])
def test_forward_backward_and_padding_invariance(pooling, tokenizer):
    net = _net(len(tokenizer), pooling=pooling)
    x, lengths = _batch(40, 25, 9)
    targets = {"text": _targets(tokenizer, ["HELLO WORLD", "", "A CAT"])}
    if pooling == "mean":
        check_forward_backward(net, x, lengths, 4,
                               extra_loss=lambda n: n.auxiliary_loss(targets))
    check_padding_invariance(net, x, lengths, extra_frames=7, atol=1e-4, rtol=1e-4)


def test_ctc_loss_rules_and_decrease(tokenizer):
    net = _net(len(tokenizer), alpha=0.5)
    x, lengths = _batch(30, 20, 12)
    tokens, tok_lengths = _targets(tokenizer, ["HELLO WORLD", "A CAT SAT", ""])
    net.train()
    net(x, lengths)
    logits, frames = net._ctc
    assert frames.tolist() == [2 * n - 1 for n in lengths.tolist()]  # 80-sample hops
    # utterances without a transcript are left out; "mean" is torch's per-token mean
    ref = F.ctc_loss(logits[:2].log_softmax(-1).transpose(0, 1), tokens[:2], frames[:2],
                     tok_lengths[:2], zero_infinity=True)
    torch.testing.assert_close(net.auxiliary_loss({"text": (tokens, tok_lengths)}), 0.5 * ref)
    none = ctc_loss(logits, frames, tokens, torch.zeros(3, dtype=torch.long))
    assert none.requires_grad and float(none.detach()) == 0.0
    per_utt = ctc_loss(logits, frames, tokens, tok_lengths, reduction="sum")
    assert float(per_utt.detach()) > float(ref.detach())

    # plain gradient descent: creating a torch.optim optimiser first imports torch._dynamo
    params = [p for p in net.parameters() if p.requires_grad]
    losses = []
    for _ in range(8):
        net(x, lengths)
        loss = net.auxiliary_loss({"text": (tokens, tok_lengths)})
        grads = torch.autograd.grad(loss, params, allow_unused=True)
        with torch.no_grad():
            for p, g in zip(params, grads):
                if g is not None:
                    p -= 0.05 * g
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.5 * losses[0], losses


def test_greedy_ctc_decoding(tokenizer):
    best = [[0, 3, 3, 0, 3, 4, 4, 0, 0, 5],   # blank separates the repeated 3
            [2, 2, 2, 0, 7, 7, 7, 7, 7, 7],   # frames 4: the 7s are padding
            [0, 0, 0, 0, 0, 0, 0, 0, 0, 0]]   # blanks only
    logits = F.one_hot(torch.tensor(best), 8).float() * 5 + 0.1 * torch.randn(3, 10, 8)
    assert ctc_greedy(logits, torch.tensor([10, 4, 10])) == [[3, 3, 4, 5], [2], []]
    assert ctc_greedy(logits, torch.tensor([0, 1, 1])) == [[], [2], []]

    net = _net(len(tokenizer)).eval()
    with torch.no_grad():
        net.ctc_head.weight.zero_()
        net.ctc_head.bias.zero_()
        net.ctc_head.bias[tokenizer.index["H"]] = 1.0  # every frame says H: collapsed to one
    x, lengths = _batch(12, 5)
    ids = net.transcribe(x, lengths)
    assert ids == [[tokenizer.index["H"]]] * 2 and tokenizer.decode(ids[0]) == "H"


def test_encoder_checkpoint_loads_and_packs_portably(tmp_path):
    torch.manual_seed(5)
    saved = random_encoder(TINY)
    ckpt = save_ssl_encoder(saved, tmp_path / "w2v2", "wav2vec2")
    net = _net(9, encoder=str(ckpt), encoder_config=None)
    loaded, ref = net.encoder.encoder.state_dict(), saved.state_dict()
    assert loaded.keys() == ref.keys()
    assert all(torch.equal(loaded[k], v) for k, v in ref.items())
    assert net.encoder.freeze_cnn and not net.encoder.freeze and not net.encoder.normalize

    conf = {"encoder": str(ckpt), "alpha": 0.1, "normalize": None}
    portable = MTLWav2Vec2CTC.portable_conf(conf)
    assert portable["encoder"] is None and portable["normalize"] is False
    assert portable["encoder_config"]["hidden_size"] == 32
    assert portable["encoder_config"]["model_type"] == "wav2vec2"
    rebuilt = _net(9, **portable)
    rebuilt.load_state_dict(net.state_dict())  # same architecture, no checkpoint needed
    x, lengths = _batch(20, 11)
    net.eval()
    rebuilt.eval()
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(x, lengths), net(x, lengths))


def _experiment(root, tokenizer, ckpt) -> tuple:
    """A trained-looking experiment directory (what `sertk train` writes), random weights,
    the CTC head set to always say H."""
    exp = root / "exp"
    exp.mkdir()
    conf = {"encoder": str(ckpt), "tokenizer": str(tokenizer.path), "alpha": 0.1}
    config = {"model": {"name": "mtl_w2v2_ctc", "conf": conf}, "cmvn": {"norm_vars": False},
              "input_dim": 160, "labels": LABELS, "aux_classes": {"text": len(tokenizer)}}
    (exp / "config.yaml").write_text(yaml.safe_dump(config))
    shutil.copy(REPO / "conf/feats/waveform16k.yaml", exp / "feats.yaml")
    write_labels(exp / "labels.txt", LABELS)
    stats = accumulate([0.01 * np.random.default_rng(0).standard_normal((50, 160))])
    kaldiio.save_mat(str(exp / "cmvn.ark"), stats)
    torch.manual_seed(0)
    clf = EmotionClassifier("mtl_w2v2_ctc", 160, 4, conf,
                            GlobalCMVN.from_file(exp / "cmvn.ark", norm_vars=False),
                            aux_classes={"text": len(tokenizer)})
    with torch.no_grad():
        clf.net.ctc_head.weight.zero_()
        clf.net.ctc_head.bias.zero_()
        clf.net.ctc_head.bias[tokenizer.index["H"]] = 1.0
    save_file({k: v.contiguous() for k, v in clf.state_dict().items()},
              str(exp / "model.safetensors"))
    return exp, clf


def test_pack_and_infer_print_the_transcript(tmp_path, tokenizer):
    from sertk.infer.packed import load_packed, pack
    from sertk.infer.recognizer import Recognizer

    work = tmp_path / "work"
    shutil.copytree(tokenizer.path, work / "tok")
    torch.manual_seed(5)
    ckpt = save_ssl_encoder(random_encoder(TINY), work / "w2v2", "wav2vec2")
    from sertk.text.tokenizer import Tokenizer

    exp, clf = _experiment(tmp_path, Tokenizer(work / "tok"), ckpt)
    rng = np.random.default_rng(3)
    wavs = []
    for i, seconds in enumerate((0.3, 0.17)):
        wavs.append(tmp_path / f"utt{i}.wav")
        sf.write(wavs[-1], (0.05 * rng.standard_normal(int(16000 * seconds))), 16000)
    (tmp_path / "list").write_text("".join(f"{w}\n" for w in wavs))

    rec = Recognizer(load_packed(exp), batch_size=2)  # the experiment directory itself
    direct = list(rec.recognize([(w.stem, str(w)) for w in wavs], progress=False))
    assert [r["text"] for r in direct] == ["H", "H"]

    out = tmp_path / "model.zip"
    pack(exp, out)
    with zipfile.ZipFile(out) as zf:
        names = set(zf.namelist())
        packed_conf = yaml.safe_load(zf.read("config.yaml"))["model"]["conf"]
    assert {"tokenizer/tokens.txt", "tokenizer/tokenizer.yaml"} <= names
    assert packed_conf["tokenizer"] == "tokenizer" and packed_conf["encoder"] is None
    assert packed_conf["encoder_config"]["num_hidden_layers"] == 2
    shutil.rmtree(work)  # the pack needs neither the checkpoint nor the tokenizer directory
    res = run_sertk("infer", "--model", out, "--wav-list", tmp_path / "list",
                    env={"OMP_NUM_THREADS": "1"})
    records = [json.loads(line) for line in res.stdout.splitlines()]
    assert [r["key"] for r in records] == ["utt0", "utt1"]
    assert [r["text"] for r in records] == ["H", "H"]
    for r, d in zip(records, direct):
        assert r["label"] == d["label"]
        assert r["posteriors"] == pytest.approx(d["posteriors"], abs=1e-5)
