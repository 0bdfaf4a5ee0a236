#!/usr/bin/env bash
# local/data.sh for a new corpus -- the one file to write when adding egs/<corpus>/ser1.
#
# Contract (called by ser.sh stage 1 as: local/data.sh --datadir DIR [your options]):
#   DIR/all/                  Kaldi data dir of the whole corpus: wav.scp, utt2spk, spk2utt,
#                             utt2emo (+ optional segments, text, utt2gender, utt2dim, ...),
#                             utterance ids prefixed by speaker ids, keys sorted (LC_ALL=C).
#   DIR/folds/<fold>/{train,dev,test}/   one data dir per set of each fold; dev must come
#                             from training speakers, never from test speakers.
# Tools: `sertk data folds DIR/all DIR/folds --test-speakers SPEC | --test-table utt2fold | --loso`
# builds folds (test speakers per fold, a corpus table's folds, leave one speaker out);
# sertk.data.release matches a release against a table and reports what is missing or extra;
# `sertk data subset`, `sertk data trim`, `sertk data validate`.
# Step by step: egs/TEMPLATE/ser1/README.md; complete examples: egs/emodb/ser1, egs/ravdess/ser1.
set -euo pipefail
datadir=data
. parse_options.sh

echo "$0: this is the TEMPLATE; write local/data.sh for your corpus (see the comments)" >&2
exit 1
