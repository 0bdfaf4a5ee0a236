#!/usr/bin/env bash
# MSP-Podcast (Lotfian & Busso 2019, IEEE Trans. Affective Computing; UT Dallas): English
# podcast speaking turns, crowd-labelled: 10 classes (8 emotions, other, no agreement), 1000+
# speakers. EmoBox's protocol only (local/emobox.tsv.gz lists its 15326 test turns, Test1 of
# release 1.8, one fold): trained on the release's Train partition, validated on its
# Development partition, speaker-independent (MSP's partitions share no speaker).
#   MSPPODCAST_ROOT=/data/MSP-PODCAST-Publish-1.8 ./run.sh
#   ./run.sh --local_data_opts "--corpus_root /data/msp --dev speakers --dev_speakers 20"
# The release (from UT Dallas under its academic licence) unpacked: MSPPODCAST_ROOT/Audios/
# MSP-PODCAST_0001_0008.wav, ... (16 kHz), MSPPODCAST_ROOT/Labels/labels_consensus.csv (releases
# up to 1.9: labels_concensus.csv) and labels_detailed.csv, MSPPODCAST_ROOT/Transcripts/*.txt.
# EmoBox used release 1.8; a later release trains on its own, larger Train partition.
set -euo pipefail
export SERTK_RUN_CMD="${SERTK_RUN_CMD:-$(../../../bin/shell_quote.sh "$0" "$@")}"

exec ./ser.sh \
  --feats_config conf/feats/logmel64.yaml \
  --train_config conf/model/cnn_asp_ref.yaml \
  --train_on_dev true \
  --nj 2 \
  "$@"
