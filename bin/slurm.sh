#!/usr/bin/env bash
# Slurm job launcher with Kaldi/ESPnet slurm.pl semantics (cmd.sh's $train_cmd/$decode_cmd on a
# Slurm cluster; the same interface as the local bin/launch.sh):
#
#   slurm.sh [--max-jobs-run N] [--gpu N] [--mem 4G] [--num_threads N] [--time 4:00:00]
#            [--partition P] [--num_nodes N] [--config conf/slurm.conf] [--NAME VALUE]
#            [JOB=1:N] LOGFILE COMMAND...
#
# Submits one sbatch job (JOB=a:b: one job array, --array=a-b, at most N tasks at a time with
# --max-jobs-run N) and waits for it (sbatch --wait). Task j runs COMMAND with "JOB" in LOGFILE
# and COMMAND replaced by j, its stdout/stderr in its log file, which starts with the command
# and ends with its exit status and run time, as with launch.sh. Exits non-zero, naming the
# failed logs, if any task fails (or was killed: its log has no exit status). Arguments reach
# COMMAND as with launch.sh (bin/job_common.sh: quoted, except the escaped shell operators).
# TERM/INT cancel the job (scancel). The job's environment is the caller's (sbatch exports it),
# OMP_NUM_THREADS defaults to the job's CPUs per task; the job script and Slurm's own output
# are kept in LOGDIR/q/.
#
# Options become sbatch options through a Kaldi-style config (--config FILE, else
# conf/slurm.conf when it exists, else the built-in one below); its lines are
#   command sbatch ARGS...       the submitter and its fixed options
#   default NAME=VALUE           a value used when --NAME is not given
#   option NAME=VALUE ARGS...    the sbatch ARGS for exactly this value ("option gpu=0": none)
#   option NAME=* ARGS...        for any other value, $0 replaced by it
# An option the config does not name is an error.
set -u
# shellcheck source=SCRIPTDIR/job_common.sh
. "$(dirname "${BASH_SOURCE[0]}")/job_common.sh"

# shellcheck disable=SC2016  # $0: the config's placeholder
default_config='command sbatch --export=ALL
option gpu=0
option gpu=* --gres=gpu:$0
option mem=0
option mem=* --mem=$0
option num_threads=* --cpus-per-task=$0
option time=* --time=$0
option partition=* --partition=$0
option num_nodes=* --nodes=$0 --ntasks-per-node=1
option name=* --job-name=$0'

usage() {
  echo "usage: $0 [--max-jobs-run N] [--gpu N] [--mem M] [--num_threads N] [--time T]" \
    "[--partition P] [--num_nodes N] [--config FILE] [JOB=1:N] LOGFILE COMMAND..." >&2
  exit 1
}
die() { echo "$0: $*" >&2; exit 1; }

max_jobs=0; config=""
declare -A opts=()      # --NAME VALUE from the command line
names=()                # their order
while [[ ${1:-} == --* ]]; do
  name=${1#--}
  if [[ $name == *=* ]]; then value=${name#*=}; name=${name%%=*}; shift
  else [ $# -ge 2 ] || usage; value=$2; shift 2; fi
  name=${name//-/_}
  case $name in
    max_jobs_run) max_jobs=$value ;;
    config) config=$value ;;
    *) [ -n "${opts[$name]+set}" ] || names+=("$name"); opts[$name]=$value ;;
  esac
done
job_parse_range "${1:-}" && shift
[ $# -ge 2 ] || usage
[[ $max_jobs =~ ^[0-9]+$ ]] || die "--max-jobs-run takes a number, got '$max_jobs'"
log=$1; shift
cmd=$(job_command_line "$@")

# the config: sbatch and its options
if [ -z "$config" ] && [ -f conf/slurm.conf ]; then config=conf/slurm.conf; fi
if [ -n "$config" ]; then
  [ -f "$config" ] || die "config not found: $config"
  config_text=$(cat "$config")
else
  config_text=$default_config
fi
submit=(); declare -A exact=() wild=()
while read -r line; do
  line=${line%%#*}
  read -r -a words <<< "$line"
  [ ${#words[@]} -gt 0 ] || continue
  case ${words[0]} in
    command) submit=("${words[@]:1}") ;;
    default)
      [[ ${words[1]:-} == *=* ]] || die "${config:-built-in config}: bad line: $line"
      n=${words[1]%%=*}
      if [ -z "${opts[$n]+set}" ]; then opts[$n]=${words[1]#*=}; names+=("$n"); fi ;;
    option)
      [[ ${words[1]:-} == *=* ]] || die "${config:-built-in config}: bad line: $line"
      if [[ ${words[1]} == *=\* ]]; then wild[${words[1]%%=*}]="${words[*]:2}"
      else exact[${words[1]}]="${words[*]:2}"; fi ;;
    *) die "${config:-built-in config}: unknown line: $line" ;;
  esac
done <<< "$config_text"
[ ${#submit[@]} -gt 0 ] || die "${config:-built-in config}: no 'command' line"
slurm_opts=()
for n in "${names[@]}"; do
  v=${opts[$n]}
  if [ -n "${exact[$n=$v]+set}" ]; then args=${exact[$n=$v]}
  elif [ -n "${wild[$n]+set}" ]; then args=${wild[$n]//\$0/$v}
  else die "option --$n is not in ${config:-the built-in config} (add 'option $n=* ...')"; fi
  read -r -a words <<< "$args"
  slurm_opts+=("${words[@]}")
done

has_name=false
for o in "${slurm_opts[@]}"; do [[ $o == --job-name* || $o == -J* ]] && has_name=true; done
$has_name || slurm_opts+=(--job-name="$(basename "$log")")

# the job script, in LOGDIR/q/, and the logs of the tasks (stale ones removed)
qdir=$(dirname "$log")/q
base=$(basename "$log")
mkdir -p "$qdir" || die "cannot create $qdir"
script=$qdir/$base.sh
logs=()
for ((j = job_first; j <= job_last; j++)); do
  if [ -n "$job_var" ]; then logs+=("${log//$job_var/$j}"); else logs+=("$log"); fi
done
for l in "${logs[@]}"; do mkdir -p "$(dirname "$l")"; rm -f "$l"; done
{
  echo '#!/usr/bin/env bash'
  echo "# written by slurm.sh for: sbatch ${slurm_opts[*]}"
  printf 'cd %q || exit 1\n' "$PWD"
  printf 'cmd=%q\nlog=%q\nvar=%q\n' "$cmd" "$log" "$job_var"
  cat <<'EOF'
if [ -n "$var" ]; then
  j=${SLURM_ARRAY_TASK_ID:-}; cmd=${cmd//$var/$j}; log=${log//$var/$j}
fi
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-${SLURM_CPUS_PER_TASK:-1}}
start=$(date +%s)
id=${SLURM_ARRAY_JOB_ID:+${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}}
{ echo "# $cmd"; echo "# started at $(date) on $(hostname), Slurm job ${id:-${SLURM_JOB_ID:-}}"; } \
  > "$log"
bash -c "$cmd" >> "$log" 2>&1
rc=$?
echo "# ended (exit $rc) at $(date), elapsed $(( $(date +%s) - start )) s" >> "$log"
exit $rc
EOF
} > "$script"
array=(); out=$qdir/$base.%j.out
if [ -n "$job_var" ]; then
  spec=$job_first-$job_last; [ "$max_jobs" -gt 0 ] && spec+="%$max_jobs"
  array=(--array="$spec"); out=$qdir/${base//$job_var/%a}.%A.out
fi

# submit and wait; TERM/INT cancel the job
idfile=$(mktemp "$qdir/.$base.id.XXXXXX")
sbatch_pid=""; job_id=""
read_id() { [ -n "$job_id" ] || job_id=$(cut -d';' -f1 "$idfile" 2>/dev/null | head -n 1); }
cancel() {
  trap '' INT TERM
  local k
  for ((k = 0; k < 50; k++)); do  # the id is written right after submission
    read_id; [ -n "$job_id" ] && break
    kill -0 "$sbatch_pid" 2>/dev/null || break; sleep 0.1
  done
  read_id
  [ -n "$job_id" ] && scancel "$job_id"
  kill "$sbatch_pid" 2>/dev/null
  rm -f "$idfile"
  echo "$0: interrupted: cancelled Slurm job ${job_id:-(not submitted)}, see $log" >&2
  exit "$1"
}
trap 'cancel 130' INT
trap 'cancel 143' TERM
"${submit[@]}" --parsable --wait --chdir="$PWD" --output="$out" "${array[@]}" \
  "${slurm_opts[@]}" "$script" > "$idfile" &
sbatch_pid=$!
wait "$sbatch_pid"
rc=$?
read_id
trap - INT TERM
rm -f "$idfile"
[ -n "$job_id" ] || die "submission failed (exit $rc): ${submit[*]} ${slurm_opts[*]} $script"

# every task's status from its log (a shared file system may show it a little late)
status() { tail -n 1 "$1" 2>/dev/null | sed -n 's/^# ended (exit \([0-9]*\)).*/\1/p'; }
if [ "$rc" -eq 0 ]; then
  for ((k = 0; k < 20; k++)); do
    missing=0
    for l in "${logs[@]}"; do [ -n "$(status "$l")" ] || missing=1; done
    [ "$missing" -eq 0 ] && break; sleep 0.5
  done
fi
failed=0
for l in "${logs[@]}"; do
  s=$(status "$l")
  [ "$s" = 0 ] && continue
  if [ -z "$s" ]; then
    echo "$0: job failed (no exit status: killed or never ran; Slurm job $job_id), see $l" \
      "and $qdir/:" >&2
  else
    echo "$0: job failed, see $l:" >&2
  fi
  tail -n 3 "$l" 2>/dev/null | sed 's/^/    /' >&2
  failed=$((failed + 1))
done
[ $failed -eq 0 ] || { echo "$0: $failed of ${#logs[@]} job(s) failed" >&2; exit 1; }
[ "$rc" -eq 0 ] || die "sbatch --wait exited $rc for Slurm job $job_id (see $qdir/)"
