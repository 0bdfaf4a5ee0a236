#!/usr/bin/env bash
# IEMOCAP (Busso et al. 2008, Language Resources and Evaluation 42(4)): 10 English-speaking
# actors (5 sessions of one female + one male), EmoBox's 4 classes (angry, happy = hap + exc,
# neutral, sad), 5531 utterances of the 10039 in the release; also transcripts, dimensional
# means (utt2dim) and the evaluators' categories (utt2listener_emo).
# EmoBox's 5 folds (local/emobox.tsv.gz; fold N tests SessionN: speaker-independent), the same
# as leave-one-session-out (--local_data_opts "--protocol loso", folds session1..5), or
# leave-one-speaker-out (--local_data_opts "--protocol lospk", 10 folds).
#   IEMOCAP_ROOT=/data/IEMOCAP_full_release ./run.sh --fold_jobs 2
#   ./run.sh --local_data_opts "--corpus_root /data/IEMOCAP_full_release --protocol lospk"
# The release (IEMOCAP_full_release.tar.gz from USC SAIL, on request) unpacked:
# IEMOCAP_ROOT/Session1/sentences/wav/Ses01F_impro01/Ses01F_impro01_F000.wav, ...,
# IEMOCAP_ROOT/Session1/dialog/EmoEvaluation/Ses01F_impro01.txt and
# IEMOCAP_ROOT/Session1/dialog/transcriptions/Ses01F_impro01.txt, ... (Session1..Session5).
set -euo pipefail
export SERTK_RUN_CMD="${SERTK_RUN_CMD:-$(../../../bin/shell_quote.sh "$0" "$@")}"

exec ./ser.sh \
  --feats_config conf/feats/logmel64.yaml \
  --train_config conf/model/cnn_asp_ref.yaml \
  --train_on_dev true \
  --nj 2 \
  "$@"
