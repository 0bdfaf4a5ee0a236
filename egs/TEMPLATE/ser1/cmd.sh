# How recipe jobs are run. launch.sh (sertk's bin/) runs them on this machine with Kaldi
# run.pl semantics: `$train_cmd [JOB=1:N] LOGFILE COMMAND...`. On a cluster, replace these
# with your submitter (e.g. slurm.pl/queue.pl from Kaldi).
export train_cmd="launch.sh"
export decode_cmd="launch.sh"
