#!/usr/bin/env bash
# The paired difference table of issue 13: the recipe's default (cnn_asp_ref, train + dev, tag
# ref_sertk) against one change at a time, every fold, then the table of UA differences and
# folds better (local/collect_results.py --baseline ref_sertk).
#   local/pipeline_diffs.sh [--only "d_bucket d_best18"] [--fold_jobs 2] [--dry_run true]
# A finished row (exp/<tag>/decode_test/results.json) is not run again; an interrupted one
# resumes. Each row costs one 6-fold training run of cnn_asp_ref (about 30 min on a 2-core CPU
# with native bfloat16, about 110 min without).
set -euo pipefail
only=""
fold_jobs=2
dry_run=false
expdir=exp
. ./path.sh
. parse_options.sh

# tag|what differs|run.sh options on top of the default (train + dev, cnn_asp_ref, logmel64)
rows=(
  "d_bucket|sampler: length-sorted pools of 50 batches|--train_args '--override train.bucket_pools=50'"
  "d_batchcrop|cropping: whole utterances, each batch cut to its shortest item|--train_args '--override train.batch_crop=true --override train.crop_frames=null'"
  "d_maskpad|cropping: short utterances padded (masked), not tiled|--train_args '--override train.crop_pad=mask'"
  "d_freqmean|pooling: mean over frequency instead of flattening|--train_args '--override model.conf.freq_pool=mean'"
  "d_last18|data: 18 training actors (dev held out), last epoch|--train_on_dev false"
  "d_best18|selection: 18 training actors, best dev-UA epoch|--train_on_dev false --train_args '--override train.select=best'"
  "d_oldhead|head and regularisation of cnn_asp.yaml (128-unit embedding, attention MLP, wd 1e-3, max lr 3e-3, 2+2 masks, grad clip 5)|--train_args '--override model.conf.embed_dim=128 --override model.conf.att_hidden=128 --override optim.weight_decay=1.0e-3 --override scheduler.max_lr=3.0e-3 --override scheduler.pct_start=0.2 --override train.grad_clip=5.0 --override augment=[{\"name\":\"specaugment\",\"num_time_masks\":2,\"time_width\":20,\"num_freq_masks\":2,\"freq_width\":8}]'"
  "d_frontend|front end: torchaudio's MelSpectrogram as in the reference|--feats_config conf/feats/logmel64_torchaudio.yaml"
)

base="./run.sh --stage 2 --stop_stage 4 --fold_jobs $fold_jobs --progress false"
run() {  # run TAG OPTIONS: one 6-fold row (skipped when scored already)
  local cmd="$base --tag $1 $2"
  if [ -f "$expdir/$1/decode_test/results.json" ]; then echo "# done: $cmd"; return; fi
  echo "$cmd"
  $dry_run || eval "$cmd"
}
run ref_sertk ""
tags=()
for row in "${rows[@]}"; do
  IFS='|' read -r tag what opts <<< "$row"
  if [ -n "$only" ] && ! [[ " $only " == *" $tag "* ]]; then continue; fi
  echo "# $tag: $what"
  run "$tag" "$opts"
  tags+=("$tag")
done
$dry_run && exit 0
python local/collect_results.py --expdir "$expdir" --baseline ref_sertk ref_sertk "${tags[@]}"
