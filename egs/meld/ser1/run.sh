#!/usr/bin/env bash
# MELD (Multimodal EmotionLines Dataset; Poria et al., ACL 2019): English dialogue clips of the
# TV series Friends, 7 emotions; EmoBox's table: 12598 utterances (9988 of the train split,
# 2610 of the test split) of some 300 speakers (the characters). Protocol: emobox only, EmoBox's
# single fold = MELD's official train/test split (not speaker-independent: the main characters
# speak in both); dev = a 10 % utterance split of the training part (MELD's own dev split is not
# in EmoBox's table). No leave-one-speaker-out: hundreds of speakers, most with a line or two.
#   MELD_ROOT=/data/MELD.Raw ./run.sh
#   ./run.sh --local_data_opts "--corpus_root /data/MELD.Raw --nj 4"
# The release (MELD.Raw.tar.gz, then its train/dev/test tarballs) unpacked:
#   MELD_ROOT/train/train_splits/dia<D>_utt<U>.mp4, MELD_ROOT/dev/dev_splits_complete/...,
#   MELD_ROOT/output_repeated_splits_test/dia<D>_utt<U>.mp4 and train_sent_emo.csv,
#   dev_sent_emo.csv, test_sent_emo.csv (anywhere under MELD_ROOT). Stage 1 decodes the clips'
#   audio (PyAV) to 16 kHz mono WAV under DATADIR/local/wav (once; reruns reuse it).
set -euo pipefail
export SERTK_RUN_CMD="${SERTK_RUN_CMD:-$(../../../bin/shell_quote.sh "$0" "$@")}"

exec ./ser.sh \
  --feats_config conf/feats/logmel64.yaml \
  --train_config conf/model/cnn_asp_ref.yaml \
  --train_on_dev true \
  --nj 2 \
  "$@"
