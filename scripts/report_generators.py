"""Write reports/generators.md: the shipped generators on the held-out subjects' label maps.

    $ make demo && .venv/bin/python scripts/report_generators.py

For each validation subject of the bundled sample (never seen in training) both generators
synthesize from the subject's own label map; synthetic and real intensities are compared per
class and modality, SSIM/PSNR against the real scan, the diversity of 5 samples of one label
map (MS-SSIM between samples), and the time per case.

Every class mean is read against two references: the training subjects (what the model saw and
can learn) and the held-out subjects (what a new patient looks like). With two training subjects
these differ a lot, so the table also prints the real-vs-real gap |training - held out|: a
generator cannot be expected to land closer to a new patient than the patients it learned from.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import numpy as np
from scipy import ndimage

import medsynth
from medsynth.audit.realism import CaseArrays, c2st_with_baselines, texture_report
from medsynth.io import load_nifti
from medsynth.labels.sources import remove_tumor
from medsynth.manifest import Manifest
from medsynth.models.evaluate import class_intensities, latent_usage, pairwise_ms_ssim, ssim_psnr
from medsynth.viz import case_tiles, save_grid, tumor_center

TOLERANCE_SD = 0.25  # |synthetic - real| mean of a class, in units of the brain's intensity SD (z-scores)
# Tolerances, both in brain-SD units:
#   learned:  |synthetic - training subjects| <= TOLERANCE_SD
#   new patient: |synthetic - held out| <= |training - held out| + TOLERANCE_SD (the real-vs-real gap)
HANDWRITTEN = "## What looks wrong"
CLASSES = ("csf", "gm", "wm", "netc", "snfh", "et")


def save_previews(
    case_id: str,
    real: np.ndarray,
    synthetic: dict[str, np.ndarray],
    label_map: np.ndarray,
    modalities: list[str],
    figures: Path,
    half: int = 16,
    zoom: int = 4,
) -> None:
    """Real and every generator on the same label map, in the real scan's gray window: whole views, then crops.

    The crops (``2 * half`` voxels around the tumor's centre, each voxel drawn as ``zoom`` x ``zoom``
    pixels without interpolation) show what the whole views hide: the voxel grid, the enhancing
    rim around the necrotic core, the edema's texture.
    """
    windows = []
    for channel in real:
        values = channel[label_map > 0]
        windows.append(tuple(np.percentile(values, [0.5, 99.5])))
    center = tumor_center(label_map)
    box = tuple(
        slice(max(0, min(c - half, n - 2 * half)), max(0, min(c - half, n - 2 * half)) + 2 * half)
        for c, n in zip(center, label_map.shape, strict=True)
    )
    local = tuple(c - b.start for c, b in zip(center, box, strict=True))
    for suffix, crop, where, scale in (("", (slice(None),) * 3, center, 1), ("_tumor", box, local, zoom)):
        tiles, names = case_tiles(None, label_map[crop], center=where)[0], ["label map"]
        for i, modality in enumerate(modalities):
            for name, images in (("real", real), *synthetic.items()):
                tiles += case_tiles(images[i : i + 1][(slice(None), *crop)], None, center=where, windows=[windows[i]])[
                    0
                ]
                names.append(f"{name} {modality}")
        tiles = [np.repeat(np.repeat(t, scale, axis=0), scale, axis=1) for t in tiles]
        title = f"{case_id} (held out)" + (f": {2 * half}-voxel crops through the tumor" if suffix else "")
        save_grid(
            tiles, 3, figures / f"{case_id}{suffix}.png", title=title, row_names=names, scale=1.0 if suffix else 2.0
        )


def _cases(manifest: Manifest, splits: list[str], modalities: list[str]) -> list[CaseArrays]:
    picked = [manifest.modalities.index(m) for m in modalities]
    return [
        CaseArrays(
            case.case_id,
            np.stack([load_nifti(case.images[i])[0] for i in picked]),
            load_nifti(case.label, dtype=np.int64)[0],
            None if case.mask is None else load_nifti(case.mask)[0] > 0,
        )
        for case in manifest.cases(splits)
    ]


def _auc(run: dict | None, kind: str) -> str:
    if not run or run.get(kind, {}).get("auc") is None:
        return "n/a"
    low, high = run[kind]["ci95"]
    return f"{run[kind]['auc']:.2f} [{low:.2f}, {high:.2f}]"


def realism_section(generators: dict, manifest: Manifest, args: argparse.Namespace) -> list[str]:
    """C2ST (patch classifier) and texture of every generator on the label maps of all real subjects."""
    modalities = next(iter(generators.values())).modalities
    training = _cases(manifest, [args.train_split], modalities)
    held_out = _cases(manifest, [args.split], modalities)
    spacing = tuple(manifest.meta["preprocess"]["spacing_mm"])
    results, textures = {}, {}
    for index, (name, gen) in enumerate(generators.items()):
        synthetic = []
        for real in (*training, *held_out):
            for sample in range(args.c2st_samples):
                images = gen.synthesize(real.label_map, seed=100 + sample).images
                synthetic.append(CaseArrays(f"{real.case_id}_s{sample}", images, real.label_map, real.brain_mask))
        started = time.perf_counter()
        # Classifier seeds: the case-level interval covers which cases were drawn, not the classifier's own
        # training; two runs of one command (1 vs 2 threads) gave the GAN 0.94 and 0.83, so the report repeats it.
        runs = [
            c2st_with_baselines(
                training,
                held_out,
                synthetic,
                control_folds=args.control_folds if index == 0 and seed == 0 else 0,  # independent of G
                seed=seed,
                steps=args.c2st_steps,
            )
            for seed in range(args.c2st_repeats)
        ]
        results[name] = runs[0]
        results[name]["repeats"] = {
            kind: [r["test"][kind]["auc"] for r in runs if r["test"] and r["test"][kind]["auc"] is not None]
            for kind in ("all", "tumor", "healthy")
        }
        print(f"[report] {name}: C2ST x{args.c2st_repeats} in {time.perf_counter() - started:.0f} s", flush=True)
        textures[name] = texture_report(training, held_out, synthetic, spacing, modalities)
    first = results[next(iter(generators))]
    lines = [
        "",
        "## Realism: can a classifier tell synthetic from real? (C2ST)",
        "",
        f"A small 3D CNN (`medsynth.audit.realism.PatchClassifier`, {args.c2st_steps} steps) learns to tell 32^3 "
        f"patches of the {len(training)} training subjects from patches of half of the synthetic cases "
        f"({args.c2st_samples} samples of each real subject's label map, a seeded half), and is scored on the "
        f"{len(held_out)} held-out subjects vs the other half: ROC AUC with a case-level bootstrap 95% interval "
        "(0.5: indistinguishable). Tumor patches are centred on tumor voxels, healthy ones away from it. "
        "**Control**: the same test with real subjects on both sides (one subject per group, "
        f"{args.control_folds} random assignments): what patient differences alone give; with this few "
        "subjects it is not 0.5. **Floor**: every voxel drawn from its class's Gaussian (training statistics): "
        "what an obviously fake renderer gives. Each cell: AUC [95% interval] of classifier seed 0, then the range "
        f"and mean over {args.c2st_repeats} classifier seeds (its training varies more than the interval shows).",
        "",
        "| | all patches | tumor patches | healthy patches |",
        "| --- | --- | --- | --- |",
    ]
    for name, result in results.items():
        cells = []
        for kind in ("all", "tumor", "healthy"):
            aucs = result["repeats"][kind]
            spread = f" (seeds {min(aucs):.2f}-{max(aucs):.2f}, mean {np.mean(aucs):.2f})" if len(aucs) > 1 else ""
            cells.append(_auc(result["test"], kind) + spread)
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines.append(
        "| floor (Gaussian per class) | "
        + " | ".join(_auc(first["floor"], k) for k in ("all", "tumor", "healthy"))
        + " |"
    )
    if first["control"]:
        folds = first["control"]["folds"]
        cells = []
        for kind in ("all", "tumor", "healthy"):
            aucs = [f[kind]["auc"] for f in folds if f[kind]["auc"] is not None]
            cells.append(f"{min(aucs):.2f}-{max(aucs):.2f}" if aucs else "n/a")
        lines.append("| control (real vs real), range over folds | " + " | ".join(cells) + " |")
    notes = dict.fromkeys(n for r in results.values() for n in r["notes"] if not n.startswith("control not run"))
    lines += ["", *[f"- {note}" for note in notes]]
    lines += [
        "",
        "## Texture and the voxel grid",
        "",
        "Ratio synthetic / training subjects of the mean gradient magnitude and local SD (3x3x3) per class, and "
        "of the radially averaged power spectrum per wavelength band inside the brain; *held out* is the same "
        "ratio for the held-out subjects and *real spread* the range of one real subject against the other "
        "training subjects (a ratio inside it is as close as another patient). Grid index: mean over axes of "
        "the ratio of alternate voxel-to-voxel steps within a class (real scans ~1.0; a 2-voxel grid > 1.05).",
        "",
        "| measure | held out | real spread | " + " | ".join(generators) + " |",
        "| --- | --- | --- | " + " | ".join("---" for _ in generators) + " |",
    ]
    measures = textures[next(iter(generators))]["measures"]
    for key in measures:
        spread = measures[key]["real_spread"]
        cells = [
            "n/a" if measures[key]["held_out_ratio"] is None else f"{measures[key]['held_out_ratio']:.2f}",
            "n/a" if spread is None else f"{spread[0]:.2f}-{spread[1]:.2f}",
        ]
        for name in generators:
            ratio = textures[name]["measures"].get(key, {}).get("ratio")
            inside = spread is not None and ratio is not None and spread[0] <= ratio <= spread[1]
            cells.append("n/a" if ratio is None else f"{ratio:.2f}" + (" ✓" if inside else ""))
        lines.append(f"| {key} | " + " | ".join(cells) + " |")
    real_grid = textures[next(iter(generators))]["grid_index"]
    lines.append(
        f"| grid index (real {real_grid['real_range'][0]:.2f}-{real_grid['real_range'][1]:.2f}) | | | "
        + " | ".join(f"{textures[n]['grid_index']['synthetic_mean']:.2f}" for n in generators)
        + " |"
    )
    lines += ["", "✓: inside the real-vs-real spread."]
    return lines


def donor_fill_section(manifest: Manifest, split: str) -> list[str]:
    """What a donor anatomy's tumor site becomes (``remove_tumor``) vs the nearest-tissue fill used before."""
    lines = [
        "",
        "## A donor anatomy's tumor site, filled",
        "",
        "Share of CSF / GM / WM put in the tumor site of each training subject when its anatomy is used for new "
        "label maps (`--from`, `label_config.anatomies=real`): nearest non-tumor tissue (before) vs the mirrored "
        "place in the other hemisphere (`medsynth.labels.sources.remove_tumor`), beside the brain's composition.",
        "",
        "| subject | nearest tissue (before) | mirrored (now) | whole brain |",
        "| --- | --- | --- | --- |",
    ]
    for case in manifest.cases([split]):
        label_map, affine, _ = load_nifti(case.label, dtype=np.int16)
        tumor, brain = label_map >= 4, (label_map > 0) & (label_map < 4)
        _, nearest = ndimage.distance_transform_edt(tumor | (label_map == 0), return_indices=True)
        before = label_map[tuple(nearest)]
        now = remove_tumor(label_map, affine)
        cells = [
            " / ".join(f"{(values == k).mean():.2f}" for k in (1, 2, 3))
            for values in (before[tumor], now[tumor], label_map[brain])
        ]
        lines.append(f"| {case.case_id} | " + " | ".join(cells) + " |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--manifest", type=Path, default=Path("runs/demo/prepared/brats2013/manifest.json"))
    parser.add_argument("--split", default="validation")
    parser.add_argument("--train-split", default="train")
    parser.add_argument("--gan", type=Path, default=None)
    parser.add_argument("--vae", type=Path, default=None, help="a VAE checkpoint, or none (a report of GANs only)")
    parser.add_argument(
        "--compare",
        action="append",
        default=[],
        metavar="NAME=CHECKPOINT",
        help="another generator for the same tables (an experiment beside the shipped ones); repeatable",
    )
    parser.add_argument("--samples", type=int, default=5)
    parser.add_argument("--c2st-samples", type=int, default=2, help="synthetic cases per real label map in the C2ST")
    parser.add_argument("--c2st-steps", type=int, default=300, help="patch classifier training steps")
    parser.add_argument("--control-folds", type=int, default=3, help="real-vs-real control repeats of the C2ST")
    parser.add_argument("--c2st-repeats", type=int, default=3, help="classifier seeds of each generator's C2ST")
    parser.add_argument("-o", "--output", type=Path, default=Path("reports/generators.md"))
    args = parser.parse_args()
    generators = {"gan": medsynth.load_generator(args.gan or medsynth.pretrained("gan"))}
    if str(args.vae) != "none":  # --vae none: a report of one GAN (e.g. a FLAIR-only one) and its --compare
        generators["vae"] = medsynth.load_generator(args.vae or medsynth.pretrained("vae"))
    for spec in args.compare:
        name, _, path = spec.partition("=")
        if not path or name in generators:
            parser.error(f"--compare {spec}: give NAME=CHECKPOINT with a new name")
        generators[name] = medsynth.load_generator(path)
    manifest = Manifest.load(args.manifest)
    cases = manifest.cases([args.split])
    modalities = generators["gan"].modalities
    if any(g.modalities != modalities for g in generators.values()):
        parser.error("every generator of one report must make the same modalities; report the others separately")
    picked = [manifest.modalities.index(m) for m in modalities]  # the real images a generator's channels match
    pooled = {name: {m: {c: [] for c in CLASSES} for m in modalities} for name in ("train", "real", *generators)}
    for case in manifest.cases([args.train_split]):
        label_map, _, _ = load_nifti(case.label, dtype=np.int64)
        images = np.stack([load_nifti(case.images[i])[0] for i in picked])
        for modality, by_class in class_intensities(images, label_map, modalities).items():
            for cls, values in by_class.items():
                if cls in CLASSES:
                    pooled["train"][modality][cls].append(values)
    rows, diversity, latents, timing = [], {}, {}, {name: [] for name in generators}
    figures = args.output.parent / "generators"
    for case in cases:
        real = np.stack([load_nifti(case.images[i])[0] for i in picked])
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
            if gen.kind == "vae":
                latents.setdefault(name, []).append(latent_usage(gen, real, label_map))
            for i, modality in enumerate(modalities):
                ssim, psnr = ssim_psnr(real[i], synthetic[name][i])
                rows.append((case.case_id, name, modality, ssim, psnr))
        for name, images in (("real", real), *synthetic.items()):
            for modality, by_class in class_intensities(images, label_map, modalities).items():
                for cls, values in by_class.items():
                    if cls in CLASSES:
                        pooled[name][modality][cls].append(values)
        save_previews(case.case_id, real, synthetic, label_map, modalities, figures)

    lines = [
        "# Generators: quality on held-out subjects",
        "",
        f"Regenerate: `make demo && .venv/bin/python {' '.join(['scripts/report_generators.py', *sys.argv[1:]])}` "
        f"(this run: {platform.processor() or platform.machine()}, {__import__('os').cpu_count()} cores, "
        f"medsynth {medsynth.__version__}, {time.strftime('%Y-%m-%d')}).",
        "",
        f"Checkpoints: GAN `{args.gan or 'medsynth/pretrained/gan_cpu.pt'}`"
        + ("" if "vae" not in generators else f", VAE `{args.vae or 'medsynth/pretrained/vae_cpu.pt'}`")
        + " (see README for how the shipped ones were trained)"
        + "".join(f", {spec.replace('=', ' `', 1)}`" for spec in args.compare)
        + f"; modalities {', '.join(modalities)}; generation precision {generators['gan'].precision}. "
        f"Test subjects: the `{args.split}` split of `{args.manifest}` ({', '.join(c.case_id for c in cases)}), "
        f"label maps from `medsynth prepare`; training subjects: the `{args.train_split}` split. Intensities are "
        "z-scores inside the brain.",
        "",
        "## Intensity per class (mean ± sd, pooled over subjects)",
        "",
        "Two references: the training subjects (what the model saw) and the held-out subjects (new patients); "
        "*gap* = |training - held out| is the real-vs-real difference between patients. Each generator cell "
        f"gives the mean ± sd, then **L** if |synthetic - training| ≤ {TOLERANCE_SD} (learned what it saw) and "
        f"**P** if |synthetic - held out| ≤ gap + {TOLERANCE_SD} (as close to a new patient as the training "
        "patients are).",
        "",
        "| modality | class | real training | real held out | gap | " + " | ".join(generators) + " |",
        "| --- | --- | --- | --- | --- | " + " | ".join("---" for _ in generators) + " |",
    ]
    learned, patient, total = {n: 0 for n in generators}, {n: 0 for n in generators}, 0
    for modality in modalities:
        for cls in CLASSES:
            if not pooled["real"][modality][cls] or not pooled["train"][modality][cls]:
                continue
            real_values = np.concatenate(pooled["real"][modality][cls])
            train_values = np.concatenate(pooled["train"][modality][cls])
            gap = abs(train_values.mean() - real_values.mean())
            cells = [f"{v.mean():.2f} ± {v.std():.2f}" for v in (train_values, real_values)] + [f"{gap:.2f}"]
            total += 1
            for name in generators:
                values = np.concatenate(pooled[name][modality][cls])
                ok_l = abs(values.mean() - train_values.mean()) <= TOLERANCE_SD
                ok_p = abs(values.mean() - real_values.mean()) <= gap + TOLERANCE_SD
                learned[name] += ok_l
                patient[name] += ok_p
                flags = " ".join(f for f, ok in (("L", ok_l), ("P", ok_p)) if ok) or "**off**"
                cells.append(f"{values.mean():.2f} ± {values.std():.2f} {flags}")
            lines.append(f"| {modality} | {cls} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Classes within tolerance: "
        + "; ".join(f"{n} L {learned[n]}/{total}, P {patient[n]}/{total}" for n in generators)
        + ".",
        "",
    ]
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
        "## VAE latent: is it used? (encoder on the held-out scans)",
        "",
        "KL of the posterior in nats (near 0: posterior collapse, the decoder ignores the latent) and how far "
        "the posterior mean moves, in posterior SDs, when the input's contrast is multiplied by 1.2 inside the "
        "brain (near 0: the encoder is blind to global contrast).",
        "",
        "| model | KL (nats) | contrast response |",
        "| --- | --- | --- |",
    ]
    lines += [
        f"| {n} | {np.mean([u['kl_nats'] for u in v]):.3f} | {np.mean([u['contrast_response'] for u in v]):.3f} |"
        for n, v in latents.items()
    ]
    lines += [
        "",
        "## Time to synthesize one case (2 mm, 80x96x80, after warm-up)",
        "",
        "| model | seconds |",
        "| --- | --- |",
    ]
    lines += [f"| {n} | {np.mean(v):.3f} |" for n, v in timing.items()]
    lines += realism_section(generators, manifest, args)
    lines += donor_fill_section(manifest, args.train_split)
    lines += ["", "## Previews", ""]
    lines += [
        "Rows: real, then each generator, on the held-out subject's own label map, in the real scan's gray window; "
        "then crops through the tumor, one voxel drawn as a block (no interpolation).",
        "",
    ]
    lines += [
        f"![{c.case_id}](generators/{c.case_id}.png)\n![{c.case_id} tumor](generators/{c.case_id}_tumor.png)"
        for c in cases
    ]
    # The hand-written reading of the numbers (a section starting with HANDWRITTEN) survives regeneration.
    previous = args.output.read_text() if args.output.exists() else ""
    if HANDWRITTEN in previous:
        lines += ["", previous[previous.index(HANDWRITTEN) :].rstrip()]
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
