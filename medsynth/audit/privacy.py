"""Memorization checks: nearest training scan of every synthetic case, calibrated copy threshold.

Similarity is the normalised cross-correlation (NCC) of all modalities inside the union of
the two brains, taken as the best over the training scan and its left-right mirror (a free
"augmentation" that would otherwise hide a copy). The copy threshold is calibrated on
augmented copies of the training scans themselves -- mirror, small rotation, intensity
scaling and noise, the cheap edits an attacker or a careless pipeline makes -- as a low
quantile of their NCC to the original: a synthetic case at least that close to a training
scan is flagged. Held-out real subjects, which are not copies, show where real anatomical
similarity lies (their flag rate is the check's false-positive rate).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def ncc(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
    """Normalised cross-correlation of two (C, X, Y, Z) volumes inside ``mask``, averaged over channels."""
    values = []
    for ca, cb in zip(a, b, strict=True):
        x, y = ca[mask].astype(np.float64), cb[mask].astype(np.float64)
        x, y = x - x.mean(), y - y.mean()
        denominator = np.sqrt((x * x).sum() * (y * y).sum())
        values.append(float((x * y).sum() / denominator) if denominator > 0 else 0.0)
    return float(np.mean(values))


def similarity(case: np.ndarray, reference: np.ndarray) -> float:
    """Best NCC of ``case`` to ``reference`` or its left-right mirror (brain = non-zero voxels)."""
    best = -1.0
    for candidate in (reference, reference[:, ::-1]):
        mask = np.any(case != 0, axis=0) | np.any(candidate != 0, axis=0)
        best = max(best, ncc(case, candidate, mask))
    return best


def nearest(case: np.ndarray, references: list[np.ndarray]) -> tuple[int, float]:
    """(index, NCC) of the most similar reference."""
    scores = [similarity(case, r) for r in references]
    return int(np.argmax(scores)), float(np.max(scores))


def augment(volume: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A cheap edit of a scan: mirror, rotation up to 5 degrees, intensity scale, Gaussian noise."""
    out = volume[:, ::-1] if rng.random() < 0.5 else volume
    angle = rng.uniform(-5, 5)
    axes = [(0, 1), (0, 2), (1, 2)][rng.integers(3)]
    out = np.stack([ndimage.rotate(c, angle, axes=axes, reshape=False, order=1) for c in out])
    brain = np.any(out != 0, axis=0)
    out = out * rng.uniform(0.85, 1.15) + rng.normal(0, 0.1, out.shape) * brain
    return out.astype(np.float32)


def calibrate_threshold(
    training: list[np.ndarray], copies_per_scan: int = 5, quantile: float = 0.05, seed: int = 0
) -> tuple[float, list[float]]:
    """(threshold, NCCs of the augmented copies to their originals)."""
    rng = np.random.default_rng(seed)
    scores = [similarity(augment(scan, rng), scan) for scan in training for _ in range(copies_per_scan)]
    return float(np.quantile(scores, quantile)), scores


def auc_with_ci(
    positives: list[float], negatives: list[float], n_boot: int = 2000, seed: int = 0
) -> tuple[float, tuple[float, float]]:
    """Mann-Whitney AUC (P[positive > negative]) and a bootstrap 95% interval."""

    def auc(p: np.ndarray | list[float], n: np.ndarray | list[float]) -> float:
        p, n = np.asarray(p)[:, None], np.asarray(n)[None, :]
        return float((p > n).mean() + 0.5 * (p == n).mean())

    rng = np.random.default_rng(seed)
    boots = [auc(rng.choice(positives, len(positives)), rng.choice(negatives, len(negatives))) for _ in range(n_boot)]
    return auc(positives, negatives), (float(np.quantile(boots, 0.025)), float(np.quantile(boots, 0.975)))
