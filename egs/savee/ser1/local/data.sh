#!/usr/bin/env bash
# SAVEE data preparation (ser.sh stage 1).
#   local/data.sh [--datadir data] [--corpus_root DIR] [--protocol emobox|loso]
#                 [--dev_speakers 1] [--seed 0]
# DATADIR/all: the files of local/emobox.tsv.gz found under CORPUS_ROOT (default $SAVEE_ROOT),
# in the release's layout (AudioData/DC/a01.wav) or Kaggle's flattened one (DC_a01.wav);
# speaker and emotion from the file name and folder, all four speakers male
# (local/prepare_savee.py). Files the table lists but the release lacks, and release files the
# table does not list, are counted and written one per line to
# DATADIR/local/all_release_report.txt.
# DATADIR/folds: EmoBox's 4 folds (emobox; each tests one speaker, fold1 JE, fold2 KL, fold3 DC,
# fold4 JK: speaker-independent) or one fold per speaker (loso, fold_DC ...: the same test
# sets). Dev speakers are drawn from each fold's 3 training speakers.
set -euo pipefail
datadir=data
corpus_root=${SAVEE_ROOT:-}
protocol=emobox
dev_speakers=1
seed=0
. parse_options.sh

[ -n "$corpus_root" ] || { echo "$0: give --corpus_root or set SAVEE_ROOT" >&2; exit 1; }
here=$(dirname "$0")
python "$here/prepare_savee.py" "$corpus_root" "$here/emobox.tsv.gz" "$datadir/all"
case $protocol in
  emobox) split=(--test-table utt2fold) ;;
  loso) split=(--loso) ;;
  *) echo "$0: unknown --protocol $protocol (emobox or loso)" >&2; exit 1 ;;
esac
rm -rf "$datadir/folds"
sertk data folds "$datadir/all" "$datadir/folds" "${split[@]}" --dev-speakers "$dev_speakers" \
  --seed "$seed"
