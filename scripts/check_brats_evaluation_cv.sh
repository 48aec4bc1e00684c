#!/usr/bin/env bash
# The official BraTS evaluation's cross-check of a cross-validated run's *external* predictions
# (predictions/external/fold<k>/<arm>/seed<s>/ against references/external/, whole tumor only).
#   bash scripts/check_brats_evaluation_cv.sh RUN [ARM,ARM...]      # default: every arm
# It lays the run out as scripts/check_brats_evaluation.sh expects (links, nothing copied): RUN/brats_external/
# with references/, predictions/fold<k>_<arm>/seed<s>/ and the external rows of results.csv under the arm name
# fold<k>_<arm>, runs that script on it, and leaves its comparison in RUN/brats_external/brats_evaluation/
# comparison.md. TC and ET of these references are empty (whole tumor only): only the WT rows compare.
set -euo pipefail
die() { echo "check_brats_evaluation_cv: $*" >&2; exit 1; }
[ $# -ge 1 ] && [ $# -le 2 ] || die "usage: bash scripts/check_brats_evaluation_cv.sh RUN [ARM,ARM...]"
RUN=$(cd "$1" && pwd) || die "RUN folder '$1' does not exist"
ARMS=${2:-}
[ -d "$RUN/references/external" ] || die "$RUN has no references/external/ (a run with data.external?)"
[ -f "$RUN/results.csv" ] || die "$RUN has no results.csv (run \`medsynth benchmark report $RUN\` first)"
VIEW=$RUN/brats_external
rm -rf "$VIEW/predictions"
mkdir -p "$VIEW/predictions"
ln -sfn "$RUN/references/external" "$VIEW/references"
found=0
for dir in "$RUN"/predictions/external/fold*/*/seed*; do
  [ -d "$dir" ] || continue
  arm=$(basename "$(dirname "$dir")")
  fold=$(basename "$(dirname "$(dirname "$dir")")")
  [ -z "$ARMS" ] || [[ ",$ARMS," == *",$arm,"* ]] || continue
  mkdir -p "$VIEW/predictions/${fold}_$arm"
  ln -sfn "$dir" "$VIEW/predictions/${fold}_$arm/$(basename "$dir")"
  found=$((found + 1))
done
[ "$found" -gt 0 ] || die "no predictions/external/fold<k>/${ARMS:-<arm>}/seed<s> in $RUN"
python3 - "$RUN/results.csv" "$VIEW/results.csv" <<'PY'
import csv
import sys

with open(sys.argv[1], newline="") as source, open(sys.argv[2], "w", newline="") as view:
    reader = csv.DictReader(source)
    writer = csv.DictWriter(view, fieldnames=reader.fieldnames)
    writer.writeheader()
    for row in reader:
        if row["test"] == "external":
            writer.writerow(row | {"arm": f"fold{row['fold']}_{row['arm']}"})
PY
bash "$(dirname "$0")/check_brats_evaluation.sh" "$VIEW"
