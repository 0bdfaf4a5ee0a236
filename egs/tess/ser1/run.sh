#!/usr/bin/env bash
# TESS (Toronto Emotional Speech Set; Dupuis & Pichora-Fuller 2010, doi:10.5683/SP2/E8H2MF):
# 2 female English speakers (OAF older, YAF younger), 7 emotions (angry disgust fearful happy
# neutral surprised=pleasant surprise sad), 2800 utterances ("Say the word <word>", 200 words).
# EmoBox's single fold (local/emobox.tsv.gz; split by utterance: train and test hold both
# speakers) or leave-one-speaker-out, speaker-independent (--local_data_opts "--protocol loso":
# 2 folds, each trains on one actor and tests on the other). Dev is an utterance split.
#   TESS_ROOT=/data/tess ./run.sh
#   ./run.sh --local_data_opts "--corpus_root /data/tess --protocol loso"
# The release unpacked: Borealis (Dataverse) dataverse_files.zip gives
# TESS_ROOT/OAF_back_angry.wav, ... (2800 files, flat); the Kaggle copy gives
# TESS_ROOT/TESS Toronto emotional speech set data/OAF_angry/OAF_back_angry.wav,
# .../OAF_Pleasant_surprise/OAF_back_ps.wav, ... (files are found by name; a second copy of
# the archive is reported, not used).
set -euo pipefail
export SERTK_RUN_CMD="${SERTK_RUN_CMD:-$(../../../bin/shell_quote.sh "$0" "$@")}"

exec ./ser.sh \
  --feats_config conf/feats/logmel64.yaml \
  --train_config conf/model/cnn_asp_ref.yaml \
  --train_on_dev true \
  --nj 2 \
  "$@"
