#!/usr/bin/env bash
# Train the CPU checkpoints shipped in medsynth/pretrained/ on the bundled sample's train split (4 BraTS 2013
# subjects; pat0003 and pat0004 stay held out), and keep their configs and logs in reports/training/.
#   make demo && bash scripts/train_pretrained.sh
# The GAN and the VAE train at once, one thread each (2 cores): about 63 minutes for the GAN (1500 steps, ~2.5 s a
# step while another run shares the cores) and 76 for the VAE-GAN (1200 steps, 3.4-3.7 s a step; measured 2026-12-03 on the 2-core
# AMD EPYC VM); then the FLAIR-only GAN (800 steps, ~35 minutes) on the freed core.
# MANIFEST=... points at another prepared copy of the sample (default: the demo's).
set -euo pipefail
BIN=${BIN:-.venv/bin}
MANIFEST=${MANIFEST:-runs/demo/prepared/brats2013/manifest.json}
train() {  # model config -> runs/<name>, medsynth/pretrained/<name>.pt, reports/training/<name>_{config.yaml,log.csv}
  local name=$1 resume=()
  [[ -f runs/$name/checkpoint.pt ]] && resume=(--resume)  # a killed run continues where it stopped
  OMP_NUM_THREADS=1 /usr/bin/time -f "$name: %e s wall, %M KB max RSS" \
    "$BIN/medsynth" train --config "configs/$name.yaml" -o "runs/$name" "manifest=$MANIFEST" "${resume[@]}"
  cp "runs/$name/generator.pt" "medsynth/pretrained/$name.pt"
  cp "runs/$name/config.yaml" "reports/training/${name}_config.yaml"
  cp "runs/$name/log.csv" "reports/training/${name}_log.csv"
}
mkdir -p medsynth/pretrained reports/training
train gan_cpu &
{ train vae_cpu && train gan_flair_cpu; } &
wait  # the checkpoints record their training subjects by content themselves (medsynth generate's copy check)
