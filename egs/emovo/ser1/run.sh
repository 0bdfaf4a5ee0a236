#!/usr/bin/env bash
# EMOVO (Costantini et al. 2014, LREC): 6 Italian actors (3 female, 3 male), 14 sentences,
# 7 emotions, 588 utterances. EmoBox's 6 folds (local/emobox.tsv.gz; speaker-independent: each
# fold tests one actor) or leave-one-speaker-out (--local_data_opts "--protocol loso": the same
# partition under fold_<actor> names).
#   EMOVO_ROOT=/data/EMOVO ./run.sh --fold_jobs 2
#   ./run.sh --local_data_opts "--corpus_root /data/EMOVO --protocol loso"
# The release (EMOVO.zip) unpacked: EMOVO_ROOT/f1/dis-f1-b1.wav, ..., EMOVO_ROOT/m3/... (48 kHz
# stereo; EMOVO_ROOT may also be the folder holding EMOVO/).
set -euo pipefail
export SERTK_RUN_CMD="${SERTK_RUN_CMD:-$(../../../bin/shell_quote.sh "$0" "$@")}"

exec ./ser.sh \
  --feats_config conf/feats/logmel64.yaml \
  --train_config conf/model/cnn_asp_ref.yaml \
  --train_on_dev true \
  --nj 2 \
  "$@"
