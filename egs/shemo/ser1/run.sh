#!/usr/bin/env bash
# ShEMO (Sharif Emotional Speech Database; Mohamad Nezami et al. 2019, Language Resources and
# Evaluation 53(1)): Persian radio plays, 87 speakers (31 female, 56 male), 6 emotions; EmoBox
# keeps the 2838 of its 3000 clips that shemo.json labels. EmoBox's single fold
# (local/emobox.tsv.gz; split by utterance: 83 speakers are in both train and test) or 5
# speaker-independent folds (--local_data_opts "--protocol spk5fold"; 87-fold
# leave-one-speaker-out is not offered).
#   SHEMO_ROOT=/data/shemo ./run.sh
#   ./run.sh --local_data_opts "--corpus_root /data/shemo --protocol spk5fold" --fold_jobs 2
# The release (github.com/pariajm/sharif-emotional-speech-dataset: female.zip, male.zip and
# shemo.json) unpacked: SHEMO_ROOT/female/F01A01.wav, ..., SHEMO_ROOT/male/M01A01.wav, ...
# (44.1 kHz) and SHEMO_ROOT/shemo.json (labels and transcripts, needed).
set -euo pipefail
export SERTK_RUN_CMD="${SERTK_RUN_CMD:-$(../../../bin/shell_quote.sh "$0" "$@")}"

exec ./ser.sh \
  --feats_config conf/feats/logmel64.yaml \
  --train_config conf/model/cnn_asp_ref.yaml \
  --train_on_dev true \
  --nj 2 \
  "$@"
