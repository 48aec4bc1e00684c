"""The copy check sees disguised copies: shifted, rotated, re-contrasted, blurred, partial and one-modality
copies of a training scan are flagged, other subjects are not, and the calibration is recorded per disguise.

Subjects are built on the fly: brain-like phantoms whose anatomy (brain shape, folding, ventricles,
tumor) differs per subject, as real brains do (the shared ``phantom()`` differs only in noise and
tumor, so two of its subjects look like copies of each other). The disguises are planted here
with scipy directly, independent of the calibration's own :mod:`medsynth.audit.disguises`.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from medsynth.audit.copy_similarity import Reference, Scan, match
from medsynth.audit.disguises import FAMILIES, disguised_copies
from medsynth.audit.memorization import copy_check
from medsynth.audit.privacy import ncc

SHAPE = (48, 56, 48)


def subject(seed: int) -> np.ndarray:
    """(t1c, flair) of one phantom subject, zero outside its brain, z-score-like intensities."""
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, s) for s in SHAPE], indexing="ij"))
    radius = np.sqrt(((grid / rng.uniform(0.75, 0.88, 3)[:, None, None, None]) ** 2).sum(0))
    brain = radius < 1
    folds = ndimage.gaussian_filter(rng.standard_normal(SHAPE), 1.5)
    folds /= folds.std()
    tissue = np.where(radius < 0.6 + 0.15 * folds, 3, 2)  # WM core under a folded GM border
    tissue = np.where((folds > 1.0) & (radius > 0.5), 1, tissue)  # sulcal CSF
    extent = np.array([0.12, 0.3, 0.15]) * rng.uniform(0.8, 1.2)
    tissue[(((grid - rng.normal(0, 0.05, 3)[:, None, None, None]) / extent[:, None, None, None]) ** 2).sum(0) < 1] = 1
    tumor = brain & (np.sqrt(((grid - rng.uniform(-0.4, 0.4, 3)[:, None, None, None]) ** 2).sum(0)) < 0.2)
    t1c = np.array([0, -1.5, 0.2, 0.9])[tissue] + 0.15 * rng.standard_normal(SHAPE)
    flair = np.array([0, -1.5, 0.6, 0.1])[tissue] + 0.15 * rng.standard_normal(SHAPE)
    t1c[tumor], flair[tumor] = 2.0, 1.8
    return (np.stack([t1c, flair]) * brain).astype(np.float32)


def brain_of(volume: np.ndarray) -> np.ndarray:
    return np.any(volume != 0, axis=0)


def gamma(volume: np.ndarray, exponents: tuple[float, float]) -> np.ndarray:
    """A monotone, non-affine contrast change per modality (gamma on the brain's range, then rescaled)."""
    out, brain = np.zeros_like(volume), brain_of(volume)
    for c, (image, exponent) in enumerate(zip(volume, exponents, strict=True)):
        low, high = image[brain].min(), image[brain].max()
        out[c][brain] = 2.0 * ((image[brain] - low) / (high - low)) ** exponent - 0.5
    return out


def paste(source: np.ndarray, host: np.ndarray, region: np.ndarray) -> np.ndarray:
    out = host.copy()
    region = region & (brain_of(source) | brain_of(host))
    out[:, region] = source[:, region]
    return out


def plant(training: list[np.ndarray], host: np.ndarray) -> dict[str, tuple[np.ndarray, int]]:
    """Each disguise of a training scan: name -> (volume, index of its training source)."""
    a, b, c = training
    hemisphere = np.zeros(SHAPE, bool)
    hemisphere[: SHAPE[0] // 2] = True
    block = np.zeros(SHAPE, bool)  # one corner of the brain: about 30% of its voxels
    block[:30, :32, :30] = True
    one_modality = host.copy()
    one_modality[1] = c[1]  # FLAIR verbatim, T1c from another subject
    return {
        "shift": (ndimage.shift(a, (0, 2.5, -2, 3), order=1), 0),
        "rotation": (np.stack([ndimage.rotate(x, 5, axes=(0, 2), reshape=False, order=1) for x in b]), 1),
        "contrast": (gamma(c, (0.6, 1.6)), 2),
        "blur": (np.stack([ndimage.gaussian_filter(x, 1.0) for x in a]) * brain_of(a), 0),
        "hemisphere": (paste(b, host, hemisphere), 1),
        "block": (paste(c, host, block), 2),
        "one_modality": (one_modality, 2),
        "mirror_and_noise": (a[:, ::-1] + 0.05 * np.random.default_rng(0).standard_normal(a.shape) * brain_of(a), 0),
    }


@pytest.fixture(scope="module")
def cohort() -> dict:
    """Three training subjects, two held out, disguised copies and clean cases: one copy check on all."""
    subjects = [subject(seed) for seed in range(8)]
    training, held_out, others = subjects[:3], subjects[3:5], subjects[5:]
    planted = plant(training, host=others[0])
    synthetic = [(name, volume) for name, (volume, _) in planted.items()]
    synthetic += [(f"clean_{i}", volume) for i, volume in enumerate(others)]
    result = copy_check(training, ["t0", "t1", "t2"], held_out, synthetic, copies_per_scan=3, seed=0)
    return {"result": result, "planted": planted, "cases": {c["case_id"]: c for c in result["cases"]}}


@pytest.mark.parametrize(
    "name", ["shift", "rotation", "contrast", "blur", "hemisphere", "block", "one_modality", "mirror_and_noise"]
)
def test_each_disguise_is_flagged_against_its_source(cohort, name):
    case, (_, source) = cohort["cases"][name], cohort["planted"][name]
    assert case["flagged"], f"{name}: {case['ncc']} < threshold {cohort['result']['threshold_ncc']}"
    assert case["nearest_training"] == f"t{source}"


def test_clean_cases_and_held_out_subjects_are_not_flagged(cohort):
    result = cohort["result"]
    assert sorted(result["flagged"]) == sorted(cohort["planted"])
    assert not any(c["flagged"] for c in result["cases"] if c["case_id"].startswith("clean_"))
    assert result["held_out_false_positive_rate"] == result["held_out_flag_rate"] == 0.0
    assert result["held_out_subjects"] == 2
    assert max(result["held_out_nearest_ncc"]) < result["threshold_ncc"]


def test_one_modality_copy_is_found_where_the_stacked_ncc_misses_it(cohort):
    volume, source = cohort["planted"]["one_modality"]
    training = subject(source)
    stacked = ncc(volume, training, brain_of(volume) | brain_of(training))
    case = cohort["cases"]["one_modality"]
    assert stacked < cohort["result"]["threshold_ncc"] <= case["ncc"]
    assert case["match"]["modality"] == 1  # FLAIR, the copied one


def test_calibration_is_recorded_per_disguise(cohort):
    result = cohort["result"]
    assert set(result["calibration"]) == set(FAMILIES)  # 3 scans x 3 copies cover all 7 families
    assert sum(row["copies"] for row in result["calibration"].values()) == 9 == len(result["augmented_copy_ncc"])
    for row in result["calibration"].values():
        assert row["flagged_fraction"] >= 0.5 and row["min"] <= row["median"]
    assert all({"family", "source", "params", "score"} <= set(c) for c in result["augmented_copies"])
    assert result["method"]["max_shift_voxels"] == 3 and result["method"]["patch_share_of_brain_extent"] == 0.35
    assert {"component", "modality", "mirrored", "rotation_deg", "shift_voxels"} <= set(
        cohort["cases"]["shift"]["match"]
    )


def test_the_rigid_search_recovers_the_transform():
    volume = subject(0)
    reference = Reference(volume)
    shifted = match(Scan(np.roll(volume, (2, -3, 1), axis=(1, 2, 3))), reference)
    assert shifted.score == pytest.approx(1.0, abs=1e-4) and shifted.shift_voxels == (2, -3, 1)
    mirrored = match(Scan(volume[:, ::-1]), reference)
    assert mirrored.score == pytest.approx(1.0, abs=1e-4) and mirrored.mirrored
    rotated = np.stack([ndimage.rotate(x, 4, axes=(1, 2), reshape=False, order=1) for x in volume])
    found = reference.rigid_match(Scan(rotated))
    assert found.component == "whole" or found.score > 0.9
    assert abs(abs(found.rotation_deg[0]) - 4) <= 2 and found.rotation_deg[1:] == pytest.approx((0, 0), abs=2)


def test_calibration_copies_are_seeded():
    training = [subject(0), subject(1)]
    first, second = disguised_copies(training, 4, seed=3), disguised_copies(training, 4, seed=3)
    assert [(s, f, p) for s, f, p, _ in first] == [(s, f, p) for s, f, p, _ in second]
    assert all(np.array_equal(x[3], y[3]) for x, y in zip(first, second, strict=True))
    assert [f for _, f, _, _ in first] == [*FAMILIES, FAMILIES[0]]  # round-robin over all copies


def test_calibration_is_cached_by_the_scans_content(tmp_path, monkeypatch):
    import medsynth.audit.privacy as privacy

    monkeypatch.setenv("MEDSYNTH_CACHE", str(tmp_path))
    training = [subject(0), subject(1)]
    first = privacy.calibrate_threshold(training, copies_per_scan=2)
    assert len(list((tmp_path / "calibration").glob("*.json"))) == 1

    def no_copies(*args, **kwargs):
        raise AssertionError("recomputed although the same scans were calibrated before")

    monkeypatch.setattr(privacy, "disguised_copies", no_copies)
    assert privacy.calibrate_threshold([s.copy() for s in training], copies_per_scan=2) == first
    with pytest.raises(AssertionError, match="recomputed"):  # other scans, other settings: computed afresh
        privacy.calibrate_threshold([training[0], subject(2)], copies_per_scan=2)
    with pytest.raises(AssertionError, match="recomputed"):
        privacy.calibrate_threshold(training, copies_per_scan=3)
    monkeypatch.undo()
    monkeypatch.setenv("MEDSYNTH_CACHE", str(tmp_path))
    (entry,) = (tmp_path / "calibration").glob("*.json")
    entry.write_text("{broken")  # a damaged entry is recomputed and rewritten
    assert privacy.calibrate_threshold(training, copies_per_scan=2) == first
