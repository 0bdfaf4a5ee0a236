#!/usr/bin/env bash
# Synthetic emotional corpus (sertk.data.synth): 4 emotions (neutral, happy, sad, angry) whose
# pitch level/range/contour, energy, tempo and spectral tilt differ, spoken by --speakers
# synthetic speakers (alternating male/female). One speaker-independent fold: the test
# speakers never appear in train or dev.
set -euo pipefail
datadir=data
speakers=10
utts_per_emotion=6
seed=0
. parse_options.sh

rm -rf "$datadir/all" "$datadir/folds"
sertk data synth "$datadir/wav" "$datadir/all" --speakers "$speakers" \
  --utts-per-emotion "$utts_per_emotion" --seed "$seed"
n=$(printf '%02d' "$speakers"); m=$(printf '%02d' $((speakers - 1)))
echo "fold1 spk$m spk$n" > "$datadir/fold_spec.txt"
sertk data folds "$datadir/all" "$datadir/folds" --test-speakers "$datadir/fold_spec.txt" \
  --dev-speakers 2 --seed "$seed"
