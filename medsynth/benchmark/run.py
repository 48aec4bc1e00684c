"""``medsynth benchmark``: the same segmenter trained per arm and seed, tested on held-out real scans.

    $ medsynth benchmark --config configs/benchmark_cpu.yaml -o runs/benchmark [--arms real,mixed_gan_50]

Output folder::

    config.yaml                      resolved config (all arms)
    synthetic/labels/                new label maps from the training subjects (shared by all generators)
    synthetic/cohort_<generator>/    one cohort per generator, on those label maps
    references/                      test subjects' reference labels, BraTS 2023 names and labels
    runs/<arm>/seed<k>/              model.pt, loss.csv, result.json (per-subject metrics, timings)
    predictions/<arm>/seed<k>/       BraTS-GLI-NNNNN-000.nii.gz on each subject's original grid
    results.csv / results.json / report.md / benchmark.png

**Held out.** The test subjects (``data.test_splits``) must be disjoint from the training
subjects; no generator may have been trained on a test subject (its checkpoint records its
training cases); no synthetic case may derive its anatomy or tumor from a test subject
(cohort and label-map provenance). Any violation stops the run with
:class:`~medsynth.loaders.LeakageError` before anything is trained.

**Resumable.** Each (arm, seed) writes ``result.json`` last, atomically, keyed by a hash of
everything that shapes it; a re-run skips finished pairs, and refuses a folder whose
finished pairs were made with another configuration.
"""

from __future__ import annotations

import hashlib
import json
import platform
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medsynth._version import __version__
from medsynth.benchmark.config import RENDERERS, ArmConfig, BenchmarkConfig
from medsynth.benchmark.report import write_outputs
from medsynth.config import save_config, to_dict
from medsynth.data.scheme import (
    CANONICAL_TO_BRATS2023,
    from_canonical,
    manifest_scheme,
    require_subregions,
    to_canonical_tumor,
)
from medsynth.errors import ConfigError, DataError, MedsynthError
from medsynth.geometry import to_original_space
from medsynth.io import atomic_path, claim_output, load_nifti, read_json, save_nifti, sha256, write_json
from medsynth.loaders import LeakageError, MixedDataset, label_map_items, load_transform, real_items, synthetic_items
from medsynth.manifest import Case, Manifest

BRATS_NAME = re.compile(r"^BraTS-[A-Z]+-\d{5}-\d{3}$")


@dataclass
class TestCase:
    case_id: str
    brats_name: str  # BraTS-GLI-NNNNN-000
    images: list[Path]  # prepared (working grid)
    prepared_affine: np.ndarray
    original_affine: np.ndarray
    original_shape: tuple[int, int, int]
    reference: Path  # references/<brats_name>-seg.nii.gz (BraTS 2023 labels, original grid)


def select_arms(config: BenchmarkConfig, names: list[str] | None) -> list[ArmConfig]:
    """The configured arms, or those named (in config order); unknown names are an error."""
    if not names:
        return list(config.arms)
    known = {arm.name for arm in config.arms}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ConfigError(f"--arms: unknown arm(s) {unknown}; the config has {sorted(known)}")
    return [arm for arm in config.arms if arm.name in names]


def _split_cases(config: BenchmarkConfig) -> tuple[dict[str, Any], list[Case], list[Case]]:
    path = Path(config.data.manifest)
    loaded = Manifest.load(path, kind="prepared")
    manifest = loaded.data
    require_subregions(
        manifest_scheme(loaded.meta),
        str(path),
        "the benchmark trains segmenters on and scores WT, TC and ET, which need the sub-regions",
    )
    train = [c for c in loaded.cases(config.data.train_splits) if c.images]
    test = [c for c in loaded.cases(config.data.test_splits) if c.images]
    if not train:
        raise DataError(f"{path}: no training cases in splits {config.data.train_splits}")
    if not test:
        raise DataError(f"{path}: no test cases in splits {config.data.test_splits}")
    overlap = sorted({c.case_id for c in train} & {c.case_id for c in test})
    if overlap:
        raise LeakageError(f"{path}: subject(s) {overlap} are in both the training and the test splits")
    return manifest, train, test


def _generator_source(spec: str) -> tuple[str, Path]:
    """("checkpoint" | "cohort", path) of a ``synthetic.generators`` entry."""
    import medsynth

    if spec.startswith("pretrained:"):
        return "checkpoint", medsynth.pretrained(spec.split(":", 1)[1])
    path = Path(spec)
    if path.is_dir() and (path / "manifest.json").is_file():
        return "cohort", path
    if path.is_file():
        return "checkpoint", path
    raise MedsynthError(f"synthetic.generators: {spec} is neither a checkpoint, a cohort folder nor pretrained:KIND")


def _training_cases(kind: str, path: Path) -> list[str]:
    from medsynth.models import checkpoint

    if kind == "checkpoint":
        training = checkpoint.load(path).get("training", {})
    else:
        training = read_json(path / "cohort_plan.json").get("generator", {}).get("training", {})
    if "cases" not in training:
        raise LeakageError(f"{path}: does not record the subjects its generator was trained on; cannot prove held-out")
    return list(training["cases"])


def check_held_out(config: BenchmarkConfig, test_ids: set[str], generators: list[str]) -> dict[str, list[str]]:
    """Refuse generators trained on a test subject; returns each generator's training cases."""
    trained_on = {}
    for name in generators:
        kind, path = _generator_source(config.synthetic.generators[name])
        cases = _training_cases(kind, path)
        leaked = sorted(set(cases) & test_ids)
        if leaked:
            raise LeakageError(
                f"generator {name!r} ({path}) was trained on test subject(s) {leaked}: its synthetic data would leak "
                "the test set into training. Train it without them, or test on other subjects."
            )
        trained_on[name] = cases
    return trained_on


def prepare_synthetic(
    config: BenchmarkConfig, output: Path, arms: list[ArmConfig], test_ids: set[str], channels: int, progress: bool
) -> dict[str, list[dict[str, Any]]]:
    """Label maps, one cohort per needed generator, and the items of every synthetic source (leak-checked)."""
    from medsynth.cohort.generate import generate_cohort
    from medsynth.labels.config import LabelsConfig
    from medsynth.labels.generate import run_labels

    needed = sorted({arm.synthetic for arm in arms if arm.synthetic})
    if not needed:
        return {}
    generators = [n for n in needed if n not in RENDERERS]
    check_held_out(config, test_ids, generators)
    splits = tuple(config.data.train_splits)
    labels = output / "synthetic" / "labels"
    kinds = [_generator_source(config.synthetic.generators[n])[0] for n in generators]
    needs_labels = "checkpoint" in kinds or any(n in RENDERERS for n in needed)
    if needs_labels and not (labels / "manifest.json").is_file():
        started = time.perf_counter()
        labels_config = LabelsConfig(
            sources=[config.data.manifest],
            healthy=list(config.data.healthy),
            n=config.synthetic.n_cases,
            seed=config.synthetic.seed,
            splits=list(splits),
            placement=config.synthetic.labels,
        )
        run_labels(labels_config, labels, progress=progress)
        print(f"[benchmark] {config.synthetic.n_cases} label maps in {time.perf_counter() - started:.1f} s -> {labels}")
    items = {}
    for name in needed:
        if name in RENDERERS:
            items[name] = label_map_items(labels, channels, test_ids, splits, source=name)
            continue
        kind, path = _generator_source(config.synthetic.generators[name])
        if kind == "checkpoint":
            cohort = output / "synthetic" / f"cohort_{name}"
            started = time.perf_counter()
            status = generate_cohort(path, cohort, labels=labels, seed=config.synthetic.seed, progress=progress)
            if status.written:
                print(
                    f"[benchmark] {name}: {status.written} cases in {time.perf_counter() - started:.1f} s -> {cohort}"
                )
            path = cohort
        items[name] = synthetic_items(path, held_out_subjects=test_ids, allowed_splits=splits)
        channel_counts = {len(item["image"]) for item in items[name]}
        if channel_counts != {channels}:
            raise DataError(
                f"{path}: synthetic cases have {sorted(channel_counts)} modalities, the real ones {channels}"
            )
    return items


def _brats_name(case_id: str, index: int) -> str:
    return case_id if BRATS_NAME.match(case_id) else f"BraTS-GLI-{index:05d}-000"


def write_references(manifest: dict[str, Any], cases: list[Case], output: Path) -> list[TestCase]:
    """The test subjects' original reference labels in BraTS 2023 labels and names (``references/``)."""
    meta = manifest["medsynth"]
    source_path = Path(meta.get("source_manifest", ""))
    if not source_path.is_file():
        raise DataError(
            f"{source_path}: the source manifest of {meta.get('path', 'the prepared manifest')} is missing; the "
            "benchmark scores predictions against the original label files it lists"
        )
    source_cases = {c.case_id: c for c in Manifest.load(source_path).cases()}
    scheme = meta["source_label_scheme"]
    folder = output / "references"
    tests = []
    for index, case in enumerate(sorted(cases, key=lambda c: c.case_id)):
        source = source_cases.get(case.case_id)
        if source is None or source.label is None:
            raise DataError(f"{source_path}: no label file for test subject {case.case_id}")
        name = _brats_name(case.case_id, index)
        path = folder / f"{name}-seg.nii.gz"
        original = case.record["original"]
        if not path.is_file():
            labels, affine, _ = load_nifti(source.label, dtype=np.int16)
            save_nifti(
                from_canonical(to_canonical_tumor(labels, scheme), CANONICAL_TO_BRATS2023), affine, path, dtype=np.uint8
            )
        _, prepared_affine, _ = load_nifti(case.label, dtype=np.int16)
        tests.append(
            TestCase(
                case_id=case.case_id,
                brats_name=name,
                images=list(case.images),
                prepared_affine=prepared_affine,
                original_affine=np.asarray(original["affine"], dtype=float),
                original_shape=tuple(int(s) for s in original["shape"]),
                reference=path,
            )
        )
    write_json({t.brats_name: t.case_id for t in tests}, folder / "names.json")
    return tests


def run_key(config: BenchmarkConfig, arm: ArmConfig, seed: int) -> str:
    """Hash of everything that shapes one (arm, seed) result."""
    parts = {name: to_dict(getattr(config, name)) for name in ("data", "synthetic", "segmenter")}
    parts |= {
        "arm": to_dict(arm),
        "seed": seed,
        "manifest_sha256": sha256(config.data.manifest),
        "medsynth": __version__,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def cpu_model() -> str:
    """The CPU's model name and its bf16/AMX flags (Linux), else what ``platform`` knows."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine()
    name = next((line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name")), "")
    flags = sorted({f for f in ("avx512f", "avx512_bf16", "amx_bf16") if f" {f}" in text})
    return f"{name or platform.machine()} ({', '.join(flags) or 'no AVX-512'})"


def _machine() -> dict[str, Any]:
    import os

    device = "cuda: " + torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    return {
        "platform": platform.platform(),
        "processor": cpu_model(),
        "cpu_threads": torch.get_num_threads(),
        "cpus": os.cpu_count(),
        "device": device,
        "torch": torch.__version__,
        "medsynth": __version__,
    }


def evaluate_run(
    model: torch.nn.Module, config: BenchmarkConfig, tests: list[TestCase], predictions: Path
) -> tuple[list[dict], float]:
    """Predict every test subject, write its BraTS NIfTI on the original grid, score it there."""
    from medsynth.benchmark.metrics import region_metrics
    from medsynth.benchmark.segmenter import predict, regions_to_labels

    rows = []
    started = time.perf_counter()
    predictions.mkdir(parents=True, exist_ok=True)
    for test in tests:
        image = np.stack([load_nifti(p)[0] for p in test.images])
        probabilities = predict(model, image, config.segmenter)
        original = to_original_space(
            probabilities, test.prepared_affine, test.original_affine, test.original_shape, mode="bilinear"
        )
        seg = regions_to_labels(original)
        save_nifti(seg, test.original_affine, predictions / f"{test.brats_name}.nii.gz", dtype=np.uint8)
        reference, _, _ = load_nifti(test.reference, dtype=np.uint8)
        spacing = np.sqrt((test.original_affine[:3, :3] ** 2).sum(0))
        for region, values in region_metrics(seg, reference, spacing).items():
            rows.append({"case_id": test.case_id, "brats_name": test.brats_name, "region": region, **values})
    return rows, time.perf_counter() - started


def run_benchmark(
    config: BenchmarkConfig, output: str | Path, arms: list[str] | None = None, progress: bool = True
) -> Path:
    """Run (or resume) the benchmark into ``output``; returns the path of ``report.md``.

    The numbers behind it are in ``results.json`` beside it (``summary``, ``rows``, ``timings``,
    ``provenance``); the resolved config is ``config.yaml``.

    Args:
        config: data, synthetic sources, segmenter, arms, seeds and the baseline arm.
        output: the results folder; finished (arm, seed) runs in it are skipped.
        arms: names of the arms to run now (default: all of ``config.arms``).
        progress: show progress bars.

    >>> from medsynth.config import load_config
    >>> config = load_config(BenchmarkConfig, "configs/benchmark_cpu.yaml")  # doctest: +SKIP
    >>> report = run_benchmark(config, "runs/benchmark", arms=["real"])  # doctest: +SKIP
    >>> read_json(report.parent / "results.json")["summary"]["real"]["WT"]["dice_mean"]  # doctest: +SKIP
    0.81
    """
    from medsynth.benchmark.segmenter import train_segmenter, train_transform

    output = Path(output)
    selected = select_arms(config, arms)
    manifest, train_cases, test_cases = _split_cases(config)
    test_ids = {c.case_id for c in test_cases}
    channels = len(train_cases[0].images)
    claim_output(output, "benchmark", inputs=[config.data.manifest])
    save_config(config, output / "config.yaml")
    synthetic = prepare_synthetic(config, output, selected, test_ids, channels, progress)
    tests = write_references(manifest, test_cases, output)
    real = real_items(config.data.manifest, config.data.train_splits)
    pairs = [(arm, seed) for arm in selected for seed in config.seeds]
    print(
        f"[benchmark] {len(selected)} arm(s) x {len(config.seeds)} seed(s); train {len(real)} real subject(s), "
        f"test {len(tests)}: {', '.join(t.case_id for t in tests)}"
    )
    for number, (arm, seed) in enumerate(pairs, start=1):
        folder = output / "runs" / arm.name / f"seed{seed}"
        key = run_key(config, arm, seed)
        result_path = folder / "result.json"
        if result_path.is_file():
            previous = read_json(result_path)
            if previous.get("key") != key:
                raise MedsynthError(
                    f"{result_path}: made with another configuration; use a new output folder, or delete "
                    f"{folder} to redo it"
                )
            print(f"[benchmark] {number}/{len(pairs)} {arm.name} seed {seed}: done before, skipped")
            continue
        dataset = MixedDataset(
            real if arm.real else [],
            synthetic.get(arm.synthetic, []),
            transform=load_transform(),
            random_transform=train_transform(arm, config.segmenter),
            cache="memory",
        )
        with atomic_path(folder) as tmp:
            tmp.mkdir(parents=True)
            model, timings = train_segmenter(
                dataset,
                arm.fraction,
                config.segmenter,
                seed,
                log_path=tmp / "loss.csv",
                progress=progress,
                description=f"{arm.name} seed {seed}",
            )
            torch.save(model.state_dict(), tmp / "model.pt")
            rows, seconds = evaluate_run(model, config, tests, output / "predictions" / arm.name / f"seed{seed}")
            timings["predict_seconds"] = round(seconds, 2)
            result = {
                "key": key,
                "arm": to_dict(arm),
                "seed": seed,
                "n_real": dataset.n_real,
                "n_synthetic": dataset.n_synthetic,
                "timings": timings,
                "metrics": rows,
                "machine": _machine(),
            }
            write_json(result, tmp / "result.json")
        means = {r: np.mean([m["dice"] for m in rows if m["region"] == r]) for r in ("WT", "TC", "ET")}
        print(
            f"[benchmark] {number}/{len(pairs)} {arm.name} seed {seed}: Dice "
            + " ".join(f"{r} {v:.3f}" for r, v in means.items())
            + f" ({timings['train_seconds']:.0f} s training, {timings['predict_seconds']:.0f} s testing)"
        )
    return write_outputs(config, output, load_results(config, output), _machine())


def load_results(config: BenchmarkConfig, output: Path) -> list[dict[str, Any]]:
    """Every finished (arm, seed) result of ``config`` in ``output``."""
    results = []
    for arm in config.arms:
        for seed in config.seeds:
            path = output / "runs" / arm.name / f"seed{seed}" / "result.json"
            if path.is_file():
                result = read_json(path)
                if result.get("key") == run_key(config, arm, seed):
                    results.append(result)
    return results
