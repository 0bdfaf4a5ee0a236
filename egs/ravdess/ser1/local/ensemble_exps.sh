#!/usr/bin/env bash
# Late fusion of finished experiments: per fold, the mean of their test posteriors, scored like
# stage 4 (exp/<tag>/<fold>/decode_test, exp/<tag>/RESULTS.md).
#   local/ensemble_exps.sh --tag ens_ref_sp "ref_sertk sp3_e10"
set -euo pipefail
tag=""
expdir=exp
dumpdir=dump/logmel64
. ./path.sh
. parse_options.sh
[ $# -eq 1 ] && [ -n "$tag" ] || { echo "usage: $0 --tag TAG 'EXP1 EXP2 ...'" >&2; exit 1; }
read -r -a exps <<< "$1"
results=()
for f in $(find "$expdir/${exps[0]}" -mindepth 1 -maxdepth 1 -name 'fold*' -printf '%f\n' | sort)
do
  out=$expdir/$tag/$f/decode_test
  posts=()
  for e in "${exps[@]}"; do posts+=("$expdir/$e/$f/decode_test/posteriors.jsonl"); done
  average_posteriors.py "$out" "${posts[@]}"
  sertk score --ref "$dumpdir/$f/test/utt2emo" --hyp "$out/hyp.txt" --out-dir "$out" \
    --title "$tag $f" >/dev/null
  results+=(--fold "$out/results.json")
done
sertk score "${results[@]}" --out-dir "$expdir/$tag/decode_test" \
  --markdown "$expdir/$tag/RESULTS.md" --command "local/ensemble_exps.sh --tag $tag '$1'"
