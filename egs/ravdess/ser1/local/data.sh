#!/usr/bin/env bash
# RAVDESS speech data preparation (called by ser.sh stage 1).
#
#   local/data.sh [--datadir data] [--protocol emobox|loao] [--dev_speakers 2] \
#                 [--trim_silence true] [--corpus_root DIR]
#
# DATADIR/all: every speech file of CORPUS_ROOT/Actor_XX/*.{wav,flac}; speaker = actor;
# utt2emo (8 emotions), utt2gender, text, utt2intensity. With --trim_silence (default), a
# segments file bounds each utterance's speech (energy-based; see `sertk data trim`).
# DATADIR/folds/<fold>/{train,dev,test}: EmoBox 6-fold speaker-independent split
# (local/emobox_folds.txt) or leave-one-actor-out (24 folds). The dev set holds
# --dev_speakers actors drawn from each fold's training actors (one male, one female); test
# actors never appear in train or dev.
set -euo pipefail
datadir=data
protocol=emobox
dev_speakers=2
trim_silence=true
corpus_root=${RAVDESS_ROOT:-../../../../shared/corpora/ravdess}
seed=0
. parse_options.sh

here=$(dirname "$0")
mkdir -p "$datadir"
if $trim_silence; then
  python "$here/prepare_ravdess.py" "$corpus_root" "$datadir/all_untrimmed"
  sertk data trim "$datadir/all_untrimmed" "$datadir/all"
else
  rm -rf "$datadir/all"
  python "$here/prepare_ravdess.py" "$corpus_root" "$datadir/all"
fi

case $protocol in
  emobox) spec=$here/emobox_folds.txt ;;
  loao)
    spec=$datadir/loao_folds.txt
    for a in $(seq -w 1 24); do echo "fold$a actor$a"; done > "$spec" ;;
  *) echo "$0: unknown --protocol $protocol (emobox or loao)" >&2; exit 1 ;;
esac
rm -rf "$datadir/folds"
sertk data folds "$datadir/all" "$datadir/folds" --test-speakers "$spec" \
  --dev-speakers "$dev_speakers" --seed "$seed"
