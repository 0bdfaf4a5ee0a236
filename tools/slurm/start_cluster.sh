#!/usr/bin/env bash
# Starts a single-node Slurm cluster on this machine (for tests and trying bin/slurm.sh):
#
#   tools/slurm/start_cluster.sh [DIR]     (DIR: its state, default /tmp/sertk-slurm)
#   export SLURM_CONF=DIR/slurm.conf       (every Slurm client command needs it)
#   tools/slurm/stop_cluster.sh [DIR]
#
# Installs Debian's slurm-wlm and munge with apt-get when missing (root only), writes a
# cgroup-free slurm.conf for this host (its real CPUs and memory, from `slurmd -C`; one node
# "localhost" in partition "debug"; no accounting), starts munged, slurmctld and slurmd, and
# waits until the node is idle. Idempotent: a cluster already running from DIR is reused.
# Prints SLURM_CONF=DIR/slurm.conf as its last line. Exit status 77: Slurm cannot be
# installed here (not root, or apt-get failed); any other failure: 1.
set -euo pipefail
D=$(mkdir -p "${1:-/tmp/sertk-slurm}" && cd "${1:-/tmp/sertk-slurm}" && pwd)
export SLURM_CONF=$D/slurm.conf
say() { echo "start_cluster.sh: $*" >&2; }

install() {
  if command -v slurmctld >/dev/null && command -v slurmd >/dev/null \
      && command -v munged >/dev/null && command -v sbatch >/dev/null; then return; fi
  if [ "$(id -u)" -ne 0 ]; then say "slurm-wlm/munge missing and not root: cannot install"
    exit 77; fi
  say "installing slurm-wlm and munge (apt-get)"
  export DEBIAN_FRONTEND=noninteractive
  if ! apt-get install -y -qq slurm-wlm munge >"$D/apt.log" 2>&1; then
    apt-get update -qq >>"$D/apt.log" 2>&1 || true
    apt-get install -y -qq slurm-wlm munge >>"$D/apt.log" 2>&1 || {
      say "apt-get install slurm-wlm munge failed (see $D/apt.log)"; exit 77; }
  fi
}

running() {  # slurmctld and slurmd of this DIR alive and answering
  local f
  for f in slurmctld slurmd; do
    [ -f "$D/$f.pid" ] && kill -0 "$(cat "$D/$f.pid")" 2>/dev/null || return 1
  done
  sinfo -h -o %T >/dev/null 2>&1
}

write_conf() {
  local node
  node=$(slurmd -C | head -n 1 | sed 's/^NodeName=[^ ]*/NodeName=localhost/')
  [[ $node == *CPUs=* ]] || node="NodeName=localhost CPUs=$(nproc) RealMemory=$(( \
    $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 ))"
  mkdir -p "$D/spool" "$D/state" "$D/log"
  cat > "$SLURM_CONF" <<EOF
# single-node test cluster written by tools/slurm/start_cluster.sh
ClusterName=sertk
SlurmctldHost=localhost
SlurmUser=root
SlurmdUser=root
MpiDefault=none
MailProg=/bin/true
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
ReturnToService=2
SlurmdSpoolDir=$D/spool
StateSaveLocation=$D/state
SlurmctldPidFile=$D/slurmctld.pid
SlurmdPidFile=$D/slurmd.pid
SlurmctldLogFile=$D/log/slurmctld.log
SlurmdLogFile=$D/log/slurmd.log
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
# finished jobs purged after 5 s: sbatch --wait then polls every 2 s (instead of up to 32)
MinJobAge=5
KillWait=5
$node State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
EOF
}

start_munge() {
  if [ -f /run/munge/munged.pid ] && kill -0 "$(cat /run/munge/munged.pid)" 2>/dev/null; then
    return; fi
  mkdir -p /run/munge /var/log/munge /var/lib/munge
  chown munge:munge /run/munge /var/log/munge /var/lib/munge
  [ -f /etc/munge/munge.key ] || { mungekey --create --keyfile /etc/munge/munge.key
    chown munge:munge /etc/munge/munge.key; chmod 400 /etc/munge/munge.key; }
  su -s /bin/sh munge -c /usr/sbin/munged
  touch "$D/munged.ours"
}

install
if running; then say "already running ($SLURM_CONF)"; echo "SLURM_CONF=$SLURM_CONF"; exit 0; fi
[ "$(id -u)" -eq 0 ] || { say "starting the daemons needs root"; exit 77; }
write_conf
start_munge
# a daemon left from an earlier start of this DIR would hold the ports
"$(dirname "$0")/stop_cluster.sh" "$D" --daemons-only >/dev/null 2>&1 || true
/usr/sbin/slurmctld -i
/usr/sbin/slurmd -N localhost
for ((k = 0; k < 300; k++)); do
  state=$(sinfo -h -o %T 2>/dev/null || true)
  [ "$state" = idle ] && { echo "SLURM_CONF=$SLURM_CONF"; exit 0; }
  sleep 0.1
done
say "the node did not become idle in 30 s (state: '${state:-none}'); logs in $D/log"
exit 1
