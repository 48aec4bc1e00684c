#!/usr/bin/env bash
# Train the two small CPU checkpoints shipped in medsynth/pretrained/ on the bundled sample.
#   make demo && bash scripts/train_pretrained.sh     (about 15 minutes on 2 cores: GAN ~10, VAE ~5)
set -euo pipefail
BIN=${BIN:-.venv/bin}
for model in gan vae; do
  /usr/bin/time -f "$model: %e s wall, %M KB max RSS" \
    $BIN/medsynth train --config configs/${model}_cpu.yaml -o runs/${model}_cpu
  mkdir -p medsynth/pretrained
  cp runs/${model}_cpu/generator.pt medsynth/pretrained/${model}_cpu.pt
done
