#!/usr/bin/env bash
# local/data.sh for a new corpus -- the one file to write when adding egs/<corpus>/ser1.
#
# Contract (called by ser.sh stage 1 as: local/data.sh --datadir DIR [your options]):
#   DIR/all/                  Kaldi data dir of the whole corpus: wav.scp, utt2spk, spk2utt,
#                             utt2emo (+ optional segments, text, utt2gender, utt2dim, ...),
#                             utterance ids prefixed by speaker ids, keys sorted (LC_ALL=C).
#   DIR/folds/<fold>/{train,dev,test}/   one data dir per set of each fold; dev must come
#                             from training speakers, never from test speakers.
# Tools: `sertk data folds DIR/all DIR/folds --test-speakers SPEC` builds folds from a list of
# test speakers per fold; `sertk data subset`, `sertk data trim`, `sertk data validate`.
# See egs/ravdess/ser1/local/data.sh for a complete example.
set -euo pipefail
datadir=data
. parse_options.sh

echo "$0: this is the TEMPLATE; write local/data.sh for your corpus (see the comments)" >&2
exit 1
