"""ONNX export of a packed model's network (``sertk export --format onnx``).

The graph is what :func:`sertk.infer.recognizer.posteriors` runs after the front end:

* inputs ``feats`` ``[batch, time, dim]`` float32 (the front end's features, *before* CMVN)
  and ``lengths`` ``[batch]`` int64 (real frames of each row; the rest is padding);
* outputs ``logits`` ``[batch, classes]`` and, for a categorical model, ``posteriors`` (their
  softmax); a dimensional model's ``logits`` are its predicted values;
* the global CMVN (mean and std come with the weights) is inside the graph; per-speaker CMVN
  (``speaker_cmvn`` in the pack's feats.yaml) stays the caller's job, as in ``sertk infer``;
* batch and time are dynamic axes.

**Exporter.** torch's TorchScript-based exporter (``torch.onnx.export(..., dynamo=False)``).
The dynamo-based one (``dynamo=True``, torch 2.11) fails on every zoo model in
``torch.export``: the masking layers' fast paths (``if bool(mask.all())``) are data-dependent
branches, and the time pooling's ``if pad:`` on ``T % k`` is a guard on the dynamic time axis.
The tracing exporter records one path of each branch, so the example is a padded batch (the
general, padding-aware path, which gives the same outputs on a batch without padding) and:

**Example length.** The traced example is a padded batch whose longest row has ``2^k + 1``
frames: halving it (ceil) gives odd lengths at every time pooling by 2, so each pooling traces
its padding branch (``if pad:``) and the graph computes the pad from the actual length (0
included); a pooling that traced the no-padding branch would fail on other lengths.

**Time multiple.** A fallback for a network whose trace still depends on the length: the graph
pads the time axis up to a multiple ``q`` of frames before the network (frames beyond
``lengths``; the zoo's networks give outputs independent of padding), so every ``T % k`` inside
sees the value it had when traced. ``q`` is 1 (no padding) unless the model's entry in
:data:`TIME_MULTIPLE` says otherwise; :func:`export_network` tries 64 and 192 when the check
fails. It is written into the sidecar.

**Check.** Every export is run by ONNX Runtime against PyTorch on random features of two other
lengths (a ragged batch of two and a single utterance) before it is written: a graph whose
posteriors (values, for a dimensional model) differ by more than :data:`TOLERANCE` is refused.
That is what catches Python control flow that tracing froze to the example's length.

Models that do not export are refused up front by :func:`unsupported_reason`, with the reason;
``docs/onnx.md`` lists them (``tests/test_onnx.py`` keeps the two in step).
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import io
import json
import logging
import os
import tempfile
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from sertk.errors import SertkError

log = logging.getLogger(__name__)

FORMAT = "sertk-onnx"
FORMAT_VERSION = 1
DEFAULT_OPSET = 17
TOLERANCE = 1e-4
EXAMPLE_FRAMES = 200          # the traced example: at least 2 s of 10 ms frames
FALLBACK_MULTIPLES = (64, 192)
INPUTS = ("feats", "lengths")

# time multiple per registered model whose export needs one (see the module docstring; with the
# odd-length example every zoo model that exports does so at 1); others try 1, then
# FALLBACK_MULTIPLES
TIME_MULTIPLE: dict[str, int] = {}

# ----------------------------------------------------------------------------- unsupported
_AR_GRU = ("its AR-GRU cells run a Python loop over the frames, which tracing unrolls for "
           "one length (no dynamic time axis)")
_ATT_LSTM = ("the attention-gate LSTM cell (variants *_at) runs a Python loop over the frames, "
             "which tracing unrolls for one length; the variants without the gate export")
_CA_MSER = ("its MFCC/spectrogram views take a complex STFT (torch's ONNX exporter has no "
            "complex types) and it cuts utterances into segments in a Python loop")
_COMPACT_GCN = ("it groups utterances by length in a Python loop and takes an FFT "
                "(aten::fft_rfft has no ONNX export in torch's exporter)")
_CPC = ("the CPC front end (frontend: cpc) re-pads utterances with pad_sequence (no ONNX "
        "export) and caches contexts in Python; frontend: none exports")
_DAAE = ("torch's exporter fails (an internal error of its ONNX peephole pass) on the "
         "classifier's bidirectional LSTM over a packed sequence whose frame outputs are "
         "unused; the autoencoder stage (daae_pretrain) exports")
_LEAF = ("LEAF's sPCEN smoother loops over time chunks in Python, so tracing freezes the "
         "number of chunks to the example's length")
_MTL_W2V2 = ("its wav2vec 2.0 encoder (transformers) traces length-dependent masks as "
             "constants, and its CTC head's transcripts are decoded in Python")
_NONVERBAL = ("it cuts each utterance into segments in a Python loop over the lengths "
              "(frozen by tracing to the example's)")


def _conf_value(name: str, conf: dict[str, Any], key: str) -> Any:
    """``conf[key]``, else the registered builder's default for it."""
    if key in conf:
        return conf[key]
    from sertk.models.registry import MODELS

    param = inspect.signature(MODELS.get(name).builder).parameters.get(key)
    return None if param is None or param.default is inspect.Parameter.empty else param.default


def _att_lstm(get: Callable[[str], Any]) -> str | None:
    from sertk.models.att_lstm import VARIANTS

    return _ATT_LSTM if VARIANTS.get(get("variant"), (False, False, False))[2] else None


_RULES: dict[str, Callable[[Callable[[str], Any]], str | None]] = {
    "ar_gru": lambda get: _AR_GRU,
    "att_lstm": _att_lstm,
    "ca_mser": lambda get: _CA_MSER,
    "compact_gcn": lambda get: _COMPACT_GCN,
    "cpc": lambda get: _CPC if get("frontend") == "cpc" else None,
    "daae": lambda get: _DAAE if get("stage") == "classifier" else None,
    "leaf_mmt": lambda get: _LEAF if get("stage") == "audio" else (
        "its conversation stages read conversation matrices of utterance embeddings, not "
        "audio features (no `sertk infer` input to export for)"),
    "mtl_w2v2_ctc": lambda get: _MTL_W2V2,
    "nonverbal_seg": lambda get: _NONVERBAL,
}


def unsupported_reason(name: str, conf: dict[str, Any] | None = None) -> str | None:
    """Why the registered model ``name`` with this config cannot be exported to ONNX, or None.

    A model that reads inputs besides the audio features (a transcript, video or context
    features) is out of scope: the graph takes ``feats`` and ``lengths`` only. The others are
    the models whose forward torch's exporter cannot trace into a graph with a dynamic time
    axis (``docs/onnx.md``; the test exports each one anyway and checks that it fails)."""
    from sertk.models.classifier import input_tables

    conf = dict(conf or {})
    kinds = input_tables(name, conf)
    if kinds:
        what = ", ".join(f"{t} ({k})" for t, k in sorted(kinds.items()))
        return (f"it reads {what} besides the audio features; the exported graph takes "
                "features and lengths only")
    rule = _RULES.get(name)
    return rule(lambda key: _conf_value(name, conf, key)) if rule else None


# ----------------------------------------------------------------------------- export
class ExportGraph(nn.Module):
    """``(feats, lengths) -> logits[, posteriors]`` with the time axis padded up to a
    multiple of ``multiple`` frames (see the module docstring)."""

    def __init__(self, model: nn.Module, multiple: int = 1, categorical: bool = True):
        super().__init__()
        self.model = model
        self.multiple = int(multiple)
        self.categorical = categorical

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor
                ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        if self.multiple > 1:
            feats = F.pad(feats, (0, 0, 0, (-feats.shape[1]) % self.multiple))
        logits = self.model(feats, lengths).float()
        return (logits, torch.softmax(logits, dim=-1)) if self.categorical else logits


def output_names(categorical: bool) -> list[str]:
    return ["logits", "posteriors"] if categorical else ["logits"]


def example_frames(multiple: int) -> int:
    """Length of the traced example: ``multiple * (2^k + 1)``, at least
    :data:`EXAMPLE_FRAMES`. Halving ``2^k + 1`` frames with ceil gives odd lengths down to 3,
    so every time pooling by 2 traces its padding branch (``if pad:``), whose pad amount
    the graph then computes from the actual length (0 included)."""
    k = 1
    while multiple * (2**k + 1) < EXAMPLE_FRAMES:
        k += 1
    return multiple * (2**k + 1)


def check_lengths(multiple: int) -> list[list[int]]:
    """The batches (lengths of their rows) an export is checked on: two time lengths, neither
    the traced one nor (for q > 1) a multiple of it."""
    t0 = example_frames(multiple)
    return [[t0 + 37, t0 // 2 + 11], [t0 // 2 + 13]]


def random_features(model: nn.Module, lengths: list[int], seed: int = 0
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """A padded batch of random features at the scale of the model's CMVN statistics."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(len(lengths), max(lengths), int(model.input_dim), generator=g)
    cmvn = getattr(model, "cmvn", None)
    if cmvn is not None:
        x = x * cmvn.std.detach().cpu() + cmvn.mean.detach().cpu()
    return x, torch.tensor(lengths, dtype=torch.long)


@contextlib.contextmanager
def _tracing_mode(model: nn.Module) -> Iterator[None]:
    """Eval mode with gradients on: torch's fused inference fast paths (e.g.
    ``nn.TransformerEncoderLayer``'s, which has no ONNX export) are skipped when a parameter
    requires a gradient, and the exported graph then holds the plain ops."""
    flags = [(p, p.requires_grad) for p in model.parameters()]
    training = model.training
    model.eval()
    try:
        for p, _ in flags:
            p.requires_grad_(True)
        with torch.enable_grad():
            yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
        model.train(training)


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[io.StringIO]:
    """Keep the exporter's C++ warnings (written straight to file descriptor 2) off the
    terminal; what they said is logged at debug level."""
    text = io.StringIO()
    try:
        fd = os.dup(2)
    except OSError:  # no usable descriptor 2
        yield text
        return
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield text
        finally:
            os.dup2(fd, 2)
            os.close(fd)
            tmp.seek(0)
            text.write(tmp.read().decode(errors="replace"))
            if text.getvalue().strip():
                log.debug("torch.onnx.export said:\n%s", text.getvalue())


def trace_to_onnx(model: nn.Module, multiple: int = 1, opset: int = DEFAULT_OPSET,
                  categorical: bool = True) -> bytes:
    """The serialized ONNX graph of :class:`ExportGraph` (no check). Raises
    :class:`SertkError` when torch's exporter fails."""
    graph = ExportGraph(model, multiple, categorical)
    t0 = example_frames(multiple)
    feats, lengths = random_features(model, [t0, t0 - t0 // 4])
    outputs = output_names(categorical)
    axes = {"feats": {0: "batch", 1: "time"}, "lengths": {0: "batch"},
            **{o: {0: "batch"} for o in outputs}}
    buf = io.BytesIO()
    try:
        with _tracing_mode(model), warnings.catch_warnings(), _quiet_stderr():
            warnings.simplefilter("ignore")
            torch.onnx.export(graph, (feats, lengths), buf, dynamo=False, opset_version=opset,
                              input_names=list(INPUTS), output_names=outputs,
                              dynamic_axes=axes, do_constant_folding=True)
    except Exception as exc:  # noqa: BLE001  (any exporter failure is the model's limit)
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        raise SertkError(f"torch's ONNX exporter failed: {type(exc).__name__}: {first}") \
            from exc
    return buf.getvalue()


def max_difference(model: nn.Module, session: Any, lengths: list[int], categorical: bool,
                   seed: int = 1) -> float:
    """Largest absolute difference between PyTorch's and the session's posteriors (values,
    for a dimensional model; relative to their scale when it exceeds 1) on random features."""
    from sertk.export.onnx_runtime import run_session

    x, lens = random_features(model, lengths, seed)
    with torch.no_grad():
        ref = model.eval()(x, lens).float()
    got = torch.from_numpy(run_session(session, x.numpy(), lens.numpy())[0]).float()
    if categorical:
        ref, got = torch.softmax(ref, -1), torch.softmax(got, -1)
    scale = max(1.0, float(ref.abs().max()))
    return float((ref - got).abs().max()) / scale


def export_network(model: nn.Module, opset: int = DEFAULT_OPSET,
                   time_multiple: int | None = None, categorical: bool = True,
                   check: bool = True) -> tuple[bytes, dict[str, Any]]:
    """Export an :class:`~sertk.models.classifier.EmotionClassifier` (CMVN and network) and
    check it (see the module docstring). ``time_multiple``: the only one to try (default:
    :data:`TIME_MULTIPLE`'s, or 1, then :data:`FALLBACK_MULTIPLES`).

    Does not consult :func:`unsupported_reason` (the caller does). Returns the graph and
    ``{"time_multiple", "max_abs_diff", "check_lengths"}``; raises :class:`SertkError` when no
    multiple gives a graph that runs and agrees with PyTorch.
    """
    from sertk.export.onnx_runtime import make_session

    name = getattr(model, "name", type(model).__name__)
    if time_multiple:
        multiples = [int(time_multiple)]
    else:
        first = TIME_MULTIPLE.get(name, 1)
        multiples = [first, *(q for q in FALLBACK_MULTIPLES if q > first)]
    failures = []
    for q in multiples:
        try:
            data = trace_to_onnx(model, q, opset, categorical)
            if not check:
                return data, {"time_multiple": q, "max_abs_diff": None, "check_lengths": []}
            session = make_session(data)
            cases = check_lengths(q)
            diff = max(max_difference(model, session, lens, categorical) for lens in cases)
        except SertkError as exc:
            failures.append(f"time multiple {q}: {exc}")
            continue
        except Exception as exc:  # noqa: BLE001  (ONNX Runtime refused to run the graph)
            first_line = (str(exc).strip().splitlines() or [""])[0][:300]
            failures.append(f"time multiple {q}: ONNX Runtime failed: {first_line}")
            continue
        if diff <= TOLERANCE:
            return data, {"time_multiple": q, "max_abs_diff": diff, "check_lengths": cases}
        failures.append(f"time multiple {q}: ONNX Runtime and PyTorch differ by {diff:.2e} "
                        f"(> {TOLERANCE:g}) at other lengths")
    raise SertkError(f"{name}: no ONNX graph that agrees with PyTorch at every length "
                     f"({'; '.join(failures)})")


# ----------------------------------------------------------------------------- packed models
def sidecar_path(onnx_path: str | Path) -> Path:
    """``model.onnx`` -> ``model.onnx.json``."""
    onnx_path = Path(onnx_path)
    return onnx_path.with_name(onnx_path.name + ".json")


def default_output(model_path: str | Path) -> Path:
    """Where ``sertk export`` writes by default: beside a packed ``x.zip`` as ``x.onnx``, into
    an experiment directory as ``model.onnx``, for a shipped model ``./NAME.onnx``."""
    path = Path(model_path)
    if path.is_dir():
        return path / "model.onnx"
    if path.is_file():
        return path.with_suffix(".onnx")
    return Path(f"{path.name}.onnx")


def source_digest(model_path: str | Path) -> str:
    """sha256 of a packed model (zip), or of an experiment directory's weights."""
    from sertk.infer.packed import resolve_model

    path = resolve_model(model_path)
    target = path / "model.safetensors" if path.is_dir() else path
    h = hashlib.sha256()
    with open(target, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def is_categorical(packed: Any) -> bool:
    return packed.config.get("task") != "dimensional"


def packed_reason(packed: Any) -> str | None:
    mcfg = packed.config["model"]
    return unsupported_reason(mcfg["name"], mcfg.get("conf"))


def export_packed_bytes(packed: Any, opset: int = DEFAULT_OPSET, check: bool = True,
                        source: str | Path | None = None) -> tuple[bytes, dict[str, Any]]:
    """The ONNX graph of a :class:`~sertk.infer.packed.PackedModel` (its sidecar JSON in
    the graph's metadata, key ``sertk``) and that sidecar."""
    mcfg = packed.config["model"]
    reason = packed_reason(packed)
    if reason:
        raise SertkError(f"model {mcfg['name']} cannot be exported to ONNX: {reason} "
                         "(see docs/onnx.md)")
    model = packed.model.cpu()
    categorical = is_categorical(packed)
    data, info = export_network(model, opset, categorical=categorical, check=check)
    from sertk.version import __version__

    meta = {
        "format": FORMAT, "version": FORMAT_VERSION, "sertk_version": __version__,
        "torch_version": torch.__version__, "opset": opset,
        "model": mcfg["name"], "members": int(mcfg.get("members", 1)),
        "task": "categorical" if categorical else "dimensional",
        "labels": list(packed.labels), "input_dim": int(model.input_dim),
        "feats": packed.feats.to_dict(), "cmvn": "in the graph (global)",
        "inputs": {"feats": ["batch", "time", int(model.input_dim)], "lengths": ["batch"]},
        "outputs": output_names(categorical), **info,
        "source": ({"path": str(source), "sha256": source_digest(source)} if source else None),
    }
    return _with_metadata(data, meta), meta


def _with_metadata(data: bytes, meta: dict[str, Any]) -> bytes:
    import onnx

    proto = onnx.load_from_string(data)
    proto.producer_name = "sertk"
    proto.producer_version = meta["sertk_version"]
    proto.doc_string = (f"sertk {meta['model']}: feats [batch, time, {meta['input_dim']}] + "
                        f"lengths [batch] -> {', '.join(meta['outputs'])}")
    entry = proto.metadata_props.add()
    entry.key, entry.value = "sertk", json.dumps(meta)
    return proto.SerializeToString()


def export_packed(model_path: str | Path, out: str | Path | None = None,
                  opset: int = DEFAULT_OPSET, check: bool = True) -> tuple[Path, dict[str, Any]]:
    """``sertk export --format onnx``: load a packed model (zip, experiment directory or
    shipped name), write ``out`` (default :func:`default_output`) and its sidecar JSON."""
    from sertk.infer.packed import load_packed, resolve_model

    packed = load_packed(model_path, "cpu")
    source = resolve_model(model_path)
    data, meta = export_packed_bytes(packed, opset, check, source)
    out = Path(out) if out else default_output(model_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(out)
    sidecar_path(out).write_text(json.dumps(meta, indent=2) + "\n")
    return out, meta
