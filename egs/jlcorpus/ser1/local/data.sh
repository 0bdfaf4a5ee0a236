#!/usr/bin/env bash
# JL-Corpus data preparation (ser.sh stage 1).
#   local/data.sh [--datadir data] [--corpus_root DIR] [--protocol emobox|loso]
#                 [--dev_speakers 1] [--seed 0]
# DATADIR/all: the files of local/emobox.tsv.gz found under CORPUS_ROOT (default
# $JLCORPUS_ROOT); speaker, gender and emotion from the file name, transcript from the .txt
# beside each file (local/prepare_jlcorpus.py). Files the table lists but the release lacks,
# and release files the table does not list (e.g. the second, lower-case copy of the tree
# some archives unpack), are counted and written one per line to
# DATADIR/local/all_release_report.txt.
# DATADIR/folds: EmoBox's 4 folds (emobox; speaker-independent: each fold tests one actor,
# fold1 male2, fold2 female1, fold3 male1, fold4 female2, and trains on the other three) or
# one fold per speaker (loso: the same test parts, named fold_<speaker>). Dev: --dev_speakers
# of each fold's three training actors (default 1).
set -euo pipefail
datadir=data
corpus_root=${JLCORPUS_ROOT:-}
protocol=emobox
dev_speakers=1
seed=0
. parse_options.sh

[ -n "$corpus_root" ] || { echo "$0: give --corpus_root or set JLCORPUS_ROOT" >&2; exit 1; }
here=$(dirname "$0")
python "$here/prepare_jlcorpus.py" "$corpus_root" "$here/emobox.tsv.gz" "$datadir/all"
case $protocol in
  emobox) split=(--test-table utt2fold) ;;
  loso) split=(--loso) ;;
  *) echo "$0: unknown --protocol $protocol (emobox or loso)" >&2; exit 1 ;;
esac
rm -rf "$datadir/folds"
sertk data folds "$datadir/all" "$datadir/folds" "${split[@]}" --dev-speakers "$dev_speakers" \
  --seed "$seed"
