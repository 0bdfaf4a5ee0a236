#!/usr/bin/env bash
# Synthetic emotional corpus (sertk.data.synth): 4 emotions (neutral, happy, sad, angry) whose
# pitch level/range/contour, energy, tempo and spectral tilt differ, spoken by --speakers
# synthetic speakers (alternating male/female), utterances of --min_dur to --max_dur seconds.
# Speaker-independent folds (--folds, default 1): fold k tests on the k-th pair of speakers
# from the end, which never appear in its train or dev sets; --dev_speakers of the other
# speakers form each fold's dev set. For fusion experiments, --words N fixes the transcript length
# (default 0: one word per syllable) and --audio_valence A < 1 makes happy/angry and sad/neutral
# sound alike (0: the audio tells arousal only, the words valence only, in part).
set -euo pipefail
datadir=data
speakers=10
utts_per_emotion=6
min_dur=1.5
max_dur=2.5
folds=1
dev_speakers=2
seed=0
words=0
audio_valence=1.0
. parse_options.sh

rm -rf "$datadir/all" "$datadir/folds"
sertk data synth "$datadir/wav" "$datadir/all" --speakers "$speakers" \
  --utts-per-emotion "$utts_per_emotion" --seed "$seed" --min-dur "$min_dur" --max-dur "$max_dur" \
  --words "$words" --audio-valence "$audio_valence"
# per-token vectors of the aligned words (data/all/ctm) for semantic_fusion's semantic stream
# (ser.sh --semantic_ctm data/all/ctm --semantic_vectors data/all/token_vectors.txt): the
# synthetic audio carries no word identity, so no speech embedding of a word segment could tell
# the words apart; each word type gets a fixed random vector instead (a text-embedding stand-in)
semantic_feats.py tokens "$datadir/all/ctm" "$datadir/all/token_vectors.txt" --random-dim 50 \
  --seed "$seed" >&2
: > "$datadir/fold_spec.txt"
for k in $(seq 1 "$folds"); do
  a=$(printf '%02d' $((speakers - 2 * k + 1))); b=$(printf '%02d' $((speakers - 2 * k + 2)))
  echo "fold$k spk$a spk$b" >> "$datadir/fold_spec.txt"
done
sertk data folds "$datadir/all" "$datadir/folds" --test-speakers "$datadir/fold_spec.txt" \
  --dev-speakers "$dev_speakers" --seed "$seed"
