#!/usr/bin/env bash
# Runs the plain reference CNN outside sertk (../shared/reference/baseline_cnn.py) on this
# recipe's own data dirs, every fold, two folds side by side (1 thread each), as its docstring
# says: train on train + dev (the 20 training actors), 30 epochs, last epoch on test.
#   local/run_reference.sh [--folds "fold1 fold2"] [--lanes 2] [--seed 0] [--tag reference_cnn]
# Logs: exp/<tag>/<fold>/reference.log; summary: exp/<tag>/RESULTS.txt (UA per fold, mean ± std)
# and exp/<tag>/decode_test/results.json (for local/collect_results.py --baseline <tag>).
set -euo pipefail
folds=""
lanes=2
seed=0
epochs=30
tag=reference_cnn
datadir=data
expdir=exp
script=${REFERENCE_CNN:-../../../../shared/reference/baseline_cnn.py}
. ./path.sh
. parse_options.sh
[ -f "$script" ] || { echo "$0: $script not found (set REFERENCE_CNN)" >&2; exit 1; }
[ -n "$folds" ] || folds=$(find "$datadir/folds" -mindepth 1 -maxdepth 1 -type d -printf '%f\n' \
  | LC_ALL=C sort | xargs)
run_fold() {
  local f=$1 out=$expdir/$tag/$1
  mkdir -p "$out"
  if grep -q "^epoch $epochs:" "$out/reference.log" 2>/dev/null; then return; fi
  python "$script" "$datadir/folds/$f/train" "$datadir/folds/$f/dev" \
    --test "$datadir/folds/$f/test" --epochs "$epochs" --seed "$seed" --threads 1 \
    > "$out/reference.log" 2>&1
}
export -f run_fold; export expdir tag epochs datadir seed script
printf '%s\n' $folds | xargs -P "$lanes" -I{} bash -c 'run_fold {}'
python - "$expdir/$tag" $folds <<'PY' | tee "$expdir/$tag/RESULTS.txt"
import json, os, re, statistics, sys
root, folds = sys.argv[1], sys.argv[2:]
ua, wa = [], []
for f in folds:
    last = [l for l in open(f"{root}/{f}/reference.log") if l.startswith("epoch ")][-1]
    m = re.search(r"test UA ([\d.]+) WA ([\d.]+)", last)
    ua.append(float(m.group(1)) / 100)
    wa.append(float(m.group(2)) / 100)
    print(f"{f}: {last.strip()}")
agg = {"num_folds": len(folds), "fold_names": [f"{root}/{f}/reference.log" for f in folds]}
for name, v in (("UA", ua), ("WA", wa)):
    agg[name] = {"folds": v, "mean": statistics.mean(v), "std": statistics.pstdev(v)}
os.makedirs(f"{root}/decode_test", exist_ok=True)
with open(f"{root}/decode_test/results.json", "w") as fh:  # for local/collect_results.py
    json.dump(agg, fh, indent=1)
print("UA per fold: " + " / ".join(f"{100 * u:.2f}" for u in ua))
print(f"UA {100 * agg['UA']['mean']:.2f} ± {100 * agg['UA']['std']:.2f}, WA "
      f"{100 * agg['WA']['mean']:.2f} ± {100 * agg['WA']['std']:.2f} (mean ± population std, "
      f"{len(folds)} folds)")
PY
