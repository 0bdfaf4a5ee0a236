#!/usr/bin/env bash
# EmoDB (Berlin Database of Emotional Speech; Burkhardt et al. 2005): 10 German actors, 7 emotions,
# 535 utterances. EmoBox's 5 folds (local/emobox.tsv.gz; split by utterance: every fold tests
# all 10 speakers) or leave-one-speaker-out, speaker-independent (--local_data_opts
# "--protocol loso").
#   EMODB_ROOT=/data/emodb ./run.sh --fold_jobs 2
#   ./run.sh --local_data_opts "--corpus_root /data/emodb --protocol loso"
# The release (download.zip of emodb.bilderbar.info) unpacked: EMODB_ROOT/wav/03a01Fa.wav, ...
set -euo pipefail
export SERTK_RUN_CMD="${SERTK_RUN_CMD:-$(../../../bin/shell_quote.sh "$0" "$@")}"

exec ./ser.sh \
  --feats_config conf/feats/logmel64.yaml \
  --train_config conf/model/cnn_asp_ref.yaml \
  --train_on_dev true \
  --nj 2 \
  "$@"
