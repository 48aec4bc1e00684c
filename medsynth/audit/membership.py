"""Whether a membership signal means something: the split control of the attack, and the distance to closest record.

- :func:`split_control`: the membership attack's AUC between two halves of the *same* group
  (training vs training, held-out vs held-out), over every split: the AUC the split alone
  produces. An attack means something only when its AUC exceeds this control.
- :func:`dcr_test`: distances of synthetic cases to their closest training subject against those of
  held-out real subjects, a one-sided Mann-Whitney U test of "synthetic cases sit closer", with
  Meehan et al.'s Z-scored U and its cell-weighted average, the C_T statistic
  (:func:`zu_statistic`, :func:`c_t_statistic`).

Reference: C. Meehan, K. Chaudhuri, S. Dasgupta, "A Non-Parametric Test to Detect Data-Copying in
Generative Models", AISTATS 2020 (github.com/casey-meehan/data-copying).

Both work on numbers the audit has already measured (per-subject attack scores, nearest-training
distances), so they run on any number of subjects and say "undefined" where the sizes do not allow
a test, instead of raising.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import combinations
from typing import Any

import numpy as np
from scipy.stats import mannwhitneyu

CONTROL_QUANTILE = 0.95  # the control AUC: the lowest split AUC that this share of the splits stay at or below


def _split_aucs(scores: np.ndarray, max_splits: int, rng: np.random.Generator) -> np.ndarray:
    """AUC of the first half against the second over every split of ``scores`` into halves.

    Halves have sizes n // 2 and n - n // 2; with more than ``max_splits`` such splits, that many
    random ones. P[first > second] + 0.5 P[tie], as :func:`medsynth.audit.privacy.auc_with_ci`.
    """
    n, k = len(scores), len(scores) // 2
    if math.comb(n, k) <= max_splits:
        firsts = [list(c) for c in combinations(range(n), k)]
    else:
        firsts = [rng.choice(n, k, replace=False) for _ in range(max_splits)]
    first = np.zeros((len(firsts), n))
    for row, members in enumerate(firsts):
        first[row, members] = 1.0
    wins = (scores[:, None] > scores[None, :]) + 0.5 * (scores[:, None] == scores[None, :])
    return ((first @ wins) * (1.0 - first)).sum(axis=1) / (k * (n - k))


def split_control(
    training_scores: Sequence[float],
    held_out_scores: Sequence[float],
    attack_auc: float,
    max_splits: int = 5000,
    seed: int = 0,
) -> dict[str, Any]:
    """The AUC that splitting subjects alone produces, beside the attack's ``attack_auc``.

    The attack's statistic (AUC of per-subject scores, "first group scores higher") is computed
    between two halves of the training subjects and between two halves of the held-out subjects,
    over every split (or ``max_splits`` random ones). Neither half is more a member than the other,
    so whatever AUC these splits reach is an artefact of the split. ``control_auc`` is the
    ``CONTROL_QUANTILE`` quantile of all control splits; the attack ``exceeds_control`` when its AUC
    is above it.

    The AUC is a rank statistic, so on distinct scores the splits' AUCs depend only on the group
    sizes: the control is the permutation distribution of the Mann-Whitney statistic at half the
    group's size, and a bootstrap over subjects would only add ties. Its halves are smaller than the
    attack's groups, which makes it conservative. ``mann_whitney_p`` is the exact (below 8 per group,
    no ties) or asymptotic one-sided p-value of the attack at its own sizes, for reading beside it.

    A group of one subject cannot be split: its control is undefined (``None``), and so is the
    whole control when neither group has two subjects.

    Args:
        training_scores: attack score of each training (member) subject; higher = more member-like.
        held_out_scores: attack score of each held-out (non-member) subject.
        attack_auc: the attack's AUC of ``training_scores`` against ``held_out_scores``.
        max_splits: most splits per group; past it, random splits.
        seed: seed of the random splits.

    >>> control = split_control([0.9, 0.8], [0.2, 0.1], attack_auc=1.0)
    >>> control["control_auc"], control["exceeds_control"]  # 1 vs 1 halves reach AUC 1.0 half the time
    (1.0, False)
    >>> split_control([0.9], [0.2], attack_auc=1.0)["reason"]
    'undefined: a split needs at least 2 subjects in a group (1 training, 1 held-out)'
    """
    rng = np.random.default_rng(seed)
    groups = {}
    pooled = []
    for name, scores in (("training", training_scores), ("held_out", held_out_scores)):
        scores = np.asarray(scores, dtype=np.float64)
        if len(scores) < 2:
            groups[name] = None
            continue
        aucs = _split_aucs(scores, max_splits, rng)
        pooled.append(aucs)
        groups[name] = {
            "subjects": len(scores),
            "halves": [len(scores) // 2, len(scores) - len(scores) // 2],
            "splits": len(aucs),
            "control_auc": round(float(np.quantile(aucs, CONTROL_QUANTILE, method="higher")), 4),
            "max_auc": round(float(aucs.max()), 4),
            "share_at_least_attack": round(float(np.mean(aucs >= attack_auc - 1e-12)), 4),
        }
    positives, negatives = list(training_scores), list(held_out_scores)
    p_value = (
        float(mannwhitneyu(positives, negatives, alternative="greater").pvalue) if positives and negatives else None
    )
    result: dict[str, Any] = {
        "attack_auc": attack_auc,
        "quantile": CONTROL_QUANTILE,
        "groups": groups,
        "mann_whitney_p": None if p_value is None else round(p_value, 4),
    }
    if not pooled:
        sizes = f"{len(positives)} training, {len(negatives)} held-out"
        return {
            **result,
            "control_auc": None,
            "share_at_least_attack": None,
            "exceeds_control": None,
            "reason": f"undefined: a split needs at least 2 subjects in a group ({sizes})",
        }
    aucs = np.concatenate(pooled)
    control_auc = float(np.quantile(aucs, CONTROL_QUANTILE, method="higher"))
    return {
        **result,
        "control_auc": round(control_auc, 4),
        "share_at_least_attack": round(float(np.mean(aucs >= attack_auc - 1e-12)), 4),
        "exceeds_control": bool(attack_auc > control_auc + 1e-12),
        "reason": None,
    }


def zu_statistic(held_out_distance: Sequence[float], synthetic_distance: Sequence[float]) -> float:
    """Meehan et al.'s Z_U: the Mann-Whitney U of synthetic against held-out distances, Z-scored under H0.

    U counts the (synthetic, held-out) pairs where the synthetic case is *farther* from the training
    set (ties half); Z_U = (U - (nm/2 - 1/2)) / sqrt(nm(n+m+1)/12), with their continuity correction.
    Z_U << 0: synthetic cases sit closer to the training set than held-out data do (data-copying);
    Z_U >> 0: farther (underfitting).

    >>> round(zu_statistic([1.0, 1.0], [0.0, 0.0]), 4)  # every synthetic case closer
    -1.1619
    """
    n, m = len(held_out_distance), len(synthetic_distance)
    u = mannwhitneyu(synthetic_distance, held_out_distance).statistic
    return float((u - (n * m / 2 - 0.5)) / math.sqrt(n * m * (n + m + 1) / 12))


def c_t_statistic(
    held_out_distance: Sequence[float],
    synthetic_distance: Sequence[float],
    held_out_cells: Sequence[int] | None = None,
    synthetic_cells: Sequence[int] | None = None,
    tau: float = 0.0,
) -> float | None:
    """Meehan et al.'s C_T: the average of per-cell Z_U, weighted by each cell's share of held-out data.

    Cells partition the space around the training set (theirs: k-means cells of the training
    data); only cells holding more than a share ``tau`` of the synthetic cases count. Distances
    are to the nearest training record *in the cell*: with precomputed nearest-training distances,
    the cells that keep this exact are the nearest training subject's (a Voronoi partition with
    one training subject per cell). Without cells, one cell: C_T = Z_U.

    Unlike their code, a cell with synthetic cases but no held-out data is left out rather than an
    error (it cannot be judged); ``None`` when no cell can.

    >>> round(c_t_statistic([1.0, 1.0, 2.0], [0.0, 0.0, 2.5], [0, 0, 1], [0, 0, 1]), 4)  # copies in cell 0 only
    -0.1079
    """
    held_out_cells = [0] * len(held_out_distance) if held_out_cells is None else list(held_out_cells)
    synthetic_cells = [0] * len(synthetic_distance) if synthetic_cells is None else list(synthetic_cells)
    held_out, synthetic = np.asarray(held_out_distance, float), np.asarray(synthetic_distance, float)
    held_out_cell, synthetic_cell = np.asarray(held_out_cells), np.asarray(synthetic_cells)
    weights, zus = [], []
    for cell in np.unique(synthetic_cell):
        in_held_out, in_synthetic = held_out[held_out_cell == cell], synthetic[synthetic_cell == cell]
        if len(in_held_out) == 0 or len(in_synthetic) / len(synthetic) <= tau:
            continue
        weights.append(len(in_held_out) / len(held_out))
        zus.append(zu_statistic(in_held_out, in_synthetic))
    if not weights:
        return None
    return float(np.dot(weights, zus) / np.sum(weights))


def dcr_test(
    synthetic_distance: Sequence[float], held_out_distance: Sequence[float], representation: str
) -> dict[str, Any]:
    """Distance to closest record: do synthetic cases sit closer to the training subjects than held-out subjects do?

    One-sided Mann-Whitney U test (exact below 8 per group without ties) of synthetic distances
    being smaller than held-out ones, each a distance to the nearest training subject in
    ``representation``. A memorizing generator puts its samples nearer its training data than
    fresh patients from the same population sit (Meehan et al. 2020; one cell of their C_T test,
    whose ``c_t`` is reported beside). ``closer_probability`` is the effect size: P[a synthetic case
    is closer than a held-out subject] (ties half); 0.5 = as close as another patient.

    ``smallest_p`` is the lowest p-value the exact test can give at these sizes, 1 / C(n + m, n):
    with one held-out subject and four cases it is 0.2, and no result can be significant.
    Undefined (``p_value`` None, with a ``reason``) without a held-out subject or synthetic case.

    >>> result = dcr_test([0.01, 0.02, 0.03], [0.4, 0.5], representation="1 - NCC")
    >>> result["closer_probability"], result["p_value"], result["smallest_p"]
    (1.0, 0.1, 0.1)
    """
    m, n = len(synthetic_distance), len(held_out_distance)
    result: dict[str, Any] = {
        "representation": representation,
        "synthetic_cases": m,
        "held_out_subjects": n,
        "synthetic_median_distance": round(float(np.median(synthetic_distance)), 4) if m else None,
        "held_out_median_distance": round(float(np.median(held_out_distance)), 4) if n else None,
    }
    if not m or not n:
        return {
            **result,
            "u": None,
            "closer_probability": None,
            "p_value": None,
            "c_t": None,
            "smallest_p": None,
            "reason": "undefined: needs at least one synthetic case and one held-out subject",
        }
    test = mannwhitneyu(synthetic_distance, held_out_distance, alternative="less")
    return {
        **result,
        "u": float(test.statistic),
        "closer_probability": round(1.0 - float(test.statistic) / (m * n), 4),
        "p_value": round(float(test.pvalue), 4),
        "c_t": round(zu_statistic(held_out_distance, synthetic_distance), 4),
        "smallest_p": 1.0 / math.comb(n + m, n),
        "reason": None,
    }
