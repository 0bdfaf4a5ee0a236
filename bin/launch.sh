#!/usr/bin/env bash
# Local job launcher with Kaldi run.pl semantics (the default $train_cmd/$decode_cmd of cmd.sh):
#
#   launch.sh [--max-jobs-run N] [JOB=1:N] LOGFILE COMMAND...
#
# With JOB=a:b, runs the command once per job index, "JOB" in LOGFILE and COMMAND replaced by
# the index, at most N at a time (default: all). Each job's stdout/stderr go to its log file,
# which starts with the command and ends with its exit status and run time. Exits non-zero,
# naming the failed logs, if any job fails. A cluster replaces this with its own submitter.
# Every argument reaches COMMAND as it was given (JSON, globs and spaces included), except the
# shell operators | || && ; < > >> 2>&1 passed as arguments of their own (escaped on the command
# line, `\|`, as in Kaldi), which join commands into a pipeline.
set -u
max_jobs=0
if [ "${1:-}" = "--max-jobs-run" ]; then max_jobs=$2; shift 2; fi
first=1; last=1; var=""
if [[ "${1:-}" =~ ^([A-Za-z_]+)=([0-9]+):([0-9]+)$ ]]; then
  var=${BASH_REMATCH[1]}; first=${BASH_REMATCH[2]}; last=${BASH_REMATCH[3]}; shift
elif [[ "${1:-}" =~ ^([A-Za-z_]+)=([0-9]+)$ ]]; then
  var=${BASH_REMATCH[1]}; first=${BASH_REMATCH[2]}; last=$first; shift
fi
if [ $# -lt 2 ]; then
  echo "usage: $0 [--max-jobs-run N] [JOB=1:N] LOGFILE COMMAND..." >&2; exit 1
fi
log=$1; shift
cmd=""
for arg in "$@"; do
  case $arg in
    '|' | '||' | '&&' | ';' | '<' | '>' | '>>' | '2>&1') cmd+="$arg " ;;
    *) printf -v quoted '%q' "$arg"; cmd+="$quoted " ;;
  esac
done
cmd=${cmd% }
pids=(); logs=()
for ((j = first; j <= last; j++)); do
  this_log=$log; this_cmd=$cmd
  if [ -n "$var" ]; then this_log=${log//$var/$j}; this_cmd=${cmd//$var/$j}; fi
  mkdir -p "$(dirname "$this_log")"
  (
    start=$(date +%s)
    { echo "# $this_cmd"; echo "# started at $(date)"; } > "$this_log"
    bash -c "$this_cmd" >> "$this_log" 2>&1
    rc=$?
    echo "# ended (exit $rc) at $(date), elapsed $(( $(date +%s) - start )) s" >> "$this_log"
    exit $rc
  ) &
  pids+=($!); logs+=("$this_log")
  if [ "$max_jobs" -gt 0 ]; then
    while [ "$(jobs -rp | wc -l)" -ge "$max_jobs" ]; do wait -n || true; done
  fi
done
failed=0
for i in "${!pids[@]}"; do
  if ! wait "${pids[$i]}"; then
    echo "$0: job failed, see ${logs[$i]}:" >&2
    tail -n 3 "${logs[$i]}" | sed 's/^/    /' >&2
    failed=$((failed + 1))
  fi
done
[ $failed -eq 0 ] || { echo "$0: $failed of ${#pids[@]} job(s) failed" >&2; exit 1; }
