"""Record a checkpoint's training subjects by content (case ids + label-map SHA-256 + preprocessing).

Checkpoints written by ``medsynth train`` since this version record it themselves; this adds it
to older ones (it was run once on the shipped ``medsynth/pretrained/*_cpu.pt``, trained on the
bundled sample as ``make demo`` prepares it). Weights are untouched; the content checksum is
recomputed.

    .venv/bin/python scripts/record_training_data.py medsynth/pretrained/gan_cpu.pt
"""

import argparse
from pathlib import Path

import numpy as np
import torch

from medsynth.data import bundled
from medsynth.data.config import PreprocessConfig
from medsynth.io import array_sha256, load_nifti
from medsynth.manifest import Manifest
from medsynth.models import checkpoint


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--prepared", type=Path, help="its prepared training manifest (default: the bundled sample)")
    args = parser.parse_args()
    state = checkpoint.load(args.checkpoint)
    training = state["training"]
    prepared = args.prepared or bundled.prepared("brats2013", PreprocessConfig())
    manifest = Manifest.load(prepared, kind="prepared")
    cases = {c.case_id: c for c in manifest.cases()}
    training["label_maps"] = {
        case_id: array_sha256(load_nifti(cases[case_id].label, dtype=np.int16)[0]) for case_id in training["cases"]
    }
    training["preprocess"] = manifest.meta["preprocess"]
    training["manifest"] = "runs/demo/prepared/brats2013/manifest.json" if args.prepared is None else str(prepared)
    before = {k: v.clone() for k, v in state["state_dict"].items()}
    checkpoint.save(state, args.checkpoint)
    after = checkpoint.load(args.checkpoint)["state_dict"]
    assert all(torch.equal(before[k], after[k]) for k in before), "weights changed"
    print(f"{args.checkpoint}: recorded {len(training['label_maps'])} training label maps by content")


if __name__ == "__main__":
    main()
