"""Does a fast path keep quality? Two trainings of one config, compared: loss curves and per-class intensities.

    for p in fp32 bf16; do
      medsynth train --config configs/gan_cpu.yaml -o runs/quality_gan_$p steps=200 precision=$p \\
        manifest=runs/shared_prepared/brats2013_small/manifest.json
    done
    .venv/bin/python scripts/compare_precision.py runs/quality_gan_fp32 runs/quality_gan_bf16 -o reports/performance

Prints (and writes ``<output>_quality.md`` and ``<output>_losses.png``) the losses of both
runs at a few steps, and, on the held-out subjects of the training manifest, the mean
intensity per class and modality of each run's synthesis next to the real scans'.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np

import medsynth
from medsynth.io import load_nifti
from medsynth.manifest import Manifest
from medsynth.models.evaluate import class_intensities

CLASSES = ("csf", "gm", "wm", "netc", "snfh", "et")


def read_log(run: Path) -> dict[str, np.ndarray]:
    with open(run / "log.csv") as handle:
        rows = list(csv.DictReader(handle))
    return {key: np.array([float(r[key]) for r in rows]) for key in rows[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", type=Path, nargs=2, help="baseline run folder, fast-path run folder")
    parser.add_argument("--split", default="validation", help="held-out split of the training manifest")
    parser.add_argument("-o", "--output", type=Path, required=True, help="output prefix")
    args = parser.parse_args()
    names = [run.name for run in args.runs]
    logs = [read_log(run) for run in args.runs]
    keys = [k for k in ("reconstruction_l1", "g", "d", "feature_matching") if k in logs[0]]
    lines = [f"# {names[0]} vs {names[1]}", "", "Losses (mean of the 5 logged values up to each step):", ""]
    lines += ["| step | " + " | ".join(f"{k} {n}" for k in keys for n in names) + " |"]
    lines += ["|---" * (1 + 2 * len(keys)) + "|"]
    steps = logs[0]["step"]
    for checkpoint in np.linspace(steps.max() / 4, steps.max(), 4).astype(int):
        cells = []
        for key in keys:
            for log in logs:
                window = (log["step"] <= checkpoint) & (log["step"] > checkpoint - 5 * (steps[1] - steps[0]))
                cells.append(f"{log[key][window].mean():.4f}")
        lines.append(f"| {checkpoint} | " + " | ".join(cells) + " |")

    generators = [medsynth.load_generator(run / "generator.pt", device="cpu", precision="fp32") for run in args.runs]
    manifest = generators[0].training["manifest"]
    pooled = {name: {} for name in ["real", *names]}
    for case in Manifest.load(manifest).cases([args.split]):
        label_map, _, _ = load_nifti(case.label, dtype=np.int64)
        volumes = {"real": np.stack([load_nifti(p)[0] for p in case.images])}
        volumes |= {n: g.synthesize(label_map, seed=0).images for n, g in zip(names, generators, strict=True)}
        for name, images in volumes.items():
            for modality, by_class in class_intensities(images, label_map, generators[0].modalities).items():
                for cls, values in by_class.items():
                    pooled[name].setdefault((modality, cls), []).append(values)
    lines += ["", f"Mean intensity per class on the `{args.split}` subjects (z-scores; seed 0):", ""]
    lines += [
        f"| modality | class | real | {names[0]} | {names[1]} | difference |",
        "|---|---|---|---|---|---|",
    ]
    for modality in generators[0].modalities:
        for cls in CLASSES:
            means = [np.concatenate(pooled[n][(modality, cls)]).mean() for n in ["real", *names]]
            cells = " | ".join(f"{m:.2f}" for m in means)
            lines.append(f"| {modality} | {cls} | {cells} | {abs(means[1] - means[2]):.2f} |")
    text = "\n".join(lines) + "\n"
    args.output.parent.mkdir(parents=True, exist_ok=True)
    Path(f"{args.output}_quality.md").write_text(text)
    print(text)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(keys), figsize=(4 * len(keys), 3.2))
    for ax, key in zip(np.atleast_1d(axes), keys, strict=True):
        for name, log in zip(names, logs, strict=True):
            ax.plot(log["step"], log[key], label=name)
        ax.set_title(key)
        ax.set_xlabel("step")
    np.atleast_1d(axes)[0].legend()
    fig.tight_layout()
    fig.savefig(f"{args.output}_losses.png", dpi=100)


if __name__ == "__main__":
    main()
