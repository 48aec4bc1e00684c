#!/usr/bin/env bash
# The label-map numbers quoted in the issue notes and README, on ../shared/data (2 cores):
#   bash scripts/labels_on_shared.sh runs/labels_shared
set -euo pipefail
OUT=${1:-runs/labels_shared}
BIN=${BIN:-.venv/bin}
mkdir -p "$OUT"
$BIN/medsynth prepare data_manifests/brats2013_small.json -o "$OUT/prepared/brats2013" --config configs/prepare_cpu.yaml
$BIN/medsynth prepare data_manifests/synthseg.json -o "$OUT/prepared/synthseg" --config configs/prepare_cpu.yaml
$BIN/medsynth prepare data_manifests/colin27.json -o "$OUT/prepared/colin27" --config configs/prepare_cpu.yaml
P="$OUT/prepared"
for spec in none uniform_volume balanced_sides; do
  extra=()
  [ "$spec" != none ] && extra=(--reshape "configs/reshape/$spec.yaml")
  /usr/bin/time -f "$spec: %e s wall, %M KB max RSS" $BIN/medsynth labels --from "$P/brats2013/manifest.json" \
    --healthy "$P/synthseg/manifest.json" "$P/colin27/manifest.json" --n 100 --seed 0 "${extra[@]}" \
    -o "$OUT/labels_$spec"
done
