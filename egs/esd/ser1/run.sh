#!/usr/bin/env bash
# ESD (Emotional Speech Dataset; Zhou et al., ICASSP 2021 and Speech Communication 2022): 10
# Mandarin (0001-0010) and 10 English (0011-0020) speakers, 10 female and 10 male, 5 emotions
# (angry happy neutral sad surprised), 35000 utterances. EmoBox's 5 folds (local/emobox.tsv.gz;
# speaker-independent, 4 test speakers per fold) or leave-one-speaker-out (--local_data_opts
# "--protocol loso", 20 folds).
#   ESD_ROOT=/data/esd ./run.sh --fold_jobs 2
#   ./run.sh --local_data_opts "--corpus_root /data/esd --protocol loso"
# The release (github.com/HLTSingapore/Emotional-Speech-Data, "Emotional Speech Dataset
# (ESD).zip") unpacked: ESD_ROOT/Emotion Speech Dataset/{ReadMe.txt,0001/0001.txt (transcripts),
# 0001/Angry/{train,evaluation,test}/0001_000351.wav, ...}; files are found by name, so flat
# copies (0001/Neutral/0001_000001.wav, EmoBox's paths) work too.
set -euo pipefail
export SERTK_RUN_CMD="${SERTK_RUN_CMD:-$(../../../bin/shell_quote.sh "$0" "$@")}"

exec ./ser.sh \
  --feats_config conf/feats/logmel64.yaml \
  --train_config conf/model/cnn_asp_ref.yaml \
  --train_on_dev true \
  --nj 2 \
  "$@"
