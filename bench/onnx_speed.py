#!/usr/bin/env python3
"""PyTorch vs ONNX Runtime: size and forward time of zoo models (docs/onnx.md).

For each config (conf/model/<id>.yaml, full size, random weights): the input is 3 s of
random features shaped as its front end's (frames x dim), one utterance per pass; N passes
after warm-up on each backend, same machine and thread settings, one run. Prints a markdown
table (times: median per pass).

    tools/venv/bin/python bench/onnx_speed.py [--n 20] [--seconds 3] [CONFIG ...]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sertk.export.onnx import export_network  # noqa: E402
from sertk.export.onnx_runtime import make_session, run_session  # noqa: E402
from sertk.features.registry import FeatureConfig, build_frontend  # noqa: E402
from sertk.models.classifier import EmotionClassifier, aux_tables  # noqa: E402
from sertk.models.info import REPO_CONF, model_config  # noqa: E402

DEFAULT = ["light_sernet", "cnn_asp_small", "cnn_attn_baseline", "meta_ser", "stl_transformer",
           "replk_ser", "cnn14_transfer"]


def timed(fn, n: int, warmup: int = 3) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def bench(config: str, n: int, seconds: float) -> dict:
    cfg, _ = model_config(config)
    mcfg = cfg["model"]
    fcfg = FeatureConfig.load(REPO_CONF.parent / cfg["feats"])
    feats = build_frontend(fcfg)(torch.randn(int(seconds * fcfg.sample_rate)) * 0.1)
    torch.manual_seed(0)
    aux = {t: 3 for t in aux_tables(mcfg["name"], mcfg.get("conf"))} or None
    model = EmotionClassifier(mcfg["name"], feats.shape[1], 4, mcfg.get("conf"),
                              aux_classes=aux).eval()
    t = time.perf_counter()
    data, info = export_network(model, categorical=cfg.get("task") != "dimensional")
    export_s = time.perf_counter() - t
    session = make_session(data)
    x = torch.randn(1, *feats.shape)
    lengths = torch.tensor([feats.shape[0]])
    xn, ln = x.numpy(), lengths.numpy()

    def torch_pass() -> None:
        with torch.no_grad():
            model(x, lengths)

    torch_s = timed(torch_pass, n)
    ort_s = timed(lambda: run_session(session, xn, ln), n)
    return {"config": config, "model": mcfg["name"], "input": f"{feats.shape[0]} x "
            f"{feats.shape[1]}", "params": sum(p.numel() for p in model.parameters()),
            "torch_mb": sum(v.numel() * v.element_size()
                            for v in model.state_dict().values()) / 1e6,
            "onnx_mb": len(data) / 1e6, "torch_ms": torch_s * 1e3, "ort_ms": ort_s * 1e3,
            "export_s": export_s, "diff": info["max_abs_diff"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("configs", nargs="*", default=DEFAULT)
    ap.add_argument("--n", type=int, default=20, help="timed passes per backend")
    ap.add_argument("--seconds", type=float, default=3.0)
    args = ap.parse_args()
    import onnxruntime

    print(f"{args.seconds:g} s of audio, batch 1, median of {args.n} passes; torch "
          f"{torch.__version__} ({torch.get_num_threads()} threads), onnxruntime "
          f"{onnxruntime.__version__}, {os.cpu_count()} cores\n")
    print("| config | model | input (frames x dim) | parameters | PyTorch weights MB | "
          "ONNX MB | PyTorch ms | onnxruntime ms | speed-up | max diff |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for config in args.configs:
        r = bench(config, args.n, args.seconds)
        print(f"| `{r['config']}` | `{r['model']}` | {r['input']} | {r['params']:,} | "
              f"{r['torch_mb']:.2f} | {r['onnx_mb']:.2f} | {r['torch_ms']:.1f} | "
              f"{r['ort_ms']:.1f} | {r['torch_ms'] / r['ort_ms']:.2f}x | {r['diff']:.1e} |",
              flush=True)


if __name__ == "__main__":
    main()
