"""``medsynth benchmark``: the same segmenter trained per (fold, arm, seed), tested on held-out real scans.

    $ medsynth benchmark --config configs/benchmark_cpu.yaml -o runs/benchmark [--arms real,mixed_gan_50]
    $ medsynth benchmark --config configs/benchmark_cv.yaml -o runs/cv --shard 0/2   # and --shard 1/2 beside it
    $ medsynth benchmark report runs/cv                                              # merge what is finished
    $ medsynth benchmark evaluate runs/cv --test prepared/other/manifest.json -o runs/cv_other

Output folder::

    config.yaml                          resolved config (all arms)
    folds/fold<k>/manifest.json          with ``folds``: the fold as a prepared manifest (train / test subjects)
    [folds/fold<k>/]synthetic/labels/    new label maps from the (fold's) training subjects
    [folds/fold<k>/]synthetic/cohort_<g> one cohort per generator, on those label maps
    references/[external/]               test subjects' reference labels, BraTS 2023 names and labels
    runs/[fold<k>/]<arm>/seed<s>/        model.pt, loss.csv, result.json (per-subject metrics, timings)
    predictions/[external/][fold<k>/]<arm>/seed<s>/   BraTS-GLI-NNNNN-000.nii.gz on each subject's original grid
    results.csv / results.json / report.md / benchmark.png / forest_<test>.png

**Cross-validation** (``folds``): the subjects of ``data.train_splits`` + ``data.test_splits``
are dealt into folds by subject; each fold trains every arm on its training subjects and tests
on its own. With ``data.external``, every segmenter is also tested on that external set.

**Held out, per fold.** A fold's test subjects never reach its training data: the real items,
the new label maps and the cohorts are made from the fold manifest's ``train`` split only (their
provenance is checked again when loaded), and no generator may have been trained on a fold's test
subject -- by case id or by label-map content (checkpoints record both). Any violation stops the
run with :class:`~medsynth.loaders.LeakageError` before anything is trained.

**Resumable, shardable.** Each (fold, arm, seed) unit writes ``result.json`` last, atomically,
keyed by a hash of everything that shapes it; a re-run skips finished units, and refuses a folder
whose finished units were made with another configuration. ``--shard i/n`` runs every n-th unit of
the sorted list, starting at i; shards may run at once in one folder (a fold's shared synthetic
data are made under a lock), and ``medsynth benchmark report`` merges whatever is finished.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import platform
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medsynth._version import __version__
from medsynth.benchmark.config import RENDERERS, ArmConfig, BenchmarkConfig
from medsynth.benchmark.folds import Fold, check_generator, label_digests, make_folds, write_fold_manifest
from medsynth.benchmark.report import write_outputs
from medsynth.config import save_config, to_dict
from medsynth.data.scheme import (
    CANONICAL_TO_BRATS2023,
    TUMOR,
    from_canonical,
    has_subregions,
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
ALL_REGIONS = ("WT", "TC", "ET")
# a whole-tumor-only reference is written as BraTS 2023 label 2: WT = {1, 2, 3} holds it, and TC/ET are not scored
WT_ONLY_TO_BRATS2023 = {TUMOR: 2}


@dataclass
class TestCase:
    case_id: str
    brats_name: str  # BraTS-GLI-NNNNN-000
    images: list[Path]  # prepared (working grid), the segmenter's input modalities
    prepared_affine: np.ndarray
    original_affine: np.ndarray
    original_shape: tuple[int, int, int]
    reference: Path  # references/<brats_name>-seg.nii.gz (BraTS 2023 labels, original grid)
    regions: tuple[str, ...] = ALL_REGIONS  # WT only for whole-tumor-only references
    test: str = "in_domain"  # in_domain | external


@dataclass(frozen=True, eq=False)  # identity: units are keys of the run's bookkeeping
class Unit:
    """One (fold, arm, seed) training run: one folder, one result."""

    fold: Fold
    arm: ArmConfig
    seed: int

    @property
    def name(self) -> str:
        return "/".join(p for p in (self.fold.name, self.arm.name, f"seed{self.seed}") if p)

    @property
    def folder(self) -> Path:
        return Path("runs", self.name)


def select_arms(config: BenchmarkConfig, names: list[str] | None) -> list[ArmConfig]:
    """The configured arms, or those named (in config order); unknown names are an error."""
    if not names:
        return list(config.arms)
    known = {arm.name for arm in config.arms}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ConfigError(f"--arms: unknown arm(s) {unknown}; the config has {sorted(known)}")
    return [arm for arm in config.arms if arm.name in names]


def select_folds(config: BenchmarkConfig, folds: list[Fold], numbers: list[int] | None) -> list[Fold]:
    """The folds numbered in ``numbers`` (all when None); numbers without cross-validation or out of range: an error."""
    if numbers is None:
        return folds
    if not config.folds.enabled:
        raise ConfigError("--folds: this config has no cross-validation (folds.k is 0 and folds.test is empty)")
    unknown = sorted(set(numbers) - {fold.index for fold in folds})
    if unknown:
        raise ConfigError(f"--folds: no fold(s) {unknown}; this config has folds 0-{len(folds) - 1}")
    return [fold for fold in folds if fold.index in numbers]


def parse_folds(text: str | None) -> list[int] | None:
    """``"0,2"`` -> ``[0, 2]``; None or empty -> None (all folds).

    >>> parse_folds("0,2"), parse_folds(None)
    ([0, 2], None)
    """
    if not text:
        return None
    words = [w.strip() for w in text.split(",") if w.strip()]
    if not words or not all(w.isdigit() for w in words):
        raise ConfigError(f"--folds: expected comma-separated fold numbers such as 0,2, got {text!r}")
    return sorted({int(w) for w in words})


def parse_shard(text: str | None) -> tuple[int, int]:
    """``"i/n"`` -> ``(i, n)`` with ``0 <= i < n`` (as ``medsynth generate --shard``); None -> ``(0, 1)``.

    >>> parse_shard("1/3"), parse_shard(None)
    ((1, 3), (0, 1))
    """
    if not text:
        return 0, 1
    index, sep, count = text.partition("/")
    if not sep or not index.isdigit() or not count.isdigit() or not 0 <= int(index) < int(count):
        raise ConfigError(f"--shard: expected i/n with 0 <= i < n, got {text!r}")
    return int(index), int(count)


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


def all_folds(config: BenchmarkConfig, train: list[Case], test: list[Case]) -> list[Fold]:
    """The folds of ``config.folds`` over all subjects, or the one configured train/test split."""
    if not config.folds.enabled:
        return [Fold(None, sorted(c.case_id for c in train), sorted(c.case_id for c in test))]
    return make_folds([c.case_id for c in [*train, *test]], config.folds)


def all_units(config: BenchmarkConfig, folds: list[Fold], arms: list[ArmConfig]) -> list[Unit]:
    """Every (fold, arm, seed) unit, sorted by fold, then arm (config order), then seed: the list shards cut."""
    return [Unit(fold, arm, seed) for fold in folds for arm in arms for seed in config.seeds]


def channel_indices(available: list[str], wanted: list[str], where: str) -> list[int]:
    """Positions of the ``wanted`` modalities (all when empty) among ``available``, refused by name when missing."""
    if not wanted:
        return list(range(len(available)))
    missing = [m for m in wanted if m not in available]
    if missing:
        raise DataError(f"{where}: no modality {missing} (it has {available}); data.modalities names the inputs")
    return [available.index(m) for m in wanted]


def _select(items: list[dict[str, Any]], indices: list[int]) -> list[dict[str, Any]]:
    return [item | {"image": [item["image"][i] for i in indices]} for item in items]


def _generator_source(spec: str, fold: Fold) -> tuple[str, Path]:
    """("checkpoint" | "cohort", path) of a ``synthetic.generators`` entry, ``{fold}`` filled in."""
    import medsynth

    if spec.startswith("pretrained:"):
        return "checkpoint", medsynth.pretrained(spec.split(":", 1)[1])
    hint = ""
    if "{fold}" in spec:
        if fold.index is None:
            raise ConfigError(f"synthetic.generators: {spec} has {{fold}} but folds are not set")
        spec = spec.replace("{fold}", str(fold.index))
        hint = f" (train it on folds/{fold.name}/manifest.json of the output folder, split train)"
    path = Path(spec)
    if path.is_dir() and (path / "manifest.json").is_file():
        return "cohort", path
    if path.is_file():
        return "checkpoint", path
    raise MedsynthError(
        f"synthetic.generators: {spec} is neither a checkpoint, a cohort folder nor pretrained:KIND{hint}"
    )


def _training_record(kind: str, path: Path) -> dict[str, Any]:
    from medsynth.models import checkpoint

    if kind == "checkpoint":
        return checkpoint.load(path).get("training", {})
    return read_json(path / "cohort_plan.json").get("generator", {}).get("training", {})


def check_held_out(config: BenchmarkConfig, fold: Fold, tests: dict[str, str], generators: list[str]) -> None:
    """Refuse any generator of ``fold`` trained on one of its test subjects (``tests``: case id -> label digest)."""
    for name in generators:
        kind, path = _generator_source(config.synthetic.generators[name], fold)
        check_generator(name, path, _training_record(kind, path), tests, fold)


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """Exclusive lock on ``folder`` (shards of one run preparing the same fold wait for each other)."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@dataclass
class FoldData:
    real: list[dict[str, Any]]
    synthetic: dict[str, list[dict[str, Any]]]
    tests: list[TestCase]
    prepare_seconds: dict[str, float]


def prepare_synthetic(
    config: BenchmarkConfig,
    fold: Fold,
    manifest: Path,
    splits: list[str],
    workspace: Path,
    arms: list[ArmConfig],
    modalities: list[str],
    progress: bool,
) -> tuple[dict[str, list[dict[str, Any]]], dict[str, float]]:
    """Label maps from the fold's training subjects, one cohort per needed generator, every source's items.

    Items are leak-checked again on loading (their provenance must name training subjects only) and
    reduced to the segmenter's ``modalities``. Returns the items and the seconds each part took.
    """
    from medsynth.cohort.generate import generate_cohort
    from medsynth.labels.config import LabelsConfig
    from medsynth.labels.generate import run_labels

    needed = sorted({arm.synthetic for arm in arms if arm.synthetic})
    seconds: dict[str, float] = {}
    if not needed:
        return {}, seconds
    held_out = set(fold.test)
    labels = workspace / "synthetic" / "labels"
    kinds = {n: _generator_source(config.synthetic.generators[n], fold)[0] for n in needed if n not in RENDERERS}
    needs_labels = "checkpoint" in kinds.values() or any(n in RENDERERS for n in needed)
    if needs_labels and not (labels / "manifest.json").is_file():
        started = time.perf_counter()
        labels_config = LabelsConfig(
            sources=[str(manifest)],
            healthy=list(config.data.healthy),
            n=config.synthetic.n_cases,
            seed=config.synthetic.seed,
            splits=list(splits),
            placement=config.synthetic.labels,
        )
        run_labels(labels_config, labels, progress=progress)
        seconds["labels"] = round(time.perf_counter() - started, 2)
        print(f"[benchmark] {config.synthetic.n_cases} label maps in {seconds['labels']:.1f} s -> {labels}")
    items = {}
    for name in needed:
        if name in RENDERERS:
            items[name] = label_map_items(labels, len(modalities), held_out, splits, source=name)
            continue
        kind, path = _generator_source(config.synthetic.generators[name], fold)
        if kind == "checkpoint":
            cohort = workspace / "synthetic" / f"cohort_{name}"
            started = time.perf_counter()
            status = generate_cohort(path, cohort, labels=labels, seed=config.synthetic.seed, progress=progress)
            if status.written:
                seconds[f"cohort_{name}"] = round(time.perf_counter() - started, 2)
                print(f"[benchmark] {name}: {status.written} cases in {seconds[f'cohort_{name}']:.1f} s -> {cohort}")
            path = cohort
        available = Manifest.load(path, kind="cohort").modalities
        indices = channel_indices(available, modalities, str(path))
        items[name] = _select(synthetic_items(path, held_out_subjects=held_out, allowed_splits=splits), indices)
    return items, seconds


def _brats_name(case_id: str, index: int) -> str:
    return case_id if BRATS_NAME.match(case_id) else f"BraTS-GLI-{index:05d}-000"


def brats_names(case_ids: list[str]) -> dict[str, str]:
    """BraTS 2023 names of test subjects, numbered over all of them (so folds never share a name)."""
    return {case_id: _brats_name(case_id, index) for index, case_id in enumerate(sorted(case_ids))}


def write_references(
    manifest: Manifest, cases: list[Case], folder: Path, names: dict[str, str], indices: list[int], test: str
) -> list[TestCase]:
    """The test subjects' original reference labels in BraTS 2023 labels and names, in ``folder``.

    Whole-tumor-only references (scheme ``wt``) are scored on WT only: their TC and ET are unknown,
    so they get no TC/ET metrics at all rather than a misleading 0 or 1.
    """
    meta = manifest.meta
    source_path = Path(meta.get("source_manifest", ""))
    if not source_path.is_file():
        raise DataError(
            f"{source_path}: the source manifest of {meta.get('path', 'the prepared manifest')} is missing; the "
            "benchmark scores predictions against the original label files it lists"
        )
    source_cases = {c.case_id: c for c in Manifest.load(source_path).cases()}
    scheme = meta["source_label_scheme"]
    subregions = has_subregions(scheme)
    mapping = CANONICAL_TO_BRATS2023 if subregions else WT_ONLY_TO_BRATS2023
    tests = []
    for case in sorted(cases, key=lambda c: c.case_id):
        source = source_cases.get(case.case_id)
        if source is None or source.label is None:
            raise DataError(f"{source_path}: no label file for test subject {case.case_id}")
        name = names[case.case_id]
        path = folder / f"{name}-seg.nii.gz"
        original = case.record["original"]
        if not path.is_file():
            labels, affine, _ = load_nifti(source.label, dtype=np.int16)
            save_nifti(from_canonical(to_canonical_tumor(labels, scheme), mapping), affine, path, dtype=np.uint8)
        _, prepared_affine, _ = load_nifti(case.label, dtype=np.int16)
        tests.append(
            TestCase(
                case_id=case.case_id,
                brats_name=name,
                images=[case.images[i] for i in indices],
                prepared_affine=prepared_affine,
                original_affine=np.asarray(original["affine"], dtype=float),
                original_shape=tuple(int(s) for s in original["shape"]),
                reference=path,
                regions=ALL_REGIONS if subregions else ("WT",),
                test=test,
            )
        )
    names_path = folder / "names.json"
    known = read_json(names_path) if names_path.is_file() else {}
    write_json(known | {t.brats_name: t.case_id for t in tests}, names_path)
    return tests


def test_set(
    path: str | Path, folder: Path, modalities: list[str], test: str, splits: list[str] | None = None
) -> list[TestCase]:
    """Every case (of ``splits``) of a prepared test manifest, references written to ``folder``."""
    loaded = Manifest.load(path, kind="prepared")
    cases = [c for c in loaded.cases(splits) if c.images]
    if not cases:
        raise DataError(f"{path}: no cases with images to test on")
    indices = channel_indices(loaded.modalities, modalities, str(path))
    return write_references(loaded, cases, folder, brats_names([c.case_id for c in cases]), indices, test)


def check_external(path: str | Path, subjects: dict[str, str]) -> None:
    """Refuse an external test subject that is one of the run's subjects (case id -> label digest), by id or content."""
    loaded = Manifest.load(path, kind="prepared")
    digests = set(subjects.values())
    for case_id, digest in sorted(label_digests([c for c in loaded.cases() if c.images]).items()):
        if case_id in subjects or digest in digests:
            raise LeakageError(f"{path}: external test subject {case_id!r} is one of the benchmark's own subjects")


def run_key(config: BenchmarkConfig, unit: Unit) -> str:
    """Hash of everything that shapes one (fold, arm, seed) result."""
    data = to_dict(config.data)
    for name in ("modalities", "external"):  # unset: the key of runs made before these fields existed
        if not data[name]:
            del data[name]
    # an arm without synthetic data does not depend on the synthetic settings: its finished units stay valid
    # when those change (a new generator, other label maps), and a variant run may reuse them
    sections = ("synthetic", "segmenter") if unit.arm.synthetic else ("segmenter",)
    parts: dict[str, Any] = {"data": data} | {n: to_dict(getattr(config, n)) for n in sections}
    parts |= {
        "arm": to_dict(unit.arm),
        "seed": unit.seed,
        "manifest_sha256": sha256(config.data.manifest),
        "medsynth": __version__,
    }
    if unit.fold.index is not None:
        parts["fold"] = {"index": unit.fold.index, "train": unit.fold.train, "test": unit.fold.test}
    if config.data.external:
        parts["external_sha256"] = sha256(config.data.external)
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
    """Predict every test subject, write its BraTS NIfTI on the original grid, score it there (its regions only)."""
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
            if region in test.regions:
                rows.append(
                    {
                        "test": test.test,
                        "case_id": test.case_id,
                        "brats_name": test.brats_name,
                        "region": region,
                        **values,
                    }
                )
    return rows, time.perf_counter() - started


def _write_fold(source: Manifest, cases: list[Case], fold: Fold, path: Path) -> None:
    """Write the fold's manifest unless it is there with the same subjects (folds changed: rewritten)."""
    with _locked(path.parent):
        if path.is_file():
            written = Manifest.load(path, kind="prepared")
            if [sorted(c.case_id for c in written.cases([s])) for s in ("train", "test")] == [fold.train, fold.test]:
                return
        write_fold_manifest(source, cases, fold, path)


def _prepare_fold(
    config: BenchmarkConfig,
    output: Path,
    fold: Fold,
    arms: list[ArmConfig],
    source: Manifest,
    names: dict[str, str],
    progress: bool,
) -> FoldData:
    """Fold manifest, references, real and synthetic items of one fold (under the fold's lock)."""
    indices = channel_indices(source.modalities, config.data.modalities, str(source.path))
    modalities = [source.modalities[i] for i in indices]
    if fold.index is None:
        workspace, manifest_path = output, Path(config.data.manifest)
        train_splits, test_splits = list(config.data.train_splits), list(config.data.test_splits)
    else:
        workspace = output / "folds" / fold.name
        manifest_path, train_splits, test_splits = workspace / "manifest.json", ["train"], ["test"]
    with _locked(workspace):
        fold_manifest = Manifest.load(manifest_path, kind="prepared")
        test_cases = [c for c in fold_manifest.cases(test_splits) if c.images]
        tests = write_references(fold_manifest, test_cases, output / "references", names, indices, "in_domain")
        real = _select(real_items(manifest_path, train_splits), indices)
        leaked = sorted({item["case_id"] for item in real} & set(fold.test))
        if leaked:  # the fold manifest is written from the folds; a mismatch means it was edited or is stale
            raise LeakageError(f"{manifest_path}: test subject(s) {leaked} are among the training items")
        synthetic, seconds = prepare_synthetic(
            config, fold, manifest_path, train_splits, workspace, arms, modalities, progress
        )
    return FoldData(real, synthetic, tests, seconds)


def run_benchmark(
    config: BenchmarkConfig,
    output: str | Path,
    arms: list[str] | None = None,
    progress: bool = True,
    shard: tuple[int, int] = (0, 1),
    folds: list[int] | None = None,
) -> Path:
    """Run (or resume) the benchmark's (fold, arm, seed) units into ``output``; returns the path of ``report.md``.

    The numbers behind it are in ``results.json`` beside it (``primary``, ``summary``, ``external``,
    ``rows``, ``timings``, ``provenance``); the resolved config is ``config.yaml``.

    Args:
        config: data, folds, synthetic sources, segmenter, arms, seeds, baseline and primary endpoint.
        output: the results folder; finished units in it are skipped.
        arms: names of the arms to run now (default: all of ``config.arms``).
        progress: show progress bars.
        shard: ``(i, n)``: run every n-th unit of the sorted unit list, starting at the i-th.
        folds: run only these folds' units (0-based; default: all), e.g. one job per fold as its
            per-fold generators arrive; ``shard`` then cuts that fold's list.

    >>> from medsynth.config import load_config
    >>> config = load_config(BenchmarkConfig, "configs/benchmark_cpu.yaml")  # doctest: +SKIP
    >>> report = run_benchmark(config, "runs/benchmark", arms=["real"])  # doctest: +SKIP
    >>> read_json(report.parent / "results.json")["summary"]["real"]["WT"]["dice_mean"]  # doctest: +SKIP
    0.81
    """
    from medsynth.benchmark.segmenter import train_segmenter, train_transform

    fold_numbers = folds  # the name `folds` is the selected Fold objects below
    output = Path(output)
    selected = select_arms(config, arms)
    _, train_cases, test_cases = _split_cases(config)
    source = Manifest.load(config.data.manifest, kind="prepared")
    all_of_them = all_folds(config, train_cases, test_cases)
    cases = [*train_cases, *test_cases]
    digests = label_digests(cases)
    folds = select_folds(config, all_of_them, fold_numbers)
    units = all_units(config, folds, selected)
    index, count = shard
    mine = units[index::count]
    keys = {unit: run_key(config, unit) for unit in mine}
    pending = []
    for unit in mine:
        path = output / unit.folder / "result.json"
        if path.is_file() and read_json(path).get("key") != keys[unit]:
            raise MedsynthError(
                f"{path}: made with another configuration; use a new output folder, or delete {path.parent} to redo it"
            )
        if not path.is_file():
            pending.append(unit)
    claim_output(output, "benchmark", inputs=[p for p in (config.data.manifest, config.data.external) if p])
    save_config(config, output / "config.yaml")
    if config.folds.enabled:  # first of all: per-fold generators are trained on these (configs/benchmark_cv.yaml)
        for fold in all_of_them:
            _write_fold(source, cases, fold, output / "folds" / fold.name / "manifest.json")
    # the held-out guarantee of every fold with work to do, before anything is made or trained
    for fold in folds:
        generators = sorted({u.arm.synthetic for u in pending if u.fold is fold and u.arm.synthetic} - set(RENDERERS))
        check_held_out(config, fold, {s: digests[s] for s in fold.test}, generators)
    names = brats_names([s for fold in all_of_them for s in fold.test])  # the same names whichever folds run
    modalities = [source.modalities[i] for i in channel_indices(source.modalities, config.data.modalities, "data")]
    external: list[TestCase] = []
    if config.data.external:
        check_external(config.data.external, digests)
        external = test_set(config.data.external, output / "references" / "external", modalities, "external")
    scope = f"shard {index}/{count}: " if count > 1 else ""
    print(
        f"[benchmark] {scope}{len(mine)} of {len(units)} unit(s) ({len(folds)} fold(s) x {len(selected)} arm(s) x "
        f"{len(config.seeds)} seed(s)), {len(mine) - len(pending)} done before"
        + (f"; external test: {len(external)} subject(s)" if external else "")
    )
    prepared: dict[int | None, FoldData] = {}
    for number, unit in enumerate(mine, start=1):
        fold, arm, seed = unit.fold, unit.arm, unit.seed
        folder = output / unit.folder
        if unit not in pending:
            print(f"[benchmark] {number}/{len(mine)} {unit.name}: done before, skipped")
            continue
        started = time.time()  # the fold's preparation counts in its first unit's span (report: schedules)
        if fold.index not in prepared:
            fold_arms = [a for a in selected if any(u.fold is fold and u.arm is a for u in pending)]
            prepared[fold.index] = _prepare_fold(config, output, fold, fold_arms, source, names, progress)
        data = prepared[fold.index]
        dataset = MixedDataset(
            data.real if arm.real else [],
            data.synthetic.get(arm.synthetic, []),
            transform=load_transform(),
            random_transform=train_transform(arm, config.segmenter),
            cache="memory",
        )
        predictions = Path("predictions", unit.name)
        with atomic_path(folder) as tmp:
            tmp.mkdir(parents=True)
            model, timings = train_segmenter(
                dataset,
                arm.fraction,
                config.segmenter,
                seed,
                log_path=tmp / "loss.csv",
                progress=progress,
                description=unit.name,
            )
            torch.save(model.state_dict(), tmp / "model.pt")
            rows, seconds = evaluate_run(model, config, data.tests, output / predictions)
            timings["predict_seconds"] = round(seconds, 2)
            if external:
                more, seconds = evaluate_run(model, config, external, output / "predictions" / "external" / unit.name)
                rows += more
                timings["external_seconds"] = round(seconds, 2)
            result = {
                "key": keys[unit],
                "fold": fold.index,
                "fold_train": fold.train,
                "fold_test": fold.test,
                "arm": to_dict(arm),
                "seed": seed,
                "modalities": modalities,
                "n_real": dataset.n_real,
                "n_synthetic": dataset.n_synthetic,
                "timings": timings,
                "prepare_seconds": data.prepare_seconds,
                "metrics": rows,
                "machine": _machine(),
                "process": {"pid": os.getpid(), "host": platform.node(), "shard": [index, count]},
                "started": round(started, 1),
                "finished": round(time.time(), 1),
            }
            data.prepare_seconds = {}  # counted once, with the fold's first unit
            write_json(result, tmp / "result.json")
        means = {
            r: np.mean([m["dice"] for m in rows if m["region"] == r and m["test"] == "in_domain"]) for r in ALL_REGIONS
        }
        print(
            f"[benchmark] {number}/{len(mine)} {unit.name}: Dice "
            + " ".join(f"{r} {v:.3f}" for r, v in means.items())
            + f" ({timings['train_seconds']:.0f} s training, {timings['predict_seconds']:.0f} s testing)"
        )
    return report_run(output, config)


def finished_units(config: BenchmarkConfig, output: Path) -> tuple[list[tuple[Unit, dict[str, Any]]], list[str]]:
    """Every finished unit of ``config`` in ``output`` with its result, and the names of the missing ones."""
    _, train_cases, test_cases = _split_cases(config)
    finished, missing = [], []
    for unit in all_units(config, all_folds(config, train_cases, test_cases), list(config.arms)):
        path = output / unit.folder / "result.json"
        result = read_json(path) if path.is_file() else None
        if result is None:
            missing.append(unit.name)
        elif result.get("key") != run_key(config, unit):  # never a report that silently drops finished work
            raise MedsynthError(
                f"{path}: made with another configuration or other inputs (the config, the prepared or external "
                "manifest, or medsynth changed since); report it with what made it, or delete "
                f"{path.parent} to redo it"
            )
        else:
            finished.append((unit, result))
    return finished, missing


def load_results(config: BenchmarkConfig, output: Path) -> tuple[list[dict[str, Any]], list[str]]:
    """Every finished unit's result of ``config`` in ``output``, and the names of the missing units."""
    finished, missing = finished_units(config, output)
    return [result for _, result in finished], missing


def report_run(output: str | Path, config: BenchmarkConfig | None = None) -> Path:
    """Merge the finished units of the run in ``output`` (all shards) into its report; returns ``report.md``.

    $ medsynth benchmark report runs/cv
    """
    from medsynth.benchmark.config import BenchmarkConfig
    from medsynth.config import load_config

    output = Path(output)
    if config is None:
        if not (output / "config.yaml").is_file():
            raise DataError(f"{output}: no config.yaml; not a benchmark run folder")
        config = load_config(BenchmarkConfig, output / "config.yaml")
    results, missing = load_results(config, output)
    if missing:
        shown = ", ".join(missing[:8]) + (f" and {len(missing) - 8} more" if len(missing) > 8 else "")
        print(f"[benchmark] {len(results)} unit(s) finished, {len(missing)} missing: {shown}")
    return write_outputs(config, output, results, _machine(), missing=missing)
