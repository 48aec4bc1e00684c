"""Choose which candidate generator to ship, on the TRAINING subjects only (never on the held-out ones).

    $ .venv/bin/python scripts/select_generator.py shipped=medsynth/pretrained/gan_cpu.pt \
          candidate=runs/gan_cpu_geo/generator.pt -o reports/training/gan_selection.md

Each candidate renders every training subject's own label map (``--samples`` seeds); per class and
modality its mean intensity is compared with that subject's real scan, and its texture (power by
wavelength band, grid index) with the same real scan. The rule, fixed before the candidates are seen:

1. eligible: at least as many class means within 0.25 brain SD of the real ones as the first
   candidate (the model shipped now), and a grid index <= 1.05;
2. among the eligible, the smallest texture distance: the mean |log2(synthetic / real power)| over
   the 4-8 and 8-16 mm bands of every modality (0 = the real scans' fine detail).

The held-out subjects (reports/generators.md) are then only reported, so the figures there are
not tuned to them. A training subject measures fit, not generalisation: this picks between
models that fit equally well the one whose texture looks like a scan.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import numpy as np

import medsynth
from medsynth.audit.realism import CaseArrays, case_texture
from medsynth.io import load_nifti
from medsynth.manifest import Manifest
from medsynth.models.evaluate import class_intensities

TOLERANCE_SD = 0.25  # as in scripts/report_generators.py: |synthetic - real| class mean, brain-SD units
GRID_LIMIT = 1.05  # issue #20's target for the grid-artifact index
CLASSES = ("csf", "gm", "wm", "netc", "snfh", "et")
BANDS = ("4-8mm", "8-16mm")


def measure(generator, cases: list, picked: list[int], samples: int, spacing: tuple[float, ...]) -> dict:
    """Class-mean differences and texture ratios of one generator on the given (training) cases."""
    modalities = generator.modalities
    pooled = {side: {m: {c: [] for c in CLASSES} for m in modalities} for side in ("real", "synthetic")}
    power = {f"{m}/{b}": [] for m in modalities for b in BANDS}
    grid = []
    for case in cases:
        label_map, _, _ = load_nifti(case.label, dtype=np.int64)
        real = np.stack([load_nifti(case.images[i])[0] for i in picked])
        renders = [generator.synthesize(label_map, seed=s).images for s in range(samples)]
        for side, images in [("real", real)] + [("synthetic", r) for r in renders]:
            for modality, by_class in class_intensities(images, label_map, modalities).items():
                for cls, values in by_class.items():
                    if cls in CLASSES:
                        pooled[side][modality][cls].append(values)
        real_texture = case_texture(CaseArrays(case.case_id, real, label_map), spacing, modalities)
        for render in renders:
            texture = case_texture(CaseArrays(case.case_id, render, label_map), spacing, modalities)
            for key in power:
                modality, band = key.split("/")
                power[key].append(texture[f"power/{modality}/{band}"] / real_texture[f"power/{modality}/{band}"])
            grid.append(texture["grid_index"])
    differences = {
        f"{m}/{c}": float(
            np.concatenate(pooled["synthetic"][m][c]).mean() - np.concatenate(pooled["real"][m][c]).mean()
        )
        for m in modalities
        for c in CLASSES
        if pooled["real"][m][c]
    }
    ratios = {key: float(np.mean(values)) for key, values in power.items()}
    return {
        "differences": differences,
        "within": sum(abs(d) <= TOLERANCE_SD for d in differences.values()),
        "power": ratios,
        "distance": float(np.mean([abs(np.log2(r)) for r in ratios.values()])),
        "grid": float(np.mean([g for g in grid if g is not None])),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("candidates", nargs="+", metavar="NAME=CHECKPOINT", help="the shipped model first")
    parser.add_argument("--manifest", type=Path, default=Path("runs/demo/prepared/brats2013/manifest.json"))
    parser.add_argument("--split", default="train", help="the subjects the candidates were trained on")
    parser.add_argument("--samples", type=int, default=2, help="renders (seeds) of each label map")
    parser.add_argument("-o", "--output", type=Path, default=None, help="also write the table here (Markdown)")
    args = parser.parse_args()
    manifest = Manifest.load(args.manifest)
    cases = manifest.cases([args.split])
    generators = {}
    for spec in args.candidates:
        name, _, path = spec.partition("=")
        if not path or name in generators:
            parser.error(f"{spec}: give NAME=CHECKPOINT with a new name")
        generators[name] = medsynth.load_generator(path)
    modalities = next(iter(generators.values())).modalities
    if any(g.modalities != modalities for g in generators.values()):
        parser.error("every candidate must make the same modalities")
    picked = [manifest.modalities.index(m) for m in modalities]
    spacing = tuple(manifest.meta["preprocess"]["spacing_mm"])
    results = {}
    for name, generator in generators.items():
        started = time.perf_counter()
        results[name] = measure(generator, cases, picked, args.samples, spacing)
        print(f"[select] {name}: {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)

    baseline = next(iter(results.values()))["within"]
    eligible = [n for n, r in results.items() if r["within"] >= baseline and r["grid"] <= GRID_LIMIT]
    pick = min(eligible, key=lambda n: results[n]["distance"]) if eligible else None
    names = list(results)
    lines = [
        "# Which generator to ship: measured on the training subjects",
        "",
        f"Regenerate: `.venv/bin/python {' '.join(['scripts/select_generator.py', *sys.argv[1:]])}` "
        f"(this run: {platform.processor() or platform.machine()}, medsynth {medsynth.__version__}, "
        f"{time.strftime('%Y-%m-%d')}). Subjects: the `{args.split}` split of `{args.manifest}` "
        f"({', '.join(c.case_id for c in cases)}), {args.samples} renders of each label map. "
        "The rule is in the script's docstring.",
        "",
        "| measure | " + " | ".join(names) + " |",
        "| --- |" + " --- |" * len(names),
    ]

    def row(label: str, cell) -> str:
        return f"| {label} | " + " | ".join(cell(results[n]) for n in names) + " |"

    def difference(key: str):
        return lambda r: (
            f"{r['differences'][key]:+.2f}" + ("" if abs(r["differences"][key]) <= TOLERANCE_SD else " **off**")
        )

    lines += [row(f"mean {key} (synthetic - real)", difference(key)) for key in results[names[0]]["differences"]]
    lines.append(row("classes within 0.25 SD", lambda r: f"{r['within']}/{len(r['differences'])}"))
    lines += [
        row(f"power {key} (synthetic / real)", lambda r, k=key: f"{r['power'][k]:.2f}")
        for key in results[names[0]]["power"]
    ]
    lines.append(row("texture distance", lambda r: f"{r['distance']:.3f}"))
    lines.append(row("grid index (real ~1.01)", lambda r: f"{r['grid']:.3f}"))
    lines += ["", f"Eligible: {', '.join(eligible) or 'none'}. Pick: **{pick or 'none'}**."]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        partial = args.output.with_name(args.output.name + ".partial")
        partial.write_text(text)
        partial.replace(args.output)


if __name__ == "__main__":
    main()
