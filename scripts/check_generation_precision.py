"""Does bf16 generation keep quality? The shipped generators in fp32 and bf16, same label maps and seeds.

    make demo && .venv/bin/python scripts/check_generation_precision.py -o reports/performance_generation.md

Label maps: the held-out and training subjects of the demo's prepared manifest and the demo's
sampled label maps (``runs/demo/labels``: real tumors placed in healthy anatomy). For each
generator and label map, both precisions synthesize with seed 0; the report gives, per
modality and class, the largest difference of class means between the two (in brain-SD units,
the z-scores the models are trained on), the voxel-wise mean absolute difference, PSNR of bf16
against fp32. Speed is measured by scripts/bench_speed.py (a quality check is not a timing run).
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import numpy as np

import medsynth
from medsynth.io import load_nifti
from medsynth.manifest import Manifest
from medsynth.models.evaluate import class_intensities, ssim_psnr


def label_maps(manifest: Path, labels: Path) -> list[tuple[str, np.ndarray]]:
    maps = []
    for case in Manifest.load(manifest).cases():
        maps.append((case.case_id, load_nifti(case.label, dtype=np.int64)[0]))
    if (labels / "manifest.json").is_file():
        for case in Manifest.load(labels / "manifest.json").cases()[:4]:
            maps.append((case.case_id, load_nifti(case.label, dtype=np.int64)[0]))
    return maps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--manifest", type=Path, default=Path("runs/demo/prepared/brats2013/manifest.json"))
    parser.add_argument("--labels", type=Path, default=Path("runs/demo/labels"))
    parser.add_argument("-o", "--output", type=Path, default=Path("reports/performance_generation.md"))
    args = parser.parse_args()
    maps = label_maps(args.manifest, args.labels)
    lines = [
        "# bf16 vs fp32 generation with the shipped generators",
        "",
        f"Regenerate: `make demo && .venv/bin/python scripts/check_generation_precision.py` (this run: "
        f"{platform.machine()}, {os.cpu_count()} cores, {time.strftime('%Y-%m-%d')}). {len(maps)} label maps "
        f"({', '.join(name for name, _ in maps)}), seed 0, same weights; differences in brain-SD units.",
        "",
        "| generator | max abs. difference of a class mean | mean abs. voxel difference | PSNR bf16 vs fp32 (dB) "
        "| SSIM bf16 vs fp32 |",
        "|---|---|---|---|---|",
    ]
    for kind in ("gan", "vae"):
        gens = {
            p: medsynth.load_generator(medsynth.pretrained(kind), device="cpu", precision=p) for p in ("fp32", "bf16")
        }
        worst, worst_at, mae, psnr, ssim = 0.0, "", [], [], []
        for name, label_map in maps:
            out = {precision: gen.synthesize(label_map, seed=0).images for precision, gen in gens.items()}
            brain = label_map > 0
            mae.append(float(np.abs(out["fp32"] - out["bf16"])[:, brain].mean()))
            for c in range(out["fp32"].shape[0]):
                s, p = ssim_psnr(out["fp32"][c], out["bf16"][c])
                ssim.append(s)
                psnr.append(p)
            means = {p: class_intensities(images, label_map, gens[p].modalities) for p, images in out.items()}
            for modality, by_class in means["fp32"].items():
                for cls, values in by_class.items():
                    difference = abs(float(values.mean()) - float(means["bf16"][modality][cls].mean()))
                    if difference > worst:
                        worst, worst_at = difference, f"{name} {modality}/{cls}"
        lines.append(
            f"| {kind} | {worst:.3f} ({worst_at}) | {np.mean(mae):.3f} | {np.mean(psnr):.1f} | {np.mean(ssim):.4f} |"
        )
    text = "\n".join(lines) + "\n"
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
