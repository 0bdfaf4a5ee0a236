#!/usr/bin/env python3
"""Training-step speed of zoo models under sertk's precision and layout options (issue 17).

For each config (conf/model/<id>.yaml, random weights): one random batch shaped as its front
end's output (batch x frames x dim for ``--seconds`` of audio), and the trainer's step on it
(forward under ``torch.autocast`` as ``train.amp`` sets it, loss, backward, gradient clipping,
the config's optimiser). Variants: ``fp32``; ``bf16`` (``train.amp: bf16``, through the
trainer's ``autocast_dtype``); ``channels_last`` (``train.channels_last: true``; models with
Conv2d only); ``bf16+channels_last``; ``compile`` (``torch.compile`` of the model, default
backend, empty inductor cache unless TORCHINDUCTOR_CACHE_DIR is set; the first model
compiled also pays the process's one-time set-up; not a sertk option).
Every variant starts from the same weights and batch; its first step runs without dropout and
``loss diff`` is |its loss - fp32's|: the numerical cost alone. Throughput: batch / median step
time over ``--steps`` steps (with dropout) after ``--warmup`` more. Prints a markdown table.

    tools/venv/bin/python bench/train_speed.py [--models cnn_asp,...] [--steps 10] [--out FILE]
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sertk.bench.common import cpu_model  # noqa: E402
from sertk.errors import SertkError  # noqa: E402
from sertk.features.registry import FeatureConfig, build_frontend  # noqa: E402
from sertk.losses import build_loss, emotion_loss  # noqa: E402
from sertk.models.classifier import (  # noqa: E402
    EmotionClassifier,
    aux_tables,
    input_tables,
    members_of,
)
from sertk.models.info import REPO_CONF, model_config  # noqa: E402
from sertk.train.schedule import build_optimizer  # noqa: E402
from sertk.train.trainer import DEFAULT_TRAIN, autocast_dtype  # noqa: E402

DEFAULT_MODELS = ["cnn_asp", "light_sernet", "stl_transformer", "meta_ser"]
VARIANTS = ["fp32", "bf16", "channels_last", "bf16+channels_last", "compile"]
CPU = torch.device("cpu")


@dataclass
class Case:
    """One config ready to train: its model (reference weights), batch, loss and options."""

    config: str
    cfg: dict[str, Any]
    model: EmotionClassifier
    feats: torch.Tensor
    lengths: torch.Tensor
    target: torch.Tensor
    criterion: nn.Module
    grad_clip: float

    @property
    def has_conv2d(self) -> bool:
        return any(isinstance(m, nn.Conv2d) for m in self.model.modules())


@dataclass
class Row:
    """One table row: a number, or only a note saying why there is none."""

    config: str
    variant: str
    utt_s: float | None = None
    loss: float | None = None
    note: str = ""


def feats_shape(cfg: dict[str, Any], config: str, seconds: float) -> tuple[int, int]:
    """(frames, dim) of the config's front end for ``seconds`` of audio."""
    if not cfg.get("feats"):
        raise SertkError(f"{config}: no 'feats:' entry naming its front end config")
    fcfg = FeatureConfig.load(REPO_CONF.parent / cfg["feats"])
    feats = build_frontend(fcfg)(torch.randn(int(seconds * fcfg.sample_rate)) * 0.1)
    return int(feats.shape[0]), int(feats.shape[1])


def load_case(config: str, batch: int, seconds: float) -> Case:
    """Model, random batch and loss of one config; SertkError for what the bench cannot run."""
    cfg, _ = model_config(config)
    mcfg = cfg["model"]
    if aux_tables(mcfg["name"], mcfg.get("conf")) or input_tables(mcfg["name"], mcfg.get("conf")):
        raise SertkError(f"{config}: models with auxiliary targets or extra inputs are not "
                         "supported by this bench")
    frames, dim = feats_shape(cfg, config, seconds)
    dimensional = cfg.get("task") == "dimensional"
    outputs = len(cfg.get("dims") or [0, 0, 0]) if dimensional else 4
    torch.manual_seed(0)
    model = EmotionClassifier(mcfg["name"], dim, outputs, mcfg.get("conf"),
                              members=members_of(mcfg))
    gen = torch.Generator().manual_seed(1)
    target = torch.rand(batch, outputs, generator=gen) if dimensional \
        else torch.randint(0, outputs, (batch,), generator=gen)
    criterion = build_loss(cfg.get("loss") or {}, [1] * outputs)
    clip = {**DEFAULT_TRAIN, **(cfg.get("train") or {})}["grad_clip"]
    return Case(config, cfg, model, torch.randn(batch, frames, dim, generator=gen),
                torch.full((batch,), frames), target, criterion, float(clip or 0.0))


def make_step(case: Case, model: nn.Module, forward: nn.Module, amp: torch.dtype | None
              ) -> Callable[[], float]:
    """The trainer's ``_train_step`` on the case's batch (no augmentation); returns the loss."""
    optimizer = build_optimizer(model.parameters(), case.cfg.get("optim") or {})

    def step() -> float:
        with torch.autocast("cpu", dtype=amp or torch.float32, enabled=amp is not None):
            logits = forward(case.feats, case.lengths, normalized=True)
            loss = emotion_loss(case.criterion, logits, case.target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if case.grad_clip:
            nn.utils.clip_grad_norm_(model.parameters(), case.grad_clip)
        optimizer.step()
        return float(loss.detach())

    return step


def set_dropout(model: nn.Module, on: bool) -> None:
    """Switch the dropout of dropout layers, attention and RNNs on or off (train/eval mode of
    those modules only; batch normalisation stays in training mode)."""
    for m in model.modules():
        if isinstance(m, (nn.modules.dropout._DropoutNd, nn.MultiheadAttention, nn.RNNBase)):
            m.train(on)


def unavailable(case: Case, variant: str) -> str | None:
    """Why a variant does not apply to this model or machine, or None."""
    if "channels_last" in variant and not case.has_conv2d:
        return "n/a: no Conv2d"
    if "bf16" in variant and not torch.cpu._is_avx512_bf16_supported():
        return "n/a: no native bf16 on this CPU (the trainer falls back to float32)"
    return None


def run_variant(case: Case, variant: str, steps: int, warmup: int) -> Row:
    """First-step loss and median step time of one variant, from the reference weights."""
    reason = unavailable(case, variant)
    if reason:
        return Row(case.config, variant, note=reason)
    model = copy.deepcopy(case.model).train()
    if "channels_last" in variant:
        model = model.to(memory_format=torch.channels_last)
    amp = autocast_dtype("bf16" if "bf16" in variant else False, CPU)
    set_dropout(model, False)  # a first step without randomness: its loss compares numerics
    t0 = time.perf_counter()
    if variant == "compile":
        torch._dynamo.utils.counters.clear()
        try:  # torch.compile compiles lazily: in the first step
            step = make_step(case, model, torch.compile(model), amp)
            loss = step()
        except Exception as e:  # noqa: BLE001 - compilation errors are of many types
            return Row(case.config, variant, note=f"failed: {failure(e)}")
    else:
        step = make_step(case, model, model, amp)
        loss = step()
    first = time.perf_counter() - t0
    set_dropout(model, True)
    torch.manual_seed(2)
    warm = []
    for _ in range(warmup):
        t = time.perf_counter()
        step()
        warm.append(time.perf_counter() - t)
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    note = compile_note(first, warm[0]) if variant == "compile" else \
        f"input {case.feats.shape[1]} x {case.feats.shape[2]}" if variant == "fp32" else ""
    return Row(case.config, variant, len(case.feats) / statistics.median(times), loss, note)


def failure(e: Exception) -> str:
    """An exception as one short table cell."""
    lines = str(e).strip().splitlines()
    return f"{type(e).__name__}: {lines[0][:150] if lines else ''}".replace("|", "/")


def compile_note(first: float, second: float) -> str:
    """Compilation cost: the times of the first step and of the second (dropout on: it may
    recompile), and the number of graph breaks."""
    breaks = sum(torch._dynamo.utils.counters["graph_break"].values())
    return (f"compiling: step 1 {first:.1f} s, step 2 {second:.1f} s (dropout on); "
            f"{breaks} graph break{'' if breaks == 1 else 's'}")


def table(rows: list[Row]) -> list[str]:
    """Markdown rows; ratio and loss diff against the same config's fp32 row."""
    base = {r.config: r for r in rows if r.variant == "fp32"}
    out = ["| model | variant | utt/s | ratio vs fp32 | loss diff | note |",
           "|---|---|---|---|---|---|"]
    for r in rows:
        if r.utt_s is None:
            out.append(f"| `{r.config}` | {r.variant} | – | – | – | {r.note} |")
            continue
        b = base[r.config]
        out.append(f"| `{r.config}` | {r.variant} | {r.utt_s:.1f} | {r.utt_s / b.utt_s:.2f}x | "
                   f"{abs(r.loss - b.loss):.1e} | {r.note} |")
    return out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=",".join(DEFAULT_MODELS),
                    help="comma-separated config ids (conf/model/<id>.yaml) or YAML paths")
    ap.add_argument("--variants", default=",".join(VARIANTS),
                    help=f"comma-separated, from {','.join(VARIANTS)} (fp32 always runs)")
    ap.add_argument("--steps", type=int, default=10, help="timed steps per variant")
    ap.add_argument("--warmup", type=int, default=2,
                    help="untimed steps (with dropout) after the first (without)")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=3.0, help="audio per utterance")
    ap.add_argument("--threads", type=int, default=os.cpu_count(), help="torch threads")
    ap.add_argument("--out", type=Path, help="also write the table to this file")
    args = ap.parse_args(argv)
    args.models = [m for m in args.models.split(",") if m]
    variants = [v for v in args.variants.split(",") if v]
    bad = sorted(set(variants) - set(VARIANTS))
    if bad:
        ap.error(f"unknown variant(s) {', '.join(bad)}; known: {', '.join(VARIANTS)}")
    args.variants = ["fp32", *[v for v in VARIANTS[1:] if v in variants]]
    if min(args.steps, args.warmup, args.batch, args.threads) < 1 or args.seconds <= 0:
        ap.error("--steps, --warmup, --batch, --threads must be positive, --seconds > 0")
    return args


def run(args: argparse.Namespace) -> list[str]:
    """All configs x variants; the header and table lines."""
    torch.set_num_threads(args.threads)
    t0, load_before = time.perf_counter(), os.getloadavg()[0]
    cases = [load_case(m, args.batch, args.seconds) for m in args.models]  # fail early
    rows = []
    for case in cases:
        for variant in args.variants:
            rows.append(run_variant(case, variant, args.steps, args.warmup))
            r = rows[-1]
            print(f"{case.config} {variant}: "
                  f"{f'{r.utt_s:.1f} utt/s' if r.utt_s else ''} {r.note}".rstrip(),
                  file=sys.stderr, flush=True)
    header = (f"{cpu_model()}, {os.cpu_count()} cores; torch {torch.__version__}, "
              f"{torch.get_num_threads()} threads; batch {args.batch} x {args.seconds:g} s of "
              "random features (frames x dim: the fp32 row's note), median "
              f"of {args.steps} steps after 1 + {args.warmup} warm-up; 1-min load average "
              f"{load_before:.2f} before, {os.getloadavg()[0]:.2f} after; torch.compile with "
              f"{args.cache_note}; run time {time.perf_counter() - t0:.0f} s")
    return [header, "", *table(rows)]


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="train_speed_inductor_") as cache:
        if os.environ.get("TORCHINDUCTOR_CACHE_DIR"):
            args.cache_note = f"TORCHINDUCTOR_CACHE_DIR={os.environ['TORCHINDUCTOR_CACHE_DIR']}"
        else:  # compile times from a cold cache: reproducible, nothing left behind
            os.environ["TORCHINDUCTOR_CACHE_DIR"] = cache
            args.cache_note = "an empty inductor cache"
        try:
            lines = run(args)
        except SertkError as e:
            sys.exit(f"train_speed.py: error: {e}")
    text = "\n".join(lines) + "\n"
    print(text, end="")
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
