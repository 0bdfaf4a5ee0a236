#!/usr/bin/env bash
# MELD data preparation (ser.sh stage 1).
#   local/data.sh [--datadir data] [--corpus_root DIR] [--protocol emobox] [--nj 2]
#                 [--dev_speakers 0] [--seed 0]
# DATADIR/all: the clips of local/emobox.tsv.gz found under CORPUS_ROOT (default $MELD_ROOT),
# their audio decoded to 16 kHz mono WAV in DATADIR/local/wav (--nj processes; kept across
# reruns); speaker (the character) and transcript from MELD's {train,test}_sent_emo.csv
# (local/prepare_meld.py). Clips the table lists but the release lacks, clips without usable
# audio, and release clips the table does not list (MELD's dev split, the test folder's
# final_videos_test* variants) are counted and written one per line to
# DATADIR/local/all_release_report.txt.
# DATADIR/folds/fold1: EmoBox's single fold (emobox) = MELD's train/test split; it is not
# speaker-independent (the main characters speak in both), so dev is a 10 % utterance split of
# the training part (--dev_speakers 0; N > 0 would hold out N whole speakers, drawn from the
# minor characters who never speak in the test split).
set -euo pipefail
datadir=data
corpus_root=${MELD_ROOT:-}
protocol=emobox
nj=2
dev_speakers=0
seed=0
. parse_options.sh

[ -n "$corpus_root" ] || { echo "$0: give --corpus_root or set MELD_ROOT" >&2; exit 1; }
[ "$protocol" = emobox ] || { echo "$0: unknown --protocol $protocol (emobox)" >&2; exit 1; }
here=$(dirname "$0")
python "$here/prepare_meld.py" --nj "$nj" "$corpus_root" "$here/emobox.tsv.gz" "$datadir/all"
rm -rf "$datadir/folds"
sertk data folds "$datadir/all" "$datadir/folds" --test-table utt2fold \
  --dev-speakers "$dev_speakers" --seed "$seed"
