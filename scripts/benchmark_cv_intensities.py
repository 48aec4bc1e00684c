"""Per-class FLAIR means of each fold's training subjects beside its GAN and VAE cohorts, the cohorts' cases split
by the anatomy their label map was drawn in (a training subject's or a healthy brain) (reports/benchmark_cpu.md).

    .venv/bin/python scripts/benchmark_cv_intensities.py runs/benchmark_cv

The synthetic arms' segmenters learn tumor contrast from these cases; a cohort whose tumor classes are much
darker or brighter than the real training subjects' teaches the wrong contrast. Means are over voxels of a class,
pooled over the cases of a source (intensities are z-scored in the brain, as prepared).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from medsynth.data.scheme import CLASS_NAMES
from medsynth.io import load_nifti, read_json
from medsynth.manifest import Manifest

CLASSES = (1, 2, 3, 4, 5, 6)


def class_means(pairs: list[tuple[Path, Path]]) -> dict[int, float]:
    sums, counts = dict.fromkeys(CLASSES, 0.0), dict.fromkeys(CLASSES, 0)
    for image, label in pairs:
        values, labels = load_nifti(image)[0], load_nifti(label, dtype=np.int16)[0]
        for c in CLASSES:
            inside = labels == c
            sums[c] += float(values[inside].sum())
            counts[c] += int(inside.sum())
    return {c: sums[c] / counts[c] if counts[c] else float("nan") for c in CLASSES}


def main() -> None:
    run = Path(sys.argv[1] if len(sys.argv) > 1 else "runs/benchmark_cv")
    print("| fold | source | cases | " + " | ".join(CLASS_NAMES[c] for c in CLASSES) + " |")
    print("|---|---|---|" + "---|" * len(CLASSES))
    for fold in sorted((run / "folds").glob("fold*")):
        manifest = Manifest.load(fold / "manifest.json", kind="prepared")
        flair = manifest.modalities.index("flair")
        real = [(c.images[flair], c.label) for c in manifest.cases(["train"])]
        rows = {"real (training subjects)": real}
        for kind in ("gan", "vae"):
            for case in sorted((fold / "synthetic" / f"cohort_{kind}" / "cases").glob("*")):
                # the label map's anatomy: a training subject's brain or a healthy one (synthseg, colin27)
                record = read_json(case / "provenance.json")["label_map_record"]
                anatomy = "healthy" if record["anatomy"]["split"] == "healthy" else "patient"
                pair = (case / f"{case.name}_flair.nii.gz", case / f"{case.name}_label_map.nii.gz")
                rows.setdefault(f"{kind}, {anatomy} anatomies", []).append(pair)
        for source, pairs in rows.items():
            if not pairs:
                continue
            means = class_means(pairs)
            print(f"| {fold.name} | {source} | {len(pairs)} | " + " | ".join(f"{means[c]:.2f}" for c in CLASSES) + " |")


if __name__ == "__main__":
    main()
