#!/usr/bin/env bash
# TurEV-DB data preparation (ser.sh stage 1).
#   local/data.sh [--datadir data] [--corpus_root DIR] [--protocol emobox|loso]
#                 [--dev_speakers 1] [--seed 0]
# DATADIR/all: the files of local/emobox.tsv.gz found under CORPUS_ROOT (default
# $TUREVDB_ROOT); speaker (actor id), emotion and the spoken word from the file name
# (local/prepare_turevdb.py); no genders (not published). Files the table lists but the
# release lacks, and release files the table does not list (e.g. the filtered copies under
# "Model Output for Test Data"), are counted and written one per line to
# DATADIR/local/all_release_report.txt.
# DATADIR/folds: EmoBox's single fold (emobox; split by utterance: its test part holds 432
# utterances of all 6 actors, so no training actor is free of test utterances and dev is a
# 10 % utterance split of the training part) or one fold per actor (loso, 6 folds,
# speaker-independent; dev: --dev_speakers of each fold's 5 training actors, default 1).
set -euo pipefail
datadir=data
corpus_root=${TUREVDB_ROOT:-}
protocol=emobox
dev_speakers=1
seed=0
. parse_options.sh

[ -n "$corpus_root" ] || { echo "$0: give --corpus_root or set TUREVDB_ROOT" >&2; exit 1; }
here=$(dirname "$0")
python "$here/prepare_turevdb.py" "$corpus_root" "$here/emobox.tsv.gz" "$datadir/all"
case $protocol in
  emobox) split=(--test-table utt2fold) ;;
  loso) split=(--loso) ;;
  *) echo "$0: unknown --protocol $protocol (emobox or loso)" >&2; exit 1 ;;
esac
rm -rf "$datadir/folds"
sertk data folds "$datadir/all" "$datadir/folds" "${split[@]}" --dev-speakers "$dev_speakers" \
  --seed "$seed"
