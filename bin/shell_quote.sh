#!/usr/bin/env bash
# Prints its arguments as one shell command line that reruns them: plain words as they are,
# others in single quotes (printf %q when a word holds a single quote).
#   shell_quote.sh ./run.sh --train_args "--override train.epochs=4"
#   -> ./run.sh --train_args '--override train.epochs=4'
out=()
for a in "$@"; do
  if [[ -n $a && $a =~ ^[A-Za-z0-9_./=:,+@%-]+$ ]]; then out+=("$a")
  elif [[ $a != *"'"* ]]; then out+=("'$a'")
  else out+=("$(printf '%q' "$a")")
  fi
done
echo "${out[*]}"
