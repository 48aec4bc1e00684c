"""``medsynth audit``: fidelity, diversity, memorization and k-anonymity of a synthetic cohort.

    $ medsynth audit --real runs/demo/prepared/brats2013/manifest.json --synthetic runs/demo/cohort_vae -o audit

Real subjects of ``--train-split`` are the generator's training data; the other splits are
held-out subjects and give every figure its real-vs-real baseline. Writes ``report.md``,
``report.json`` and ``report.png``, each check with a verdict (:func:`verdicts`): PASS, WARN,
FAIL, NOT RUN or INFO. The verdicts are guides with stated rules, not proofs.
"""

from __future__ import annotations

import itertools
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import wasserstein_distance

from medsynth.audit.anonymity import case_tumor_stats, cohort_anonymity
from medsynth.audit.features import (
    FeatureNetwork,
    feature_fidelity,
    load_feature_network,
    save_feature_network,
    train_feature_network,
)
from medsynth.audit.privacy import auc_with_ci, augment, calibrate_threshold, nearest, similarity
from medsynth.data.manifest import AFFINE_TOLERANCE, Case, load_manifest, manifest_cases
from medsynth.data.scheme import CLASS_NAMES, TUMOR_CLASSES
from medsynth.errors import DataError, MedsynthError
from medsynth.io import atomic_output, atomic_path, load_nifti, write_json

CLASSES = ("csf", "gm", "wm", "netc", "snfh", "et")
SUBREGIONS = tuple(CLASS_NAMES[c] for c in TUMOR_CLASSES)
GROUPS = ("training", "held_out", "synthetic")

# Verdict rules (see `verdicts`); the floors keep a near-zero real-vs-real baseline from failing everything.
INTENSITY_FLOOR = 0.1  # Wasserstein distance of z-scored intensities below which two classes look alike
VOLUME_FLOOR_SHARE = 0.1  # tumor volume: Wasserstein floor as a share of the mean training volume
FRACTION_FLOOR = 0.05  # sub-region fractions: Wasserstein floor
FRECHET_RATIO_LIMIT = 1.5  # synthetic-vs-training Frechet distance, as a multiple of the held-out baseline
SSIM_MARGIN = 0.05  # synthetic mean pairwise SSIM may exceed the real one by this much
MEMBERSHIP_AUC_WARN = 0.8  # with fewer than MEMBERSHIP_MIN_SUBJECTS per group, an AUC this high is a warning sign
MEMBERSHIP_MIN_SUBJECTS = 10


def _load(
    case: Case, modalities: list[str] | None = None, grid: dict[str, Any] | None = None, source: Path | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Images (C, X, Y, Z), label map and affine of one manifest case, each file checked as it is read.

    Refused with a :class:`DataError` naming the file: an image count other than the modalities',
    images and label map on different grids (shape, or affine beyond ``AFFINE_TOLERANCE``), NaN
    or Inf values, label values outside the canonical scheme, an empty brain, or a grid (shape,
    voxel size) other than ``grid``'s, the first case loaded (``grid`` is filled from it when empty).
    """
    where = f"{source}: case {case.case_id}" if source else f"case {case.case_id}"
    if not case.images:
        raise DataError(f"{where}: no image files")
    if modalities is not None and len(case.images) != len(modalities):
        raise DataError(
            f"{where}: {len(case.images)} image file(s) for {len(modalities)} modalities ({', '.join(modalities)})"
        )
    if case.label is None:
        raise DataError(f"{where}: no label map (the audit reads each case's label map)")
    arrays: list[np.ndarray] = []
    reference: tuple[Path, tuple[int, ...], np.ndarray] | None = None
    for path in [*case.images, case.label]:
        role = "label map" if path == case.label else "image"
        array, affine, _ = load_nifti(path, dtype=None)
        if array.ndim != 3:
            raise DataError(f"{path}: expected a 3D {role}, got shape {array.shape}")
        if reference is None:
            reference = (path, array.shape, affine)
        elif array.shape != reference[1]:
            raise DataError(
                f"{path}: {role} shape {array.shape} differs from {reference[0].name} {reference[1]}; "
                "a case's images and label map must share one grid"
            )
        elif not np.allclose(affine, reference[2], atol=AFFINE_TOLERANCE):
            offset = float(np.abs(affine - reference[2]).max())
            raise DataError(
                f"{path}: {role} affine differs from {reference[0].name} by up to {offset:.4g} "
                f"(tolerance {AFFINE_TOLERANCE}); a case's images and label map must share one space"
            )
        if np.issubdtype(array.dtype, np.floating):
            bad = int(np.size(array) - np.count_nonzero(np.isfinite(array)))
            if bad:
                raise DataError(f"{path}: {bad} NaN or Inf voxel(s) in the {role}")
        arrays.append(array)
    label_path, label_array = case.label, arrays.pop()
    values = np.unique(label_array)
    if np.any(values != np.round(values)):
        raise DataError(f"{label_path}: label values are not integers")
    unknown = sorted(set(values.astype(np.int64).tolist()) - set(CLASS_NAMES))
    if unknown:
        raise DataError(
            f"{label_path}: label values {unknown} are not in the canonical scheme "
            f"({', '.join(f'{v} {n}' for v, n in CLASS_NAMES.items())}); audit prepared cases and cohorts"
        )
    label_map = label_array.astype(np.int64)
    brain = label_map > 0
    if not brain.any():
        raise DataError(f"{label_path}: empty brain (every voxel is background 0)")
    images = np.stack([a.astype(np.float32, copy=False) for a in arrays])
    for path, image in zip(case.images, images, strict=True):
        if not np.any(image[brain]):
            raise DataError(f"{path}: every voxel inside the brain of {label_path.name} is 0")
    affine = reference[2] if reference is not None else np.eye(4)
    if grid is not None:
        _check_grid(case.images[0], label_map.shape, affine, grid)
    return images, label_map, affine


def _check_grid(path: Path, shape: tuple[int, ...], affine: np.ndarray, grid: dict[str, Any]) -> None:
    """Every case of an audit on one grid: the checks compare volumes voxel by voxel."""
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    if not grid:
        grid.update(shape=shape, spacing=spacing, file=path)
        return
    hint = "real and synthetic cases must be prepared alike"
    if shape != grid["shape"]:
        raise DataError(f"{path}: grid {shape} differs from {grid['file']} {grid['shape']}; {hint}")
    if not np.allclose(spacing, grid["spacing"], atol=AFFINE_TOLERANCE):
        raise DataError(
            f"{path}: voxel size {_mm(spacing)} mm differs from {grid['file']} {_mm(grid['spacing'])} mm; {hint}"
        )


def _mm(spacing: np.ndarray) -> str:
    return "x".join(f"{v:.3g}" for v in spacing)


def _load_cases(
    cases: list[Case], modalities: list[str], grid: dict[str, Any], source: Path
) -> tuple[list[tuple[np.ndarray, np.ndarray]], list[dict[str, Any]]]:
    """(images, label map) of every case, and its tumor stats (volume, location, sub-region fractions)."""
    pairs, stats = [], []
    for case in cases:
        images, label_map, affine = _load(case, modalities, grid, source)
        pairs.append((images, label_map))
        stats.append({"case_id": case.case_id, **case_tumor_stats(label_map, affine)})
    return pairs, stats


def _canonical_manifest(path: Path) -> dict[str, Any]:
    """A loaded manifest whose label maps are in the canonical scheme (prepared data or a cohort)."""
    manifest = load_manifest(path)
    scheme = manifest["medsynth"].get("label_scheme", "canonical")
    if scheme != "canonical":
        raise DataError(
            f"{path}: label scheme {scheme!r}, not canonical; audit a prepared manifest (`medsynth prepare`) "
            "and a cohort made by `medsynth generate`"
        )
    return manifest


def _intensities(cases: list[tuple[np.ndarray, np.ndarray]], modalities: list[str]) -> dict[str, np.ndarray]:
    pooled: dict[str, list[np.ndarray]] = {}
    for images, label in cases:
        for index, modality in enumerate(modalities):
            for cls in CLASSES:
                values = images[index][label == {v: k for k, v in CLASS_NAMES.items()}[cls]]
                if values.size:
                    pooled.setdefault(f"{modality}/{cls}", []).append(values)
    return {k: np.concatenate(v) for k, v in pooled.items()}


def _pairwise_ssim(volumes: list[np.ndarray]) -> float | None:
    import torch
    from monai.metrics import SSIMMetric

    if len(volumes) < 2:
        return None
    data_range = float(max(v.max() - v.min() for v in volumes))
    metric = SSIMMetric(spatial_dims=3, data_range=data_range, win_size=7)
    scores = [
        float(metric(torch.as_tensor(a[c : c + 1])[None], torch.as_tensor(b[c : c + 1])[None]).mean())
        for a, b in itertools.combinations(volumes, 2)
        for c in range(a.shape[0])
    ]
    return float(np.mean(scores))


def audit(
    real_manifest: str | Path,
    cohort: str | Path,
    output: str | Path,
    train_split: str = "train",
    copies_per_scan: int = 5,
    generator: str | Path | None = None,
    seed: int = 0,
    features: str | Path | None = None,
    feature_steps: int = 200,
) -> dict[str, Any]:
    """Run every check; returns the JSON summary (also written to ``output``).

    ``features`` is the feature network of the Frechet/MMD and feature-distance checks (see
    ``medsynth.audit.features``); by default one is trained on the training subjects for
    ``feature_steps`` steps and saved as ``output/feature_network.pt``.

    All or nothing: the report, its plot and the feature network are written into a temporary
    folder renamed to ``output`` at the end (:func:`medsynth.io.atomic_output`), so a failed
    audit leaves no output and a previous audit in ``output`` stays until the new one is
    complete. ``output`` may be a folder an earlier audit wrote (it is replaced), never one
    holding other files or this audit's inputs. A ``features`` file inside ``output`` is read
    before the swap and kept in the new folder.
    """
    real_manifest, cohort, output = Path(real_manifest), Path(cohort), Path(output)
    real_meta = _canonical_manifest(real_manifest)
    cohort_manifest = cohort / "manifest.json"
    cohort_meta = _canonical_manifest(cohort_manifest)
    modalities = list(real_meta["medsynth"]["modalities"])
    if list(cohort_meta["medsynth"]["modalities"]) != modalities:
        raise DataError(
            f"{cohort_manifest}: modalities {cohort_meta['medsynth']['modalities']} differ from "
            f"{real_manifest}'s {modalities}"
        )
    real = [c for c in manifest_cases(real_meta) if c.images]
    training_cases = [c for c in real if c.split == train_split]
    held_out_cases = [c for c in real if c.split != train_split]
    synthetic_cases = manifest_cases(cohort_meta)
    if not training_cases:
        raise DataError(f"{real_manifest}: no {train_split!r} subjects with images (see --train-split)")
    if not synthetic_cases:
        raise DataError(f"{cohort_manifest}: no synthetic cases")
    inputs = [real_manifest, cohort, *(f for c in [*real, *synthetic_cases] for f in [*c.images, c.label] if f)]
    if generator is not None:
        inputs.append(Path(generator))
    with atomic_output(output, "audit", inputs=inputs) as folder:
        grid: dict[str, Any] = {}
        training, training_tumors = _load_cases(training_cases, modalities, grid, real_manifest)
        held_out, held_out_tumors = _load_cases(held_out_cases, modalities, grid, real_manifest)
        synthetic, synthetic_tumors = _load_cases(synthetic_cases, modalities, grid, cohort_manifest)
        summary = _checks(
            real_manifest,
            cohort,
            modalities,
            [c.case_id for c in training_cases],
            [c.case_id for c in held_out_cases],
            [c.case_id for c in synthetic_cases],
            (training, held_out, synthetic),
            (training_tumors, held_out_tumors, synthetic_tumors),
            _feature_network(features, training, feature_steps, seed, folder, output),
            generator,
            copies_per_scan,
            seed,
        )
        write_json(summary, folder / "report.json")
        _write_markdown(folder / "report.md", summary)
        _plot(folder / "report.png", summary)
    return summary


def _checks(
    real_manifest: Path,
    cohort: Path,
    modalities: list[str],
    training_ids: list[str],
    held_out_ids: list[str],
    synthetic_ids: list[str],
    volumes: tuple[list[tuple[np.ndarray, np.ndarray]], ...],
    tumors: tuple[list[dict[str, Any]], ...],
    network: FeatureNetwork,
    generator: str | Path | None,
    copies_per_scan: int,
    seed: int,
) -> dict[str, Any]:
    """Every check of the audit on loaded, validated cases: the summary written as report.json."""
    training, held_out, synthetic = volumes
    memorization = copy_check(
        [i for i, _ in training],
        training_ids,
        [i for i, _ in held_out],
        [(case_id, images) for case_id, (images, _) in zip(synthetic_ids, synthetic, strict=True)],
        copies_per_scan,
        seed,
    )
    memorization.update(
        _feature_neighbours(
            network, [i for i, _ in training], training_ids, [i for i, _ in held_out], [i for i, _ in synthetic]
        )
    )
    for case, distance in zip(memorization["cases"], memorization.pop("synthetic_feature_distance"), strict=True):
        case["feature_distance"] = distance
    learned = feature_fidelity(network, [i for i, _ in training], [i for i, _ in held_out], [i for i, _ in synthetic])

    # fidelity: per class/modality Wasserstein, synthetic vs training, with held-out vs training baseline
    train_values = _intensities(training, modalities)
    synth_values = _intensities(synthetic, modalities)
    held_values = _intensities(held_out, modalities) if held_out else {}
    fidelity = {
        key: {
            "synthetic_vs_training": round(float(wasserstein_distance(synth_values[key], train_values[key])), 4),
            "held_out_vs_training": round(float(wasserstein_distance(held_values[key], train_values[key])), 4)
            if key in held_values
            else None,
        }
        for key in sorted(train_values)
        if key in synth_values
    }
    diversity = {
        "synthetic_mean_ssim": _pairwise_ssim([i for i, _ in synthetic]),
        "real_mean_ssim": _pairwise_ssim([i for i, _ in training + held_out]),
    }
    membership = None
    if generator is not None and held_out:
        membership = _membership(generator, training, held_out, seed)

    summary = {
        "real_manifest": str(real_manifest.resolve()),
        "cohort": str(cohort.resolve()),
        "training_subjects": training_ids,
        "held_out_subjects": held_out_ids,
        "memorization": memorization,
        "fidelity_wasserstein": fidelity,
        "fidelity_features": learned,
        "fidelity_tumor": tumor_fidelity(*tumors),
        "diversity": diversity,
        "membership_inference": membership,
        "k_anonymity": _k_anonymity(cohort),
    }
    summary["verdicts"] = verdicts(summary)
    return summary


def _feature_network(features, training, steps: int, seed: int, folder: Path, output: Path) -> FeatureNetwork:
    """The loaded ``features``, or a network trained on ``training`` and saved into ``folder``.

    ``folder`` becomes ``output`` at the end: a ``features`` file inside ``output`` (the previous
    audit's network, or torchvision weights kept there) is read now, before the swap, and copied
    along so that it stays available and the report's reference to it stays true.
    """
    if features is not None:
        network = load_feature_network(features)
        text = str(features)
        path = Path(text.partition("=")[2] if text.startswith("torchvision:") else text)
        if path.is_file() and path.resolve().is_relative_to(output.resolve()):
            target = folder / path.resolve().relative_to(output.resolve())
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)
        return network
    network = train_feature_network(training, steps=steps, seed=seed)
    save_feature_network(network, folder / "feature_network.pt")
    return network


def _feature_neighbours(
    network: FeatureNetwork,
    training: list[np.ndarray],
    training_ids: list[str],
    held_out: list[np.ndarray],
    synthetic: list[np.ndarray],
) -> dict[str, Any]:
    """Euclidean distance of each case's feature descriptor to the nearest training subject's.

    A second, learned view of closeness beside NCC: a copy sits much nearer to its source
    than held-out subjects sit to any training subject.
    """
    reference = np.stack([network.describe(v) for v in training])

    def nearest_distance(volume: np.ndarray) -> float:
        return round(float(np.linalg.norm(reference - network.describe(volume), axis=1).min()), 4)

    augmented_rng = np.random.default_rng(0)
    return {
        "synthetic_feature_distance": [nearest_distance(v) for v in synthetic],
        "held_out_nearest_feature_distance": [nearest_distance(v) for v in held_out],
        "augmented_copy_feature_distance": [
            nearest_distance(augment(v, augmented_rng)) for v in training for _ in range(2)
        ],
        "feature_reference": training_ids,
    }


def copy_check(
    training: list[np.ndarray],
    training_ids: list[str],
    held_out: list[np.ndarray],
    synthetic: list[tuple[str, np.ndarray]],
    copies_per_scan: int = 5,
    seed: int = 0,
) -> dict[str, Any]:
    """Nearest training scan of every synthetic case and the calibrated copy verdict."""
    threshold, copy_scores = calibrate_threshold(training, copies_per_scan, seed=seed)
    cases = []
    for case_id, images in synthetic:
        index, score = nearest(images, training)
        cases.append(
            {
                "case_id": case_id,
                "nearest_training": training_ids[index],
                "ncc": round(score, 4),
                "flagged": bool(score >= threshold),
            }
        )
    held_out_scores = [nearest(images, training)[1] for images in held_out]
    flagged = [c["case_id"] for c in cases if c["flagged"]]
    return {
        "threshold_ncc": round(threshold, 4),
        "augmented_copy_ncc": [round(s, 4) for s in copy_scores],
        "held_out_nearest_ncc": [round(s, 4) for s in held_out_scores],
        "held_out_flag_rate": float(np.mean([s >= threshold for s in held_out_scores])) if held_out else None,
        "cases": cases,
        "flagged": flagged,
        "verdict": "FAIL: copies of training scans found" if flagged else "PASS: no synthetic case is a copy",
    }


def copy_check_cohort(
    real_manifest: str | Path, case_folders: list[Path], modalities: list[str], train_split: str = "train"
) -> dict[str, Any]:
    """The copy check of generated case folders against the training split of a prepared manifest.

    Every real and synthetic case is checked as in :func:`audit` (one grid, finite values,
    canonical labels, a brain), so a NaN case cannot slip past the gate unflagged.
    """
    real_manifest = Path(real_manifest)
    meta = _canonical_manifest(real_manifest)
    if list(meta["medsynth"]["modalities"]) != list(modalities):
        raise DataError(
            f"{real_manifest}: modalities {meta['medsynth']['modalities']} differ from the cohort's {modalities}"
        )
    real = [c for c in manifest_cases(meta) if c.images]
    grid: dict[str, Any] = {}
    training = [(c.case_id, _load(c, modalities, grid, real_manifest)[0]) for c in real if c.split == train_split]
    held_out = [_load(c, modalities, grid, real_manifest)[0] for c in real if c.split != train_split]
    if not training:
        raise DataError(f"{real_manifest}: no {train_split!r} subjects to check copies against")
    synthetic = []
    for folder in case_folders:
        case = Case(
            case_id=folder.name,
            split="synthetic",
            images=[folder / f"{folder.name}_{m}.nii.gz" for m in modalities],
            label=folder / f"{folder.name}_label_map.nii.gz",
            mask=None,
            record={},
        )
        synthetic.append((folder.name, _load(case, modalities, grid)[0]))
    return copy_check([i for _, i in training], [c for c, _ in training], held_out, synthetic)


def _membership(generator_path, training, held_out, seed: int) -> dict[str, Any]:
    """Score each real subject by how closely the generator reproduces it from its own label map.

    A model that memorized its training subjects reproduces them better than held-out ones;
    AUC 0.5 means no detectable membership signal.
    """
    import medsynth

    generator = medsynth.load_generator(generator_path)

    def score(images, label):
        return max(similarity(generator.synthesize(label, seed=seed + s).images, images) for s in range(3))

    positives = [score(i, lbl) for i, lbl in training]
    negatives = [score(i, lbl) for i, lbl in held_out]
    auc, (low, high) = auc_with_ci(positives, negatives, seed=seed)
    return {"training_scores": positives, "held_out_scores": negatives, "auc": auc, "ci95": [low, high]}


def _wasserstein_to_training(values: dict[str, np.ndarray]) -> dict[str, float | None]:
    return {
        f"{name}_vs_training": round(float(wasserstein_distance(values[name], values["training"])), 4)
        if len(values[name]) and len(values["training"])
        else None
        for name in ("synthetic", "held_out")
    }


def tumor_fidelity(
    training: list[dict[str, Any]], held_out: list[dict[str, Any]], synthetic: list[dict[str, Any]]
) -> dict[str, Any]:
    """Tumor volume, sub-region and location distributions of each group, with distances to training.

    Each list holds per-case :func:`~medsynth.labels.generate.tumor_stats` (plus ``case_id``).
    Tumor-free cases count as 0 ml and as location ``none``; sub-region fractions are over the
    cases with a tumor. Held-out vs training is the real-vs-real baseline.
    """
    groups = dict(zip(GROUPS, (training, held_out, synthetic), strict=True))
    volumes = {name: np.array([c["volume_ml"] for c in cases], dtype=float) for name, cases in groups.items()}
    volume: dict[str, Any] = {
        name: {
            "cases": len(v),
            "mean": round(float(v.mean()), 3),
            "min": round(float(v.min()), 3),
            "max": round(float(v.max()), 3),
        }
        if len(v)
        else None
        for name, v in volumes.items()
    }
    volume["wasserstein"] = _wasserstein_to_training(volumes)
    fractions = {}
    for subregion in SUBREGIONS:
        values = {
            name: np.array([c["fractions"][subregion] for c in cases if c["volume_ml"] > 0], dtype=float)
            for name, cases in groups.items()
        }
        fractions[subregion] = {name: round(float(v.mean()), 4) if len(v) else None for name, v in values.items()}
        fractions[subregion]["wasserstein"] = _wasserstein_to_training(values)
    location = {
        key: {name: dict(sorted(Counter(c[key] for c in cases).items())) for name, cases in groups.items()}
        for key in ("hemisphere", "region")
    }
    return {"volume_ml": volume, "subregion_fractions": fractions, "location": location, "cases": groups}


def _k_anonymity(cohort: str | Path, listed: int = 10) -> dict[str, Any]:
    """k of the cohort's descriptive attributes and its smallest groups, or why it is not available."""
    try:
        result = cohort_anonymity(cohort)
    except MedsynthError as error:
        return {"available": False, "reason": str(error)}
    smallest = [g for g in result["groups"] if g["count"] == result["k"]]
    return {
        "available": True,
        "k": result["k"],
        "cases": result["cases"],
        "groups": len(result["groups"]),
        "smallest_groups": smallest[:listed],
        "smallest_groups_total": len(smallest),
        "attributes": result["attributes"],
    }


def _within(distance: float | None, baseline: float | None, floor: float) -> bool | None:
    """Is ``distance`` as small as the real-vs-real ``baseline`` (or ``floor``, whichever is larger)?"""
    if distance is None:
        return None
    return distance <= max(baseline or 0.0, floor)


def verdicts(s: dict[str, Any]) -> dict[str, dict[str, str]]:
    """One verdict and its basis per check of an audit summary; the rules are in the report's Summary.

    PASS / WARN / FAIL read as "nothing found" / "look here" / "copies found", measured against
    the real-vs-real baseline where there is one. They are guides: a PASS is no proof of
    fidelity or privacy, and with a handful of subjects a single subject moves every figure.
    """
    result = {}
    m = s["memorization"]
    result["memorization"] = {
        "verdict": "FAIL" if m["flagged"] else "PASS",
        "basis": f"{len(m['flagged'])}/{len(m['cases'])} synthetic cases reach the copy threshold NCC "
        f"{m['threshold_ncc']:.3f} (highest {max((c['ncc'] for c in m['cases']), default=float('nan')):.3f})",
    }

    mi = s["membership_inference"]
    if not mi:
        result["membership_inference"] = {"verdict": "NOT RUN", "basis": "needs --generator and held-out subjects"}
    else:
        (low, high), subjects = mi["ci95"], min(len(mi["training_scores"]), len(mi["held_out_scores"]))
        auc = f"AUC {mi['auc']:.2f} (95% CI {low:.2f}-{high:.2f}, {subjects} subjects in the smaller group)"
        if low > 0.5:
            result["membership_inference"] = {
                "verdict": "WARN",
                "basis": f"{auc}: training subjects are reproduced better than held-out ones",
            }
        elif mi["auc"] >= MEMBERSHIP_AUC_WARN and subjects < MEMBERSHIP_MIN_SUBJECTS:
            result["membership_inference"] = {
                "verdict": "WARN",
                "basis": f"{auc}: a warning sign; too few subjects for the interval to mean anything",
            }
        else:
            result["membership_inference"] = {"verdict": "PASS", "basis": f"{auc}: no detectable membership signal"}

    fidelity = s["fidelity_wasserstein"]
    close = {
        k: _within(v["synthetic_vs_training"], v["held_out_vs_training"], INTENSITY_FLOOR) for k, v in fidelity.items()
    }
    furthest = max(fidelity, key=lambda k: fidelity[k]["synthetic_vs_training"], default=None)
    basis = f"{sum(close.values())}/{len(close)} modality/classes within max(held-out baseline, {INTENSITY_FLOOR})"
    if furthest is not None:
        baseline = fidelity[furthest]["held_out_vs_training"]
        basis += (
            f"; furthest {furthest}: {fidelity[furthest]['synthetic_vs_training']:.3f} "
            f"(baseline {'-' if baseline is None else format(baseline, '.3f')})"
        )
    result["intensity_fidelity"] = {
        "verdict": f"{'PASS' if close and all(close.values()) else 'WARN'} {sum(close.values())}/{len(close)}",
        "basis": basis,
    }

    fid = s["fidelity_features"]["frechet"]
    if "held_out_vs_training" not in fid:
        result["feature_fidelity"] = {"verdict": "NOT RUN", "basis": "no held-out subjects for a baseline"}
    else:
        ratio = fid["synthetic_vs_training"] / max(fid["held_out_vs_training"], 1e-12)
        result["feature_fidelity"] = {
            "verdict": "PASS" if ratio <= FRECHET_RATIO_LIMIT else "WARN",
            "basis": f"Frechet distance synthetic vs training {fid['synthetic_vs_training']:.3f} = {ratio:.2f}x "
            f"the held-out baseline {fid['held_out_vs_training']:.3f} (PASS up to {FRECHET_RATIO_LIMIT}x)",
        }

    tumor = s["fidelity_tumor"]
    volume = tumor["volume_ml"]
    volume_floor = VOLUME_FLOOR_SHARE * volume["training"]["mean"]
    quantities = {
        "volume": _within(
            volume["wasserstein"]["synthetic_vs_training"], volume["wasserstein"]["held_out_vs_training"], volume_floor
        ),
        **{
            f"{sub} fraction": _within(
                v["wasserstein"]["synthetic_vs_training"], v["wasserstein"]["held_out_vs_training"], FRACTION_FLOOR
            )
            for sub, v in tumor["subregion_fractions"].items()
        },
    }
    measured = {k: v for k, v in quantities.items() if v is not None}
    off = [k for k, v in measured.items() if not v]
    result["tumor_fidelity"] = {
        "verdict": f"{'WARN' if off or not measured else 'PASS'} {len(measured) - len(off)}/{len(measured)}",
        "basis": f"whole-tumor volume and sub-region fractions within max(held-out baseline, floor) "
        f"(floors {volume_floor:.1f} ml, {FRACTION_FLOOR})" + (f"; off: {', '.join(off)}" if off else ""),
    }

    d = s["diversity"]
    if d["synthetic_mean_ssim"] is None or d["real_mean_ssim"] is None:
        result["diversity"] = {"verdict": "NOT RUN", "basis": "fewer than two synthetic or real volumes"}
    else:
        diverse = d["synthetic_mean_ssim"] <= d["real_mean_ssim"] + SSIM_MARGIN
        result["diversity"] = {
            "verdict": "PASS" if diverse else "WARN",
            "basis": f"mean pairwise SSIM synthetic {d['synthetic_mean_ssim']:.3f} vs real {d['real_mean_ssim']:.3f}"
            + ("" if diverse else ": less diverse than real patients"),
        }

    k = s["k_anonymity"]
    if k["available"]:
        result["k_anonymity"] = {
            "verdict": f"INFO (k = {k['k']})",
            "basis": f"smallest group of cases sharing all descriptive attributes: {k['k']} of {k['cases']} cases, "
            f"{k['groups']} groups",
        }
    else:
        result["k_anonymity"] = {"verdict": "NOT AVAILABLE", "basis": k["reason"]}
    return result


def _number(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _write_markdown(path: Path, s: dict[str, Any]) -> None:
    m = s["memorization"]
    lines = [
        "# Audit of a synthetic cohort",
        "",
        f"Cohort `{s['cohort']}` against real `{s['real_manifest']}` (training subjects: "
        f"{', '.join(s['training_subjects'])}; held out: {', '.join(s['held_out_subjects']) or 'none'}).",
        "",
        *_summary_lines(s["verdicts"]),
        "## Memorization (copy check)",
        "",
        f"**{m['verdict']}.** A case is flagged when its NCC to a training scan (or its mirror) reaches "
        f"{m['threshold_ncc']:.3f}, the 5th percentile of augmented copies of the training scans "
        f"({min(m['augmented_copy_ncc']):.3f}-{max(m['augmented_copy_ncc']):.3f}). Held-out real subjects reach "
        + (", ".join(f"{v:.3f}" for v in m["held_out_nearest_ncc"]) or "-")
        + f" (false-positive rate {_number(m['held_out_flag_rate'], 2)}).",
        "",
        "| case | nearest training | NCC | feature distance | flagged |",
        "| --- | --- | --- | --- | --- |",
        *(
            f"| {c['case_id']} | {c['nearest_training']} | {c['ncc']:.3f} | {c.get('feature_distance', '-')} | "
            f"{'**yes**' if c['flagged'] else 'no'} |"
            for c in m["cases"]
        ),
        "",
        "Feature distance: Euclidean distance of the case's feature descriptor (mean and sd of the feature "
        "network's local features) to the nearest training subject's; lower = closer. For comparison, held-out "
        "real subjects: "
        + (", ".join(f"{v:.3f}" for v in m.get("held_out_nearest_feature_distance", [])) or "-")
        + "; augmented copies of training scans: "
        + (
            f"{min(m['augmented_copy_feature_distance']):.3f}-{max(m['augmented_copy_feature_distance']):.3f}"
            if m.get("augmented_copy_feature_distance")
            else "-"
        )
        + ". The verdict uses NCC; the feature distance is a second view to read beside it.",
        "",
        "What it proves: no case is a near-copy (up to mirror, small rotation, intensity scale, noise) of a training "
        "scan. What it does not: that no training information leaks in subtler ways (e.g. a copied tumor shape "
        "in a new brain, or membership signals) - see membership inference, and train with DP for a guarantee.",
        "",
        "## Membership inference",
        "",
    ]
    mi = s["membership_inference"]
    if mi:
        lines += [
            f"AUC {mi['auc']:.2f} (95% bootstrap CI {mi['ci95'][0]:.2f}-{mi['ci95'][1]:.2f}; "
            f"{len(mi['training_scores'])} training vs {len(mi['held_out_scores'])} held-out subjects) for telling "
            "training from held-out subjects by how well the generator reproduces them from their own label maps "
            "(0.5 = no signal, 1.0 = training subjects always reproduced better: a memorization signal). Below ~10 "
            "subjects per group the bootstrap interval is not meaningful (resampling cannot break a perfect "
            "ordering): read the AUC as a warning sign, not a measurement.",
        ]
    else:
        lines += ["Not run (pass --generator and have held-out subjects)."]
    lines += [
        "",
        "## Fidelity: Wasserstein distance of intensities (lower = closer to the training subjects)",
        "",
        "| modality/class | synthetic vs training | held-out vs training (baseline) |",
        "| --- | --- | --- |",
        *(
            f"| {k} | {v['synthetic_vs_training']:.3f} | "
            f"{'-' if v['held_out_vs_training'] is None else format(v['held_out_vs_training'], '.3f')} |"
            for k, v in s["fidelity_wasserstein"].items()
        ),
        "",
        "A synthetic distance near the held-out baseline means the class looks as real as another patient's.",
        "",
        *_feature_lines(s["fidelity_features"]),
        *_tumor_lines(s["fidelity_tumor"]),
        "## Diversity: mean SSIM between pairs (lower = more diverse)",
        "",
        f"Synthetic {_number(s['diversity']['synthetic_mean_ssim'])}, real {_number(s['diversity']['real_mean_ssim'])} "
        "(mean SSIM over every pair of volumes and modality; '-': fewer than two volumes). Synthetic cases much more "
        "alike than real patients point to mode collapse; it says nothing about whether each case is realistic. "
        "Pairs here have different label maps, so most of their difference comes from the label maps; how much a "
        "generator varies for one label map (its latent) is measured by scripts/report_generators.py.",
        "",
        *_k_anonymity_lines(s["k_anonymity"]),
        "![Left: NCC to the nearest training scan. Right: whole-tumor volume per case](report.png)",
        "",
    ]
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(lines))


def _summary_lines(v: dict[str, dict[str, str]]) -> list[str]:
    names = {
        "memorization": "Memorization (copy check)",
        "membership_inference": "Membership inference",
        "intensity_fidelity": "Fidelity: intensities per class",
        "feature_fidelity": "Fidelity: learned features",
        "tumor_fidelity": "Fidelity: tumor volume and sub-regions",
        "diversity": "Diversity",
        "k_anonymity": "k-anonymity",
    }
    return [
        "## Summary",
        "",
        "| check | verdict | basis |",
        "| --- | --- | --- |",
        *(f"| {names.get(key, key)} | **{row['verdict']}** | {row['basis']} |" for key, row in v.items()),
        "",
        "Verdicts are guides with fixed rules, not proofs: PASS means this check found nothing against the cohort, "
        "WARN means look at that section, FAIL means copies of training scans were found. With a handful of "
        "subjects one subject moves every figure. The rules:",
        "",
        "- memorization: FAIL when any synthetic case reaches the copy threshold, else PASS;",
        "- membership inference: WARN when the AUC's 95% CI lies above 0.5, or when the AUC is "
        f">= {MEMBERSHIP_AUC_WARN} with fewer than {MEMBERSHIP_MIN_SUBJECTS} subjects per group (a warning sign, "
        "not a measurement); PASS otherwise; NOT RUN without --generator or held-out subjects;",
        "- intensities: a modality/class is as close as another patient when its synthetic-vs-training Wasserstein "
        f"distance is <= max(held-out baseline, {INTENSITY_FLOOR}); PASS n/N when all N are, else WARN n/N;",
        f"- learned features: PASS when the synthetic-vs-training Frechet distance is <= {FRECHET_RATIO_LIMIT}x the "
        "held-out baseline, else WARN;",
        "- tumor: whole-tumor volume and each sub-region fraction, same rule as intensities with floors "
        f"{VOLUME_FLOOR_SHARE:.0%} of the mean training volume and {FRACTION_FLOOR}; location is listed, not judged;",
        f"- diversity: PASS when the synthetic mean pairwise SSIM is <= the real one + {SSIM_MARGIN}, else WARN "
        "(less diverse than real patients);",
        "- k-anonymity: INFO, the value of k.",
        "",
    ]


def _tumor_lines(t: dict[str, Any]) -> list[str]:
    volume, fractions, location = t["volume_ml"], t["subregion_fractions"], t["location"]
    labels = {"training": "training", "held_out": "held-out (baseline)", "synthetic": "synthetic"}
    lines = [
        "## Fidelity: tumor volume, sub-regions and location",
        "",
        "Per case, from its label map: whole-tumor volume (netc + snfh + et), the share of each sub-region in the "
        "tumor, and the hemisphere and region of the tumor's centre of mass. Wasserstein distances are to the "
        "training subjects; held-out vs training is the real-vs-real baseline.",
        "",
        "| group | cases | whole-tumor volume, mean (min-max) ml | Wasserstein to training (ml) |",
        "| --- | --- | --- | --- |",
    ]
    for name in GROUPS:
        row = volume[name]
        distance = volume["wasserstein"].get(f"{name}_vs_training")
        if row is None:
            lines.append(f"| {labels[name]} | 0 | - | - |")
            continue
        lines.append(
            f"| {labels[name]} | {row['cases']} | {row['mean']:.1f} ({row['min']:.1f}-{row['max']:.1f}) | "
            f"{_number(distance, 2)} |"
        )
    lines += [
        "",
        "| sub-region (mean share of the tumor) | training | held-out | synthetic | synthetic vs training | "
        "held-out vs training (baseline) |",
        "| --- | --- | --- | --- | --- | --- |",
        *(
            f"| {sub} | {_number(v['training'])} | {_number(v['held_out'])} | {_number(v['synthetic'])} | "
            f"{_number(v['wasserstein']['synthetic_vs_training'])} | "
            f"{_number(v['wasserstein']['held_out_vs_training'])} |"
            for sub, v in fractions.items()
        ),
        "",
        "| location (cases) | training | held-out | synthetic |",
        "| --- | --- | --- | --- |",
    ]
    for key, counts in location.items():
        values = sorted({value for group in counts.values() for value in group})
        lines += [
            f"| {key}: {value} | " + " | ".join(str(counts[name].get(value, 0)) for name in GROUPS) + " |"
            for value in values
        ]
    return [
        *lines,
        "",
        "What it shows: whether the cohort's tumors have the sizes, make-up and places of the training tumors. "
        "What it does not: it reads the label maps, the cohort's inputs (sampled or given), so it judges that stage, "
        "not the image generator; whether the images show those tumors convincingly is for the intensity and "
        "feature checks. Location counts of a few cases are listed for reading, not tested.",
        "",
    ]


def _k_anonymity_lines(k: dict[str, Any]) -> list[str]:
    lines = ["## k-anonymity of the cohort's descriptive attributes", ""]
    if not k["available"]:
        return [*lines, f"Not available: {k['reason']}.", ""]
    listed, total = len(k["smallest_groups"]), k["smallest_groups_total"]
    lines += [
        f"**k = {k['k']}** over {k['cases']} cases in {k['groups']} groups: k is the size of the smallest group of "
        "cases sharing the same descriptive attributes, so every case's attributes are shared by at least k cases"
        + (" (k = 1: some case is unique in them)" if k["k"] == 1 else "")
        + ". `medsynth generate --k-anonymity K` fills under-filled groups with newly sampled cases. Attributes:",
        "",
        *(f"- `{name}`: {meaning}" for name, meaning in k["attributes"].items()),
        "",
        f"Smallest groups ({total} of size {k['k']}" + (f", first {listed} listed" if listed < total else "") + "):",
        "",
        "| attributes | cases |",
        "| --- | --- |",
        *(
            f"| {', '.join(f'{a}={v}' for a, v in g['attributes'].items())} | {', '.join(g['case_ids'])} |"
            for g in k["smallest_groups"]
        ),
        "",
        "What it proves: knowing all these attributes of a case narrows the cohort down to no fewer than k cases. "
        "What it does not: anything about the images (see memorization) or about attributes not listed.",
        "",
    ]
    return lines


def _feature_lines(f: dict[str, Any]) -> list[str]:
    fid, mmd = f["frechet"], f["mmd"]
    lines = [
        "## Fidelity: Frechet distance and MMD of learned features (lower = closer)",
        "",
        f"Features: {f['network']}; {f['feature_dim']}-dimensional local features (one per brain position of the "
        f"deepest feature map, or per slice for 2.5D networks), {f['samples']['training']} training, "
        f"{f['samples']['synthetic']} synthetic, {f['samples']['held_out']} held-out samples. MMD is MONAI's "
        "unbiased linear-kernel MMD^2.",
        "",
        "| comparison | Frechet distance | MMD^2 |",
        "| --- | --- | --- |",
        f"| synthetic vs training | {fid['synthetic_vs_training']:.3f} | {mmd['synthetic_vs_training']:.4f} |",
    ]
    if "held_out_vs_training" in fid:
        lines += [
            f"| held-out vs training (real-vs-real baseline) | {fid['held_out_vs_training']:.3f} | "
            f"{mmd['held_out_vs_training']:.4f} |",
            f"| synthetic vs held-out | {fid['synthetic_vs_held_out']:.3f} | {mmd['synthetic_vs_held_out']:.4f} |",
            "",
            f"Synthetic-vs-training Frechet distance is "
            f"{fid['synthetic_vs_training'] / max(fid['held_out_vs_training'], 1e-12):.2f}x "
            "the held-out baseline: below 1 the synthetic cases sit closer to the training subjects than another "
            "patient does (good fidelity, but read it with the memorization section), far above 1 they do not look "
            "like these patients in the network's eyes. The feature network was trained on the training subjects, "
            "so held-out subjects are out-of-sample for it too.",
        ]
    return [*lines, ""]


def _plot(path: Path, s: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    m = s["memorization"]
    fig, (ax, tumor_ax) = plt.subplots(1, 2, figsize=(11, 3.2), gridspec_kw={"width_ratios": [3, 2]})
    ax.hist([c["ncc"] for c in m["cases"]], bins=20, range=(-0.2, 1), alpha=0.7, label="synthetic -> nearest training")
    ax.hist(m["augmented_copy_ncc"], bins=20, range=(-0.2, 1), alpha=0.7, label="augmented copies of training")
    for value in m["held_out_nearest_ncc"]:
        ax.axvline(value, color="tab:green", ls=":", lw=1.5)
    ax.axvline(m["threshold_ncc"], color="k", label="copy threshold")
    ax.set(xlabel="NCC (green: held-out real subjects)", ylabel="count")
    ax.legend(fontsize=7)
    # one dot per case: with a handful of subjects a histogram would hide more than it shows;
    # colours as on the left (training orange, held-out green, synthetic blue)
    jitter = np.random.default_rng(0)
    for row, (name, color) in enumerate(zip(GROUPS, ("tab:orange", "tab:green", "tab:blue"), strict=True)):
        volumes = [c["volume_ml"] for c in s["fidelity_tumor"]["cases"][name]]
        tumor_ax.scatter(volumes, row + jitter.uniform(-0.15, 0.15, len(volumes)), s=14, alpha=0.7, color=color)
    tumor_ax.set(yticks=range(len(GROUPS)), yticklabels=["training", "held-out", "synthetic"], ylim=(-0.5, 2.5))
    tumor_ax.set(xlabel="whole-tumor volume (ml)")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=90)
    plt.close(fig)
