"""``medsynth demo``: the pipeline on the sample data bundled in the package.

    $ medsynth demo -o runs/demo

Builds and checks manifests of the bundled BraTS subjects and healthy anatomies, prepares
them at the CPU working resolution (2 mm, 80x96x80), writes previews, then makes new tumor
label maps (training tumors placed into healthy and patient anatomies, left/right balanced),
and turns them into two small synthetic cohorts (T1c + FLAIR, manifest, checksums, dataset
card) with the shipped GAN and VAE checkpoints, and ends with a small segmentation benchmark
(classical augmentation vs classical + GAN cases, tested on the two held-out subjects) and its table.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from medsynth.data.bundled import DATASETS, SAMPLE_DATA
from medsynth.data.config import PrepareConfig
from medsynth.data.manifest import build_manifest, check_manifest
from medsynth.data.prepare import run_prepare
from medsynth.errors import DataError
from medsynth.io import claim_output, read_json
from medsynth.manifest import Manifest

SEGMENTER_STEPS = 300  # per arm of the demo's benchmark (tests/test_demo.py lowers it: the wiring, not the Dice)


def sample_data_dir() -> Path:
    """Folder of the sample data shipped inside the package (see its README.md)."""
    return SAMPLE_DATA


# name -> (folder inside sample_data, layout)
SAMPLE_DATASETS = {name: (folder, layout) for name, (folder, layout, _) in DATASETS.items()}


def run_demo(output: str | Path, cache_dir: str | Path | None = None) -> dict[str, Path]:
    """Run the demo into ``output``; returns the manifest of each output (prepared datasets, labels)."""
    output = claim_output(output, "demo")
    prepared = {}
    for name, (folder, layout) in SAMPLE_DATASETS.items():
        started = time.perf_counter()
        manifest_path = output / "manifests" / f"{name}.json"
        build_manifest(sample_data_dir() / folder, manifest_path, layout=layout, name=name)
        problems = check_manifest(manifest_path)
        if problems:
            raise DataError(f"{manifest_path}: " + "; ".join(problems))
        target = output / "prepared" / name
        config = PrepareConfig(manifest=str(manifest_path), cache_dir=None if cache_dir is None else str(cache_dir))
        prepared[name] = run_prepare(config, target, progress=False)
        n_cases = len(Manifest.load(prepared[name]).cases())
        print(f"[demo] {name}: {n_cases} case(s) prepared in {time.perf_counter() - started:.1f} s -> {target}")
    print(f"[demo] previews: {output / 'prepared' / '*' / 'previews'}")

    from medsynth.labels import LabelsConfig, ReshapeSpec, run_labels

    started = time.perf_counter()
    labels = output / "labels"
    labels_config = LabelsConfig(
        sources=[str(prepared["brats2013"])],
        healthy=[str(prepared["synthseg"]), str(prepared["colin27"])],
        n=8,
        seed=0,
        reshape=ReshapeSpec(hemisphere={"left": 0.5, "right": 0.5}),
    )
    prepared["labels"] = run_labels(labels_config, labels, progress=False)
    print(f"[demo] labels: 8 new label maps in {time.perf_counter() - started:.1f} s -> {labels} (report.md)")
    import medsynth
    from medsynth.cohort.generate import GenerateConfig, run_generate

    for kind in ("gan", "vae"):
        started = time.perf_counter()
        cohort = output / f"cohort_{kind}"
        if cohort.exists():
            shutil.rmtree(cohort)
        config = GenerateConfig(checkpoint=str(medsynth.pretrained(kind)), labels=str(labels), seed=0)
        prepared[f"cohort_{kind}"] = run_generate(config, cohort, progress=False)
        print(f"[demo] {kind}: 8 synthetic cases in {time.perf_counter() - started:.1f} s -> {cohort} (README.md)")
    prepared["benchmark"] = _benchmark(output, prepared)
    return prepared


def _benchmark(output: Path, prepared: dict[str, Path]) -> Path:
    """A smoke-scale segmentation benchmark, tested on the held-out subjects: the arms practitioners run, real
    scans with classical augmentation vs the same + 50% GAN cases in every batch (issue #22).

    One seed and 300 steps show the machinery and the table, not an answer; the answer, cross-validated and on
    an external set, is ``bash scripts/benchmark_cv.sh`` (reports/benchmark_cpu.md).
    """
    from medsynth.benchmark import (
        ArmConfig,
        BenchmarkConfig,
        DataConfig,
        SegmenterConfig,
        SyntheticConfig,
        run_benchmark,
    )

    started = time.perf_counter()
    folder = output / "benchmark"
    if folder.exists():
        shutil.rmtree(folder)
    config = BenchmarkConfig(
        data=DataConfig(manifest=str(prepared["brats2013"]), test_splits=["validation"]),
        synthetic=SyntheticConfig(generators={"gan": str(output / "cohort_gan")}),
        segmenter=SegmenterConfig(patch_size=(48, 48, 48), steps=SEGMENTER_STEPS, lr=3e-3),
        arms=[
            ArmConfig("real_classical", classical=True),
            ArmConfig("classical_gan_50", classical=True, synthetic="gan", fraction=0.5),
        ],
        baseline="real_classical",
        seeds=[0],
    )
    report = run_benchmark(config, folder, progress=False)
    summary = read_json(report.parent / "results.json")["summary"]
    print(f"[demo] benchmark in {time.perf_counter() - started:.1f} s -> {folder} (report.md, benchmark.png)")
    print(
        f"[demo] Dice on the held-out subjects (1 seed, {SEGMENTER_STEPS} steps: a smoke test, "
        "see reports/benchmark_cpu.md):"
    )
    print(f"[demo]   {'arm':<16} {'WT':>6} {'TC':>6} {'ET':>6}")
    for arm, regions in summary.items():
        print(f"[demo]   {arm:<16} " + " ".join(f"{regions[r]['dice_mean']:>6.3f}" for r in ("WT", "TC", "ET")))
    return report.parent / "results.json"
