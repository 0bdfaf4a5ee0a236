#!/usr/bin/env python3
"""Multistage SVR late fusion of dimensional predictions (Atmaja & Akagi, ICASSP 2020).

    svr_fusion.py [options] --ref DEV_UTT2DIM --system DEV TEST [--system DEV TEST ...] OUT_DIR

Each --system gives one model's predictions on the development set and on the test set, as
``utt a v d`` files (e.g. the hypotheses of a model trained with ``task: dimensional``). One
SVR per dimension is fitted on the development predictions against DEV_UTT2DIM and predicts
the test set; later stages add the previous stage's output to the inputs. Writes
OUT_DIR/hyp.txt (test), OUT_DIR/dev_hyp.txt (development, cross-fitted) and
OUT_DIR/fusion.json; score with
``sertk score --dim --ref data/test/utt2dim --hyp OUT_DIR/hyp.txt --out-dir OUT_DIR/score``.
See sertk/fusion_svr.py for the method and which defaults are the paper's.
"""

from __future__ import annotations

import argparse
import sys

from sertk.errors import SertkError
from sertk.fusion_svr import INPUTS, KERNELS, FusionConfig, run
from sertk.scoring_dim import DIMS


def gamma(value: str) -> str | float:
    return value if value in ("scale", "auto") else float(value)


def parse_args(argv: list[str]) -> argparse.Namespace:
    d = FusionConfig()
    p = argparse.ArgumentParser(prog="svr_fusion.py", description=__doc__.split("\n")[1],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("out_dir", help="where hyp.txt, dev_hyp.txt and fusion.json go")
    p.add_argument("--ref", required=True, help="development reference utt2dim")
    p.add_argument("--system", nargs=2, action="append", required=True, metavar=("DEV", "TEST"),
                   help="one model's development and test predictions (repeat)")
    p.add_argument("--stages", type=int, default=d.stages, help="fusion stages (paper: up to 5)")
    p.add_argument("--top", type=int, default=d.top,
                   help="keep the systems of highest mean dev CCC (paper: 11); 0: all")
    p.add_argument("--inputs", choices=INPUTS, default=d.inputs,
                   help="SVR inputs per dimension: that dimension of each system, or all")
    p.add_argument("--kernel", choices=KERNELS, default=d.kernel, help="SVR kernel")
    p.add_argument("--C", type=float, default=d.C, help="SVR C")
    p.add_argument("--epsilon", type=float, default=d.epsilon, help="SVR epsilon")
    p.add_argument("--gamma", type=gamma, default=d.gamma, help="SVR gamma: scale, auto or "
                                                                "a number")
    p.add_argument("--folds", type=int, default=d.folds,
                   help="cross-fitting folds on the dev set; 0: in-sample (as the paper)")
    p.add_argument("--utt2spk", default=None, help="dev utt2spk: folds by speaker")
    p.add_argument("--seed", type=int, default=d.seed, help="fold shuffling seed")
    return p.parse_args(argv)


def ccc_line(values: list[float]) -> str:
    return "  ".join(f"{n} {v:.3f}" for n, v in zip(DIMS, values)) + \
        f"  mean {sum(values) / len(values):.3f}"


def main(argv: list[str]) -> None:
    a = parse_args(argv)
    cfg = FusionConfig(stages=a.stages, top=a.top, inputs=a.inputs, kernel=a.kernel, C=a.C,
                       epsilon=a.epsilon, gamma=a.gamma, folds=a.folds, seed=a.seed)
    try:
        res = run(a.ref, [tuple(s) for s in a.system], a.out_dir, cfg, a.utt2spk)
    except SertkError as e:
        sys.exit(f"svr_fusion.py: error: {e}")
    for s in res["systems"]:
        mark = "*" if s["selected"] else " "
        print(f"{mark} dev CCC {ccc_line(s['dev_CCC'])}  {s['dev']}")
    kind = "cross-fitted" if res["cross_fitted"] else "in-sample"
    for st in res["stages"]:
        print(f"stage {st['stage']}: dev CCC ({kind}) {ccc_line(st['dev_CCC'])}")
    print(f"{a.out_dir}/hyp.txt: {res['num_test_utts']} test utterances fused from "
          f"{sum(s['selected'] for s in res['systems'])} systems")


if __name__ == "__main__":
    main(sys.argv[1:])
