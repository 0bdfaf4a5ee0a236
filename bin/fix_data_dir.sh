#!/usr/bin/env bash
# fix_data_dir.sh DATA_DIR  -- Kaldi-named wrapper of `sertk data fix` (reports every drop).
exec sertk data fix "$@"
