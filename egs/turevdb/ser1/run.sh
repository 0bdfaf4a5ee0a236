#!/usr/bin/env bash
# TurEV-DB (Turkish Emotion-Voice Database; Canpolat, Ormanoglu & Zeyrek, SLTU-CCURL 2020):
# 82 Turkish words, 6 actors, 4 emotions (angry calm happy sad), 1735 utterances. EmoBox's
# single fold (local/emobox.tsv.gz; split by utterance, every actor in train and test) or
# leave-one-speaker-out (--local_data_opts "--protocol loso", 6 folds, speaker-independent;
# actor 1157 recorded only angry and sad).
#   TUREVDB_ROOT=/data/TurEV-DB ./run.sh
#   ./run.sh --local_data_opts "--corpus_root /data/TurEV-DB --protocol loso" --fold_jobs 2
# The release (a clone of github.com/Xeonen/TurEV-DB): TUREVDB_ROOT/Sound Source/Angry/
# 1157_kz_acik.wav, .../Calm/1234_sk_acik.wav, .../Happy/..., .../Sad/1157_hl_acik.wav, ...
set -euo pipefail
export SERTK_RUN_CMD="${SERTK_RUN_CMD:-$(../../../bin/shell_quote.sh "$0" "$@")}"

exec ./ser.sh \
  --feats_config conf/feats/logmel64.yaml \
  --train_config conf/model/cnn_asp_ref.yaml \
  --train_on_dev true \
  --nj 2 \
  "$@"
