#!/usr/bin/env bash
# The numbers of reports/audit/defaults/: what the private-by-default settings change, on the shipped GAN.
#   bash scripts/audit_defaults.sh          (about 15 minutes on 2 cores; needs ../shared/data)
#
# Real subjects: all six BraTS 2013 subjects of ../shared/data, prepared like the bundled sample
# (2 mm, 80x96x80): the GAN's two training subjects (pat0005, pat0006) in `train`, the other four
# held out, read through a MONAI datalist (the `datalist` layout).
# Cohorts (24 cases, seed 21, the shipped GAN):
#   default/              `medsynth generate --checkpoint pretrained:gan --n 24` as it is now
#   training_anatomies/   the previous default: tumors placed into the training patients' own brains,
#                         no deformation (opt-in today: --from + anatomies=real + deformation none)
#   planted/              default/ with three cases replaced by disguised copies of training scans
#                         (shifted + rotated, contrast-changed + blurred, one modality copied)
set -euo pipefail
BIN=${BIN:-.venv/bin}
OUT=${OUT:-runs/audit_defaults}
SHARED=${SHARED:-../shared/data}
export MEDSYNTH_CACHE=${MEDSYNTH_CACHE:-$OUT/cache}
mkdir -p "$OUT"
$BIN/python - "$SHARED" "$OUT/six.json" <<'PY'
import json, os, sys
shared, out = sys.argv[1], sys.argv[2]
base = os.path.dirname(os.path.abspath(out))
def entry(folder, case):
    root = os.path.relpath(os.path.join(shared, folder, case), base)
    files = {k: f"{root}/{k}" for k in ("T1c_subtrMeanDivStd.nii.gz", "Flair_subtrMeanDivStd.nii.gz")}
    return {"case_id": case, "image": list(files.values()), "label": f"{root}/OTMultiClass.nii.gz",
            "mask": f"{root}/brainmask.nii.gz"}
data = {
    "training": [entry("brats2013_small/train", f"brats_2013_pat000{i}_1") for i in (5, 6)],
    "validation": [entry("brats2013_small/validation", f"brats_2013_pat000{i}_1") for i in (3, 4)],
    "test": [entry("brats2013_test", f"brats_2013_pat000{i}_1") for i in (1, 2)],
}
json.dump(data, open(out, "w"), indent=1)
PY
$BIN/medsynth manifest build "$OUT/six.json" --channels t1c,flair --label-scheme brats2013 -o "$OUT/six_raw.json"
rm -rf "$OUT/prepared" && $BIN/medsynth prepare "$OUT/six_raw.json" -o "$OUT/prepared" --no-previews
REAL=$OUT/prepared/manifest.json

rm -rf "$OUT/default" "$OUT/training_anatomies" "$OUT/planted"
/usr/bin/time -f "default cohort: %e s" \
  $BIN/medsynth generate --checkpoint pretrained:gan --n 24 --seed 21 -o "$OUT/default"
$BIN/medsynth generate --checkpoint pretrained:gan --n 24 --seed 21 --from "$REAL" -o "$OUT/training_anatomies" \
  copy_check=false label_config.anatomies=real label_config.deformation.anatomies=none

cp -r "$OUT/default" "$OUT/planted"
$BIN/python - "$REAL" "$OUT/planted" <<'PY'
import sys
import nibabel as nib, numpy as np
from scipy import ndimage
from medsynth.manifest import Manifest
real, planted = sys.argv[1], sys.argv[2]
train = {c.case_id: c for c in Manifest.load(real).cases(["train"])}
source = train["brats_2013_pat0005_1"]
images = [np.asarray(nib.load(str(p)).dataobj, dtype=np.float32) for p in source.images]
rng = np.random.default_rng(0)
def write(case, volumes):
    for volume, modality in zip(volumes, ("t1c", "flair")):
        path = f"{planted}/cases/{case}/{case}_{modality}.nii.gz"
        nib.save(nib.Nifti1Image(volume.astype(np.float32), nib.load(path).affine), path)
brain = images[0] != 0
# 1. shifted by (2, -2, 1) voxels and rotated 4 degrees
write("synth_00002", [ndimage.rotate(ndimage.shift(v, (2, -2, 1), order=1), 4, axes=(0, 1), reshape=False, order=1)
                      for v in images])
# 2. contrast changed (gamma 1.5 on the brain's range) and blurred (sigma 1 voxel)
def gamma(v):
    low, high = v[brain].min(), v[brain].max()
    return np.where(brain, ((v - low) / (high - low)) ** 1.5 * (high - low) + low, 0)
write("synth_00005", [ndimage.gaussian_filter(gamma(v), 1.0) * brain for v in images])
# 3. FLAIR copied verbatim, T1c left synthetic
case = "synth_00011"
t1c = np.asarray(nib.load(f"{planted}/cases/{case}/{case}_t1c.nii.gz").dataobj, dtype=np.float32)
write(case, [t1c, images[1]])
PY
# the planted files no longer match the cohort's checksums: that is the point (the audit reads the images)

for name in default training_anatomies planted; do
  /usr/bin/time -f "audit $name: %e s" $BIN/medsynth audit --real "$REAL" --synthetic "$OUT/$name" \
    --generator pretrained:gan -o "reports/audit/defaults/$name" $([ "$name" != default ] && echo --features reports/audit/defaults/default/feature_network.pt)
done
