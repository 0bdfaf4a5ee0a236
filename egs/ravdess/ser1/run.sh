#!/usr/bin/env bash
# RAVDESS speech (24 actors, 8 emotions), EmoBox 6-fold speaker-independent protocol.
#   ./run.sh                                   # cnn_asp_ref (best 6-fold UA so far), all stages
#   ./run.sh --fold_jobs 2                     # the same, two folds side by side (2-core CPU)
#   ./run.sh --stage 3                         # from training on
#   ./run.sh --train_config conf/model/light_sernet.yaml \
#            --feats_config conf/feats/mfcc40_light_sernet.yaml --train_on_dev false
#   ./run.sh --local_data_opts "--protocol loao"   # leave-one-actor-out (24 folds)
# The default trains each fold on its 20 training actors (train + dev, --train_on_dev true)
# for a fixed 30 epochs and keeps the last one; configs that select on dev (train.select:
# best) need --train_on_dev false. The corpus is read from $RAVDESS_ROOT (default
# ../../../../shared/corpora/ravdess).
set -euo pipefail
# the command quoted in RESULTS.md (quoted so that it can be pasted back into a shell)
export SERTK_RUN_CMD="${SERTK_RUN_CMD:-$(../../../bin/shell_quote.sh "$0" "$@")}"

exec ./ser.sh \
  --feats_config conf/feats/logmel64.yaml \
  --train_config conf/model/cnn_asp_ref.yaml \
  --train_on_dev true \
  --nj 2 \
  "$@"
