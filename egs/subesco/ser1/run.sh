#!/usr/bin/env bash
# SUBESCO (SUST Bangla Emotional Speech Corpus; Sultana et al., PLOS ONE 2021): Bangla, 20
# actors (10 female, 10 male), 7 emotions (angry disgust fearful happy neutral sad surprised),
# 7000 utterances. EmoBox's 5 folds (local/emobox.tsv.gz; speaker-independent, 4 test actors
# per fold) or leave-one-speaker-out (--local_data_opts "--protocol loso", 20 folds).
#   SUBESCO_ROOT=/data/subesco ./run.sh --fold_jobs 2
#   ./run.sh --local_data_opts "--corpus_root /data/subesco --protocol loso"
# The release (SUBESCO.zip of zenodo.org/record/4526477) unpacked: all 7000 files in one
# folder, SUBESCO_ROOT/SUBESCO/F_01_OISHI_S_1_ANGRY_1.wav, ... (found by name wherever they
# are under SUBESCO_ROOT).
set -euo pipefail
export SERTK_RUN_CMD="${SERTK_RUN_CMD:-$(../../../bin/shell_quote.sh "$0" "$@")}"

exec ./ser.sh \
  --feats_config conf/feats/logmel64.yaml \
  --train_config conf/model/cnn_asp_ref.yaml \
  --train_on_dev true \
  --nj 2 \
  "$@"
