"""Memorization: is a synthetic case a copy of a training scan, can the generator tell its training subjects?

- :func:`copy_check`: NCC of each synthetic case to its nearest training scan (or mirror), against a
  threshold calibrated on augmented copies of the training scans; held-out subjects give the
  false-positive rate. :func:`copy_check_cohort` runs it on case folders (the cohort stage's export gate).
- :func:`feature_neighbours`: the same closeness in a learned feature space, a second view beside NCC.
- :func:`membership`: membership inference, an AUC of training vs held-out subjects.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from medsynth.audit.loading import load_audit_manifest, load_case
from medsynth.audit.privacy import auc_with_ci, augment, calibrate_threshold, nearest, similarity
from medsynth.errors import DataError
from medsynth.manifest import Case

if TYPE_CHECKING:
    from medsynth.audit.features import FeatureNetwork


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

    Every real and synthetic case is checked as in the audit (one grid, finite values,
    canonical labels, a brain), so a NaN case cannot slip past the gate unflagged.
    """
    real_manifest = Path(real_manifest)
    manifest = load_audit_manifest(real_manifest, kind="prepared")
    if manifest.modalities != list(modalities):
        raise DataError(f"{real_manifest}: modalities {manifest.modalities} differ from the cohort's {modalities}")
    real = [c for c in manifest.cases() if c.images]
    grid: dict[str, Any] = {}
    training = [(c.case_id, load_case(c, modalities, grid, real_manifest)[0]) for c in real if c.split == train_split]
    held_out = [load_case(c, modalities, grid, real_manifest)[0] for c in real if c.split != train_split]
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
        synthetic.append((folder.name, load_case(case, modalities, grid)[0]))
    return copy_check([i for _, i in training], [c for c, _ in training], held_out, synthetic)


def feature_neighbours(
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


def membership(
    generator_path: str | Path,
    training: list[tuple[np.ndarray, np.ndarray]],
    held_out: list[tuple[np.ndarray, np.ndarray]],
    seed: int = 0,
    draws: int = 3,
    bootstrap_samples: int = 2000,
) -> dict[str, Any]:
    """Score each real subject by how closely the generator reproduces it from its own label map.

    A model that memorized its training subjects reproduces them better than held-out ones;
    AUC 0.5 means no detectable membership signal. Each subject's score is the best of ``draws``
    samples; the AUC's 95% interval comes from ``bootstrap_samples`` resamples.
    """
    import medsynth

    generator = medsynth.load_generator(generator_path)

    def score(images: np.ndarray, label: np.ndarray) -> float:
        return max(similarity(generator.synthesize(label, seed=seed + s).images, images) for s in range(draws))

    positives = [score(i, lbl) for i, lbl in training]
    negatives = [score(i, lbl) for i, lbl in held_out]
    auc, (low, high) = auc_with_ci(positives, negatives, n_boot=bootstrap_samples, seed=seed)
    return {"training_scores": positives, "held_out_scores": negatives, "auc": auc, "ci95": [low, high]}
