#!/usr/bin/env bash
# SAVEE (Surrey Audio-Visual Expressed Emotion; Haq & Jackson 2009): 4 male British English
# speakers (DC JE JK KL), 7 emotions, 480 utterances. EmoBox's 4 folds (local/emobox.tsv.gz;
# each fold tests one speaker: speaker-independent, the test sets of leave-one-speaker-out) or
# leave-one-speaker-out (--local_data_opts "--protocol loso"); 1 dev speaker per fold.
#   SAVEE_ROOT=/data/savee ./run.sh --fold_jobs 2
#   ./run.sh --local_data_opts "--corpus_root /data/savee --protocol loso"
# The release (AudioData of the SAVEE site) unpacked: SAVEE_ROOT/AudioData/DC/a01.wav, ...
# (44.1 kHz); Kaggle's flattened copy (SAVEE_ROOT/ALL/DC_a01.wav, ...) works too.
set -euo pipefail
export SERTK_RUN_CMD="${SERTK_RUN_CMD:-$(../../../bin/shell_quote.sh "$0" "$@")}"

exec ./ser.sh \
  --feats_config conf/feats/logmel64.yaml \
  --train_config conf/model/cnn_asp_ref.yaml \
  --train_on_dev true \
  --nj 2 \
  "$@"
