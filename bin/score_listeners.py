#!/usr/bin/env python3
"""Score a listener-adaptive model (Ando et al., ICASSP 2021) on both of its tasks.

    score_listeners.py [--listeners FILE] [--device cpu] [--batch-size 16] MODEL DATA OUT.json
    score_listeners.py --aggregate OUT.json FOLD1.json FOLD2.json ...

MODEL is an experiment directory (listener list: MODEL/aux/utt2listener_emo.txt) or a packed
model (give --listeners unless the zip holds utt2listener_emo.txt); DATA a dump directory with
feats.scp, utt2listener_emo and utt2emo. Writes OUT.json and prints one line per task:
listener-dependent (UA/WA over the (utterance, listener) pairs, each listener's posterior
against that listener's label) and majority (mean posterior against utt2emo). See
sertk/scoring_listeners.py for how listeners and labels are matched and what is skipped.
With --aggregate, OUT.json gets the mean ± std over the folds' results files (recipe stage 4
writes EXP/<fold>/decode_test/listeners.json and EXP/decode_test/listeners.json).
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--aggregate"]:
        return aggregate(argv[1:])
    parser = argparse.ArgumentParser(prog="score_listeners.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model")
    parser.add_argument("data")
    parser.add_argument("out_json")
    parser.add_argument("--listeners", default=None, help="the model's listener list")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args(argv)

    from sertk.errors import SertkError
    from sertk.scoring_listeners import score_listeners, summary_lines

    try:
        res = score_listeners(args.model, args.data, args.out_json, args.listeners,
                              args.device, args.batch_size)
    except SertkError as exc:
        print(f"score_listeners.py: error: {exc}", file=sys.stderr)
        return 1
    print("\n".join(summary_lines(res)))
    return 0


def aggregate(args: list[str]) -> int:
    import json

    from sertk.errors import SertkError
    from sertk.scoring_listeners import aggregate_folds, aggregate_lines

    if len(args) < 2:
        print("score_listeners.py: error: --aggregate OUT.json FOLD.json ...", file=sys.stderr)
        return 2
    try:
        agg = aggregate_folds(args[1:])
    except SertkError as exc:
        print(f"score_listeners.py: error: {exc}", file=sys.stderr)
        return 1
    with open(args[0], "w") as f:
        json.dump(agg, f, indent=2)
    print("\n".join(aggregate_lines(agg)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
