#!/usr/bin/env bash
# Cohort generation time and peak memory for N = 10, 50, 200 with the shipped VAE (label maps
# sampled on the fly from the demo's prepared training subjects), then verify + exports of N=50.
#   make demo && bash scripts/bench_cohort.sh runs/bench_cohort
set -euo pipefail
OUT=${1:-runs/bench_cohort}
BIN=${BIN:-.venv/bin}
SRC=runs/demo/prepared/brats2013/manifest.json
rm -rf "$OUT"; mkdir -p "$OUT"
for n in 10 50 200; do
  /usr/bin/time -f "N=$n: %e s wall, %M KB peak RSS" $BIN/medsynth generate --checkpoint medsynth/pretrained/vae_cpu.pt \
    --n $n --seed 0 --from $SRC -o "$OUT/cohort_$n" 2>&1 | grep -E "N=|finalized"
done
$BIN/medsynth cohort verify "$OUT/cohort_50"
$BIN/python -c "from monai.data import load_decathlon_datalist as l; print(len(l('$OUT/cohort_50/manifest.json')), 'items via load_decathlon_datalist')"
$BIN/medsynth export nnunet "$OUT/cohort_50" -o "$OUT/nnUNet_raw" --dataset-id 501 --name SynthBraTS
$BIN/medsynth export brats "$OUT/cohort_50" -o "$OUT/brats2023" --edition 2023
$BIN/medsynth manifest build "$OUT/brats2023" -o "$OUT/brats2023.json" && $BIN/medsynth manifest check "$OUT/brats2023.json"
bash scripts/check_nnunet_export.sh "$OUT/nnUNet_raw/Dataset501_SynthBraTS"
