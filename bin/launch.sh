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
# Each job runs in a process group of its own (setsid). When the launcher is told to stop
# (SIGTERM from `kill` or a cluster, SIGINT from Ctrl-C, SIGHUP), it sends SIGTERM to every
# running job's whole process group (the command, its children and grandchildren; SIGTERM even
# on Ctrl-C, since background jobs ignore SIGINT), SIGKILL to what is left after a grace period
# (LAUNCH_KILL_GRACE seconds, default 5), notes the kill in each job's log, and dies of the
# signal it received (exit status 128+N).
set -u
. "$(dirname "${BASH_SOURCE[0]}")/job_common.sh"
max_jobs=0
if [ "${1:-}" = "--max-jobs-run" ]; then max_jobs=$2; shift 2; fi
if job_parse_range "${1:-}"; then shift; fi
first=$job_first; last=$job_last; var=$job_var
if [ $# -lt 2 ]; then
  echo "usage: $0 [--max-jobs-run N] [JOB=1:N] LOGFILE COMMAND..." >&2; exit 1
fi
log=$1; shift
cmd=$(job_command_line "$@")
pids=(); logs=()
# one job: header, the command, footer with its exit status (args: LOG COMMAND)
job_body='start=$(date +%s)
{ echo "# $2"; echo "# started at $(date)"; } > "$1"
bash -c "$2" >> "$1" 2>&1
rc=$?
echo "# ended (exit $rc) at $(date), elapsed $(( $(date +%s) - start )) s" >> "$1"
exit $rc'
if command -v setsid >/dev/null; then new_group="setsid -w"; else new_group=""; set -m; fi

stop_jobs() {  # stop_jobs SIGNAL NUMBER: end every job's process group, then die of SIGNAL
  local sig=$1 num=$2 i
  trap '' INT TERM HUP
  job_end_groups "${LAUNCH_KILL_GRACE:-5}" "${pids[@]}"
  for i in "${!logs[@]}"; do
    tail -n 1 "${logs[$i]}" 2>/dev/null | grep -q '^# ended' ||
      echo "# killed: launcher received SIG$sig at $(date)" >> "${logs[$i]}"
  done
  echo "$0: received SIG$sig: stopped ${#pids[@]} job(s) and their processes" >&2
  trap - "$sig"
  kill -"$sig" $$
  exit $((128 + num))
}
trap 'stop_jobs INT 2' INT
trap 'stop_jobs TERM 15' TERM
trap 'stop_jobs HUP 1' HUP

for ((j = first; j <= last; j++)); do
  this_log=$log; this_cmd=$cmd
  if [ -n "$var" ]; then this_log=${log//$var/$j}; this_cmd=${cmd//$var/$j}; fi
  mkdir -p "$(dirname "$this_log")"
  $new_group bash -c "$job_body" job "$this_log" "$this_cmd" &
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
