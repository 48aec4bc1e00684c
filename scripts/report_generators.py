"""Write reports/generators.md: the shipped generators on the held-out subjects' label maps.

    $ make demo && .venv/bin/python scripts/report_generators.py

For each validation subject of the bundled sample (never seen in training) both generators
synthesize from the subject's own label map; synthetic and real intensities are compared per
class and modality, SSIM/PSNR against the real scan, the diversity of 5 samples of one label
map (MS-SSIM between samples), and the time per case.
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import numpy as np

import medsynth
from medsynth.data.manifest import load_manifest, manifest_cases
from medsynth.io import load_nifti
from medsynth.models.evaluate import class_intensities, pairwise_ms_ssim, ssim_psnr
from medsynth.viz import case_tiles, save_grid, tumor_center

TOLERANCE_SD = 0.25  # |synthetic - real| mean of a class, in units of the brain's intensity SD (z-scores)
CLASSES = ("csf", "gm", "wm", "netc", "snfh", "et")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--manifest", type=Path, default=Path("runs/demo/prepared/brats2013/manifest.json"))
    parser.add_argument("--split", default="validation")
    parser.add_argument("--gan", type=Path, default=None)
    parser.add_argument("--vae", type=Path, default=None)
    parser.add_argument("--samples", type=int, default=5)
    parser.add_argument("-o", "--output", type=Path, default=Path("reports/generators.md"))
    args = parser.parse_args()
    generators = {
        "gan": medsynth.load_generator(args.gan or medsynth.pretrained("gan")),
        "vae": medsynth.load_generator(args.vae or medsynth.pretrained("vae")),
    }
    cases = manifest_cases(load_manifest(args.manifest), splits=(args.split,))
    modalities = generators["gan"].modalities
    pooled = {name: {m: {c: [] for c in CLASSES} for m in modalities} for name in ("real", *generators)}
    rows, diversity, timing = [], {}, {name: [] for name in generators}
    figures = args.output.parent / "generators"
    for case in cases:
        real = np.stack([load_nifti(p)[0] for p in case.images])
        label_map, _, _ = load_nifti(case.label, dtype=np.int64)
        synthetic = {}
        for name, gen in generators.items():
            gen.synthesize(label_map, seed=0)  # warm-up
            started = time.perf_counter()
            synthetic[name] = gen.synthesize(label_map, seed=0).images
            timing[name].append(time.perf_counter() - started)
            samples = [gen.synthesize(label_map, seed=s).images for s in range(args.samples)]
            brain = real[:, label_map > 0]
            diversity.setdefault(name, []).append(pairwise_ms_ssim(samples, float(brain.max() - brain.min())))
            for i, modality in enumerate(modalities):
                ssim, psnr = ssim_psnr(real[i], synthetic[name][i])
                rows.append((case.case_id, name, modality, ssim, psnr))
        for name, images in (("real", real), *synthetic.items()):
            for modality, by_class in class_intensities(images, label_map, modalities).items():
                for cls, values in by_class.items():
                    if cls in CLASSES:
                        pooled[name][modality][cls].append(values)
        center = tumor_center(label_map)
        tiles, names = case_tiles(None, label_map, center=center)[0], ["label map"]
        for i, modality in enumerate(modalities):
            for name, images in (("real", real), *synthetic.items()):
                tiles += case_tiles(images[i : i + 1], None, center=center)[0]
                names.append(f"{name} {modality}")
        save_grid(tiles, 3, figures / f"{case.case_id}.png", title=f"{case.case_id} (held out)", row_names=names)

    lines = [
        "# Generators: quality on held-out subjects",
        "",
        f"Regenerate: `make demo && .venv/bin/python scripts/report_generators.py` "
        f"(this run: {platform.processor() or platform.machine()}, {__import__('os').cpu_count()} cores, "
        f"medsynth {medsynth.__version__}, {time.strftime('%Y-%m-%d')}).",
        "",
        f"Checkpoints: the shipped `medsynth/pretrained/gan_cpu.pt` and `vae_cpu.pt` (see README for how they "
        f"were trained). Test subjects: the `{args.split}` split of `{args.manifest}` "
        f"({', '.join(c.case_id for c in cases)}), label maps from `medsynth prepare`; intensities are z-scores "
        "inside the brain.",
        "",
        f"## Intensity per class (mean ± sd, pooled over subjects); ok = |Δmean| ≤ {TOLERANCE_SD}",
        "",
        "| modality | class | real | " + " | ".join(generators) + " |",
        "| --- | --- | --- | " + " | ".join("---" for _ in generators) + " |",
    ]
    within, total = {n: 0 for n in generators}, 0
    for modality in modalities:
        for cls in CLASSES:
            if not pooled["real"][modality][cls]:
                continue
            real_values = np.concatenate(pooled["real"][modality][cls])
            cells = [f"{real_values.mean():.2f} ± {real_values.std():.2f}"]
            total += 1
            for name in generators:
                values = np.concatenate(pooled[name][modality][cls])
                ok = abs(values.mean() - real_values.mean()) <= TOLERANCE_SD
                within[name] += ok
                cells.append(f"{values.mean():.2f} ± {values.std():.2f} {'ok' if ok else '**off**'}")
            lines.append(f"| {modality} | {cls} | " + " | ".join(cells) + " |")
    lines += ["", "Classes within tolerance: " + ", ".join(f"{n} {within[n]}/{total}" for n in generators) + ".", ""]
    lines += [
        "## Similarity to the real scan of the same label map",
        "",
        "| case | model | modality | SSIM | PSNR (dB) |",
        "| --- | --- | --- | --- | --- |",
    ]
    lines += [f"| {c} | {n} | {m} | {s:.3f} | {p:.2f} |" for c, n, m, s, p in rows]
    lines += [
        "",
        f"## Diversity: MS-SSIM between {args.samples} samples of one label map (lower = more diverse)",
        "",
        "| model | mean over subjects |",
        "| --- | --- |",
    ]
    lines += [f"| {n} | {np.mean(v):.3f} |" for n, v in diversity.items()]
    lines += [
        "",
        "## Time to synthesize one case (2 mm, 80x96x80, after warm-up)",
        "",
        "| model | seconds |",
        "| --- | --- |",
    ]
    lines += [f"| {n} | {np.mean(v):.3f} |" for n, v in timing.items()]
    lines += ["", "## Previews", ""]
    lines += [f"![{c.case_id}](generators/{c.case_id}.png)" for c in cases]
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
