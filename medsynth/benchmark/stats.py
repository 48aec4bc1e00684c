"""Statistics of the benchmark: bootstrap CIs over test subjects, paired differences, Wilcoxon, a forest plot.

The unit of replication is the test subject: a segmenter's seeds (and, on an external set, the
per-fold segmenters) are repeated measurements of the same subject, so they are averaged within
the subject first ("nested") and only subjects are resampled. Resampling (seed, subject) pairs
as if independent would make the intervals too narrow by about sqrt(seeds).

>>> interval = bootstrap_ci({"a": [0.8, 0.82], "b": [0.6], "c": [0.7, 0.7]})
>>> round(interval.mean, 3), interval.low <= interval.mean <= interval.high, interval.n
(0.703, True, 3)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

BOOTSTRAP_SAMPLES = 10_000


@dataclass
class Interval:
    """Mean over subjects and its percentile-bootstrap confidence interval."""

    mean: float
    low: float
    high: float
    n: int  # test subjects

    @property
    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0


def subject_means(values: Mapping[str, Sequence[float]]) -> dict[str, float]:
    """Each subject's mean over its repeated measurements (seeds, folds)."""
    return {subject: float(np.mean(v)) for subject, v in values.items() if len(v)}


def bootstrap_ci(
    values: Mapping[str, Sequence[float]], level: float = 0.95, samples: int = BOOTSTRAP_SAMPLES, seed: int = 0
) -> Interval:
    """Mean of the subject means with a percentile bootstrap CI, resampling subjects (seeds nested).

    Seeded, so a report is reproducible; with one subject the interval is the point.
    """
    means = np.array(list(subject_means(values).values()), dtype=float)
    if means.size == 0:
        raise ValueError("bootstrap_ci: no values")
    rng = np.random.default_rng(seed)
    resampled = means[rng.integers(0, means.size, size=(samples, means.size))].mean(axis=1)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(resampled, [tail, 100 - tail])
    return Interval(float(means.mean()), float(low), float(high), int(means.size))


def paired_differences(
    arm: Mapping[tuple[str, str], float], baseline: Mapping[tuple[str, str], float]
) -> dict[str, list[float]]:
    """``arm - baseline`` per subject, over the (subject, replicate) keys both have (same seed, same fold)."""
    differences: dict[str, list[float]] = {}
    for key in sorted(set(arm) & set(baseline)):
        differences.setdefault(key[0], []).append(arm[key] - baseline[key])
    return differences


def wilcoxon_p(differences: Sequence[float]) -> float | None:
    """Two-sided Wilcoxon signed-rank p of per-subject differences (exact for small n); None below 2 subjects.

    >>> wilcoxon_p([1, 2, 3, 4, 5, 6])  # all six positive: 2 / 2**6
    0.03125
    """
    from scipy.stats import wilcoxon

    values = np.asarray(differences, dtype=float)
    if values.size < 2:
        return None
    if not np.any(values):  # scipy refuses all-zero differences; no evidence of any difference
        return 1.0
    return float(wilcoxon(values, alternative="two-sided").pvalue)


def verdict(interval: Interval, p: float | None, alpha: float = 0.05) -> str:
    """'real' when the CI of a difference excludes 0 and the Wilcoxon p is below ``alpha``, else 'noise'.

    Both are asked for because a percentile bootstrap over a handful of subjects is too narrow (with
    two subjects of the same sign it always excludes 0), while the exact Wilcoxon test cannot reach
    p < 0.05 with fewer than 6 subjects: a difference is called real only when both see it.
    """
    return "real" if interval.excludes_zero and p is not None and p < alpha else "noise"


def forest_plot(rows: Sequence[tuple[str, Interval, bool]], label: str, title: str, path: Path) -> Path:
    """Paired differences to the baseline, one line each: mean and 95% CI (blue when ``real``), a line at 0."""
    # a Figure without pyplot never switches the backend of the user's process (a notebook's inline figures)
    from matplotlib.figure import Figure

    from medsynth.io import atomic_path

    fig = Figure(figsize=(7, 1.2 + 0.35 * len(rows)))
    ax = fig.subplots()
    for y, (_, interval, real) in enumerate(reversed(rows)):
        color = "tab:blue" if real else "tab:gray"
        ax.errorbar(
            interval.mean,
            y,
            xerr=[[interval.mean - interval.low], [interval.high - interval.mean]],
            fmt="o",
            color=color,
            capsize=3,
        )
    ax.axvline(0, color="black", linewidth=0.8, linestyle="--")
    ax.set_yticks(range(len(rows)), [row[0] for row in reversed(rows)], fontsize=8)
    ax.set_xlabel(label)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    return path
