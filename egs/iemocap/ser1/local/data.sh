#!/usr/bin/env bash
# IEMOCAP data preparation (ser.sh stage 1).
#   local/data.sh [--datadir data] [--corpus_root DIR] [--protocol emobox|loso|lospk]
#                 [--dev_speakers 2] [--seed 0]
# DATADIR/all: the files of local/emobox.tsv.gz (EmoBox's 4 classes) found under CORPUS_ROOT
# (default $IEMOCAP_ROOT); speaker (session + the utterance's gender, e.g. Ses01_F), gender,
# transcript, consensus label, dimensional means (utt2dim) and the evaluators' categories
# (utt2listener_emo) from the release's dialog/EmoEvaluation and dialog/transcriptions files
# (local/prepare_iemocap.py). Files the table lists but the release lacks, and release files
# the table does not list (other labels: fru, sur, xxx, ...), are counted and written one per
# line to DATADIR/local/all_release_report.txt.
# DATADIR/folds: EmoBox's 5 folds (emobox: fold N tests SessionN, so the folds are
# speaker-independent), leave-one-session-out (loso: folds session1..session5 with the very same
# test parts as emobox) or leave-one-speaker-out (lospk: 10 folds; the test speaker's dialog
# partner stays in training). Dev: --dev_speakers speakers drawn from each fold's training
# speakers (one per gender first).
set -euo pipefail
datadir=data
corpus_root=${IEMOCAP_ROOT:-}
protocol=emobox
dev_speakers=2
seed=0
. parse_options.sh

[ -n "$corpus_root" ] || { echo "$0: give --corpus_root or set IEMOCAP_ROOT" >&2; exit 1; }
here=$(dirname "$0")
python "$here/prepare_iemocap.py" "$corpus_root" "$here/emobox.tsv.gz" "$datadir/all"
case $protocol in
  emobox) split=(--test-table utt2fold) ;;
  loso)
    # one line per session present: "session1 Ses01_F Ses01_M"
    spec=$datadir/local/loso_folds.txt
    cut -d' ' -f1 "$datadir/all/spk2utt" | sed -n 's/^Ses0*\([0-9]*\)_.*/session\1 &/p' \
      | awk '{s[$1] = s[$1] " " $2} END {for (f in s) print f s[f]}' | LC_ALL=C sort > "$spec"
    split=(--test-speakers "$spec") ;;
  lospk) split=(--loso) ;;
  *) echo "$0: unknown --protocol $protocol (emobox, loso or lospk)" >&2; exit 1 ;;
esac
rm -rf "$datadir/folds"
sertk data folds "$datadir/all" "$datadir/folds" "${split[@]}" --dev-speakers "$dev_speakers" \
  --seed "$seed"
