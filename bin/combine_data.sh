#!/usr/bin/env bash
# combine_data.sh DST SRC1 SRC2 ...  -- Kaldi-named wrapper of `sertk data combine`.
exec sertk data combine "$@"
