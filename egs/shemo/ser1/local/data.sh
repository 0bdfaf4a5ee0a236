#!/usr/bin/env bash
# ShEMO data preparation (ser.sh stage 1).
#   local/data.sh [--datadir data] [--corpus_root DIR] [--protocol emobox|spk5fold]
#                 [--dev_speakers 4] [--seed 0]
# DATADIR/all: the files of local/emobox.tsv.gz found under CORPUS_ROOT (default $SHEMO_ROOT);
# speaker (F01..F31, M01..M56), gender and emotion from the file name, transcript from the
# release's shemo.json (local/prepare_shemo.py). Files the table lists but the release lacks,
# and release files the table does not list (the 162 clips shemo.json lacks), are counted and
# written one per line to DATADIR/local/all_release_report.txt.
# DATADIR/folds: EmoBox's single fold (emobox; split by utterance: 83 of the 87 speakers are in
# both its train and test parts, so dev is a 10 % utterance split of the training part) or 5
# speaker-independent folds (spk5fold: speaker F<n> or M<n> is tested in fold ((n-1) mod 5)+1:
# 17-19 speakers (6-7 female) and 504-710 utterances per fold; dev speakers drawn from each
# fold's training speakers). Leave-one-speaker-out is not offered: 87 trainings, and many
# speakers have only a handful of utterances.
set -euo pipefail
datadir=data
corpus_root=${SHEMO_ROOT:-}
protocol=emobox
dev_speakers=4
seed=0
. parse_options.sh

[ -n "$corpus_root" ] || { echo "$0: give --corpus_root or set SHEMO_ROOT" >&2; exit 1; }
here=$(dirname "$0")
python "$here/prepare_shemo.py" "$corpus_root" "$here/emobox.tsv.gz" "$datadir/all"
case $protocol in
  emobox) split=(--test-table utt2fold) ;;
  spk5fold)
    spec=$datadir/local/spk5fold.txt
    mkdir -p "$datadir/local"
    cut -d' ' -f2 "$datadir/all/utt2spk" | sort -u \
      | awk '{n = substr($1, 2) + 0; f = "fold" ((n - 1) % 5 + 1); s[f] = s[f] " " $1}
             END {for (f in s) print f s[f]}' | sort > "$spec"
    split=(--test-speakers "$spec") ;;
  *) echo "$0: unknown --protocol $protocol (emobox or spk5fold)" >&2; exit 1 ;;
esac
rm -rf "$datadir/folds"
sertk data folds "$datadir/all" "$datadir/folds" "${split[@]}" --dev-speakers "$dev_speakers" \
  --seed "$seed"
