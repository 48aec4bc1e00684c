"""Memorization: is a synthetic case a copy of a training scan, can the generator tell its training subjects?

- :func:`copy_check`: copy similarity of each synthetic case to its nearest training scan (per
  modality, mirror, small rotations and shifts, patches), against a threshold calibrated on
  disguised copies of the training scans; held-out subjects give the false-positive rate.
  :func:`copy_check_cohort` runs it on case folders (the cohort stage's export gate).
- :func:`feature_neighbours`: the same closeness in a learned feature space, a second view beside NCC.
- :func:`membership`: membership inference, an AUC of training vs held-out subjects.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from medsynth.audit.copy_similarity import (
    BLUR_SIGMA,
    MAX_ROTATION_DEG,
    MAX_SHIFT,
    PATCH_MIN_BRAIN,
    PATCH_SHARE,
    Reference,
    Scan,
    nearest_match,
)
from medsynth.audit.loading import cases_with_modalities, load_audit_manifest, load_case
from medsynth.audit.privacy import auc_with_ci, augment, calibrate_threshold, similarity
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
    """Nearest training scan of every synthetic case, through the disguises of a copy, and the calibrated verdict.

    The score of a case (kept under the key ``ncc`` that the report, the verdict and the export
    gate read) is its copy similarity to the nearest training scan
    (:mod:`medsynth.audit.copy_similarity`: best over modalities, mirror, small rigid transforms
    and patches, on rank-equalised intensities); ``match`` says which view reached it. The
    threshold is calibrated on disguised copies of the training scans
    (:func:`~medsynth.audit.privacy.calibrate_threshold`), per family in ``calibration``.
    Held-out real subjects scored the same way give ``held_out_false_positive_rate``: the share
    of them flagged, coarse with few subjects (one subject of four moves it by 0.25).
    """
    references = [Reference(scan) for scan in training]
    threshold, copies = calibrate_threshold(training, copies_per_scan, seed=seed, references=references)
    cases = []
    for case_id, images in synthetic:
        index, found = nearest_match(Scan(images), references)
        cases.append(
            {
                "case_id": case_id,
                "nearest_training": training_ids[index],
                "ncc": round(found.score, 4),
                "flagged": bool(found.score >= threshold),
                "match": found.record(),
            }
        )
    held_out_scores = [nearest_match(Scan(images), references)[1].score for images in held_out]
    false_positive_rate = float(np.mean([s >= threshold for s in held_out_scores])) if held_out else None
    flagged = [c["case_id"] for c in cases if c["flagged"]]
    return {
        "method": {
            "name": "copy similarity: best of per-modality whole-brain correlation over mirror, rotation and shift, "
            "and patch correlation, on rank-equalised intensities",
            "max_shift_voxels": MAX_SHIFT,
            "max_rotation_deg": MAX_ROTATION_DEG,
            "patch_share_of_brain_extent": PATCH_SHARE,
            "patch_min_brain": PATCH_MIN_BRAIN,
            "threshold": "lowest over disguise families of the 5th percentile of their copies' scores",
            "blur_sigma_voxels": BLUR_SIGMA,
            "copies_per_scan": copies_per_scan,
            "seed": seed,
        },
        "threshold_ncc": round(threshold, 4),
        "augmented_copy_ncc": [c["score"] for c in copies],
        "calibration": _calibration_table(copies, threshold),
        "augmented_copies": copies,
        "held_out_nearest_ncc": [round(s, 4) for s in held_out_scores],
        "held_out_flag_rate": false_positive_rate,
        "held_out_false_positive_rate": false_positive_rate,
        "held_out_subjects": len(held_out),
        "held_out_false_positive_note": (
            f"{sum(s >= threshold for s in held_out_scores)} of {len(held_out)} held-out subjects reach the threshold; "
            f"with {len(held_out)} subjects the rate moves in steps of {1 / len(held_out):.2g}"
            if held_out
            else "no held-out subjects: the false-positive rate is unknown"
        ),
        "cases": cases,
        "flagged": flagged,
        "verdict": "FAIL: copies of training scans found" if flagged else "PASS: no synthetic case is a copy",
    }


def _calibration_table(copies: list[dict[str, Any]], threshold: float) -> dict[str, dict[str, Any]]:
    """Per disguise family: how many copies, their lowest and median score, the share reaching ``threshold``."""
    table = {}
    for family in dict.fromkeys(c["family"] for c in copies):
        scores = [c["score"] for c in copies if c["family"] == family]
        table[family] = {
            "copies": len(scores),
            "min": round(min(scores), 4),
            "median": round(float(np.median(scores)), 4),
            "flagged_fraction": round(float(np.mean([s >= threshold for s in scores])), 4),
        }
    return table


def copy_check_cohort(
    real_manifest: str | Path, case_folders: list[Path], modalities: list[str], train_split: str = "train"
) -> dict[str, Any]:
    """The copy check of generated case folders against the training split of a prepared manifest.

    Every real and synthetic case is checked as in the audit (one grid, finite values,
    canonical labels, a brain), so a NaN case cannot slip past the gate unflagged.
    """
    real_manifest = Path(real_manifest)
    manifest = load_audit_manifest(real_manifest, kind="prepared")
    what = f"the cohort cases in {case_folders[0].parent}" if case_folders else "the cohort"
    real = cases_with_modalities(manifest, real_manifest, modalities, what)
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
