#!/usr/bin/env bash
# TESS data preparation (ser.sh stage 1).
#   local/data.sh [--datadir data] [--corpus_root DIR] [--protocol emobox|loso]
#                 [--dev_speakers 0] [--seed 0]
# DATADIR/all: the files of local/emobox.tsv.gz found under CORPUS_ROOT (default $TESS_ROOT);
# speaker (OAF, YAF; both female), word (text "Say the word <word>") and emotion from the file
# name (local/prepare_tess.py). Files the table lists but the release lacks, and release files
# the table does not list (a second copy of the Kaggle archive, the misnamed
# OA_bite_neutral.wav), are counted and written one per line to
# DATADIR/local/all_release_report.txt.
# DATADIR/folds: EmoBox's single fold (emobox; EmoBox split TESS by utterance: its test part
# holds 700 utterances of both speakers, so it is not speaker-independent) or one fold per
# speaker (loso, speaker-independent: train on one actor, test on the other). With two speakers
# no training speaker is left for dev: dev is a 10 % utterance split of the training part
# (--dev_speakers 0).
set -euo pipefail
datadir=data
corpus_root=${TESS_ROOT:-}
protocol=emobox
dev_speakers=0
seed=0
. parse_options.sh

[ -n "$corpus_root" ] || { echo "$0: give --corpus_root or set TESS_ROOT" >&2; exit 1; }
here=$(dirname "$0")
python "$here/prepare_tess.py" "$corpus_root" "$here/emobox.tsv.gz" "$datadir/all"
case $protocol in
  emobox) split=(--test-table utt2fold) ;;
  loso) split=(--loso) ;;
  *) echo "$0: unknown --protocol $protocol (emobox or loso)" >&2; exit 1 ;;
esac
rm -rf "$datadir/folds"
sertk data folds "$datadir/all" "$datadir/folds" "${split[@]}" --dev-speakers "$dev_speakers" \
  --seed "$seed"
