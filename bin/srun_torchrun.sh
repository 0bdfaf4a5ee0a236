#!/usr/bin/env bash
# Multi-node DDP on Slurm: one torchrun per node through srun, rendezvous (c10d) on the first
# node of the job. ser.sh's launcher with --num_nodes N:
#
#   srun_torchrun.sh --num_nodes N --nproc_per_node P [--gpus_per_node G] [--port PORT]
#                    [--srun_opts 'ARGS'] TORCHRUN-ARGS...
#   e.g. srun_torchrun.sh --num_nodes 2 --nproc_per_node 4 --gpus_per_node 4 \
#          -m sertk.cli.main train --config ... --exp ...
#
# runs  srun --nodes N --ntasks-per-node 1 torchrun --nnodes N --nproc_per_node P
#         --rdzv_backend c10d --rdzv_id $SLURM_JOB_ID --rdzv_endpoint FIRST_NODE:PORT ARGS...
# Inside a Slurm job (slurm.sh --num_nodes N, sbatch, salloc) srun uses that job's nodes, which
# must be at least N, and its CPUs per task; outside one, srun allocates the nodes itself
# (with --gpus_per_node G: --gres=gpu:G each). PORT defaults to 29500 + job id % 1000 (jobs
# sharing a node do not collide). A task that fails ends the others (--kill-on-bad-exit).
# More srun options (partition, time, CPUs when srun allocates): --srun_opts, or the
# environment's SERTK_SRUN_OPTS (e.g. "--partition gpu --cpus-per-task 16 --time 24:00:00").
set -euo pipefail
num_nodes=1; nproc_per_node=1; gpus_per_node=0; port=""; srun_opts=${SERTK_SRUN_OPTS:-}
die() { echo "$0: $*" >&2; exit 1; }
while [[ ${1:-} == --* ]]; do
  [ $# -ge 2 ] || die "option $1 needs a value"
  case $1 in
    --num_nodes|--num-nodes) num_nodes=$2 ;;
    --nproc_per_node|--nproc-per-node) nproc_per_node=$2 ;;
    --gpus_per_node|--gpus-per-node) gpus_per_node=$2 ;;
    --port) port=$2 ;;
    --srun_opts|--srun-opts) srun_opts=$2 ;;
    *) break ;;
  esac
  shift 2
done
[ $# -ge 1 ] || die "usage: $0 --num_nodes N --nproc_per_node P [...] TORCHRUN-ARGS..."
for v in "$num_nodes" "$nproc_per_node" "$gpus_per_node" ${port:+"$port"}; do
  [[ $v =~ ^[0-9]+$ ]] || die "expected a number, got '$v'"
done
command -v srun >/dev/null || die "srun not found: multi-node training needs a Slurm cluster"

opts=(--nodes "$num_nodes" --ntasks "$num_nodes" --ntasks-per-node 1 --kill-on-bad-exit=1)
if [ -n "${SLURM_JOB_ID:-}" ]; then  # inside an allocation: its nodes and CPUs
  have=${SLURM_JOB_NUM_NODES:-${SLURM_NNODES:-1}}
  [ "$have" -ge "$num_nodes" ] || die "this Slurm job ($SLURM_JOB_ID) has $have node(s)," \
    "--num_nodes $num_nodes needs more: submit with slurm.sh --num_nodes $num_nodes (train_cmd)"
  [ -n "${SLURM_CPUS_PER_TASK:-}" ] && opts+=(--cpus-per-task "$SLURM_CPUS_PER_TASK")
elif [ "$gpus_per_node" -gt 0 ]; then
  opts+=(--gres "gpu:$gpus_per_node")
fi
# shellcheck disable=SC2206
opts+=($srun_opts)

# per node: the first node of the job is the rendezvous host
# shellcheck disable=SC2016
node_cmd='first=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
port=${SRUN_TORCHRUN_PORT:-$((29500 + SLURM_JOB_ID % 1000))}
exec torchrun --nnodes "$SRUN_TORCHRUN_NNODES" --nproc_per_node "$SRUN_TORCHRUN_NPROC" \
  --rdzv_backend c10d --rdzv_id "$SLURM_JOB_ID" --rdzv_endpoint "$first:$port" "$@"'
export SRUN_TORCHRUN_NNODES=$num_nodes SRUN_TORCHRUN_NPROC=$nproc_per_node
[ -n "$port" ] && export SRUN_TORCHRUN_PORT=$port
echo "$0: srun ${opts[*]} torchrun --nnodes $num_nodes --nproc_per_node $nproc_per_node" \
  "--rdzv_backend c10d ... $*" >&2
exec srun "${opts[@]}" bash -c "$node_cmd" srun_torchrun "$@"
