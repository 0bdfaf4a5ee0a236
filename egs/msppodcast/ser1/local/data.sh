#!/usr/bin/env bash
# MSP-Podcast data preparation (ser.sh stage 1).
#   local/data.sh [--datadir data] [--corpus_root DIR] [--protocol emobox]
#                 [--dev partition|speakers] [--dev_speakers 20] [--seed 0]
# DATADIR/all: the test files of local/emobox.tsv.gz (EmoBox's list: Test1 of release 1.8,
# labels as EmoBox has them) and the release's Train and Development partitions
# (Labels/labels_consensus.csv), found under CORPUS_ROOT (default $MSPPODCAST_ROOT); speaker,
# gender, arousal/valence/dominance, per-worker labels and transcripts from the release
# (local/prepare_msppodcast.py). Files listed but absent, release files not used (Test2, ...)
# and skipped files are counted and written one per line to DATADIR/local/all_release_report.txt.
# DATADIR/folds/fold1 (emobox, the only protocol: the corpus has 1000+ speakers): test = the
# table's files; train = the Train partition; dev = the Development partition (--dev partition,
# DATADIR/local/all_partition.txt) or --dev_speakers speakers drawn from the Train and
# Development speakers (--dev speakers). Test1's speakers are in no other partition (MSP's
# speaker-independent split; training files of a tested speaker are skipped), so the fold is
# speaker-independent; unknown speakers are one pseudo-speaker per podcast (pod<podcast>).
set -euo pipefail
datadir=data
corpus_root=${MSPPODCAST_ROOT:-}
protocol=emobox
dev=partition
dev_speakers=20
seed=0
. parse_options.sh

[ -n "$corpus_root" ] || { echo "$0: give --corpus_root or set MSPPODCAST_ROOT" >&2; exit 1; }
[ "$protocol" = emobox ] || { echo "$0: unknown --protocol $protocol (emobox)" >&2; exit 1; }
here=$(dirname "$0")
python "$here/prepare_msppodcast.py" "$corpus_root" "$here/emobox.tsv.gz" "$datadir/all"
rm -rf "$datadir/folds"
case $dev in
  speakers)
    sertk data folds "$datadir/all" "$datadir/folds" --test-table utt2fold \
      --dev-speakers "$dev_speakers" --seed "$seed" ;;
  partition)
    lists=$datadir/local/folds
    mkdir -p "$lists"
    for s in train dev; do
      awk -v s=$s '$2 == s { print $1 }' "$datadir/local/all_partition.txt" > "$lists/$s"
      [ -s "$lists/$s" ] || { echo "$0: no $s utterances (Train/Development partitions)" >&2
                              exit 1; }
    done
    for fold in $(awk '$2 != "-" { print $2 }' "$datadir/all/utt2fold" | sort -u); do
      awk -v f="$fold" '$2 == f { print $1 }' "$datadir/all/utt2fold" > "$lists/$fold.test"
      sertk data subset "$datadir/all" "$datadir/folds/$fold/test" --utt-list "$lists/$fold.test"
      for s in train dev; do
        sertk data subset "$datadir/all" "$datadir/folds/$fold/$s" --utt-list "$lists/$s"
      done
    done ;;
  *) echo "$0: unknown --dev $dev (partition or speakers)" >&2; exit 1 ;;
esac
