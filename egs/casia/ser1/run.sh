#!/usr/bin/env bash
# CASIA Chinese emotional speech corpus (Institute of Automation, Chinese Academy of Sciences;
# Tao, Liu, Zhang & Jia, "Design of speech corpus for Mandarin text to speech", Blizzard
# Challenge 2008 workshop): 4 Mandarin speakers (2 male, 2 female), 6 emotions, the 1200
# utterances of the public part (sentences 201-250 of each speaker and emotion). EmoBox's 4
# folds (local/emobox.tsv.gz; speaker-independent: each fold tests one speaker) or
# leave-one-speaker-out (--local_data_opts "--protocol loso": the same 4 test sets, folds named
# after the speakers).
#   CASIA_ROOT=/data/casia ./run.sh --fold_jobs 2
#   ./run.sh --local_data_opts "--corpus_root /data/casia --protocol loso"
# The release unpacked: CASIA_ROOT/<speaker>/<emotion>/<nnn>.wav, e.g. liuchanhg/angry/201.wav,
# ZhaoZuoxiang/surprise/250.wav (speakers liuchanhg wangzhe zhaoquanyin ZhaoZuoxiang; emotions
# angry fear happy neutral sad surprise).
set -euo pipefail
export SERTK_RUN_CMD="${SERTK_RUN_CMD:-$(../../../bin/shell_quote.sh "$0" "$@")}"

exec ./ser.sh \
  --feats_config conf/feats/logmel64.yaml \
  --train_config conf/model/cnn_asp_ref.yaml \
  --train_on_dev true \
  --nj 2 \
  "$@"
