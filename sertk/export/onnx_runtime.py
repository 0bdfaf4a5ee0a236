"""The exported ONNX graph run by ONNX Runtime in place of a packed model's PyTorch network
(``sertk infer --backend onnxruntime``).

:func:`load_backend` swaps ``packed.model`` for an :class:`OnnxRuntimeClassifier`, which has
the call interface the recognizer uses (``model(feats, lengths, inputs=None)`` -> logits
``[N, C]`` as a torch tensor, ``.to()``, ``.eval()``), so :class:`~sertk.infer.recognizer.
Recognizer`, :func:`~sertk.infer.recognizer.posteriors` and ``predict_dump`` run unchanged.
The graph is the one ``sertk export`` wrote beside the pack (checked to come from the same
pack), else the pack is exported now, in memory.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from sertk.errors import SertkError

log = logging.getLogger(__name__)
BACKENDS = ("torch", "onnxruntime")


def _ort() -> Any:
    try:
        import onnxruntime
    except ImportError:  # pragma: no cover - a dependency of sertk
        raise SertkError("the onnxruntime backend needs the onnxruntime package "
                         "(pip install onnxruntime)") from None
    return onnxruntime


def make_session(model: bytes | str | Path, device: str = "cpu",
                 threads: int | None = None) -> Any:
    """An ONNX Runtime session for a serialized graph or an ``.onnx`` file; ``device``
    ``cuda`` uses the CUDA provider when this onnxruntime build has it."""
    ort = _ort()
    opts = ort.SessionOptions()
    opts.log_severity_level = 4  # fatal only: failures reach the caller as exceptions
    if threads:
        opts.intra_op_num_threads = int(threads)
    providers = ["CPUExecutionProvider"]
    if str(device).startswith("cuda"):
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise SertkError("this onnxruntime has no CUDA provider (pip install "
                             "onnxruntime-gpu), use --device cpu")
        providers.insert(0, "CUDAExecutionProvider")
    source = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(source, sess_options=opts, providers=providers)


def run_session(session: Any, feats: np.ndarray, lengths: np.ndarray) -> list[np.ndarray]:
    """The graph's outputs for a padded batch (an input the graph dropped, e.g. ``lengths``
    of a network that ignores it, is not fed)."""
    values = {"feats": np.ascontiguousarray(feats, dtype=np.float32),
              "lengths": np.ascontiguousarray(lengths, dtype=np.int64)}
    feed = {i.name: values[i.name] for i in session.get_inputs()}
    return session.run(None, feed)


class OnnxRuntimeClassifier(nn.Module):
    """Drop-in for :class:`~sertk.models.classifier.EmotionClassifier` at inference:
    ``forward(feats, lengths, inputs=None) -> logits`` (CMVN included in the graph)."""

    def __init__(self, session: Any, meta: dict[str, Any]):
        super().__init__()
        self.session = session
        self.meta = meta
        self.name = meta.get("model")
        self.input_dim = int(meta["input_dim"])
        self.num_classes = len(meta.get("labels") or [])
        self.net = None  # no PyTorch network (and no CTC ``transcribe``)
        self.reads_inputs = False

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor, normalized: bool = False,
                aux_targets: dict[str, torch.Tensor] | None = None,
                inputs: dict[str, tuple[torch.Tensor, torch.Tensor]] | None = None
                ) -> torch.Tensor:
        if normalized or aux_targets is not None or inputs:
            raise SertkError("the onnxruntime backend runs inference on raw features only "
                             "(no normalized features, auxiliary targets or extra inputs)")
        if feats.shape[-1] != self.input_dim:
            raise SertkError(f"the ONNX graph takes {self.input_dim}-dim features, got "
                             f"{feats.shape[-1]}")
        logits = run_session(self.session, feats.detach().float().cpu().numpy(),
                             lengths.detach().cpu().numpy())[0]
        return torch.from_numpy(logits).to(feats.device)

    def extra_repr(self) -> str:
        return f"model={self.name}, input_dim={self.input_dim}, onnxruntime"


def _read_meta(onnx_path: Path) -> dict[str, Any] | None:
    from sertk.export.onnx import sidecar_path

    side = sidecar_path(onnx_path)
    if side.is_file():
        return json.loads(side.read_text())
    import onnx

    props = {p.key: p.value for p in onnx.load(str(onnx_path), load_external_data=False)
             .metadata_props}
    return json.loads(props["sertk"]) if "sertk" in props else None


def _saved_graph(packed: Any, source: str | Path) -> tuple[Path, dict[str, Any]] | None:
    """The graph ``sertk export`` wrote for ``source`` (default place), if it is there and
    comes from this very pack; None if there is none."""
    from sertk.export.onnx import default_output, source_digest

    path = default_output(source)
    if not path.is_file():
        return None
    meta = _read_meta(path)
    if not meta:
        raise SertkError(f"{path} has no sertk metadata (not written by `sertk export`)")
    digest = (meta.get("source") or {}).get("sha256")
    if digest and digest != source_digest(source):
        raise SertkError(f"{path} was exported from another version of {source}: run "
                         f"`sertk export --model {source} --format onnx` again")
    if meta.get("labels") != list(packed.labels) or \
            int(meta.get("input_dim", -1)) != int(packed.model.input_dim):
        raise SertkError(f"{path} does not match {source} (labels or input dimension)")
    return path, meta


def load_backend(packed: Any, backend: str = "torch", source: str | Path | None = None,
                 device: str = "cpu") -> Any:
    """``packed`` with its network run by ``backend`` (:data:`BACKENDS`).

    ``onnxruntime``: the graph ``sertk export`` wrote for ``source`` (the ``--model`` path)
    if it is there, else the pack exported now in memory (checked against PyTorch as
    ``sertk export`` does); ``packed.model`` becomes an :class:`OnnxRuntimeClassifier`.
    Raises :class:`SertkError` for a model that does not export (see docs/onnx.md).
    """
    if backend not in BACKENDS:
        raise SertkError(f"unknown backend {backend!r}; known: {', '.join(BACKENDS)}")
    if backend == "torch" or isinstance(packed.model, OnnxRuntimeClassifier):
        return packed
    from sertk.export.onnx import export_packed_bytes, packed_reason

    reason = packed_reason(packed)
    if reason:
        raise SertkError(f"model {packed.config['model']['name']} cannot run on onnxruntime: "
                         f"{reason} (see docs/onnx.md); use --backend torch")
    saved = _saved_graph(packed, source) if source is not None else None
    if saved is not None:
        path, meta = saved
        log.info("onnxruntime backend: %s", path)
        session = make_session(path, device)
    else:
        data, meta = export_packed_bytes(packed, check=True)
        log.info("onnxruntime backend: exported in memory (time multiple %s)",
                 meta["time_multiple"])
        session = make_session(data, device)
    packed.model = OnnxRuntimeClassifier(session, meta)
    return packed
