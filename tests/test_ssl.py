"""SSL encoders (sertk.features.ssl) against ``transformers`` on tiny random checkpoints.

Each case builds a tiny random transformers model, saves it in the HF layout and loads it with
:func:`load_ssl_encoder`; no network, no pretrained weights, no ../shared.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from sertk.errors import SertkError
from sertk.features.registry import FEATURES
from sertk.features.ssl import (  # importing registers the "ssl" front end
    LayerSelect,
    SSLEncoder,
    load_ssl_encoder,
    save_ssl_encoder,
)

transformers = pytest.importorskip("transformers")

TOL = 1e-4
TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
            conv_dim=(16, 16, 16), conv_kernel=(10, 3, 3), conv_stride=(5, 2, 2),
            num_conv_pos_embeddings=8, num_conv_pos_embedding_groups=4)
# base: group norm in the CNN, post-LN transformer; large: layer norm in the CNN, conv bias,
# pre-LN transformer (do_stable_layer_norm), as in the released checkpoints.
VARIANTS = {"base": dict(feat_extract_norm="group", do_stable_layer_norm=False),
            "large": dict(feat_extract_norm="layer", do_stable_layer_norm=True, conv_bias=True)}
CLASSES = {"wav2vec2": ("Wav2Vec2Config", "Wav2Vec2Model"),
           "hubert": ("HubertConfig", "HubertModel"),
           "wavlm": ("WavLMConfig", "WavLMModel")}
CASES = [(kind, variant) for kind in CLASSES for variant in VARIANTS]
IDS = [f"{k}-{v}" for k, v in CASES]

# Measured max abs differences to transformers over every hidden state (torch/torchaudio 2.11
# CPU, transformers 5.23, these configs): wav2vec2-base 0.0, wav2vec2-large 0.0, hubert-base 0.0,
# hubert-large 0.0 (bit-identical: same ops in the same order), wavlm-base 4.8e-07,
# wavlm-large 1.2e-07 (hidden-state magnitudes ~0.3-3.6). Padding invariance: <= 1.5e-06.


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny models: one intra-op thread is faster, and on a busy 2-core machine much faster
    (measured 9 s instead of 30 s for this file); restored afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _build_hf(kind: str, variant: str, seed: int = 0):
    torch.manual_seed(seed)
    config_cls, model_cls = (getattr(transformers, n) for n in CLASSES[kind])
    return model_cls(config_cls(**TINY, **VARIANTS[variant])).eval()


_CACHE: dict[tuple[str, str], tuple[object, Path]] = {}


@pytest.fixture
def checkpoint(request, tmp_path_factory):
    """(transformers model, checkpoint dir) for ``request.param = (kind, variant)``."""
    key = request.param
    if key not in _CACHE:
        hf = _build_hf(*key)
        path = tmp_path_factory.mktemp("-".join(key))
        hf.save_pretrained(path)
        _CACHE[key] = (hf, path)
    return _CACHE[key]


def _wav(*shape: int, seed: int = 1) -> torch.Tensor:
    return 0.1 * torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def _hf_hidden(hf, wav: torch.Tensor) -> list[torch.Tensor]:
    """transformers' N + 1 hidden states; in pre-LN models the last one WITHOUT the encoder's
    final layer norm, as transformers >= 5 returns it (4.x returned the normed
    ``last_hidden_state``; the tests then skip that one state)."""
    with torch.no_grad():
        out = hf(wav, output_hidden_states=True)
    hidden = list(out.hidden_states)
    if hf.config.do_stable_layer_norm and torch.equal(hidden[-1], out.last_hidden_state):
        hidden[-1] = None  # transformers 4.x
    return hidden


def _maxdiff(a: torch.Tensor, b: torch.Tensor | None) -> float:
    if b is None:
        return 0.0
    assert a.shape == b.shape, (a.shape, b.shape)
    return float((a - b).detach().abs().max())


@pytest.mark.parametrize("checkpoint", CASES, ids=IDS, indirect=True)
def test_matches_transformers_layer_by_layer(checkpoint):
    hf, path = checkpoint
    model = load_ssl_encoder(path)
    wav = _wav(2, 2000)
    ref = _hf_hidden(hf, wav)  # N + 1 states: transformer input, then each layer
    with torch.no_grad():
        raw, _ = model.extract_features(wav)  # torchaudio: N layer outputs, no final LN
        ours, frames = SSLEncoder(model).hidden_states(wav)
    assert len(raw) == len(ref) - 1 == TINY["num_hidden_layers"]
    diffs = [_maxdiff(a, b) for a, b in zip(raw, ref[1:])]
    diffs += [_maxdiff(a, b) for a, b in zip(ours, ref)]
    assert len(ours) == len(ref) and frames.tolist() == [ref[0].shape[1]] * 2
    assert max(diffs) <= TOL, diffs


@pytest.mark.parametrize("checkpoint", [("hubert", "base"), ("wavlm", "base")],
                         ids=["hubert-base", "wavlm-base"], indirect=True)
def test_frontend(checkpoint):
    hf, path = checkpoint
    wav = _wav(3000)
    ref = _hf_hidden(hf, wav[None])
    fe = FEATURES.build("ssl", sample_rate=16000, checkpoint=str(path), layer=1)
    out = fe(wav)
    assert fe.dim == 32 and out.shape == (ref[1].shape[1], 32) and out.dtype == torch.float32
    assert _maxdiff(out, ref[1][0]) <= TOL
    mean = FEATURES.build("ssl", sample_rate=16000, checkpoint=str(path), layer="mean")(wav)
    assert _maxdiff(mean, torch.stack(ref).mean(0)[0]) <= TOL
    last = FEATURES.build("ssl", sample_rate=16000, checkpoint=str(path), layer=-1)(wav)
    assert _maxdiff(last, ref[-1][0]) <= TOL
    assert fe(_wav(15)).shape == (0, 32)  # shorter than one frame
    with pytest.raises(SertkError, match="weighted sum cannot be dumped"):
        FEATURES.build("ssl", sample_rate=16000, checkpoint=str(path), layer="weighted")
    with pytest.raises(SertkError, match="out of range"):
        FEATURES.build("ssl", sample_rate=16000, checkpoint=str(path), layer=3)
    with pytest.raises(SertkError, match="16 kHz"):
        FEATURES.build("ssl", sample_rate=8000, checkpoint=str(path))


@pytest.mark.parametrize("checkpoint", [("wav2vec2", "large")], ids=["wav2vec2-large"],
                         indirect=True)
def test_normalize_matches_hf_feature_extractor(checkpoint, tmp_path):
    hf, path = checkpoint
    for f in path.iterdir():
        (tmp_path / f.name).symlink_to(f)
    extractor = transformers.Wav2Vec2FeatureExtractor(do_normalize=True)
    extractor.save_pretrained(tmp_path)  # preprocessor_config.json: do_normalize true
    wav = 0.3 + _wav(2500)
    inputs = extractor(wav.numpy(), sampling_rate=16000, return_tensors="pt").input_values
    ref = _hf_hidden(hf, inputs.float())
    out = FEATURES.build("ssl", sample_rate=16000, checkpoint=str(tmp_path), layer=2)(wav)
    assert _maxdiff(out, ref[2][0]) <= TOL


def test_layer_select_weighted_sum_is_learnable_and_starts_as_mean():
    hidden = [torch.randn(2, 5, 4) for _ in range(3)]
    select = LayerSelect(3, "weighted")
    out, lengths = select(hidden)
    assert lengths is None
    assert _maxdiff(out, torch.stack(hidden).mean(0)) <= 1e-6
    assert _maxdiff(out, LayerSelect(3, "mean")(hidden)[0]) <= 1e-6
    (out * torch.randn_like(out)).sum().backward()
    assert select.weights is not None and select.weights.grad is not None
    assert float(select.weights.grad.abs().sum()) > 0
    masked, _ = LayerSelect(3, 1)(hidden, torch.tensor([5, 3]))
    assert torch.equal(masked[0], hidden[1][0]) and torch.equal(masked[1, :3], hidden[1][1, :3])
    assert float(masked[1, 3:].abs().sum()) == 0
    assert torch.equal(LayerSelect(3, -1)(hidden)[0], hidden[2])
    assert torch.equal(LayerSelect(3, "1")(hidden)[0], hidden[1])
    with pytest.raises(SertkError):
        LayerSelect(3, 3)


@pytest.mark.parametrize("checkpoint", [("wavlm", "base")], ids=["wavlm-base"], indirect=True)
def test_frozen_and_finetuned_encoder(checkpoint):
    _, path = checkpoint
    wav, lengths = _wav(2, 2000), torch.tensor([2000, 1500])
    frozen = SSLEncoder(path, layer="weighted", freeze=True).train()
    assert not frozen.encoder.training and frozen.select.training
    feats, frames = frozen(wav, lengths)
    assert feats.shape == (2, int(frames.max()), 32) and frames.tolist() == [99, 74]
    assert not feats[1, 74:].any()
    feats.pow(2).sum().backward()
    assert frozen.select.weights.grad is not None
    assert all(p.grad is None and not p.requires_grad for p in frozen.encoder.parameters())

    tuned = SSLEncoder(path, layer=2, freeze=False).train()
    assert tuned.encoder.training
    feats, _ = tuned(wav, lengths)
    feats.pow(2).sum().backward()
    layer = tuned.encoder.encoder.transformer.layers[1]
    assert layer.feed_forward.output_dense.weight.grad is not None
    assert all(p.grad is None for p in tuned.encoder.feature_extractor.parameters())  # freeze_cnn
    full = SSLEncoder(path, layer=2, freeze=False, freeze_cnn=False).train()
    full(wav, lengths)[0].sum().backward()
    assert full.encoder.feature_extractor.conv_layers[0].conv.weight.grad is not None


PAD_CASES = [(c, False) for c in CASES] + [(("wav2vec2", "base"), True), (("wavlm", "large"), True)]


@pytest.mark.parametrize(("checkpoint", "normalize"), PAD_CASES, indirect=["checkpoint"],
                         ids=[f"{k}-{v}-{'normalize' if n else 'raw'}" for (k, v), n in PAD_CASES])
def test_padding_invariance(checkpoint, normalize):
    """The shorter utterance of a padded batch gives, on its valid frames, its output alone.

    For group-norm CNNs ("base") this holds because SSLEncoder runs the CNN per utterance (see
    test_group_norm_batched_cnn_depends_on_padding); the transformer masks padded frames."""
    _, path = checkpoint
    enc = SSLEncoder(path, normalize=normalize)
    long, short = _wav(2400, seed=2), _wav(1500, seed=3)
    batch = torch.stack([long, torch.nn.functional.pad(short, (0, 900))])
    with torch.no_grad():
        padded, frames = enc.hidden_states(batch, torch.tensor([2400, 1500]))
        alone, alone_frames = enc.hidden_states(short[None])
        first, _ = enc.hidden_states(long[None])
    t = int(alone_frames[0])
    assert int(frames[1]) == t and int(frames[0]) == padded[0].shape[1]
    diffs = [_maxdiff(p[1, :t], a[0]) for p, a in zip(padded, alone)]
    diffs += [_maxdiff(p[0], f[0]) for p, f in zip(padded, first)]
    assert max(diffs) <= TOL, diffs


@pytest.mark.parametrize("checkpoint", [("wav2vec2", "base")], ids=["wav2vec2-base"],
                         indirect=True)
def test_group_norm_batched_cnn_depends_on_padding(checkpoint):
    """Why SSLEncoder runs group-norm CNNs per utterance: the first conv layer's GroupNorm
    (one group per channel) normalises each channel over ALL time steps of the padded input,
    so zero padding changes every frame of the shorter utterance in torchaudio's (and
    transformers') plain batched forward, lengths or not."""
    _, path = checkpoint
    model = load_ssl_encoder(path)
    short = _wav(1500, seed=3)
    batch = torch.stack([_wav(2400, seed=2), torch.nn.functional.pad(short, (0, 900))])
    with torch.no_grad():
        padded, frames = model.extract_features(batch, torch.tensor([2400, 1500]))
        alone, _ = model.extract_features(short[None])
    assert _maxdiff(padded[-1][1, : int(frames[1])], alone[-1][0]) > 1e-2


@pytest.mark.parametrize("checkpoint", [("hubert", "base")], ids=["hubert-base"],
                         indirect=True)
def test_checkpoint_errors(checkpoint, tmp_path):
    from safetensors.torch import load_file, save_file

    _, path = checkpoint
    with pytest.raises(SertkError, match="not found"):
        load_ssl_encoder(tmp_path / "nowhere")
    with pytest.raises(SertkError, match="not found"):
        FEATURES.build("ssl", sample_rate=16000, checkpoint=str(tmp_path / "nowhere"))
    with pytest.raises(SertkError, match="config.json is missing"):
        load_ssl_encoder(tmp_path)
    (tmp_path / "config.json").write_text((path / "config.json").read_text())
    with pytest.raises(SertkError, match="no weights"):
        load_ssl_encoder(tmp_path)
    state = load_file(str(path / "model.safetensors"))
    del state["encoder.layers.1.attention.k_proj.bias"]
    state["encoder.extra.weight"] = torch.zeros(1)
    save_file(state, str(tmp_path / "model.safetensors"))
    with pytest.raises(SertkError, match=r"missing keys: encoder\.transformer\.layers\.1\."
                                         r"attention\.k_proj\.bias.*unexpected keys: "
                                         r"encoder\.transformer\.extra\.weight"):
        load_ssl_encoder(tmp_path)
    with pytest.raises(SertkError, match="missing keys"):  # hubert weights as WavLM
        load_ssl_encoder(path, kind="wavlm")
    with pytest.raises(SertkError, match="not supported"):
        load_ssl_encoder(path, kind="whisper")


@pytest.mark.parametrize("checkpoint", [("wav2vec2", "base")], ids=["wav2vec2-base"],
                         indirect=True)
def test_task_head_prefix_and_torch_bin(checkpoint, tmp_path):
    """A Wav2Vec2ForCTC-style ``pytorch_model.bin`` (``wav2vec2.`` prefix, old weight_g/v
    names, an lm_head) loads into the same encoder."""
    hf, path = checkpoint
    state = {}
    for k, v in hf.state_dict().items():
        k = k.replace("parametrizations.weight.original0", "weight_g")
        state["wav2vec2." + k.replace("parametrizations.weight.original1", "weight_v")] = v
    state["lm_head.weight"] = torch.zeros(5, 32)
    torch.save(state, tmp_path / "pytorch_model.bin")
    (tmp_path / "config.json").write_text((path / "config.json").read_text())
    a, b = load_ssl_encoder(tmp_path), load_ssl_encoder(path)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(),
                                                  b.state_dict().values()))


ROUND_TRIP = [("wav2vec2", "base"), ("hubert", "large"), ("wavlm", "large")]


@pytest.mark.parametrize("checkpoint", ROUND_TRIP, ids=[f"{k}-{v}" for k, v in ROUND_TRIP],
                         indirect=True)
def test_save_round_trip(checkpoint, tmp_path):
    """save_ssl_encoder (e.g. after torchaudio's import_fairseq_model) writes the HF layout:
    the same config and tensors under the same names as transformers' save_pretrained (only
    the unused masked_spec_embed is absent), and load_ssl_encoder reads it back."""
    from safetensors.torch import load_file

    hf, path = checkpoint
    model = load_ssl_encoder(path)
    save_ssl_encoder(model, tmp_path, hf.config.model_type)
    ours, ref = (load_file(str(p / "model.safetensors")) for p in (tmp_path, path))
    assert set(ours) == set(ref) - {"masked_spec_embed"}
    assert all(torch.equal(ours[k], ref[k]) for k in ours)
    config = json.loads((tmp_path / "config.json").read_text())
    assert all(config[k] == (list(v) if isinstance(v, tuple) else v)
               for k, v in hf.config.to_dict().items() if k in config and k != "architectures")
    again = load_ssl_encoder(tmp_path)
    assert all(torch.equal(x, y) for x, y in zip(model.state_dict().values(),
                                                  again.state_dict().values()))
