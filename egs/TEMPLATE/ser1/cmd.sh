# shellcheck shell=bash
# How recipe jobs are run: `$train_cmd [JOB=1:N] LOGFILE COMMAND...` (Kaldi run.pl semantics).
# $dump_cmd: stage 2's feature dump as a job array of --nj parts (empty: `sertk feats dump
# --nj N` runs its own processes on this machine, with a progress bar).
#   local  bin/launch.sh runs them on this machine (the default)
#   slurm  bin/slurm.sh submits them to a Slurm cluster (sbatch, job arrays; Kaldi/ESPnet
#          slurm.pl semantics); its options become sbatch options through conf/slurm.conf when
#          it exists (docs/cluster.md). Multi-node training: ./run.sh --num_nodes N, with
#          train_cmd="slurm.sh --num_nodes N ..." (one job over N nodes).
# Choose here, or per run with the environment: SERTK_CMD_BACKEND=slurm ./run.sh
cmd_backend=${SERTK_CMD_BACKEND:-local}
# cmd_backend=slurm

case $cmd_backend in
  local)
    export train_cmd="launch.sh"
    export decode_cmd="launch.sh"
    export dump_cmd="" ;;
  slurm)
    # training: one GPU (ser.sh --ngpu N: "slurm.sh --gpu N ..."), 4 CPU threads
    export train_cmd="slurm.sh --gpu 1 --num_threads 4 --mem 16G --time 24:00:00"
    export decode_cmd="slurm.sh --num_threads 1 --mem 4G --time 4:00:00"
    export dump_cmd="$decode_cmd" ;;
  *) echo "cmd.sh: unknown cmd_backend '$cmd_backend' (local or slurm)" >&2; return 1 ;;
esac
