"""Memorization primitives: correlation of volumes, the calibrated copy threshold, an AUC with its interval.

:func:`similarity` is the plain view (NCC of all modalities on the aligned grid, or the mirror),
kept for membership inference, where a subject is compared with the generator's reproduction
of it from its own label map (aligned by construction). The copy check sees through disguises
with :mod:`medsynth.audit.copy_similarity`, and its threshold is calibrated here
(:func:`calibrate_threshold`) on disguised copies of the training scans
(:mod:`medsynth.audit.disguises`): a synthetic case at least as close to a training scan as most
disguised copies are to their source is flagged. Held-out real subjects, which are not copies,
show where real anatomical similarity lies (their flag rate is the check's false-positive rate).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from typing import Any

import numpy as np

from medsynth._version import __version__
from medsynth.audit.copy_similarity import Reference, Scan, match
from medsynth.audit.disguises import augment, disguised_copies  # noqa: F401  (augment: re-exported)
from medsynth.io import array_sha256, cache_root, read_json, write_json

# Bump when the disguises or the copy similarity change: thresholds cached under the old number are not reused.
CALIBRATION_VERSION = 1


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


def calibrate_threshold(
    training: list[np.ndarray],
    copies_per_scan: int = 5,
    quantile: float = 0.05,
    seed: int = 0,
    references: list[Reference] | None = None,
) -> tuple[float, list[dict[str, Any]]]:
    """(threshold, one record per disguised copy): the lowest per-family ``quantile`` of the copies' scores.

    ``copies_per_scan`` disguised copies of each training scan (every disguise family, see
    :func:`medsynth.audit.disguises.disguised_copies`) are scored against their source with the
    copy similarity. The threshold is the lowest over families of each family's ``quantile``, so
    with the default 0.05 at least 95% of the copies of every kind reach it: pooled, the hardest
    family (blur) would make up most of the missed 5% and a blurred copy would slip through. Scored
    against the source only (not the nearest training scan): the nearest can only score higher,
    so this is the conservative (lower) calibration. ``references``: the training scans already
    prepared (:class:`~medsynth.audit.copy_similarity.Reference`), to prepare them once.
    """
    key = {
        "version": CALIBRATION_VERSION,
        "medsynth": __version__,
        "copies_per_scan": copies_per_scan,
        "quantile": quantile,
        "seed": seed,
        "scans": [array_sha256(scan) for scan in training],
    }
    # the same scans always give the same copies and scores: a cohort's export gate and a re-run audit of one
    # training set (e.g. the shipped models' bundled subjects) calibrate once (~40 s for 4 scans at 2 mm, 1 core)
    cached = cache_root() / "calibration" / f"{hashlib.sha256(json.dumps(key).encode()).hexdigest()[:24]}.json"
    if cached.is_file():
        with contextlib.suppress(Exception):  # an unreadable entry is recomputed and rewritten
            entry = read_json(cached)
            if entry["key"] == key:
                return float(entry["threshold"]), list(entry["records"])
    references = references if references is not None else [Reference(scan) for scan in training]
    records = []
    for source, family, params, volume in disguised_copies(training, copies_per_scan, seed):
        found = match(Scan(volume), references[source])
        records.append({"family": family, "source": source, "params": params, "score": round(found.score, 4)})
    by_family: dict[str, list[float]] = {}
    for record in records:
        by_family.setdefault(record["family"], []).append(record["score"])
    threshold = min(float(np.quantile(scores, quantile)) for scores in by_family.values())
    with contextlib.suppress(OSError):  # a read-only cache only costs time
        cached.parent.mkdir(parents=True, exist_ok=True)
        write_json({"key": key, "threshold": threshold, "records": records}, cached)
    return threshold, records


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
