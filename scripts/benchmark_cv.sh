#!/usr/bin/env bash
# The cross-validated benchmark of issue #22 on ../shared/data, start to end, resumable (re-run it after a stop:
# prepared data, per-fold generators and finished (fold, arm, seed) units are kept).
#   make setup && bash scripts/benchmark_cv.sh            # -> runs/benchmark_cv/report.md
# What it does (configs/benchmark_cv.yaml holds the protocol and the primary endpoint):
#   1. prepares the six BraTS 2013 subjects, the seven BraTS 2018 subjects (external test) and the healthy
#      anatomies at 2 mm (configs/prepare_cpu.yaml);
#   2. writes the folds (runs/benchmark_cv/folds/fold<k>/manifest.json: that fold's 4 training subjects);
#   3. trains a GAN and a VAE per fold on those 4 subjects only (GEN_STEPS steps each, GEN_THREADS=2 threads, one
#      after the other); the shipped pretrained:* models are refused by the benchmark (they have seen test subjects);
#   4. runs the (fold, arm, seed) units as SHARDS processes of THREADS threads each, side by side (default two
#      one-thread shards: 17.6 units/hour against 11.1 for one two-thread process on 2 cores, measured with the
#      same arms on 2026-12-02, reports/benchmark_cpu.md; the report's "Schedules" table times every run);
#   5. merges the report.
# Cuts to fit about three hours of 2 CPU cores (stated in reports/benchmark_cpu.md): GEN_STEPS=400 per-fold
# generators (the shipped ones ran 1200/2000), SEEDS=[0] (one segmenter seed per unit), and ARMS: 7 of the
# config's 9 arms (classical_vae_50 and synthetic_vae left out: a FLAIR unit trains 270-370 s here, not the
# 150 s planned). ARMS=all runs every arm of the config.
set -euo pipefail
BIN=${BIN:-.venv/bin}
OUT=${OUT:-runs/benchmark_cv}
GEN_STEPS=${GEN_STEPS:-400}
SEEDS=${SEEDS:-[0]}
ARMS=${ARMS:-real,real_classical,classical_gan_25,classical_gan_50,classical_vae_25,synthetic_gan,classical_synthseg_50}
SHARDS=${SHARDS:-2}
THREADS=${THREADS:-1}
GEN_THREADS=${GEN_THREADS:-2}  # per-fold generator training (1: leaves a core to another job)
arms=()
[[ $ARMS == all ]] || arms=(--arms "$ARMS")
CONFIG=configs/benchmark_cv.yaml
stamp() { echo "[benchmark_cv $(date +%H:%M:%S)] $*"; }

for name in brats2013_six brats2018_wt synthseg colin27; do
  if [[ ! -f runs/shared_prepared/$name/manifest.json ]]; then
    stamp "prepare $name"
    "$BIN/medsynth" prepare "data_manifests/$name.json" --config configs/prepare_cpu.yaml \
      -o "runs/shared_prepared/$name"
  fi
done

# The folds: the first call writes folds/fold<k>/manifest.json and stops at the missing per-fold generators.
if [[ ! -f $OUT/folds/fold2/manifest.json ]]; then
  "$BIN/medsynth" benchmark --config "$CONFIG" -o "$OUT" "seeds=$SEEDS" >/dev/null 2>&1 || true
  [[ -f $OUT/folds/fold2/manifest.json ]] || { echo "no folds written in $OUT" >&2; exit 1; }
fi

models=()  # the generators the chosen arms need (ARMS=real,real_classical needs none)
[[ $ARMS == all || $ARMS == *gan* ]] && models+=(gan)
[[ $ARMS == all || $ARMS == *vae* ]] && models+=(vae)
for fold in 0 1 2; do
  for model in "${models[@]}"; do
    run=runs/cv_generators/${model}_fold$fold
    [[ -f $run/generator.pt ]] && continue
    resume=()
    [[ -f $run/checkpoint.pt ]] && resume=(--resume)
    stamp "train $run ($GEN_STEPS steps)"
    OMP_NUM_THREADS=$GEN_THREADS /usr/bin/time -f "$run: %e s wall, %M KB max RSS" \
      "$BIN/medsynth" train --config "configs/${model}_cpu.yaml" -o "$run" \
      "manifest=$OUT/folds/fold$fold/manifest.json" "steps=$GEN_STEPS" "${resume[@]}"
  done
done

stamp "units: $SHARDS shard(s) of $THREADS thread(s); logs $OUT.shard<i>.log"
pids=()
for ((shard = 0; shard < SHARDS; shard++)); do
  OMP_NUM_THREADS=$THREADS "$BIN/medsynth" benchmark --config "$CONFIG" -o "$OUT" "seeds=$SEEDS" "${arms[@]}" \
    --shard "$shard/$SHARDS" >"$OUT.shard$shard.log" 2>&1 &
  pids+=($!)
done
for pid in "${pids[@]}"; do wait "$pid" || { echo "a shard failed: see $OUT.shard<i>.log" >&2; exit 1; }; done
stamp "report"
"$BIN/medsynth" benchmark report "$OUT"
