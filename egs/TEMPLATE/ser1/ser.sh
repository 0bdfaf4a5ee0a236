#!/usr/bin/env bash
# Generic speech emotion recognition recipe (the sertk counterpart of ESPnet's asr.sh).
# A corpus's run.sh sets its options and calls this script; local/data.sh is the only
# corpus-specific code.
#
# Stages
#   1  data preparation: local/data.sh --datadir DATADIR  writes DATADIR/all and
#      DATADIR/folds/<fold>/{train,dev,test} (Kaldi data dirs); all are validated
#   2  feature dump of DATADIR/all to DUMPDIR/<feats>/all (ark/scp), split per fold,
#      global CMVN statistics from each fold's train set
#   3  training per fold: EXPDIR/<tag>/<fold> (torchrun DDP when --ngpu > 1 or --nproc > 1), on
#      the fold's train set, or on train + dev with --train_on_dev true (a fixed epoch budget:
#      the training config's train.select must then be last or average). With --pretrain cpc,
#      self-supervised pre-training first runs on the audio of the same training speakers
#      (never the fold's test speakers; no labels) into EXPDIR/<tag>/<fold>/pretrain, and
#      training starts from it (model.conf.init_checkpoint). With --meta_sources, training is
#      `sertk train-meta` (meta_ser; Chopra et al.): an initialisation learnt on the labelled
#      source corpora named (dump dirs of the same front end), fine-tuned on the fold
#   4  inference on each fold's test set + scoring (results.json, confusion.{txt,png}),
#      aggregation over folds into EXPDIR/<tag>/RESULTS.md
#   5  packing: EXPDIR/<tag>/<fold>/model.zip for `sertk infer`
#   6  (only with --stop_stage 6) a final model trained with the same config on every
#      utterance of DATADIR/all (all speakers, augmented copies included; no held-out data,
#      so train.select must be last or average), packed to EXPDIR/<tag>/final/model.zip
# Every stage can be rerun: finished work is detected (.done files) and skipped; training
# resumes from its last checkpoint.
set -euo pipefail

log() { echo "$(date '+%Y-%m-%dT%H:%M:%S') (ser.sh:${BASH_LINENO[0]}) $*" >&2; }

stage=1                 # first stage to run
stop_stage=5            # last stage to run
nj=4                    # parallel jobs for the feature dump
ngpu=0                  # GPUs for training; > 1 runs torchrun with NCCL
nproc=1                 # CPU training processes when ngpu = 0; > 1 runs torchrun with gloo
num_nodes=""            # N: training on N Slurm nodes, srun + torchrun (bin/srun_torchrun.sh)
fold_jobs=1             # folds trained side by side (CPU threads shared equally)
folds=""                # folds to run (default: every DATADIR/folds/*)
feats_config=conf/feats/fbank80.yaml
train_config=conf/model/light_sernet.yaml
speed_perturb=""        # e.g. "0.9 1.1": perturbed copies of the training sets (sp0.9-<utt>)
noise_data=""           # data dir of noises (e.g. from `sertk data musan`): noisy copies
noise_snrs="0 5 10"     # SNRs (dB) of the noisy copies, one copy per SNR
rir_data=""             # data dir of room impulse responses: one reverberated copy
cmvn_type=global        # global (per fold, in the model) or speaker (per-speaker CMVN of all
                        # sets first, using each speaker's own unlabelled audio)
train_on_dev=false      # true: train on train + dev (dev then only monitors training data)
train_args=""           # extra `sertk train` arguments, e.g. "--override train.epochs=5"
pretrain=""             # self-supervised pre-training per fold before stage 3: cpc
pretrain_config=""      # its config (default: conf/pretrain/<pretrain>.yaml)
pretrain_args=""        # extra `sertk pretrain` arguments, e.g. "--override train.epochs=5"
meta_sources=""         # source corpora (dump dirs, same front end) for `sertk train-meta`
tokenizer=""            # char | unigram | bpe: text units per fold from its training `text`
                        # (models that read or predict transcripts: model.conf.tokenizer)
tokenizer_size=500      # sentencepiece vocabulary size (unigram, bpe)
semantic_ctm=""         # word alignment (CTM) of DATADIR/all: semantic columns pasted to the
                        # features (semantic_fusion; Tzirakis et al.)
semantic_vectors=""     # their per-token vectors keyed <utt>-<k> (bin/semantic_feats.py)
semantic_map=""         # optional W.npy mapping those vectors into a text space
tag=""                  # experiment tag (default: <train config>_<feats config>)
local_data_opts=""      # options for local/data.sh
datadir=data
dumpdir=dump
expdir=exp
device=""               # cpu or cuda (default: cuda when available)
inference_batch_size=32
progress=true           # progress bars (off in logs of non-interactive runs)

help_message="Usage: $0 [options]
  --stage N --stop_stage N     stages to run (1 data, 2 features, 3 training, 4 scoring, 5 pack,
                               6 final model on all the data: only when asked for)
  --folds 'fold1 fold2'        folds to run (default: all under \$datadir/folds)
  --nj N                       feature dump jobs (default $nj)
  --dump_cmd 'CMD'             run the dump as a job array of --nj parts through CMD, then
                               merge (cmd.sh sets it for Slurm; empty: sertk's own processes)
  --ngpu N | --nproc N         DDP training on N GPUs / N CPU processes
  --num_nodes N                ... on each of N Slurm nodes (srun + torchrun; docs/cluster.md)
  --fold_jobs N                folds trained side by side (e.g. 2 on a 2-core CPU)
  --feats_config FILE          feature config (default $feats_config)
  --train_config FILE          model + training config (default $train_config)
  --train_args 'ARGS'          extra sertk train arguments
  --train_on_dev true|false    train on the fold's train + dev speakers (fixed epoch budget)
  --pretrain cpc [--pretrain_config FILE] [--pretrain_args 'ARGS']
                               pre-train on each fold's training audio first (no labels)
  --tokenizer char|unigram|bpe [--tokenizer_size N]
                               text units trained per fold on its training transcripts
  --semantic_ctm CTM --semantic_vectors VEC [--semantic_map W.npy]
                               paste frame-level semantic features of the aligned words to the
                               front end's (bin/semantic_feats.py make + paste)
  --meta_sources 'DIR DIR'     sertk train-meta: learn on these source corpora' dump dirs (same
                               front end), fine-tune on each fold (conf/model/meta_ser.yaml)
  --speed_perturb '0.9 1.1'    speed-perturbed copies of the training sets (Kaldi style)
  --noise_data DIR [--noise_snrs '0 5 10']  noisy copies (noise data dir, MUSAN layout)
  --rir_data DIR               reverberated copies (data dir of room impulse responses)
  --cmvn_type global|speaker   per-speaker CMVN before training (unlabelled speaker audio)
  --tag NAME                   experiment name under \$expdir
  --local_data_opts 'ARGS'     options for local/data.sh
  --datadir/--dumpdir/--expdir DIR"

. ./path.sh
# shellcheck source=/dev/null
. "$MAIN_ROOT/bin/job_common.sh"  # job_end_groups (stage 3's stop)
run_cmd=${SERTK_RUN_CMD:-$(shell_quote.sh "$0" "$@")}  # quoted in RESULTS.md
. ./cmd.sh
dump_cmd=${dump_cmd:-}  # a corpus's own cmd.sh may not set it
. parse_options.sh

[ -f "$feats_config" ] || { log "feature config not found: $feats_config"; exit 1; }
[ -f "$train_config" ] || { log "training config not found: $train_config"; exit 1; }
feats_tag=$(basename "$feats_config" .yaml)
[ -n "$tag" ] || tag="$(basename "$train_config" .yaml)_${feats_tag}"
rawdump=$dumpdir/$feats_tag                          # dumps of all (and its sp copies)
normdump=$rawdump                                    # the same, after per-speaker CMVN
[ "$cmvn_type" = speaker ] && normdump=${rawdump}_spkcmvn
featdump=$normdump                                   # what the folds take: the same, or
[ -n "$semantic_ctm" ] && featdump=${normdump}_semantic  # with semantic columns pasted
fdump=$featdump                                      # root of the per-fold sets
sp_set=all_sp${speed_perturb// /_}
noise_set=all_noise$(basename "${noise_data:-none}")_snr${noise_snrs// /_}
rir_set=all_reverb$(basename "${rir_data:-none}")
# a fold directory per augmentation choice
[ -n "$speed_perturb" ] && fdump=${fdump}_${sp_set#all_}
[ -n "$noise_data" ] && fdump=${fdump}_${noise_set#all_}
[ -n "$rir_data" ] && fdump=${fdump}_${rir_set#all_}
if [ -n "$semantic_ctm" ]; then
  [ -n "$semantic_vectors" ] || { log "--semantic_ctm needs --semantic_vectors"; exit 1; }
  [ -z "$speed_perturb$noise_data$rir_data" ] || {
    log "--semantic_ctm cannot be combined with augmented copies (their timing differs)"; exit 1; }
fi
case $cmvn_type in global|speaker) ;; *) log "--cmvn_type must be global or speaker"; exit 1;; esac
case $train_on_dev in
  true) train_name=train_dev ;; false) train_name=train ;;
  *) log "--train_on_dev must be true or false"; exit 1 ;;
esac
exp_root=$expdir/$tag
progress_flag=--progress; $progress || progress_flag=--no-progress

list_folds() {
  if [ -n "$folds" ]; then echo "$folds"; return; fi
  [ -d "$datadir/folds" ] || { log "no $datadir/folds: run stage 1 first"; exit 1; }
  find "$datadir/folds" -mindepth 1 -maxdepth 1 -type d -printf '%f\n' | LC_ALL=C sort | xargs
}

if [ "$stage" -le 1 ] && [ "$stop_stage" -ge 1 ]; then
  log "stage 1: data preparation (local/data.sh $local_data_opts)"
  # shellcheck disable=SC2086
  local/data.sh --datadir "$datadir" $local_data_opts
  sertk data validate "$datadir/all"
  for f in $(list_folds); do
    for s in train dev test; do
      sertk data validate --no-audio "$datadir/folds/$f/$s" >/dev/null
    done
  done
  log "stage 1 done: $(wc -l < "$datadir/all/utt2spk") utterances, folds: $(list_folds)"
fi

if [ "$stage" -le 2 ] && [ "$stop_stage" -ge 2 ]; then
  log "stage 2: feature dump ($feats_config) to $fdump"
  # dump_once SRC_DATA DST_DUMP: skipped when DST holds a finished dump with the same config
  dump_once() {
    if [ -f "$2/.done" ] && cmp -s "$feats_config" "$2/.conf.yaml"; then
      log "features already dumped in $2"; return
    fi
    rm -f "$2/.done"
    if [ -n "$dump_cmd" ]; then  # Kaldi style: one task per part, then the merged tables
      ${dump_cmd} JOB=1:"$nj" "$2/log/dump_task.JOB.log" sertk feats dump --no-progress \
        --conf "$feats_config" --nj "$nj" --job JOB "$1" "$2"
      sertk feats dump --conf "$feats_config" --nj "$nj" --merge "$1" "$2"
    else
      sertk feats dump --conf "$feats_config" --nj "$nj" $progress_flag "$1" "$2"
    fi
    cp "$feats_config" "$2/.conf.yaml"
    touch "$2/.done"
  }
  dump_once "$datadir/all" "$rawdump/all"
  # augmented copies of the corpus (ids prefixed: sp0.9-, noise5-, reverb-), dumped once;
  # each fold's training set takes the copies of its own training utterances
  aug_sets=()
  augment_set() {  # augment_set NAME sertk-data-augment-options...
    local name=$1; shift
    [ -f "$datadir/$name/utt2aug" ] || sertk data augment "$datadir/all" "$datadir/$name" "$@" \
      >/dev/null
    dump_once "$datadir/$name" "$rawdump/$name"
    aug_sets+=("$name")
  }
  [ -n "$speed_perturb" ] && augment_set "$sp_set" --type speed --factors "$speed_perturb"
  [ -n "$noise_data" ] && augment_set "$noise_set" --type noise --source "$noise_data" \
    --snrs "$noise_snrs" --prefix noise
  [ -n "$rir_data" ] && augment_set "$rir_set" --type reverb --source "$rir_data"
  if [ "$cmvn_type" = speaker ]; then
    for set in all "${aug_sets[@]}"; do
      if [ ! -f "$normdump/$set/.done" ] || [ "$rawdump/$set/.done" -nt "$normdump/$set/.done" ]
      then
        sertk feats cmvn --per-spk "$rawdump/$set" >/dev/null
        sertk feats apply-cmvn --per-spk --stats "$rawdump/$set/cmvn_spk.ark" \
          "$rawdump/$set" "$normdump/$set" >/dev/null
        touch "$normdump/$set/.done"
      fi
    done
  fi
  if [ -n "$semantic_ctm" ]; then  # [front end | semantic] columns, remade when inputs change
    stale=false; [ -f "$featdump/all/.done" ] || stale=true
    for src in "$normdump/all/.done" "$semantic_ctm" "$semantic_vectors" $semantic_map; do
      [ "$src" -nt "$featdump/all/.done" ] && stale=true
    done
    if $stale; then
      rm -rf "$featdump/all" "$featdump/semantic_all"
      log "stage 2: semantic features of $semantic_ctm pasted to $normdump/all -> $featdump/all"
      semantic_feats.py make "$normdump/all" "$featdump/semantic_all" --ctm "$semantic_ctm" \
        --embeddings "$semantic_vectors" ${semantic_map:+--map "$semantic_map"} >&2
      semantic_feats.py paste "$normdump/all" "$featdump/semantic_all" "$featdump/all" >&2
      touch "$featdump/all/.done"
    fi
  fi
  for f in $(list_folds); do
    for s in train dev test; do
      sertk data subset "$featdump/all" "$fdump/$f/$s" \
        --utt-list "$datadir/folds/$f/$s/utt2spk" >/dev/null
    done
    tr=$fdump/$f/$train_name
    if $train_on_dev; then
      sertk data combine "$tr" "$fdump/$f/train" "$fdump/$f/dev" >/dev/null
      cp "$featdump/all/feat_dim" "$featdump/all/feats.yaml" "$tr/"
    fi
    if [ ${#aug_sets[@]} -gt 0 ]; then
      parts=("${tr}_orig")
      rm -rf "${tr}_orig"; mv "$tr" "${tr}_orig"
      for set in "${aug_sets[@]}"; do
        awk 'NR == FNR { train[$1] = 1; next } { u = $1; sub(/^[^-]*-/, "", u) }
             u in train { print $1 }' "${tr}_orig/utt2spk" \
          "$normdump/$set/utt2spk" > "${tr}_$set.list"
        sertk data subset "$normdump/$set" "${tr}_$set" --utt-list "${tr}_$set.list" >/dev/null
        parts+=("${tr}_$set")
      done
      sertk data combine "$tr" "${parts[@]}" >/dev/null
      cp "$featdump/all/feat_dim" "$featdump/all/feats.yaml" "$tr/"
      rm -rf "${parts[@]}"
    fi
    sertk feats cmvn "$tr" >/dev/null
  done
  first=$(list_folds | cut -d' ' -f1)
  log "stage 2 done: $(wc -l < "$featdump/all/feats.scp") utterances in $featdump/all;" \
    "$first $train_name set: $(wc -l < "$fdump/$first/$train_name/feats.scp") utterances"
fi

# how training runs (stages 3 and 6): alone, or torchrun DDP over GPUs or CPU processes
# (--standalone: a free rendezvous port each, so --fold_jobs can run several side by side)
launcher="sertk"
if [ -n "$num_nodes" ]; then  # srun: one torchrun per node, rendezvous on the first node
  launcher="srun_torchrun.sh --num_nodes $num_nodes --nproc_per_node $((ngpu > 0 ? ngpu : nproc))"
  launcher+=" --gpus_per_node $ngpu -m sertk.cli.main"
elif [ "$ngpu" -gt 1 ]; then
  launcher="torchrun --standalone --nproc_per_node $ngpu -m sertk.cli.main"
elif [ "$ngpu" -eq 0 ] && [ "$nproc" -gt 1 ]; then
  launcher="torchrun --standalone --nproc_per_node $nproc -m sertk.cli.main"
fi
dev_opt=""
if [ -n "$device" ]; then dev_opt="--device $device"; elif [ "$ngpu" -eq 0 ]; then
  dev_opt="--device cpu"; fi

if [ -n "$meta_sources" ] && [ -n "$pretrain" ]; then
  log "--meta_sources and --pretrain cannot be combined"; exit 1
fi
for src in $meta_sources; do
  [ -f "$src/feats.scp" ] || { log "meta source $src: no feats.scp (dump it with the same" \
    "--feats_config in its own recipe)"; exit 1; }
done
if [ -n "$pretrain" ]; then
  [ -n "$pretrain_config" ] || pretrain_config=conf/pretrain/$pretrain.yaml
  [ -f "$pretrain_config" ] || { log "pre-training config not found: $pretrain_config"; exit 1; }
fi

if [ "$stage" -le 3 ] && [ "$stop_stage" -ge 3 ]; then
  pretrain_fold() {  # pretrain_fold FOLD: unlabelled pre-training on the fold's training audio
    local f=$1 out=$exp_root/$1/pretrain src=$datadir/folds/$1/train
    [ -f "$out/.done" ] && { log "stage 3: $out already pre-trained"; return; }
    mkdir -p "$out"
    if $train_on_dev; then  # the same speakers the model is trained on
      sertk data combine "$out/data" "$datadir/folds/$f/train" "$datadir/folds/$f/dev" >/dev/null
      src=$out/data
    fi
    log "stage 3: $pretrain pre-training of $f on the audio of $src -> $out (log: $out/train.log)"
    # shellcheck disable=SC2086
    ${train_cmd} "$exp_root/$f/logs/pretrain.log" \
      sertk pretrain "$pretrain" --data "$src" --out "$out" --config "$pretrain_config" \
        $dev_opt --no-progress $pretrain_args || return 1
    touch "$out/.done"
  }
  train_fold() {  # train_fold FOLD: one fold's training (resumed when interrupted)
    local f=$1 exp=$exp_root/$1 resume="" start=$SECONDS init="" src sources=()
    mkdir -p "$exp/logs"
    if [ -n "$meta_sources" ]; then  # learn an initialisation on the sources, then the fold
      for src in $meta_sources; do sources+=(--source "$src"); done
      log "stage 3: train-meta on ${meta_sources// /, } then $f's $train_name -> $exp" \
        "(log: $exp/train.log)"
      # shellcheck disable=SC2086
      ${train_cmd} "$exp/logs/stage3.log" \
        sertk train-meta --config "$train_config" "${sources[@]}" \
          --target-train "$fdump/$f/$train_name" --target-valid "$fdump/$f/dev" --exp "$exp" \
          $dev_opt --no-progress $train_args || return 1
      fold_done "$f" "$exp" "$start"
      return
    fi
    if [ -n "$pretrain" ]; then
      pretrain_fold "$f" || return 1
      init="--override model.conf.init_checkpoint=$exp/pretrain/$pretrain.safetensors"
    fi
    if [ -n "$tokenizer" ]; then  # units of the fold's training transcripts only
      [ -f "$exp/units/tokenizer.yaml" ] || sertk tokenizer train "$fdump/$f/$train_name" \
        "$exp/units" --kind "$tokenizer" --vocab-size "$tokenizer_size" >&2 || return 1
      init="$init --override model.conf.tokenizer=$exp/units"
    fi
    [ -f "$exp/checkpoints/last.pt" ] && resume="--resume"
    log "stage 3: training $f on $train_name -> $exp (log: $exp/train.log)"
    # shellcheck disable=SC2086
    ${train_cmd} "$exp/logs/stage3.log" \
      $launcher train --config "$train_config" --train "$fdump/$f/$train_name" \
        --valid "$fdump/$f/dev" --exp "$exp" --cmvn "$fdump/$f/$train_name/cmvn.ark" \
        $dev_opt $resume --no-progress $init $train_args || return 1
    fold_done "$f" "$exp" "$start"
  }
  fold_done() {  # fold_done FOLD EXP START: training time, .done, the log line
    local f=$1 exp=$2 start=$3 prev
    prev=$(cat "$exp/train_seconds" 2>/dev/null || echo 0)
    echo $((prev + SECONDS - start)) > "$exp/train_seconds"
    touch "$exp/.done"
    log "$f: $(tail -n 1 "$exp/logs/stage3.log" | sed 's/^# //') | $(grep -o \
      '\(best valid \(UA\|CCC\)\|model: valid \(UA\|CCC\)\).*' "$exp/train.log" | tail -n 1)"
  }
  $train_on_dev && log "stage 3: dev is part of the training data (--train_on_dev): its" \
    "metrics in $exp_root/<fold>/metrics.csv are not held-out figures"
  # folds one after the other or side by side (--fold_jobs; each with an equal share of the
  # CPU threads), each fold a job in a process group of its own (set -m): a stop of this
  # script (SIGTERM from kill, SIGINT, SIGHUP) is passed on to every fold's whole group
  # (training included), and waited for
  threads=$(( $(nproc) / fold_jobs )); [ "$threads" -ge 1 ] || threads=1
  pids=(); failed=0
  stop_folds() {  # stop_folds SIGNAL NUMBER: end the folds' process groups, then exit
    trap '' INT TERM HUP
    job_end_groups 30 "${pids[@]}"  # the launcher in each ends its own jobs within its grace
    log "stage 3 stopped by SIG$1: ${#pids[@]} fold job(s) ended; rerun to resume them"
    exit $((128 + $2))
  }
  set -m
  trap 'stop_folds INT 2' INT; trap 'stop_folds TERM 15' TERM; trap 'stop_folds HUP 1' HUP
  for f in $(list_folds); do
    if [ -f "$exp_root/$f/.done" ]; then
      log "stage 3: $exp_root/$f already trained (delete its .done to train again)"; continue
    fi
    [ -f "$fdump/$f/$train_name/feats.scp" ] || {
      log "no $fdump/$f/$train_name: run stage 2 with the same --train_on_dev"; exit 1; }
    if [ "$fold_jobs" -le 1 ]; then
      train_fold "$f" &
      pids=($!)  # the running one
      wait "$!" || failed=1
      [ "$failed" -eq 0 ] || break
      continue
    fi
    while [ "$(jobs -rp | wc -l)" -ge "$fold_jobs" ]; do sleep 2; done
    OMP_NUM_THREADS=${OMP_NUM_THREADS:-$threads} train_fold "$f" &
    pids+=($!)
  done
  for p in "${pids[@]}"; do wait "$p" || failed=1; done
  set +m; trap - INT TERM HUP
  [ "$failed" -eq 0 ] || { log "stage 3 failed: see $exp_root/<fold>/logs/stage3.log"; exit 1; }
fi

if [ "$stage" -le 4 ] && [ "$stop_stage" -ge 4 ]; then
  results=(); listener_results=()
  for f in $(list_folds); do
    exp=$exp_root/$f
    log "stage 4: inference and scoring on $fdump/$f/test"
    sertk predict --model "$exp" --data "$fdump/$f/test" --out-dir "$exp/decode_test" \
      --batch-size "$inference_batch_size" --no-progress ${device:+--device $device} >/dev/null
    if grep -q '^task: dimensional' "$exp/config.yaml"; then  # utt2dim targets: CCC
      sertk score --dim --ref "$fdump/$f/test/utt2dim" --hyp "$exp/decode_test/hyp.txt" \
        --out-dir "$exp/decode_test" --title "$tag $f" | sed "s/^/$f: /" >&2
    else
      # a config with its own `labels:` (a class subset, e.g. meta_ser's four): test
      # utterances of other labels are counted and reported, not scored
      subset=""; grep -q '^labels:' "$train_config" && subset=--subset
      # shellcheck disable=SC2086
      sertk score --ref "$fdump/$f/test/utt2emo" --hyp "$exp/decode_test/hyp.txt" \
        --labels "$exp/labels.txt" $subset --out-dir "$exp/decode_test" --title "$tag $f" \
        | sed "s/^/$f: /" >&2
    fi
    if [ -f "$exp/aux/utt2listener_emo.txt" ]; then  # listener-adaptive: both of its tasks
      score_listeners.py --device "${device:-cpu}" "$exp" "$fdump/$f/test" \
        "$exp/decode_test/listeners.json" | sed "s/^/$f: /" >&2
      listener_results+=("$exp/decode_test/listeners.json")
    fi
    results+=(--fold "$exp/decode_test/results.json")
  done
  sertk score "${results[@]}" --out-dir "$exp_root/decode_test" \
    --markdown "$exp_root/RESULTS.md" --command "$run_cmd" --title "$tag"
  # training curves of every fold in one figure (each fold's own: <fold>/curves.png)
  # shellcheck disable=SC2046
  sertk plot curves $(for f in $(list_folds); do echo "$exp_root/$f"; done) \
    --out "$exp_root/curves.png" --title "$tag" >&2
  if [ ${#listener_results[@]} -gt 0 ]; then
    { echo; echo "Listener-adaptive model (bin/score_listeners.py, per fold in" \
        "<fold>/decode_test/listeners.json):"; echo
      score_listeners.py --aggregate "$exp_root/decode_test/listeners.json" \
        "${listener_results[@]}" | sed 's/^/    /'; } | tee -a "$exp_root/RESULTS.md" >&2
  fi
  log "stage 4 done: $exp_root/RESULTS.md"
fi

if [ "$stage" -le 5 ] && [ "$stop_stage" -ge 5 ]; then
  for f in $(list_folds); do
    exp=$exp_root/$f
    sertk pack --exp "$exp" --out "$exp/model.zip"
  done
  log "stage 5 done: packed models in $exp_root/<fold>/model.zip"
fi

if [ "$stage" -le 6 ] && [ "$stop_stage" -ge 6 ]; then
  exp=$exp_root/final
  train_all=$fdump/final_train
  log "stage 6: final model on every utterance of $datadir/all -> $exp (log: $exp/train.log)"
  if [ ! -f "$exp/.done" ]; then
    parts=("$featdump/all")
    [ -n "$speed_perturb" ] && parts+=("$normdump/$sp_set")
    [ -n "$noise_data" ] && parts+=("$normdump/$noise_set")
    [ -n "$rir_data" ] && parts+=("$normdump/$rir_set")
    rm -rf "$train_all"
    sertk data combine "$train_all" "${parts[@]}" >/dev/null
    cp "$featdump/all/feat_dim" "$featdump/all/feats.yaml" "$train_all/"
    sertk feats cmvn "$train_all" >/dev/null
    mkdir -p "$exp/logs"
    resume=""; [ -f "$exp/checkpoints/last.pt" ] && resume="--resume"
    # shellcheck disable=SC2086
    ${train_cmd} "$exp/logs/stage6.log" \
      $launcher train --config "$train_config" --train "$train_all" --exp "$exp" \
        --cmvn "$train_all/cmvn.ark" $dev_opt $resume --no-progress $train_args
    touch "$exp/.done"
  fi
  sertk pack --exp "$exp" --out "$exp/model.zip"
  log "stage 6 done: $exp/model.zip ($(wc -l < "$train_all/utt2spk") utterances of" \
    "$(wc -l < "$train_all/spk2utt") speakers)"
fi
