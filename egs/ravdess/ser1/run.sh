#!/usr/bin/env bash
# RAVDESS speech (24 actors, 8 emotions), EmoBox 6-fold speaker-independent protocol.
#   ./run.sh                                   # light_sernet, all stages, 6 folds
#   ./run.sh --stage 3                         # from training on
#   ./run.sh --train_config conf/model/cnn_attn_baseline.yaml \
#            --feats_config conf/feats/spectrogram400.yaml
#   ./run.sh --local_data_opts "--protocol loao"   # leave-one-actor-out (24 folds)
# The corpus is read from $RAVDESS_ROOT (default ../../../../shared/corpora/ravdess).
set -euo pipefail
# the command quoted in RESULTS.md (quoted so that it can be pasted back into a shell)
export SERTK_RUN_CMD="${SERTK_RUN_CMD:-$(../../../bin/shell_quote.sh "$0" "$@")}"

./ser.sh \
  --feats_config conf/feats/mfcc40_light_sernet.yaml \
  --train_config conf/model/light_sernet.yaml \
  --nj 2 \
  "$@"
