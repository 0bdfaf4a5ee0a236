"""semantic_fusion (Tzirakis et al., ICASSP 2021; papers.md 13): the speech -> text map
(Procrustes, adversarial training), frame-level semantic features from a CTM, pasting two
feature streams, and the model (forward/backward, padding invariance, fusion modes, CCC
training, clear errors)."""

from __future__ import annotations

import importlib.util
import subprocess

import kaldiio
import numpy as np
import pytest
import torch
import yaml

import sertk.models.semantic_fusion  # noqa: F401  (registers the model)
from sertk.errors import SertkError
from sertk.features.semantic import (
    make_semantic_feats,
    paste_dirs,
    paste_feats,
    read_ctm,
    upsample,
    word_type_vector,
    write_token_vectors,
)
from sertk.losses import CCCLoss
from sertk.models.registry import MODELS
from sertk.text.cross_modal import (
    AdversarialConfig,
    adversarial_map,
    learn_map,
    load_embeddings,
    load_map,
    orthogonality_error,
    orthogonalize,
    procrustes,
    refine,
    save_map,
)
from tests.conftest import REPO
from tests.model_checks import check_forward_backward, check_padding_invariance

SMALL = {"wave_dim": 16, "channels": [4, 8, 8], "kernel": 8, "pools": [2, 2],
         "fusion_dim": 8, "lstm_hidden": 8}


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)  # the machine is shared; small models run faster this way
    yield
    torch.set_num_threads(n)


def rotation(dim: int, seed: int = 0) -> np.ndarray:
    q, r = np.linalg.qr(np.random.default_rng(seed).normal(size=(dim, dim)))
    return (q * np.sign(np.diag(r))).astype(np.float32)


def write_vectors(path, words, vecs, header=True):
    lines = [f"{len(words)} {vecs.shape[1]}"] if header else []
    lines += [w + " " + " ".join(f"{v:.6f}" for v in row) for w, row in zip(words, vecs)]
    path.write_text("\n".join(lines) + "\n")


def semantic_cli():
    spec = importlib.util.spec_from_file_location("semantic_feats", REPO / "bin/semantic_feats.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


# ---------------------------------------------------------------- the map W


def test_procrustes_recovers_a_rotation_from_noisy_pairs():
    rng = np.random.default_rng(1)
    r = rotation(16)
    s = rng.normal(size=(400, 16)).astype(np.float32)
    t = s @ r.T + 0.05 * rng.normal(size=s.shape).astype(np.float32)
    w = procrustes(s, t)
    assert orthogonality_error(w) < 1e-5
    assert np.abs(w - r).max() < 0.02
    wide = procrustes(s[:, :8], t)  # E_s 8 -> E_t 16: orthonormal columns
    assert wide.shape == (16, 8) and orthogonality_error(wide) < 1e-5


def test_refinement_with_identical_words_and_mutual_nearest_neighbours():
    rng = np.random.default_rng(2)
    r = rotation(16, seed=3)
    words = [f"w{i}" for i in range(300)]
    s = rng.normal(size=(300, 16)).astype(np.float32)
    t = s @ r.T + 0.02 * rng.normal(size=s.shape).astype(np.float32)
    w, n = refine(s, t, np.eye(16, dtype=np.float32), words, words, "identical")
    assert n == 300 and np.abs(w - r).max() < 0.02
    # mutual NN: from a rough map (as adversarial training leaves it) to the rotation
    rough = r + 0.15 * rng.normal(size=r.shape).astype(np.float32)
    w, n = refine(s, t, rough, dictionary="mutual_nn", iterations=3)
    assert n > 250 and np.abs(w - r).max() < 0.02 and orthogonality_error(w) < 1e-5


def test_orthogonalize_pulls_a_perturbed_map_back():
    w = torch.tensor(rotation(8)) + 0.05 * torch.randn(8, 8, generator=torch.Generator()
                                                       .manual_seed(0))
    before = orthogonality_error(w.numpy())
    for _ in range(200):
        orthogonalize(w, beta=0.05)
    assert orthogonality_error(w.numpy()) < before / 100


def test_adversarial_training_aligns_a_toy_distribution():
    """2-D anisotropic Gaussian and its copy rotated by 50 degrees: the map the adversarial
    game learns makes the mapped speech covariance match the text covariance (the only thing
    a discriminator can see here; W is determined up to a sign) and stays near-orthogonal.
    The discriminator's accuracy ends near chance. Small MLP, 150 map steps."""
    rng = np.random.default_rng(0)
    th = np.deg2rad(50)
    rot = np.array([[np.cos(th), -np.sin(th)], [np.sin(th), np.cos(th)]])
    s = (rng.normal(size=(1000, 2)) * [3.0, 0.5]).astype(np.float32)
    t = (rng.normal(size=(1000, 2)) * [3.0, 0.5] @ rot.T).astype(np.float32)

    def gap(w):
        return np.linalg.norm(np.cov((s @ w.T).T) - np.cov(t.T))

    cfg = AdversarialConfig(epochs=1, iterations=150, batch_size=64, dis_steps=2, hidden=16,
                            input_dropout=0.0, beta=0.05)
    res = adversarial_map(s, t, cfg)
    assert gap(res.w) < 0.15 * gap(np.eye(2))
    assert orthogonality_error(res.w) < 0.1
    assert abs(res.dis_accuracy[-1] - 0.5) < 0.1
    assert np.isfinite(res.dis_loss + res.map_loss).all()


def test_learn_map_cli_and_embedding_files(tmp_path):
    rng = np.random.default_rng(4)
    r = rotation(6, seed=5)
    words = [f"w{i}" for i in range(50)]
    s = rng.normal(size=(50, 6)).astype(np.float32)
    write_vectors(tmp_path / "speech.txt", words, s)
    write_vectors(tmp_path / "text.txt", words[::-1], (s @ r.T)[::-1], header=False)
    got_words, got = load_embeddings(tmp_path / "speech.txt")
    assert got_words == words and np.allclose(got, s, atol=1e-5)
    semantic_cli().main(["learn-map", str(tmp_path / "speech.txt"), str(tmp_path / "text.txt"),
                         str(tmp_path / "W.npy"), "--no-adversarial"])
    w = load_map(tmp_path / "W.npy")
    assert np.abs(w - r).max() < 1e-4  # unit-length scaling does not change the rotation
    w2, summary = learn_map(words, s, words[::-1], (s @ r.T)[::-1], AdversarialConfig(
        epochs=1, iterations=5, hidden=8, batch_size=8), refine_iterations=1)
    assert summary["dictionary_pairs"] == 50 and np.abs(w2 - r).max() < 1e-4
    (tmp_path / "bad.txt").write_text("a 1 2\nb 1 2 3\n")
    with pytest.raises(SertkError, match=r"bad.txt:2: 3 values, expected 2"):
        load_embeddings(tmp_path / "bad.txt")
    (tmp_path / "dup.txt").write_text("a 1 2\na 1 2\n")
    with pytest.raises(SertkError, match="duplicate word 'a'"):
        load_embeddings(tmp_path / "dup.txt")
    np.save(tmp_path / "v.npy", np.zeros(3))
    with pytest.raises(SertkError, match="2-D matrix"):
        load_map(tmp_path / "v.npy")


# ---------------------------------------------------------------- semantic features, paste


def write_dump(path, mats, frame_ms=10):
    """A minimal dump directory: feats.scp/ark, utt2num_frames, feats.yaml, utt2dim."""
    path.mkdir(parents=True)
    with kaldiio.WriteHelper(f"ark,scp:{path}/feats.ark,{path}/feats.scp") as w:
        for k, m in mats.items():
            w(k, m.astype(np.float32))
    (path / "utt2num_frames").write_text("".join(f"{k} {len(m)}\n" for k, m in mats.items()))
    (path / "feats.yaml").write_text(f"name: waveform\nsample_rate: 16000\nframe_ms: {frame_ms}\n")
    (path / "utt2dim").write_text("".join(f"{k} 0.1 0.2 0.3\n" for k in mats))
    return path


def test_upsample_repeats_words_over_their_frames():
    ctm = [read_ctm_line(0.10, 0.15), read_ctm_line(0.30, 0.004), read_ctm_line(0.45, 0.2)]
    vecs = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]], dtype=np.float32)
    out = upsample(ctm, vecs, 50, 0.01)
    assert out.shape == (50, 2)
    assert (out[10:25] == [1, 2]).all() and (out[30] == [3, 4]).all()  # >= 1 frame per word
    assert (out[45:50] == [5, 6]).all()  # cut at the utterance's end
    zeros = np.r_[0:10, 25:30, 31:45]
    assert not out[zeros].any()


def read_ctm_line(start, dur):
    from sertk.features.semantic import Word

    return Word(start, dur, "x")


def test_semantic_features_from_ctm_and_map(tmp_path):
    wave = write_dump(tmp_path / "wave", {"u1": np.ones((40, 16)), "u2": np.ones((25, 16)),
                                          "u3": np.ones((10, 16))})
    (tmp_path / "ctm").write_text("u1 1 0.20 0.10 hello\n"
                                  "u1 1 0.05 0.10 oh\n"   # out of order: sorted by start
                                  "u2 A 0.00 0.05 yes 0.9\n"
                                  "u2 A 0.30 0.10 late\n")  # starts after u2's 25 frames
    vec = {"u1-1": [3, 0, 0, 4], "u1-2": [0, 2, 0, 0], "u2-1": [0, 0, 0, 1]}  # no u2-2
    (tmp_path / "tok.txt").write_text("".join(f"{k} {' '.join(map(str, v))}\n"
                                              for k, v in vec.items()))
    w = np.eye(3, 4, dtype=np.float32)[[2, 0, 1]]  # drops dim 3, permutes the rest
    save_map(tmp_path / "W.npy", w)
    rep = make_semantic_feats(tmp_path / "ctm", tmp_path / "tok.txt", wave / "feats.scp",
                              tmp_path / "sem", tmp_path / "W.npy")
    assert (rep.num_utts, rep.dim, rep.tokens) == (3, 3, 4)
    assert rep.missing_tokens == ["u2-2"] and rep.utts_without_words == 1
    assert rep.words_past_end == 1
    feats = kaldiio.load_scp(str(tmp_path / "sem" / "feats.scp"))
    u1 = feats["u1"]
    assert u1.shape == (40, 3)
    oh = w @ np.array([0.6, 0, 0, 0.8])  # "oh" (u1-1): unit length, then W
    assert np.allclose(u1[5:15], oh) and np.allclose(u1[20:30], w @ [0, 1, 0, 0])
    assert not u1[np.r_[0:5, 15:20, 30:40]].any()
    assert np.allclose(feats["u2"][0:5], w @ [0, 0, 0, 1]) and not feats["u2"][5:].any()
    assert not feats["u3"].any() and feats["u3"].shape == (10, 3)
    assert (tmp_path / "sem" / "feat_dim").read_text() == "3\n"


def test_semantic_features_errors(tmp_path):
    wave = write_dump(tmp_path / "wave", {"u1": np.ones((40, 16))})
    (tmp_path / "tok.txt").write_text("u1-1 1 0\n")
    (tmp_path / "ctm").write_text("u1 1 0.2 0.1 a\nu9 1 0.2 0.1 b\n")
    with pytest.raises(SertkError, match=r"1 CTM utterance\(s\) not in .*feats.scp, first 'u9'"):
        make_semantic_feats(tmp_path / "ctm", tmp_path / "tok.txt", wave / "feats.scp",
                            tmp_path / "sem")
    (tmp_path / "ctm").write_text("u1 1 0.2 a\n")
    with pytest.raises(SertkError, match=r"ctm:1: expected 'utt channel start dur word"):
        read_ctm(tmp_path / "ctm")
    (tmp_path / "ctm").write_text("u1 1 0.2 0.1 a\n")
    with pytest.raises(SertkError, match="2-dim embeddings, but the map expects 3"):
        make_semantic_feats(tmp_path / "ctm", tmp_path / "tok.txt", wave / "feats.scp",
                            tmp_path / "sem", np.eye(3, dtype=np.float32))
    (tmp_path / "tok.txt").write_text("u1_1 1 0\n")
    with pytest.raises(SertkError, match="no key matches a CTM token .*'u1-1'"):
        make_semantic_feats(tmp_path / "ctm", tmp_path / "tok.txt", wave / "feats.scp",
                            tmp_path / "sem")


def test_paste_pads_truncates_and_counts_mismatches(tmp_path):
    a = {"u1": np.ones((10, 4)), "u2": np.ones((8, 4)), "u3": np.ones((5, 4))}
    b = {"u1": np.full((10, 2), 2.0), "u2": np.full((11, 2), 2.0),  # 3 frames more
         "u3": np.full((4, 2), 2.0), "u4": np.zeros((3, 2))}        # 1 frame less; extra utt
    wave, sem = write_dump(tmp_path / "wave", a), write_dump(tmp_path / "sem", b)
    (wave / "cmvn.ark").write_text("stats")  # the first stream's CMVN is not carried over
    rep = paste_dirs(wave, sem, tmp_path / "out")
    assert (rep.num_utts, rep.dims, rep.adjusted, rep.only_second) == (3, (4, 2), 2, 1)
    assert rep.large == [("u2", 8, 11)]
    out = kaldiio.load_scp(str(tmp_path / "out" / "feats.scp"))
    assert out["u2"].shape == (8, 6) and (out["u2"][:, 4:] == 2).all()
    assert out["u3"].shape == (5, 6) and (out["u3"][:4, 4:] == 2).all()
    assert not out["u3"][4, 4:].any() and (out["u3"][:, :4] == 1).all()
    meta = yaml.safe_load((tmp_path / "out" / "paste.yaml").read_text())
    assert (meta["wave_dim"], meta["semantic_dim"], meta["large_mismatches"]) == (4, 2, 1)
    assert (tmp_path / "out" / "utt2dim").is_file() and (tmp_path / "out" / "feats.yaml").is_file()
    assert not (tmp_path / "out" / "cmvn.ark").exists()
    assert (tmp_path / "out" / "utt2num_frames").read_text() == "u1 10\nu2 8\nu3 5\n"
    assert (tmp_path / "out" / "feat_dim").read_text() == "6\n"
    with pytest.raises(SertkError, match=r"1 utterance\(s\) of .* missing, first 'u4'"):
        paste_feats(sem / "feats.scp", wave / "feats.scp", tmp_path / "out2")


def test_cli_make_and_paste(tmp_path, capsys):
    wave = write_dump(tmp_path / "wave", {"u1": np.ones((30, 16))})
    (tmp_path / "ctm").write_text("u1 1 0.1 0.1 a\n")
    (tmp_path / "tok.txt").write_text("u1-1 1 0 0\n")
    cli = semantic_cli()
    cli.main(["make", str(wave), str(tmp_path / "sem"), "--ctm", str(tmp_path / "ctm"),
              "--embeddings", str(tmp_path / "tok.txt")])
    cli.main(["paste", str(wave), str(tmp_path / "sem"), str(tmp_path / "out")])
    out = capsys.readouterr().out
    assert "1 utterances, dim 3, 1 words; 0 without an embedding" in out
    assert "wave_dim 16 + semantic_dim 3; 0 padded/truncated" in out
    with pytest.raises(SystemExit, match="semantic_feats.py: error: .*CTM file not found"):
        cli.main(["make", str(wave), str(tmp_path / "sem"), "--ctm", str(tmp_path / "nope"),
                  "--embeddings", str(tmp_path / "tok.txt")])


def test_token_vectors_from_word_vectors_or_random(tmp_path, capsys):
    (tmp_path / "ctm").write_text("u1 1 0.3 0.1 GREAT\nu1 1 0.1 0.1 THE\nu2 1 0.0 0.2 ZZZ\n"
                                  "u2 1 0.5 0.1 great\n")
    (tmp_path / "w2v.txt").write_text("2 3\nthe 1 0 0\ngreat 0 2 0\n")
    rep = write_token_vectors(tmp_path / "ctm", tmp_path / "tok.txt", tmp_path / "w2v.txt")
    assert (rep.tokens, rep.types, rep.missing) == (3, 4, ["ZZZ"])
    lines = (tmp_path / "tok.txt").read_text().splitlines()
    assert lines == ["3 3", "u1-1 1 0 0", "u1-2 0 2 0", "u2-2 0 2 0"]  # u1 sorted by start
    rep = write_token_vectors(tmp_path / "ctm", tmp_path / "rnd.txt", random_dim=8, seed=3)
    assert rep.tokens == 4 and not rep.missing
    keys, vecs = load_embeddings(tmp_path / "rnd.txt")
    assert keys == ["u1-1", "u1-2", "u2-1", "u2-2"]
    assert np.allclose(vecs[1], word_type_vector("GREAT", 8, 3), atol=1e-5)
    assert np.allclose(np.linalg.norm(vecs, axis=1), 1, atol=1e-4)
    assert not np.allclose(vecs[1], vecs[3])  # GREAT and great are different types
    assert not np.allclose(word_type_vector("GREAT", 8, 3), word_type_vector("GREAT", 8, 4))
    with pytest.raises(SertkError, match="either word vectors or a positive random dimension"):
        write_token_vectors(tmp_path / "ctm", tmp_path / "x.txt")
    (tmp_path / "w2v.txt").write_text("foo 1 2\n")
    with pytest.raises(SertkError, match="ctm: no token got a vector"):
        write_token_vectors(tmp_path / "ctm", tmp_path / "x.txt", tmp_path / "w2v.txt")
    semantic_cli().main(["tokens", str(tmp_path / "ctm"), str(tmp_path / "c.txt"),
                         "--random-dim", "4"])
    assert "4 tokens of 4 word types; 0 word types without a vector" in capsys.readouterr().out


# ---------------------------------------------------------------- the model


@pytest.mark.parametrize("fusion, sem_dim", [("attention", 6), ("concat", 6), ("attention", 0)])
def test_forward_backward_and_padding_invariance(fusion, sem_dim):
    torch.manual_seed(0)
    net = MODELS.build("semantic_fusion", input_dim=16 + sem_dim, num_classes=3,
                       semantic_dim=sem_dim, fusion=fusion, **SMALL)
    lengths = torch.tensor([30, 17, 5])
    x = torch.randn(3, 30, 16 + sem_dim)
    check_forward_backward(net, x, lengths, num_classes=3)
    check_padding_invariance(net, x, lengths, extra_frames=11)
    assert net.frame_predictions(x, lengths).shape == (3, 30, 3)


@pytest.mark.parametrize("fusion", ["attention", "concat"])
def test_semantic_columns_reach_the_output(fusion):
    torch.manual_seed(0)
    net = MODELS.build("semantic_fusion", input_dim=22, num_classes=3, semantic_dim=6,
                       fusion=fusion, **SMALL).eval()
    x, lengths = torch.randn(2, 20, 22), torch.tensor([20, 12])
    y = x.clone()
    y[:, :, 16:] += 1.0
    with torch.no_grad():
        assert not torch.allclose(net(x, lengths), net(y, lengths))


def test_ccc_loss_decreases_on_a_tiny_batch():
    torch.manual_seed(0)
    net = MODELS.build("semantic_fusion", input_dim=22, num_classes=3, semantic_dim=6,
                       dropout=0.0, **SMALL)
    x, lengths = torch.randn(8, 20, 22), torch.randint(8, 21, (8,))
    target = torch.rand(8, 3) * 2 - 1
    loss_fn = CCCLoss([1, 1, 1])
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)

    def eval_loss():
        net.eval()
        with torch.no_grad():
            return float(loss_fn(net(x, lengths), target))

    before = eval_loss()
    net.train()
    for _ in range(40):
        opt.zero_grad()
        loss_fn(net(x, lengths), target).backward()
        opt.step()
    after = eval_loss()
    assert after < before - 0.5, (before, after)


def test_model_errors_are_clear():
    with pytest.raises(SertkError, match="input_dim 400 must equal wave_dim 160 \\+ "
                                         "semantic_dim 300"):
        MODELS.build("semantic_fusion", input_dim=400, num_classes=3)
    with pytest.raises(SertkError, match="fusion must be one of attention, concat"):
        MODELS.build("semantic_fusion", input_dim=460, num_classes=3, fusion="sum")
    with pytest.raises(SertkError, match=r"pools \[10, 8, 8\] \(product 640\) must divide"):
        MODELS.build("semantic_fusion", input_dim=460, num_classes=3, pools=[10, 8, 8])


def test_shipped_config_builds_with_the_pasted_width():
    cfg = yaml.safe_load((REPO / "conf/model/semantic_fusion.yaml").read_text())
    conf = cfg["model"]["conf"]
    net = MODELS.build("semantic_fusion", input_dim=conf["wave_dim"] + conf["semantic_dim"],
                       num_classes=3, **conf)
    assert net.cnn.frame_pool == 2 and cfg["task"] == "dimensional"
    assert cfg["loss"] == {"name": "ccc", "weights": [1, 1, 1]}
    extra = MODELS.get("semantic_fusion").builder.extra_input_dim_for(conf)
    assert conf["wave_dim"] + extra == 460


def test_recipe_trains_on_pasted_semantic_columns(tmp_path):
    """ser.sh --semantic_ctm/--semantic_vectors: the synthetic corpus's CTM and per-token
    vectors (local/data.sh) pasted to the waveform frames, then semantic_fusion trains and the
    dimensions are scored."""
    recipe = REPO / "egs" / "mini_emo" / "ser1"
    dirs = f"--datadir {tmp_path}/data --dumpdir {tmp_path}/dump --expdir {tmp_path}/exp"
    cmd = (f"./run.sh {dirs} --stop_stage 4 --progress false --local_data_opts "
           "'--speakers 6 --utts_per_emotion 2' --tag sem "
           "--train_config conf/model/semantic_fusion.yaml "
           "--feats_config conf/feats/waveform16k.yaml "
           f"--semantic_ctm {tmp_path}/data/all/ctm "
           f"--semantic_vectors {tmp_path}/data/all/token_vectors.txt "
           "--train_args '--override train.epochs=1 --override model.conf.semantic_dim=50 "
           "--override model.conf.channels=[8,8,8] --override model.conf.fusion_dim=16 "
           "--override model.conf.lstm_hidden=16'")
    proc = subprocess.run(["bash", "-c", cmd], cwd=recipe, capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "wave_dim 160 + semantic_dim 50; 0 padded/truncated" in proc.stderr
    pasted = tmp_path / "dump" / "waveform16k_semantic"
    assert (pasted / "fold1" / "train" / "feat_dim").read_text() == "210\n"
    assert (tmp_path / "exp" / "sem" / "fold1" / "decode_test" / "results.json").is_file()
    assert "CCC" in (tmp_path / "exp" / "sem" / "RESULTS.md").read_text()
    # the semantic columns hold the words' vectors at their frames, zeros between words
    feats = kaldiio.load_scp(str(pasted / "all" / "feats.scp"))
    words = read_ctm(tmp_path / "data" / "all" / "ctm")
    utt = sorted(words)[0]
    sem = feats[utt][:, 160:]
    first = words[utt][0]
    begin = int(round(first.start / 0.01))
    assert np.allclose(np.linalg.norm(sem[begin + 1]), 1, atol=1e-4) and not sem[0:1].any()
    again = subprocess.run(["bash", "-c", cmd.replace("--stop_stage 4", "--stage 2 "
                                                      "--stop_stage 2")],
                           cwd=recipe, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "semantic features of" not in again.stderr
