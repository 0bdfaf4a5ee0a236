"""Model size and cost: parameters and MFLOPs for a given length of audio.

FLOPs are counted by :class:`torch.utils.flop_counter.FlopCounterMode` (matrix products and
convolutions, 2 FLOPs per multiply-add). Recurrent layers are added by formula,
``2 * T * directions * gates * hidden * (input + hidden)`` per layer, only where the counter
does not see their matrix products (a fused RNN kernel); on the CPU build it does.
Elementwise operations (activations, normalisation) are not counted, as is usual in the
papers' tables.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from sertk.config import load_yaml
from sertk.errors import SertkError
from sertk.features.registry import FeatureConfig, build_frontend
from sertk.models.classifier import build_net, input_tables, members_of
from sertk.models.registry import MODELS

REPO_CONF = Path(__file__).resolve().parents[2] / "conf"
GATES = {nn.LSTM: 4, nn.GRU: 3, nn.RNN: 1}


def _rnn_formula(mod: nn.Module, x) -> int:  # noqa: ANN001
    steps = int(x.data.shape[0]) if isinstance(x, nn.utils.rnn.PackedSequence) else \
        int(x.shape[0]) * int(x.shape[1])
    dirs = 2 if mod.bidirectional else 1
    gates = next(g for cls, g in GATES.items() if isinstance(mod, cls))
    total = 0
    for layer in range(mod.num_layers):
        inp = mod.input_size if layer == 0 else mod.hidden_size * dirs
        total += 2 * steps * dirs * gates * mod.hidden_size * (inp + mod.hidden_size)
    return total


def count_flops(model: nn.Module, feats: torch.Tensor, lengths: torch.Tensor,
                inputs: dict[str, tuple[torch.Tensor, torch.Tensor]] | None = None) -> int:
    """FLOPs of one forward pass; an RNN call the counter did not see (fused kernel, e.g. an
    unpacked nn.LSTM) is added by formula, one it saw (packed input) is not counted twice."""
    model.eval()
    counter = FlopCounterMode(display=False)
    extra = 0
    before: dict[int, int] = {}

    def pre(mod: nn.Module, inputs) -> None:  # noqa: ANN001
        before[id(mod)] = counter.get_total_flops()

    def post(mod: nn.Module, inputs, output) -> None:  # noqa: ANN001
        nonlocal extra
        if counter.get_total_flops() == before[id(mod)]:
            extra += _rnn_formula(mod, inputs[0])

    rnns = [m for m in model.modules() if isinstance(m, tuple(GATES))]
    handles = [h for m in rnns for h in (m.register_forward_pre_hook(pre),
                                         m.register_forward_hook(post))]
    try:
        with torch.no_grad(), counter:
            if inputs is None:
                model(feats, lengths)
            else:
                model(feats, lengths, inputs=inputs)
    finally:
        for h in handles:
            h.remove()
    return int(counter.get_total_flops()) + extra


# what the extra inputs of a multimodal model are assumed to be for its FLOPs count
EXAMPLE_SIZE = {"tokens": 1000, "feats": 512}   # vocabulary size / feature dimension
EXAMPLE_RATE = {"tokens": 3.0, "feats": 25.0}    # tokens / frames per second of audio


def example_inputs(kinds: dict[str, str], seconds: float
                   ) -> tuple[dict[str, int], dict[str, tuple[torch.Tensor, torch.Tensor]]]:
    """``input_sizes`` and one utterance's extra inputs for ``seconds`` of audio."""
    sizes, inputs = {}, {}
    for table, kind in kinds.items():
        n = max(1, int(EXAMPLE_RATE[kind] * seconds))
        sizes[table] = EXAMPLE_SIZE[kind]
        x = torch.arange(n)[None] % (EXAMPLE_SIZE[kind] - 1) + 1 if kind == "tokens" \
            else torch.full((1, n, EXAMPLE_SIZE[kind]), 1e-3)
        inputs[table] = (x, torch.tensor([n]))
    return sizes, inputs


def model_config(name_or_path: str) -> tuple[dict[str, Any], Path | None]:
    """``conf/model/<id>.yaml`` for a model id, or the given YAML path."""
    path = Path(name_or_path)
    if not path.suffix:
        path = REPO_CONF / "model" / f"{name_or_path}.yaml"
    if path.is_file():
        return load_yaml(path), path
    if name_or_path in MODELS:
        return {"model": {"name": name_or_path}}, None
    raise SertkError(f"no config {path} and no registered model {name_or_path!r}")


def info(name_or_path: str, seconds: float = 3.0, num_classes: int | None = None
         ) -> dict[str, Any]:
    """Parameters and MFLOPs of the model of a config for ``seconds`` of audio."""
    cfg, path = model_config(name_or_path)
    mcfg = cfg.get("model") or {}
    feats_path = cfg.get("feats")
    if feats_path is None:
        raise SertkError(f"{path or name_or_path}: no 'feats:' entry naming its front end "
                         "config; pass a config that has one")
    fpath = Path(feats_path)
    if not fpath.is_absolute():
        fpath = REPO_CONF.parent / fpath
    fcfg = FeatureConfig.load(fpath)
    frontend = build_frontend(fcfg)
    x = frontend(torch.zeros(int(seconds * fcfg.sample_rate)) + 1e-3)[None]
    extra = getattr(MODELS.get(mcfg["name"]).builder, "extra_input_dim_for", None)
    if extra is not None:  # columns pasted beside the front end's (semantic_fusion)
        x = torch.nn.functional.pad(x, (0, extra(mcfg.get("conf") or {})))
    n_cls = num_classes or len(cfg.get("labels") or []) or 4
    kinds = input_tables(mcfg["name"], mcfg.get("conf"))
    sizes, inputs = example_inputs(kinds, seconds)
    net = build_net(mcfg["name"], x.shape[2], n_cls, mcfg.get("conf"), members_of(mcfg),
                    **({"input_sizes": sizes} if kinds else {}))
    flops = count_flops(net, x, torch.tensor([x.shape[1]]), inputs if kinds else None)
    return {"model": mcfg["name"], "config": str(path) if path else None,
            "params": sum(p.numel() for p in net.parameters()),
            "mflops": flops / 1e6, "input": list(x.shape[1:]), "seconds": seconds,
            "num_classes": n_cls, "feats": str(fpath)}
