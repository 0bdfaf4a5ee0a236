#!/usr/bin/env bash
# CASIA data preparation (ser.sh stage 1).
#   local/data.sh [--datadir data] [--corpus_root DIR] [--protocol emobox|loso]
#                 [--dev_speakers 1] [--seed 0]
# DATADIR/all: the files of local/emobox.tsv.gz found under CORPUS_ROOT (default $CASIA_ROOT);
# speaker and emotion from the folders <speaker>/<emotion>/<nnn>.wav, gender from the published
# speaker list (local/prepare_casia.py); no transcripts. Files the table lists but the release
# lacks, and release files the table does not list, are counted and written one per line to
# DATADIR/local/all_release_report.txt.
# DATADIR/folds: EmoBox's 4 folds (emobox; speaker-independent, each tests one speaker) or one
# fold per speaker (loso; the same test sets). Dev: --dev_speakers whole speakers drawn from
# each fold's 3 training speakers.
set -euo pipefail
datadir=data
corpus_root=${CASIA_ROOT:-}
protocol=emobox
dev_speakers=1
seed=0
. parse_options.sh

[ -n "$corpus_root" ] || { echo "$0: give --corpus_root or set CASIA_ROOT" >&2; exit 1; }
here=$(dirname "$0")
python "$here/prepare_casia.py" "$corpus_root" "$here/emobox.tsv.gz" "$datadir/all"
case $protocol in
  emobox) split=(--test-table utt2fold) ;;
  loso) split=(--loso) ;;
  *) echo "$0: unknown --protocol $protocol (emobox or loso)" >&2; exit 1 ;;
esac
rm -rf "$datadir/folds"
sertk data folds "$datadir/all" "$datadir/folds" "${split[@]}" --dev-speakers "$dev_speakers" \
  --seed "$seed"
