#!/usr/bin/env bash
# EMOVO data preparation (ser.sh stage 1).
#   local/data.sh [--datadir data] [--corpus_root DIR] [--protocol emobox|loso]
#                 [--dev_speakers 1] [--seed 0]
# DATADIR/all: the files of local/emobox.tsv.gz found under CORPUS_ROOT (default $EMOVO_ROOT);
# speaker (actor), gender, sentence and emotion from the file name (local/prepare_emovo.py).
# Files the table lists but the release lacks, and release files the table does not list, are
# counted and written one per line to DATADIR/local/all_release_report.txt.
# DATADIR/folds: EmoBox's 6 folds (emobox; speaker-independent: each tests one actor and trains
# on the other five, i.e. leave-one-speaker-out under EmoBox's fold names) or one fold per
# actor named fold_<actor> (loso). Dev actors are drawn from each fold's training actors.
set -euo pipefail
datadir=data
corpus_root=${EMOVO_ROOT:-}
protocol=emobox
dev_speakers=1
seed=0
. parse_options.sh

[ -n "$corpus_root" ] || { echo "$0: give --corpus_root or set EMOVO_ROOT" >&2; exit 1; }
here=$(dirname "$0")
python "$here/prepare_emovo.py" "$corpus_root" "$here/emobox.tsv.gz" "$datadir/all"
case $protocol in
  emobox) split=(--test-table utt2fold) ;;
  loso) split=(--loso) ;;
  *) echo "$0: unknown --protocol $protocol (emobox or loso)" >&2; exit 1 ;;
esac
rm -rf "$datadir/folds"
sertk data folds "$datadir/all" "$datadir/folds" "${split[@]}" --dev-speakers "$dev_speakers" \
  --seed "$seed"
