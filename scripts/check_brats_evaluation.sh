#!/usr/bin/env bash
# Cross-check `medsynth benchmark` Dice/HD95 against the official BraTS evaluation package
# (PyPI BraTS-evaluation, built on panoptica). It pins older dependencies, so it gets a venv of
# its own ($BRATS_EVAL_VENV, default .venv-brats-eval at the repo root), never medsynth's .venv.
#   bash scripts/check_brats_evaluation.sh RESULTS [ARM] [SEED]
# RESULTS is a benchmark folder (references/, predictions/<arm>/seed<k>/, results.csv); ARM and
# SEED default to every predictions/<arm>/seed<k> present. For each, runs `brats-evaluate
# --config gli` and `brats-parse-metrics seg`, writing RESULTS/brats_evaluation/
# summary_<arm>_seed<k>.json and parsed_<arm>_seed<k>.csv, then scripts/compare_brats_evaluation.py
# puts medsynth's numbers next to the official ones in RESULTS/brats_evaluation/comparison.md.
# The tool matches files by the first "NNNNN-NNN" in a reference name: references/
# BraTS-GLI-00000-000-seg.nii.gz <- the prediction whose name ends in 00000-000.nii.gz.
set -euo pipefail
BRATS_EVAL_PIN="BraTS-evaluation==0.0.10"  # tested with panoptica 2.1.7, numpy 2.2.6 on Python 3.11
PYTHON=${PYTHON:-python3}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
VENV=${BRATS_EVAL_VENV:-$ROOT/.venv-brats-eval}

die() { echo "check_brats_evaluation: $*" >&2; exit 1; }
[ $# -ge 1 ] && [ $# -le 3 ] || die "usage: bash scripts/check_brats_evaluation.sh RESULTS [ARM] [SEED]"
[ -d "$1" ] || die "RESULTS folder '$1' does not exist"
RESULTS=$(cd "$1" && pwd)
ARM=${2:-}
SEED=${3:-}
[ -d "$RESULTS/references" ] || die "$RESULTS has no references/ folder (is it a 'medsynth benchmark' output?)"
compgen -G "$RESULTS/references/*-seg.nii.gz" >/dev/null || die "$RESULTS/references/ has no *-seg.nii.gz labels"
[ -d "$RESULTS/predictions" ] || die "$RESULTS has no predictions/ folder (is it a 'medsynth benchmark' output?)"
[ -f "$RESULTS/results.csv" ] || die "$RESULTS has no results.csv to compare against"

# The arm/seed folders to evaluate.
SEED=${SEED#seed}
folders=()
for dir in "$RESULTS"/predictions/*/seed*; do
  [ -d "$dir" ] || continue
  [ -z "$ARM" ] || [ "$(basename "$(dirname "$dir")")" = "$ARM" ] || continue
  [ -z "$SEED" ] || [ "$(basename "$dir")" = "seed$SEED" ] || continue
  folders+=("$dir")
done
if [ ${#folders[@]} -eq 0 ]; then
  present=$(cd "$RESULTS/predictions" && ls -d -- */seed* 2>/dev/null | tr '\n' ' ')
  die "no predictions/${ARM:-<arm>}/seed${SEED:-<k>} folder in $RESULTS (present: ${present:-none})"
fi

# The venv: created once, rebuilt only when the pin changes.
stamp="$VENV/.brats-eval-installed"
if [ ! -x "$VENV/bin/brats-evaluate" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$BRATS_EVAL_PIN" ]; then
  echo "[brats-eval] creating $VENV with $BRATS_EVAL_PIN"
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip
  "$VENV/bin/python" -m pip install -q "$BRATS_EVAL_PIN"
  echo "$BRATS_EVAL_PIN" >"$stamp"
fi
"$VENV/bin/python" - <<'PY'
import sys
from importlib.metadata import version

names = ["BraTS-evaluation", "panoptica", "numpy", "scipy", "SimpleITK", "nibabel", "connected-components-3d"]
print("[brats-eval] Python", sys.version.split()[0] + ";", ", ".join(f"{n} {version(n)}" for n in names))
PY

OUT="$RESULTS/brats_evaluation"
mkdir -p "$OUT"
for dir in "${folders[@]}"; do
  seed_dir=$(basename "$dir")
  arm=$(basename "$(dirname "$dir")")
  tag="${arm}_${seed_dir}"
  echo "[brats-eval] $arm/$seed_dir"
  rm -f "$OUT/summary_$tag.json" "$OUT/parsed_$tag.csv"
  # brats-evaluate exits 0 even when it fails: the summary's presence is what tells.
  "$VENV/bin/brats-evaluate" --config gli --ref_path "$RESULTS/references" --pred_path "$dir" \
    --summary_json "$OUT/summary_$tag.json" >"$OUT/evaluate_$tag.log" 2>&1 \
    || die "brats-evaluate failed on $dir, see $OUT/evaluate_$tag.log"
  [ -f "$OUT/summary_$tag.json" ] || die "brats-evaluate wrote no summary for $dir, see $OUT/evaluate_$tag.log"
  grep -E "^(Warning|Error)" "$OUT/evaluate_$tag.log" || true
  "$VENV/bin/brats-parse-metrics" seg --json_path "$OUT/summary_$tag.json" \
    --output_csv_path "$OUT/parsed_$tag.csv" >>"$OUT/evaluate_$tag.log" 2>&1 \
    || die "brats-parse-metrics failed on $OUT/summary_$tag.json, see $OUT/evaluate_$tag.log"
  [ -f "$OUT/parsed_$tag.csv" ] || die "brats-parse-metrics wrote no CSV for $tag, see $OUT/evaluate_$tag.log"
done

"$PYTHON" "$ROOT/scripts/compare_brats_evaluation.py" "$RESULTS"
