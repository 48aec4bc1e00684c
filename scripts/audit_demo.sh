#!/usr/bin/env bash
# The audit numbers quoted in reports/audit/: the demo's VAE cohort, and the same cohort with one
# case replaced by a mirrored, noisy copy of a training scan.
#   make demo && bash scripts/audit_demo.sh
set -uo pipefail
BIN=${BIN:-.venv/bin}
REAL=runs/demo/prepared/brats2013/manifest.json
$BIN/medsynth audit --real $REAL --synthetic runs/demo/cohort_vae --generator medsynth/pretrained/vae_cpu.pt \
  -o reports/audit/clean
rm -rf runs/demo/cohort_vae_planted && cp -r runs/demo/cohort_vae runs/demo/cohort_vae_planted
$BIN/python - <<'PY'
import nibabel as nib, numpy as np
rng = np.random.default_rng(0)
src = "runs/demo/prepared/brats2013/cases/brats_2013_pat0005_1/brats_2013_pat0005_1_{}.nii.gz"
dst = "runs/demo/cohort_vae_planted/cases/synth_00003/synth_00003_{}.nii.gz"
for m in ("t1c", "flair"):
    image = nib.load(src.format(m))
    data = np.asarray(image.dataobj)[::-1]
    data = (data + rng.normal(0, 0.1, data.shape) * (data != 0)).astype(np.float32)
    nib.save(nib.Nifti1Image(data, image.affine), dst.format(m))
PY
# the same feature network as the clean run, so the two reports' feature figures compare directly
$BIN/medsynth audit --real $REAL --synthetic runs/demo/cohort_vae_planted -o reports/audit/planted \
  --features reports/audit/clean/feature_network.pt
