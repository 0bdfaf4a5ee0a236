# shellcheck shell=bash disable=SC2034
# Shared by the job launchers (bin/launch.sh, bin/slurm.sh) and ser.sh; source it, do not
# run it:
#
#   . "$(dirname "${BASH_SOURCE[0]}")/job_common.sh"
#
# job_command_line ARG...  prints the arguments as one command line for `bash -c`: every
#   argument quoted (printf %q), so it reaches the command as it was given (JSON, globs and
#   spaces included), except the shell operators | || && ; < > >> 2>&1 given as arguments of
#   their own (escaped on the command line, `\|`, as in Kaldi), which join commands.
# job_parse_range ARG  sets job_var, job_first, job_last from JOB=a:b or JOB=a (returns 1, and
#   sets job_var="" job_first=1 job_last=1, when ARG is not a range).
# job_end_groups GRACE PGID...  SIGTERM to every process group, SIGKILL to what is left of
#   them after GRACE seconds (returns as soon as all are gone). Safe under `set -e`.

job_command_line() {
  local arg quoted cmd=""
  for arg in "$@"; do
    case $arg in
      '|' | '||' | '&&' | ';' | '<' | '>' | '>>' | '2>&1') cmd+="$arg " ;;
      *) printf -v quoted '%q' "$arg"; cmd+="$quoted " ;;
    esac
  done
  printf '%s' "${cmd% }"
}

job_parse_range() {
  job_var=""; job_first=1; job_last=1
  if [[ "${1:-}" =~ ^([A-Za-z_]+)=([0-9]+):([0-9]+)$ ]]; then
    job_var=${BASH_REMATCH[1]}; job_first=${BASH_REMATCH[2]}; job_last=${BASH_REMATCH[3]}
  elif [[ "${1:-}" =~ ^([A-Za-z_]+)=([0-9]+)$ ]]; then
    job_var=${BASH_REMATCH[1]}; job_first=${BASH_REMATCH[2]}; job_last=$job_first
  else
    return 1
  fi
}

job_groups_alive() {  # job_groups_alive PGID...: is any process left in these groups?
  local p
  for p in "$@"; do kill -0 -- "-$p" 2>/dev/null && return 0; done
  return 1
}

job_end_groups() {
  local grace=$1 p t
  shift
  for p in "$@"; do kill -TERM -- "-$p" 2>/dev/null || true; done
  for ((t = 0; t < grace * 10; t++)); do job_groups_alive "$@" || return 0; sleep 0.1; done
  for p in "$@"; do kill -KILL -- "-$p" 2>/dev/null || true; done
}
