#!/usr/bin/env bash
# JL-Corpus (James, Tian & Watson, Interspeech 2018): New Zealand English, 4 actors (female1
# female2 male1 male2), 10 emotions (5 primary: angry excited happy neutral sad; 5 secondary:
# anxious apologetic assertive concerned encouraging), 2400 utterances. EmoBox's 4 folds
# (local/emobox.tsv.gz; speaker-independent, one test actor per fold) or leave-one-speaker-out
# (--local_data_opts "--protocol loso": the same 4 test parts under speaker names).
#   JLCORPUS_ROOT=/data/jl-corpus ./run.sh --fold_jobs 2
#   ./run.sh --local_data_opts "--corpus_root /data/jl-corpus --protocol loso"
# The release (kaggle.com/datasets/tli725/jl-corpus) unpacked: JLCORPUS_ROOT/Raw JL corpus
# (unchecked and unannotated)/JL(wav+txt)/female1_angry_10a_1.wav with female1_angry_10a_1.txt
# (its prompt) beside it, ...
set -euo pipefail
export SERTK_RUN_CMD="${SERTK_RUN_CMD:-$(../../../bin/shell_quote.sh "$0" "$@")}"

exec ./ser.sh \
  --feats_config conf/feats/logmel64.yaml \
  --train_config conf/model/cnn_asp_ref.yaml \
  --train_on_dev true \
  --nj 2 \
  "$@"
