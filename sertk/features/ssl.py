"""Self-supervised speech encoders (wav2vec 2.0, HuBERT, WavLM) as front ends and model parts.

The networks are torchaudio's (:func:`torchaudio.models.wav2vec2_model`,
:func:`torchaudio.models.wavlm_model`); the weights come from a LOCAL checkpoint directory in the
HuggingFace ``transformers`` layout (``config.json`` + ``model.safetensors`` or
``pytorch_model.bin``), converted with torchaudio's own HF import helpers. Nothing is downloaded
and ``transformers`` is not imported (see ``docs/ssl_checkpoints.md`` for getting checkpoints).

- wav2vec 2.0: Baevski et al., "wav2vec 2.0: A Framework for Self-Supervised Learning of Speech
  Representations", NeurIPS 2020.
- HuBERT: Hsu et al., "HuBERT: Self-Supervised Speech Representation Learning by Masked
  Prediction of Hidden Units", IEEE/ACM TASLP 2021.
- WavLM: Chen et al., "WavLM: Large-Scale Self-Supervised Pre-Training for Full Stack Speech
  Processing", IEEE JSTSP 2022.
- Learnable softmax-weighted sum of all layers: Yang et al., "SUPERB: Speech processing Universal
  PERformance Benchmark", Interspeech 2021.

Layer numbering follows ``transformers``' ``hidden_states``: a model with N transformer layers
has N + 1 hidden states; 0 is the transformer input (feature projection + convolutional
positional embedding, layer-normed in post-LN "base" models), i = 1..N the output of transformer
layer i, exactly torchaudio's ``extract_features(...)[i - 1]``. In pre-LN ("large",
``do_stable_layer_norm``) models the encoder's final layer norm is not applied to layer N (as in
transformers >= 5 and torchaudio; transformers 4 returned the normed ``last_hidden_state``
there). Frames are 20 ms for the standard 16 kHz models.

Use as a frozen front end for ``sertk feats dump`` (``conf/feats/*.yaml``)::

    name: ssl
    sample_rate: 16000
    checkpoint: /path/to/hubert-base-ls960   # HF model directory
    layer: 9                                 # or "mean": average of all hidden states

or inside a model, frozen (SUPERB: learnable weighted sum over a frozen encoder) or fine-tuned::

    enc = SSLEncoder("/path/to/wavlm-base-plus", layer="weighted", freeze=False)
    feats, frame_lengths = enc(wav, lengths)   # [B, S], [B] -> [B, T, D], [B]
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Union

import torch
from torch import nn
from torchaudio.models import Wav2Vec2Model, wav2vec2_model, wavlm_model
from torchaudio.models.wav2vec2.utils.import_huggingface import (
    _get_config,
    _get_config_wavlm,
    transform_wavlm_encoder_state,
)
from torchaudio.models.wav2vec2.wavlm_attention import WavLMSelfAttention

from sertk.errors import SertkError
from sertk.features.registry import FEATURES
from sertk.features.waveform import normalize_wave

log = logging.getLogger(__name__)

KINDS = ("wav2vec2", "hubert", "wavlm")
LayerSpec = Union[int, str]

# transformers' defaults for the config fields torchaudio's converters read (identical for
# Wav2Vec2Config, HubertConfig and WavLMConfig); used when an older config.json omits one.
HF_DEFAULTS: dict[str, Any] = {
    "feat_extract_norm": "group", "conv_dim": [512] * 7, "conv_kernel": [10, 3, 3, 3, 3, 2, 2],
    "conv_stride": [5, 2, 2, 2, 2, 2, 2], "conv_bias": False, "hidden_size": 768,
    "feat_proj_dropout": 0.0, "num_conv_pos_embeddings": 128,
    "num_conv_pos_embedding_groups": 16, "num_hidden_layers": 12, "num_attention_heads": 12,
    "attention_dropout": 0.1, "intermediate_size": 3072, "activation_dropout": 0.1,
    "hidden_dropout": 0.1, "do_stable_layer_norm": False, "layerdrop": 0.1,
    "num_buckets": 320, "max_bucket_distance": 800,
}
# Prefixes of the base model inside task heads (ForCTC, ForPreTraining, ...).
_PREFIXES = ("wav2vec2.", "hubert.", "wavlm.")
_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


def read_json(path: Path) -> dict[str, Any]:
    try:
        with open(path) as fh:
            return json.load(fh)
    except (OSError, ValueError) as exc:
        raise SertkError(f"cannot read {path}: {exc}") from None


def _checkpoint_dir(path: str | Path) -> Path:
    root = Path(path).expanduser()
    if not root.is_dir():
        raise SertkError(f"SSL checkpoint directory not found: {root} (expected a HuggingFace "
                         "model directory with config.json and model.safetensors; see "
                         "docs/ssl_checkpoints.md)")
    if not (root / "config.json").is_file():
        raise SertkError(f"SSL checkpoint {root}: config.json is missing")
    return root


def check_config(cfg: dict[str, Any], kind: str, root: Path) -> None:
    """Reject HF options that torchaudio's networks do not implement."""
    bad = []
    for key, ok in (("hidden_act", "gelu"), ("feat_extract_activation", "gelu")):
        if cfg.get(key, ok) != ok:
            bad.append(f"{key}={cfg[key]!r} (only {ok!r})")
    if cfg.get("feat_extract_norm", "group") not in ("group", "layer"):
        bad.append(f"feat_extract_norm={cfg['feat_extract_norm']!r}")
    if float(cfg.get("layer_norm_eps", 1e-5)) != 1e-5:
        bad.append(f"layer_norm_eps={cfg['layer_norm_eps']} (only 1e-5)")
    if cfg.get("add_adapter"):
        bad.append("add_adapter=true")
    if cfg.get("conv_pos_batch_norm"):
        bad.append("conv_pos_batch_norm=true")
    if kind == "hubert" and not cfg.get("feat_proj_layer_norm", True):
        bad.append("feat_proj_layer_norm=false")
    if bad:
        raise SertkError(f"SSL checkpoint {root}: unsupported {kind} config: {', '.join(bad)}")


def _load_weights(root: Path) -> dict[str, torch.Tensor]:
    """The HF state dict: safetensors preferred, else ``torch.load(weights_only=True)``;
    sharded checkpoints (``*.index.json``) are merged."""
    for name in _WEIGHT_FILES:
        index = root / f"{name}.index.json"
        files = ([root / f for f in sorted(set(read_json(index)["weight_map"].values()))]
                 if index.is_file() else [root / name] if (root / name).is_file() else [])
        if not files:
            continue
        state: dict[str, torch.Tensor] = {}
        for file in files:
            try:
                if name.endswith(".safetensors"):
                    from safetensors.torch import load_file

                    state.update(load_file(str(file)))
                else:
                    state.update(torch.load(file, map_location="cpu", weights_only=True))
            except Exception as exc:  # corrupt/truncated file, pickle with non-tensor objects
                import pickle

                why = ("it holds Python objects besides tensors, which sertk never unpickles"
                       if isinstance(exc, pickle.UnpicklingError)
                       else (str(exc).strip().splitlines() or [type(exc).__name__])[0])
                raise SertkError(f"cannot load SSL weights {file}: {why}") from None
        return state
    raise SertkError(f"SSL checkpoint {root}: no weights (expected one of "
                     f"{', '.join(_WEIGHT_FILES)} or a sharded *.index.json)")


def _convert_state(hf: dict[str, torch.Tensor], kind: str, num_layers: int
                   ) -> tuple[dict[str, torch.Tensor], list[str]]:
    """HF ``Wav2Vec2Model``/``HubertModel``/``WavLMModel`` keys -> torchaudio keys; returns the
    converted state and the ignored keys (task heads, quantiser, ``masked_spec_embed``)."""
    encoder: dict[str, torch.Tensor] = {}
    out: dict[str, torch.Tensor] = {}
    ignored: list[str] = []
    for key, value in hf.items():
        name = next((key[len(p):] for p in _PREFIXES if key.startswith(p)), key)
        # old transformers' weight_norm -> torch.nn.utils.parametrizations.weight_norm
        name = name.replace(".weight_g", ".parametrizations.weight.original0")
        name = name.replace(".weight_v", ".parametrizations.weight.original1")
        if name.startswith("feature_extractor."):
            out[name] = value
        elif name.startswith("feature_projection."):
            out[f"encoder.{name}"] = value
        elif name.startswith("encoder."):
            encoder[name[len("encoder."):]] = value
        else:
            ignored.append(key)
    if kind == "wavlm":
        try:
            transform_wavlm_encoder_state(encoder, num_layers)
        except KeyError as exc:
            raise SertkError(f"WavLM checkpoint lacks {exc.args[0]!r} (not a WavLM model?)"
                             ) from None
    out.update({f"encoder.transformer.{k}": v for k, v in encoder.items()})
    return out, ignored


def _summary(keys: Sequence[str], limit: int = 8) -> str:
    more = f" ... (+{len(keys) - limit} more)" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


def load_ssl_encoder(path: str | Path, kind: str | None = None) -> Wav2Vec2Model:
    """Build torchaudio's wav2vec 2.0 / HuBERT / WavLM network from a local HF checkpoint.

    ``path``: directory with ``config.json`` and ``model.safetensors`` (or
    ``pytorch_model.bin``, or sharded ``*.index.json``); ``kind``: ``wav2vec2``, ``hubert`` or
    ``wavlm``, overriding ``config.json``'s ``model_type``. Task heads (CTC, pre-training
    quantiser, classifiers) are ignored. Returns the model in eval mode.
    """
    root = _checkpoint_dir(path)
    raw = read_json(root / "config.json")
    kind = kind or raw.get("model_type")
    if kind not in KINDS:
        raise SertkError(f"SSL checkpoint {root}: model_type {kind!r} is not supported "
                         f"(one of {', '.join(KINDS)}; pass kind= to override)")
    check_config(raw, kind, root)
    cfg = SimpleNamespace(**{**HF_DEFAULTS, **raw})
    try:
        config = _get_config_wavlm(cfg) if kind == "wavlm" else _get_config(cfg)
        model = (wavlm_model if kind == "wavlm" else wav2vec2_model)(**config, aux_num_out=None)
    except (TypeError, ValueError) as exc:
        raise SertkError(f"SSL checkpoint {root}: bad config.json: {exc}") from None
    state, ignored = _convert_state(_load_weights(root), kind, config["encoder_num_layers"])
    if ignored:
        log.debug("%s: ignoring %d keys not in the encoder: %s", root, len(ignored),
                  _summary(ignored))
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in expected.items()
              if k in state and state[k].shape != v.shape]
    if missing or unexpected or shapes:
        parts = [f"{label}: {_summary(keys)}" for label, keys in
                 (("missing keys", missing), ("unexpected keys", unexpected),
                  ("shape mismatch (checkpoint vs config)", shapes)) if keys]
        raise SertkError(f"SSL checkpoint {root}: weights do not match the {kind} model built "
                         f"from config.json (torchaudio names); {'; '.join(parts)}")
    model.load_state_dict(state)
    return model.eval()


_ARCH = {"wav2vec2": "Wav2Vec2Model", "hubert": "HubertModel", "wavlm": "WavLMModel"}


def save_ssl_encoder(model: Wav2Vec2Model, path: str | Path, kind: str) -> Path:
    """Write a torchaudio wav2vec 2.0 / HuBERT / WavLM network in the HF layout
    (``config.json`` + ``model.safetensors``, keys as ``Wav2Vec2Model``/``HubertModel``/
    ``WavLMModel``): the inverse of :func:`load_ssl_encoder`, e.g. for the output of
    :func:`torchaudio.models.wav2vec2.utils.import_fairseq_model`. An ``aux`` (CTC) head is
    not written. transformers' ``from_pretrained`` reads the result too."""
    from safetensors.torch import save_file

    if kind not in KINDS:
        raise SertkError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    convs = model.feature_extractor.conv_layers
    enc = model.encoder.transformer
    layer = enc.layers[0]
    attn = layer.attention
    config: dict[str, Any] = {
        "model_type": kind, "architectures": [_ARCH[kind]],
        "feat_extract_norm": "group" if isinstance(convs[0].layer_norm, nn.GroupNorm) else "layer",
        "conv_dim": [c.conv.out_channels for c in convs],
        "conv_kernel": [c.kernel_size for c in convs],
        "conv_stride": [c.stride for c in convs],
        "conv_bias": convs[0].conv.bias is not None,
        "hidden_size": model.encoder.feature_projection.projection.out_features,
        "feat_proj_dropout": model.encoder.feature_projection.dropout.p,
        "num_conv_pos_embeddings": enc.pos_conv_embed.kernel_size,
        "num_conv_pos_embedding_groups": enc.pos_conv_embed.conv.groups,
        "num_hidden_layers": len(enc.layers), "num_attention_heads": attn.num_heads,
        "intermediate_size": layer.feed_forward.intermediate_dense.out_features,
        "attention_dropout": float(attn.dropout),
        "activation_dropout": layer.feed_forward.intermediate_dropout.p,
        "hidden_dropout": enc.dropout.p, "do_stable_layer_norm": layer.layer_norm_first,
        "layerdrop": enc.layer_drop,
    }
    if kind == "wavlm":
        if not isinstance(attn, WavLMSelfAttention):
            raise SertkError("save_ssl_encoder: kind 'wavlm' needs a torchaudio wavlm_model")
        config.update(num_buckets=attn.num_buckets, max_bucket_distance=attn.max_distance)
    state: dict[str, torch.Tensor] = {}
    for key, value in model.state_dict().items():
        if key.startswith("encoder.transformer."):
            key = "encoder." + key[len("encoder.transformer."):]
        elif key.startswith("encoder.feature_projection."):
            key = key[len("encoder."):]
        elif not key.startswith("feature_extractor."):
            continue  # aux (CTC head)
        parts = key.split(".")
        if kind == "wavlm" and parts[4:5] == ["attention"]:  # encoder.layers.i.attention.attention
            head = ".".join(parts[:4])
            if parts[5] == "out_proj":
                state[f"{head}.out_proj.{parts[6]}"] = value
            else:  # in_proj_weight / in_proj_bias -> q, k, v
                suffix = parts[5][len("in_proj_"):]
                for name, chunk in zip(("q_proj", "k_proj", "v_proj"), value.chunk(3)):
                    state[f"{head}.{name}.{suffix}"] = chunk
            continue
        state[key] = value
    root = Path(path).expanduser()
    root.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().contiguous().cpu() for k, v in state.items()},
              str(root / "model.safetensors"), metadata={"format": "pt"})
    (root / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    return root


def do_normalize(path: str | Path) -> bool:
    """``do_normalize`` from the checkpoint's ``preprocessor_config.json`` (False if absent)."""
    pre = Path(path).expanduser() / "preprocessor_config.json"
    return bool(read_json(pre).get("do_normalize", False)) if pre.is_file() else False


def length_mask(lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    """``[B, max_len]`` bool, True on valid positions."""
    return torch.arange(max_len, device=lengths.device)[None, :] < lengths[:, None]


class LayerSelect(nn.Module):
    """One hidden layer, the mean of all layers or their learnable softmax-weighted sum.

    ``num_layers``: how many hidden states the input list holds; ``layer``: an index into that
    list (negative counts from the end), ``"mean"`` or ``"weighted"`` (SUPERB, Yang et al.
    2021: ``sum_l softmax(w)_l h_l``, ``w`` initialised to zeros, i.e. equal weights).

    With :meth:`SSLEncoder.hidden_states` (N + 1 states) index 0 is the transformer input and i
    the output of transformer layer i. torchaudio's ``extract_features`` returns only the N
    layer outputs (no layer 0): there index i - 1 is transformer layer i.
    """

    def __init__(self, num_layers: int, layer: LayerSpec = "weighted"):
        super().__init__()
        if isinstance(layer, str) and layer.lstrip("-").isdigit():
            layer = int(layer)  # "9" from a command-line override
        self.num_layers = num_layers
        self.mode = layer if isinstance(layer, str) else "index"
        self.index = 0
        self.weights: nn.Parameter | None = None
        if isinstance(layer, str):
            if layer not in ("mean", "weighted"):
                raise SertkError(f"layer must be an integer, 'mean' or 'weighted', got {layer!r}")
            if layer == "weighted":
                self.weights = nn.Parameter(torch.zeros(num_layers))
        else:
            if not -num_layers <= int(layer) < num_layers:
                raise SertkError(f"layer {layer} out of range: the encoder has {num_layers} "
                                 f"hidden states (0..{num_layers - 1})")
            self.index = int(layer) % num_layers

    @property
    def needed(self) -> int:
        """How many leading hidden states :meth:`forward` reads."""
        return self.index + 1 if self.mode == "index" else self.num_layers

    def forward(self, hidden: Sequence[torch.Tensor], lengths: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``hidden``: list of ``[B, T, D]``; returns ``([B, T, D], lengths)`` with padded frames
        (``t >= lengths[b]``) set to zero when ``lengths`` is given."""
        if len(hidden) < self.needed:
            raise ValueError(f"LayerSelect needs {self.needed} hidden states, got {len(hidden)}")
        if self.mode == "index":
            feats = hidden[self.index]
        elif self.weights is None:
            feats = torch.stack(list(hidden[: self.num_layers])).mean(0)
        else:
            w = torch.softmax(self.weights, 0).to(hidden[0].dtype)
            feats = (torch.stack(list(hidden[: self.num_layers])) * w[:, None, None, None]).sum(0)
        if lengths is not None:
            feats = feats.masked_fill(~length_mask(lengths, feats.shape[1]).unsqueeze(-1), 0.0)
        return feats, lengths

    def extra_repr(self) -> str:
        layer = self.index if self.mode == "index" else self.mode
        return f"num_layers={self.num_layers}, layer={layer}"


class SSLEncoder(nn.Module):
    """SSL encoder + :class:`LayerSelect`: ``(wav [B, S], lengths [B]) -> (feats [B, T, D],
    frame_lengths [B])``.

    ``encoder``: a checkpoint directory (see :func:`load_ssl_encoder`) or a torchaudio
    ``Wav2Vec2Model``. ``freeze``: no gradients, encoder kept in eval mode (dropout and layer
    drop off) even when the module trains; the weighted-sum weights stay learnable.
    ``freeze_cnn``: when fine-tuning (``freeze=False``), keep the convolutional feature encoder
    fixed, as transformers' ``freeze_feature_encoder()`` recipes do. ``normalize``: zero-mean
    unit-variance per utterance over its valid samples (the HF feature extractor's
    ``do_normalize``; default: the checkpoint's ``preprocessor_config.json``, else off).

    Padding: in models whose CNN starts with group norm (the "base" models), a GroupNorm over
    time would mix the padding into every frame, so the CNN then runs on each utterance's valid
    samples separately; the result is independent of padding in every model.
    """

    def __init__(self, encoder: nn.Module | str | Path, layer: LayerSpec = "weighted",
                 freeze: bool = True, freeze_cnn: bool = True, kind: str | None = None,
                 normalize: bool | None = None):
        super().__init__()
        if isinstance(encoder, (str, Path)):
            normalize = do_normalize(encoder) if normalize is None else normalize
            encoder = load_ssl_encoder(encoder, kind)
        if not isinstance(encoder, Wav2Vec2Model):
            raise TypeError(f"encoder must be a torchaudio Wav2Vec2Model, got {type(encoder)}")
        self.encoder = encoder
        self.normalize = bool(normalize)
        self.freeze = freeze
        self.freeze_cnn = freeze_cnn
        convs = encoder.feature_extractor.conv_layers
        self.group_norm = isinstance(convs[0].layer_norm, nn.GroupNorm)
        self.num_layers = len(encoder.encoder.transformer.layers)
        self.dim = int(encoder.encoder.feature_projection.projection.out_features)
        self.select = LayerSelect(self.num_layers + 1, layer)
        if freeze:
            self.encoder.requires_grad_(False)
        elif freeze_cnn:
            self.encoder.feature_extractor.requires_grad_(False)
        self.train(self.training)

    def train(self, mode: bool = True) -> SSLEncoder:
        super().train(mode)
        if self.freeze:
            self.encoder.eval()
        return self

    def num_frames(self, lengths: torch.Tensor) -> torch.Tensor:
        """Valid output frames for ``lengths`` samples (0 if shorter than one frame)."""
        for conv in self.encoder.feature_extractor.conv_layers:
            lengths = torch.div(lengths - conv.kernel_size, conv.stride, rounding_mode="floor") + 1
            lengths = lengths.clamp_min(0)
        return lengths

    def _cnn(self, wav: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        extractor = self.encoder.feature_extractor
        frames = self.num_frames(lengths)
        if not self.group_norm or bool((lengths == wav.shape[1]).all()):
            feats, _ = extractor(wav, lengths)
            return feats[:, : int(frames.max())], frames
        dim = extractor.conv_layers[-1].conv.out_channels
        feats = wav.new_zeros(wav.shape[0], int(frames.max()), dim)
        for b, (n, t) in enumerate(zip(lengths.tolist(), frames.tolist())):
            if t > 0:
                feats[b, :t] = extractor(wav[b: b + 1, :n], None)[0][0]
        return feats, frames

    def hidden_states(self, wav: torch.Tensor, lengths: torch.Tensor | None = None,
                      upto: int | None = None) -> tuple[list[torch.Tensor], torch.Tensor]:
        """All N + 1 hidden states (or the first ``upto``) as in transformers'
        ``output_hidden_states``, each ``[B, T, D]``, and the valid frames ``[B]``."""
        if wav.ndim != 2:
            raise ValueError(f"expected wav [batch, samples], got {list(wav.shape)}")
        if lengths is None:
            lengths = torch.full((wav.shape[0],), wav.shape[1], device=wav.device)
        lengths = lengths.to(wav.device)
        upto = self.num_layers + 1 if upto is None else upto
        if self.normalize:
            wav = normalize_wave(wav, lengths, eps=1e-7)  # transformers' epsilon
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.freeze_cnn
                                    and not self.freeze):
            feats, frames = self._cnn(wav, lengths)
        encoder = self.encoder.encoder
        transformer = encoder.transformer
        full = bool((frames == feats.shape[1]).all())
        x, mask = encoder._preprocess(feats, None if full else frames)
        key_padding = None
        if isinstance(transformer.layers[0].attention, WavLMSelfAttention):
            # torchaudio's WavLM attention takes a key padding mask, not an attention mask;
            # additive like torchaudio's -1e4 mask for wav2vec2 (a bool one would become -inf)
            if not full:
                key_padding = x.new_zeros(x.shape[:2]).masked_fill(
                    ~length_mask(frames, x.shape[1]), -10000.0)
            mask = None
        x = transformer._preprocess(x)
        hidden = [x]
        position_bias = None
        for layer in transformer.layers[: upto - 1]:
            if not (transformer.training and transformer.layer_drop > 0
                    and torch.rand(1).item() <= transformer.layer_drop):
                x, position_bias = layer(x, mask, position_bias=position_bias,
                                         key_padding_mask=key_padding)
            hidden.append(x)
        return hidden, frames

    def forward(self, wav: torch.Tensor, lengths: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.freeze):
            hidden, frames = self.hidden_states(wav, lengths, upto=self.select.needed)
        feats, _ = self.select(hidden, frames)
        return feats, frames


@FEATURES.register("ssl", summary="frozen wav2vec 2.0 / HuBERT / WavLM hidden layer (local HF "
                                  "checkpoint)")
class SSLFrontEnd:
    """Frozen SSL features ``[frames, hidden_size]`` (20 ms frames for the standard models).

    ``checkpoint``: HF model directory; ``layer``: hidden-state index (0 = transformer input,
    i = transformer layer i, negative from the end) or ``"mean"`` (average of all hidden states;
    a learnable weighted sum needs :class:`SSLEncoder` in a model); ``kind``: overrides
    ``model_type``; ``normalize``: per-utterance waveform normalisation (default: the
    checkpoint's ``preprocessor_config.json``); ``device``: where to run (output on CPU).
    """

    def __init__(self, sample_rate: int = 16000, checkpoint: str | None = None,
                 layer: LayerSpec = -1, kind: str | None = None, normalize: bool | None = None,
                 device: str = "cpu"):
        if checkpoint is None:
            raise SertkError("feature front end 'ssl' needs 'checkpoint' (a local HuggingFace "
                             "model directory; see docs/ssl_checkpoints.md)")
        if int(sample_rate) != 16000:
            raise SertkError(f"feature front end 'ssl': the SSL models take 16 kHz audio; set "
                             f"sample_rate: 16000 (got {sample_rate})")
        if layer == "weighted":
            raise SertkError("feature front end 'ssl': a learnable weighted sum cannot be dumped; "
                             "use layer: <index> or layer: mean (or SSLEncoder in a model)")
        self.device = torch.device(device)
        self.encoder = SSLEncoder(checkpoint, layer=layer, freeze=True, kind=kind,
                                  normalize=normalize).to(self.device).eval()
        self.dim = self.encoder.dim

    def __call__(self, wav: torch.Tensor) -> torch.Tensor:
        wav = wav.reshape(-1).float()
        n = torch.tensor([wav.numel()])
        if int(self.encoder.num_frames(n)) == 0:
            return wav.new_zeros(0, self.dim)
        with torch.no_grad():
            feats, _ = self.encoder(wav[None].to(self.device))
        return feats[0].float().cpu()
