#!/usr/bin/env bash
# SUBESCO data preparation (ser.sh stage 1).
#   local/data.sh [--datadir data] [--corpus_root DIR] [--protocol emobox|loso]
#                 [--dev_speakers 2] [--seed 0]
# DATADIR/all: the files of local/emobox.tsv.gz found under CORPUS_ROOT (default
# $SUBESCO_ROOT); speaker (gender + number, F_01 ... M_10), gender and emotion from the file
# name (local/prepare_subesco.py); no transcripts. Files the table lists but the release
# lacks, and release files the table does not list, are counted and written one per line to
# DATADIR/local/all_release_report.txt.
# DATADIR/folds: EmoBox's 5 folds (emobox; speaker-independent: each fold tests 4 actors and
# trains on the other 16; dev speakers are drawn from those 16, alternating genders) or one
# fold per speaker (loso, 20 folds; dev speakers drawn from each fold's training speakers).
set -euo pipefail
datadir=data
corpus_root=${SUBESCO_ROOT:-}
protocol=emobox
dev_speakers=2
seed=0
. parse_options.sh

[ -n "$corpus_root" ] || { echo "$0: give --corpus_root or set SUBESCO_ROOT" >&2; exit 1; }
here=$(dirname "$0")
python "$here/prepare_subesco.py" "$corpus_root" "$here/emobox.tsv.gz" "$datadir/all"
case $protocol in
  emobox) split=(--test-table utt2fold) ;;
  loso) split=(--loso) ;;
  *) echo "$0: unknown --protocol $protocol (emobox or loso)" >&2; exit 1 ;;
esac
rm -rf "$datadir/folds"
sertk data folds "$datadir/all" "$datadir/folds" "${split[@]}" --dev-speakers "$dev_speakers" \
  --seed "$seed"
