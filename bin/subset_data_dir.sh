#!/usr/bin/env bash
# subset_data_dir.sh (--utt-list FILE | --spk-list FILE) SRC DST  -- wraps `sertk data subset`.
[ $# -eq 4 ] || { echo "usage: $0 (--utt-list FILE | --spk-list FILE) SRC DST" >&2; exit 1; }
exec sertk data subset "$3" "$4" "$1" "$2"
