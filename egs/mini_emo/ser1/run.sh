#!/usr/bin/env bash
# Offline end-to-end check on CPU (about 2 minutes): synthesise a small emotional corpus,
# dump Kaldi fbank features, train LIGHT-SERNET for a few epochs, score the held-out
# speakers (UA printed at the end), pack the model for `sertk infer`.
set -euo pipefail
# the command quoted in RESULTS.md (quoted so that it can be pasted back into a shell)
export SERTK_RUN_CMD="${SERTK_RUN_CMD:-$(../../../bin/shell_quote.sh "$0" "$@")}"

exec ./ser.sh \
  --feats_config conf/feats/fbank40.yaml \
  --train_config conf/model/light_sernet.yaml \
  --train_args "--override train.epochs=8 --override optim.lr=0.002 \
--override train.batch_size=16 --override scheduler.name=none --override train.crop_frames=null" \
  --tag light_sernet_mini \
  --nj 2 \
  "$@"
