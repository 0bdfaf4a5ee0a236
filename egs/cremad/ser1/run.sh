#!/usr/bin/env bash
# CREMA-D (Crowd-sourced Emotional Multimodal Actors Dataset; Cao et al. 2014, IEEE Trans.
# Affective Computing 5(4)): 91 English-speaking actors (48 male, 43 female), 12 sentences,
# 6 emotions, 7442 utterances. EmoBox's single fold (local/emobox.tsv.gz; split by utterance:
# all 91 actors are in both train and test) or 5 speaker-independent folds of actors
# (--local_data_opts "--protocol spk5fold"; 91-fold leave-one-speaker-out is not offered).
#   CREMAD_ROOT=/data/CREMA-D ./run.sh
#   ./run.sh --local_data_opts "--corpus_root /data/CREMA-D --protocol spk5fold" --fold_jobs 2
# The release (git clone with git-lfs of github.com/CheyneyComputerScience/CREMA-D; a zip
# download holds only git-lfs stubs): CREMAD_ROOT/AudioWAV/1001_DFA_ANG_XX.wav, ... (16 kHz
# mono) and CREMAD_ROOT/VideoDemographics.csv (the actors' sex); AudioMP3/ and VideoFlash/
# are not used.
set -euo pipefail
export SERTK_RUN_CMD="${SERTK_RUN_CMD:-$(../../../bin/shell_quote.sh "$0" "$@")}"

exec ./ser.sh \
  --feats_config conf/feats/logmel64.yaml \
  --train_config conf/model/cnn_asp_ref.yaml \
  --train_on_dev true \
  --nj 2 \
  "$@"
