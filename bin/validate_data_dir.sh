#!/usr/bin/env bash
# validate_data_dir.sh [--no-audio] DATA_DIR  -- Kaldi-named wrapper of `sertk data validate`.
opts=(); [ "${1:-}" = "--no-audio" ] && { opts+=(--no-audio); shift; }
exec sertk data validate "${opts[@]}" "$@"
