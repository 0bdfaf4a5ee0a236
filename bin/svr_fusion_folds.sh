#!/usr/bin/env bash
# svr_fusion_folds.sh [--stages N] [--fusion_args "..."] OUT_DIR EXP_ROOT=DUMP_ROOT ...
#
# Multistage SVR late fusion (Atmaja & Akagi, ICASSP 2020; bin/svr_fusion.py) of several
# dimensional recipe runs, fold by fold. Each EXP_ROOT=DUMP_ROOT names one system: a recipe's
# exp/<tag> (fold subdirectories holding a trained model and stage 4's decode_test/hyp.txt)
# and the dump it was trained on (dump/<feats>, with <fold>/dev and <fold>/test). Per fold the
# script decodes each system's dev set (<fold>/decode_dev, once), fits the fusion on the dev
# predictions of all systems against the dev utt2dim (cross-fitted by dev speaker), scores
# the fused test predictions, and aggregates the folds into OUT_DIR/RESULTS.md.
# Cross-fitting uses min(5, number of dev speakers) folds unless --fusion_args sets --folds.
# The folds are those of the first EXP_ROOT.
set -euo pipefail

stages=2
fusion_args=""
device=cpu
usage="usage: $0 [--stages N] [--fusion_args \"svr_fusion.py options\"] [--device DEV] OUT_DIR EXP_ROOT=DUMP_ROOT [EXP_ROOT=DUMP_ROOT ...]"
while [ $# -gt 0 ]; do
  case "$1" in
    --stages) stages=$2; shift 2 ;;
    --fusion_args) fusion_args=$2; shift 2 ;;
    --device) device=$2; shift 2 ;;
    --help|-h) echo "$usage"; exit 0 ;;
    --*) echo "svr_fusion_folds.sh: unknown option $1" >&2; echo "$usage" >&2; exit 1 ;;
    *) break ;;
  esac
done
[ $# -ge 3 ] || { echo "svr_fusion_folds.sh: need OUT_DIR and at least two systems" >&2;
                  echo "$usage" >&2; exit 1; }
out=$1; shift
exps=(); dumps=()
for s in "$@"; do
  case "$s" in *=*) ;; *) echo "svr_fusion_folds.sh: '$s' is not EXP_ROOT=DUMP_ROOT" >&2
                          exit 1 ;; esac
  exps+=("${s%%=*}"); dumps+=("${s#*=}")
  [ -d "${s%%=*}" ] || { echo "svr_fusion_folds.sh: no experiment directory ${s%%=*}" >&2
                         exit 1; }
done

folds=$(find "${exps[0]}" -mindepth 1 -maxdepth 1 -type d -name 'fold*' -printf '%f\n' \
  | LC_ALL=C sort | xargs)
[ -n "$folds" ] || { echo "svr_fusion_folds.sh: no fold* directories in ${exps[0]}" >&2; exit 1; }
mkdir -p "$out"
results=()
for f in $folds; do
  systems=()
  for i in "${!exps[@]}"; do
    exp=${exps[$i]}/$f; data=${dumps[$i]}/$f
    for need in "$exp/decode_test/hyp.txt" "$data/dev/feats.scp"; do
      [ -f "$need" ] || { echo "svr_fusion_folds.sh: no $need (run the recipe's stages 2-4)" >&2
                          exit 1; }
    done
    if [ ! -f "$exp/decode_dev/hyp.txt" ]; then
      sertk predict --model "$exp" --data "$data/dev" --out-dir "$exp/decode_dev" \
        --device "$device" --no-progress >/dev/null
    fi
    systems+=(--system "$exp/decode_dev/hyp.txt" "$exp/decode_test/hyp.txt")
  done
  ref=${dumps[0]}/$f
  nspk=$(cut -d' ' -f2 "$ref/dev/utt2spk" | LC_ALL=C sort -u | wc -l)
  cv=$(( nspk < 5 ? nspk : 5 ))
  echo "$f:"
  # shellcheck disable=SC2086
  svr_fusion.py --stages "$stages" --utt2spk "$ref/dev/utt2spk" --folds "$cv" $fusion_args \
    --ref "$ref/dev/utt2dim" "${systems[@]}" "$out/$f" | sed 's/^/  /'
  sertk score --dim --ref "$ref/test/utt2dim" --hyp "$out/$f/hyp.txt" --out-dir "$out/$f/decode_test" \
    --title "SVR fusion $f" | sed "s/^/  /"
  results+=(--fold "$out/$f/decode_test/results.json")
done
sertk score "${results[@]}" --out-dir "$out" --markdown "$out/RESULTS.md" \
  --command "$0 --stages $stages ${fusion_args:+--fusion_args '$fusion_args' }$out $*" \
  --title "SVR fusion of ${#exps[@]} systems"
