#!/usr/bin/env bash
# Run nnU-Net v2's own dataset integrity check on an exported cohort, without adding nnU-Net to
# medsynth's environment: its packages go to a separate --target folder.
#   bash scripts/check_nnunet_export.sh nnUNet_raw/Dataset501_SynthBraTS
set -euo pipefail
DATASET=$1
BIN=${BIN:-.venv/bin}
TARGET=${NNUNET_PKGS:-/tmp/medsynth_nnunet_pkgs}
if [ ! -d "$TARGET/nnunetv2" ]; then
  # nnunetv2's import chain, installed without touching .venv (torch, numpy, SimpleITK come from it)
  $BIN/pip install -q --no-deps --target "$TARGET" nnunetv2 acvl-utils batchgenerators \
    dynamic-network-architectures pandas scikit-image lazy_loader tifffile blosc2 numexpr msgpack ndindex httpx idna
fi
PYTHONPATH="$TARGET" $BIN/python -c "
import sys
from nnunetv2.experiment_planning.verify_dataset_integrity import verify_dataset_integrity
verify_dataset_integrity(sys.argv[1], num_processes=1)
print('nnU-Net verify_dataset_integrity: passed')" "$DATASET"
