"""Anatomy label maps (CSF / grey matter / white matter), the generators' conditioning input.

Two sources:

- **Real subjects** (images, no anatomy labels): :func:`classify_tissues`, a two-level
  Otsu classification of contrast scores inside the brain mask with the tumor excluded.
  CSF is dark on T1 and FLAIR and bright on T2, so ``csf_score = z(T1) + z(FLAIR) - z(T2)``
  (channels present only) is thresholded first; the rest is split into grey and white
  matter on ``wm_score = z(T1) - z(FLAIR) - z(T2)`` (white matter is brighter on T1 and
  darker on FLAIR/T2 than cortex). Scores are clipped to their 2nd-98th percentiles before
  each Otsu threshold so enhancing vessels and tumor rims do not move it. A 3x3x3 majority
  filter removes isolated voxels. Deterministic, no fitting, no seed.

  Why not a Gaussian mixture: on the BraTS 2013 T1c/FLAIR volumes grey and white matter
  overlap into one broad mode, and EM fits with 3-5 components put one component on the
  bright tail (vessels, enhancement) and named 50-90% of the brain grey or white matter
  depending on the subject; the thresholds above gave 45-55% GM on three of four subjects.
- **FreeSurfer / SynthSeg label maps**: :func:`freesurfer_to_anatomy`, a lookup table.
  Values >= 500 (SynthSeg's extra-cerebral tissues) and 0 become background.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from medsynth.data.scheme import CSF, GM, WM

# FreeSurfer label values -> canonical anatomy class.
FREESURFER_CSF = (4, 5, 14, 15, 24, 31, 43, 44, 63, 72, 136, 137, 163, 164)
FREESURFER_GM = (3, 8, 10, 11, 12, 13, 17, 18, 26, 30, 42, 47, 49, 50, 51, 52, 53, 54, 58, 62)
FREESURFER_WM = (2, 7, 16, 25, 28, 41, 46, 57, 60, 77, 85)
FREESURFER_OUTSIDE_BRAIN = 500  # SynthSeg: values >= 500 are skull, scalp, eyes, ...
FREESURFER_TO_ANATOMY: dict[int, int] = {
    **{v: CSF for v in FREESURFER_CSF},
    **{v: GM for v in FREESURFER_GM},
    **{v: WM for v in FREESURFER_WM},
}

# Sign of each modality in the CSF score (low = CSF) and the WM score (high = WM).
CSF_SIGN = {"t1": 1.0, "t1c": 1.0, "flair": 1.0, "t2": -1.0}
WM_SIGN = {"t1": 1.0, "t1c": 1.0, "flair": -1.0, "t2": -1.0}


def unknown_freesurfer_labels(values: np.ndarray) -> list[int]:
    """FreeSurfer values below 500 that medsynth's table does not know."""
    return sorted(
        int(v) for v in np.unique(values) if 0 < v < FREESURFER_OUTSIDE_BRAIN and int(v) not in FREESURFER_TO_ANATOMY
    )


def freesurfer_to_anatomy(labels: np.ndarray) -> np.ndarray:
    """Map a FreeSurfer/SynthSeg label map to canonical anatomy (0 background, 1-3 tissues).

    >>> freesurfer_to_anatomy(np.array([0, 2, 3, 4, 24, 507])).tolist()
    [0, 3, 2, 1, 1, 0]
    """
    labels = np.asarray(labels).astype(np.int64)
    unknown = unknown_freesurfer_labels(labels)
    if unknown:
        raise ValueError(f"FreeSurfer labels {unknown} are not in medsynth's anatomy table")
    table = np.zeros(max(int(labels.max()), FREESURFER_OUTSIDE_BRAIN) + 1, dtype=np.int16)
    for value, tissue in FREESURFER_TO_ANATOMY.items():
        table[value] = tissue
    return table[labels]


def otsu_threshold(values: np.ndarray, bins: int = 256) -> float:
    """Otsu's threshold of 1D ``values`` (maximises the between-class variance).

    Written here because it is a few lines and scikit-image is not a dependency.

    >>> otsu_threshold(np.r_[np.zeros(100), np.ones(100)]) < 1
    True
    """
    counts, edges = np.histogram(values, bins=bins)
    centers = (edges[:-1] + edges[1:]) / 2
    weight_low = np.cumsum(counts)[:-1]
    weight_high = counts.sum() - weight_low
    mean_low = np.cumsum(counts * centers)[:-1] / np.maximum(weight_low, 1)
    mean_high = (np.sum(counts * centers) - np.cumsum(counts * centers)[:-1]) / np.maximum(weight_high, 1)
    between = weight_low * weight_high * (mean_low - mean_high) ** 2
    # an empty gap between modes is a plateau of equal scores: take its middle
    best = np.flatnonzero(between >= between.max() * (1 - 1e-9))
    return float(edges[1:-1][best[len(best) // 2]])


def _robust_otsu(values: np.ndarray) -> float:
    low, high = np.percentile(values, [2, 98])
    return otsu_threshold(np.clip(values, low, high))


def _score(image: np.ndarray, fit: np.ndarray, modalities: list[str], signs: dict[str, float]) -> np.ndarray:
    score = np.zeros(image.shape[1:], dtype=np.float64)
    for channel, name in zip(image, modalities, strict=True):
        values = channel[fit]
        score += signs.get(name, 0.0) * (channel - values.mean()) / (values.std() + 1e-6)
    return score


def classify_tissues(
    image: np.ndarray,
    brain_mask: np.ndarray,
    modalities: list[str],
    exclude: np.ndarray | None = None,
    smoothing_voxels: int = 3,
) -> np.ndarray:
    """Classify brain voxels into CSF (1), GM (2), WM (3).

    Args:
        image: ``(C, X, Y, Z)`` intensities, one channel per entry of ``modalities``.
        brain_mask: ``(X, Y, Z)`` boolean brain mask.
        modalities: channel names among ``t1``, ``t1c``, ``t2``, ``flair``.
        exclude: voxels left out of the thresholds (the tumor); they are still classified.
        smoothing_voxels: width of the majority filter (1 = none).

    Returns an ``int16`` map with 0 outside the brain.

    >>> rng = np.random.default_rng(0)
    >>> truth = rng.choice([1, 2, 3], p=[0.2, 0.4, 0.4], size=(12, 12, 12))
    >>> t1 = np.array([0.0, 0.0, 2.0, 3.0])[truth] + 0.05 * rng.standard_normal(truth.shape)
    >>> image = t1[None]
    >>> anatomy = classify_tissues(image, np.ones(truth.shape, bool), ["t1"], smoothing_voxels=1)
    >>> bool((anatomy == truth).mean() > 0.99)
    True
    """
    image = np.asarray(image, dtype=np.float64)
    brain = np.asarray(brain_mask, dtype=bool)
    if image.ndim != 4 or image.shape[1:] != brain.shape:
        raise ValueError(f"image {image.shape} and brain mask {brain.shape} do not match")
    if len(modalities) != image.shape[0]:
        raise ValueError(f"{image.shape[0]} channels but {len(modalities)} modality names")
    unknown = [m for m in modalities if m not in CSF_SIGN]
    if len(unknown) == len(modalities):
        raise ValueError(f"cannot classify tissues from modalities {modalities}; need t1, t1c, t2 or flair")
    fit = brain & ~exclude if exclude is not None else brain
    if fit.sum() < 30:
        raise ValueError("fewer than 30 brain voxels outside the tumor: cannot classify tissues")
    csf_score = _score(image, fit, modalities, CSF_SIGN)
    csf = csf_score < _robust_otsu(csf_score[fit])
    wm_score = _score(image, fit, modalities, WM_SIGN)
    tissue = fit & ~csf
    if tissue.sum() < 10:
        raise ValueError("almost every brain voxel looks like CSF: check the modality names and intensities")
    wm = wm_score >= _robust_otsu(wm_score[tissue])
    anatomy = np.where(csf, CSF, np.where(wm, WM, GM)).astype(np.int16)
    if smoothing_voxels > 1:
        votes = np.stack([(anatomy == t) & brain for t in (CSF, GM, WM)]).astype(np.float32)
        votes = ndimage.uniform_filter(votes, size=(1, *(smoothing_voxels,) * 3), mode="nearest")
        anatomy = (np.argmax(votes, axis=0) + CSF).astype(np.int16)
    return np.where(brain, anatomy, 0).astype(np.int16)
