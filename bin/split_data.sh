#!/usr/bin/env bash
# split_data.sh [--per-spk] DATA_DIR N  -- Kaldi-named wrapper of `sertk data split`.
opts=(); [ "${1:-}" = "--per-spk" ] && { opts+=(--per-spk); shift; }
[ $# -eq 2 ] || { echo "usage: $0 [--per-spk] DATA_DIR N" >&2; exit 1; }
exec sertk data split "${opts[@]}" "$1" --nj "$2"
