#!/usr/bin/env bash
# leaf_mmt stages 3 and 4 for every fold of a recipe (Dutta & Ganapathy 2022, papers.md
# section 25; sertk/models/leaf_mmt.py), after stages 1 and 2 were trained by the recipe:
#
#   ./run.sh --stage 3 --tag A --train_config conf/model/leaf_mmt.yaml \
#            --feats_config conf/feats/waveform16k.yaml            # 1: LEAF-CNN (audio)
#   ./run.sh --stage 3 --tag T --train_config conf/model/leaf_mmt/text.yaml \
#            --feats_config conf/feats/waveform16k.yaml --tokenizer char   # 2: text
#   leaf_mmt_stages.sh dump/waveform16k exp/A exp/T exp/leaf_mmt
#
# Per fold: the frozen stage-1/2 models embed the fold's train, dev and test utterances
# (`sertk embed`), the embeddings of each set's dialogues become conversation matrices
# (`sertk data conversation`), stage 3 trains one context network per modality, stage 4 the
# multimodal Transformer over both (frozen); each is scored on the test set, and the folds
# are aggregated into OUT/<stage>/decode_test/results.json. Logs: OUT/<fold>/logs/*.log.
#
# Options: --folds 'fold1 fold2' (default: every fold of AUDIO_EXP), --train_name train
# (train_dev when the recipe trained on train + dev), --train_args ARGS (every stage),
# --conf_dir DIR (stage configs, default conf/model/leaf_mmt), --device cpu.
set -euo pipefail
folds=""; train_name=train; train_args=""; device=cpu
conf_dir=conf/model/leaf_mmt
while [ $# -gt 0 ]; do
  case $1 in
    --folds) folds=$2; shift 2 ;;
    --train_name) train_name=$2; shift 2 ;;
    --train_args) train_args=$2; shift 2 ;;
    --conf_dir) conf_dir=$2; shift 2 ;;
    --device) device=$2; shift 2 ;;
    --*) echo "$0: unknown option $1" >&2; exit 1 ;;
    *) break ;;
  esac
done
if [ $# -ne 4 ]; then
  echo "usage: $0 [options] FOLD_DUMP AUDIO_EXP TEXT_EXP OUT" >&2; exit 1
fi
fdump=$1; audio_exp=$2; text_exp=$3; out=$4
log() { echo "$(date '+%F %T') leaf_mmt_stages: $*" >&2; }
[ -n "$folds" ] || folds=$(cd "$audio_exp" && for d in */; do
  [ -f "$d/model.safetensors" ] && echo "${d%/}"; done | tr '\n' ' ')
[ -n "$folds" ] || { log "no trained fold (*/model.safetensors) in $audio_exp"; exit 1; }

conversations() {  # conversations FOLD: embeddings and conversation matrices of its sets
  local f=$1 e=$out/$1 set m src
  for set in "$train_name" dev test; do
    [ -f "$e/data/$set/feats.scp" ] && continue
    for m in audio text; do
      src=$audio_exp; [ $m = text ] && src=$text_exp
      [ -f "$src/$f/model.safetensors" ] || { log "no $src/$f/model.safetensors"; return 1; }
      launch.sh "$e/logs/embed_${m}_$set.log" sertk embed --model "$src/$f" \
        --data "$fdump/$f/$set" --out-dir "$e/emb/${m}_$set" --device "$device" --no-progress
    done
    launch.sh "$e/logs/conversation_$set.log" sertk data conversation "$fdump/$f/$set" \
      "$e/data/$set" --embeddings "$e/emb/audio_$set/embeddings.scp" \
      --embeddings "$e/emb/text_$set/embeddings.scp"
  done
  sertk feats cmvn "$e/data/$train_name" >/dev/null
}

train_stage() {  # train_stage FOLD STAGE [ARGS]: one stage's training, test scoring
  local f=$1 st=$2 e=$out/$1; shift 2
  if [ ! -f "$e/$st/.done" ]; then
    log "$f: stage $st (log: $e/logs/$st.log)"
    # shellcheck disable=SC2086
    launch.sh "$e/logs/$st.log" sertk train --config "$conf_dir/$st.yaml" \
      --train "$e/data/$train_name" --valid "$e/data/dev" --exp "$e/$st" \
      --cmvn "$e/data/$train_name/cmvn.ark" --device "$device" --no-progress \
      $train_args "$@"
    touch "$e/$st/.done"
  fi
  sertk predict --model "$e/$st" --data "$e/data/test" --out-dir "$e/$st/decode_test" \
    --device "$device" --no-progress >/dev/null
  sertk score --ref "$e/data/test/utt2emo" --hyp "$e/$st/decode_test/hyp.txt" \
    --labels "$e/$st/labels.txt" --out-dir "$e/$st/decode_test" --title "leaf_mmt $st $f" \
    | sed "s/^/$f $st: /" >&2
}

for f in $folds; do
  mkdir -p "$out/$f/logs"
  conversations "$f"
  train_stage "$f" context_audio
  train_stage "$f" context_text
  train_stage "$f" fusion --override "model.conf.init_audio=$out/$f/context_audio/model.safetensors" \
    --override "model.conf.init_text=$out/$f/context_text/model.safetensors"
done
for st in context_audio context_text fusion; do
  results=()
  for f in $folds; do results+=(--fold "$out/$f/$st/decode_test/results.json"); done
  sertk score "${results[@]}" --out-dir "$out/$st/decode_test" --title "leaf_mmt $st" \
    | sed "s/^/$st: /"
done
