#!/usr/bin/env bash
# CREMA-D data preparation (ser.sh stage 1).
#   local/data.sh [--datadir data] [--corpus_root DIR] [--protocol emobox|spk5fold]
#                 [--dev_speakers 4] [--seed 0]
# DATADIR/all: the files of local/emobox.tsv.gz found under CORPUS_ROOT (default $CREMAD_ROOT);
# speaker (actor), sentence, emotion and level from the file name, gender from the release's
# VideoDemographics.csv (local/prepare_cremad.py). Files the table lists but the release lacks,
# release files the table does not list, and unusable files (git-lfs stubs, empty or silent
# audio) are counted and written one per line to DATADIR/local/all_release_report.txt.
# DATADIR/folds: EmoBox's single fold (emobox; EmoBox split CREMA-D by utterance: all 91 actors
# are in both its train and test parts, so dev is a 10 % utterance split of the training part)
# or 5 speaker-independent folds of actors (spk5fold: actor 1000+n is tested in fold
# ((n-1) mod 5)+1, 18-19 actors per fold; dev actors drawn from each fold's training actors).
# Leave-one-speaker-out is not offered: 91 trainings, each tested on ~82 utterances of one
# actor, cost 18 times spk5fold for no more speaker independence.
set -euo pipefail
datadir=data
corpus_root=${CREMAD_ROOT:-}
protocol=emobox
dev_speakers=4
seed=0
. parse_options.sh

[ -n "$corpus_root" ] || { echo "$0: give --corpus_root or set CREMAD_ROOT" >&2; exit 1; }
here=$(dirname "$0")
python "$here/prepare_cremad.py" "$corpus_root" "$here/emobox.tsv.gz" "$datadir/all"
case $protocol in
  emobox) split=(--test-table utt2fold) ;;
  spk5fold)
    spec=$datadir/local/spk5fold.txt
    mkdir -p "$datadir/local"
    cut -d' ' -f2 "$datadir/all/utt2spk" | sort -u \
      | awk '{n = substr($1, 4) - 1000; f = "fold" ((n - 1) % 5 + 1); s[f] = s[f] " " $1}
             END {for (f in s) print f s[f]}' | sort > "$spec"
    split=(--test-speakers "$spec") ;;
  *) echo "$0: unknown --protocol $protocol (emobox or spk5fold)" >&2; exit 1 ;;
esac
rm -rf "$datadir/folds"
sertk data folds "$datadir/all" "$datadir/folds" "${split[@]}" --dev-speakers "$dev_speakers" \
  --seed "$seed"
