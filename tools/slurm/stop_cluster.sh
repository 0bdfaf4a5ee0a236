#!/usr/bin/env bash
# Stops the single-node Slurm cluster of tools/slurm/start_cluster.sh [DIR]: cancels its jobs,
# then stops slurmd, slurmctld and (when start_cluster.sh started it) munged.
#   tools/slurm/stop_cluster.sh [DIR] [--daemons-only]   (DIR default: /tmp/sertk-slurm)
set -u
D=${1:-/tmp/sertk-slurm}
export SLURM_CONF=$D/slurm.conf
stop_pid() {  # stop_pid PIDFILE: TERM, then KILL after 10 s
  local pid k
  [ -f "$1" ] || return 0
  pid=$(cat "$1")
  kill "$pid" 2>/dev/null || { rm -f "$1"; return 0; }
  for ((k = 0; k < 100; k++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null
  rm -f "$1"
}
[ -f "$SLURM_CONF" ] && [ "${2:-}" != --daemons-only ] && scancel --full --quiet \
  --partition debug 2>/dev/null
stop_pid "$D/slurmd.pid"
stop_pid "$D/slurmctld.pid"
if [ "${2:-}" != --daemons-only ] && [ -f "$D/munged.ours" ]; then
  stop_pid /run/munge/munged.pid
  rm -f "$D/munged.ours"
fi
echo "stop_cluster.sh: stopped the cluster of $D" >&2
