#!/usr/bin/env bash
# Template run.sh: copy egs/TEMPLATE/ser1 to egs/<corpus>/ser1, write local/data.sh, and set
# the corpus options below. Everything else is ser.sh.
set -euo pipefail
# the command quoted in RESULTS.md (quoted so that it can be pasted back into a shell)
export SERTK_RUN_CMD="${SERTK_RUN_CMD:-$(../../../bin/shell_quote.sh "$0" "$@")}"

exec ./ser.sh \
  --feats_config conf/feats/fbank80.yaml \
  --train_config conf/model/light_sernet.yaml \
  --local_data_opts "" \
  "$@"
