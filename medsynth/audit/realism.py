"""Realism as a measured quantity: can a classifier tell synthetic patches from real ones, and how does texture differ?

Two views, each beside what real patients alone give:

- :func:`c2st`: a classifier two-sample test (Lopez-Paz & Oquab, "Revisiting Classifier Two-Sample
  Tests", ICLR 2017). A small 3D CNN (:class:`PatchClassifier`) learns to tell real patches from
  synthetic ones on one set of cases and is scored (ROC AUC, 0.5 = indistinguishable) on other
  cases, none on both sides, with a case-level bootstrap interval (:func:`case_bootstrap_auc`).
  :func:`c2st_with_baselines` runs it as the audit does: training subjects vs half the cohort,
  scored on held-out subjects vs the other half; a real-vs-real *control* (four disjoint groups
  of real subjects in the same roles), the AUC that patient differences alone give; and a
  *floor*, the same test on a per-class Gaussian rendering (:func:`gaussian_render`), the AUC of
  an obviously unrealistic generator (~1.0).
- :func:`texture_report`: per modality and class, the synthetic/real ratio of the mean gradient
  magnitude and of the local standard deviation (3x3x3); per modality, the ratio of the radially
  averaged power spectrum in wavelength bands (:func:`band_power`); and the grid-artefact index
  (:func:`grid_artifact_index`). Each ratio is printed beside the spread of the same ratio
  between real subjects.

:func:`realism_report` runs both: the audit's ``realism`` section. Everything takes cases as
numpy arrays (:class:`CaseArrays`), so ``scripts/report_generators.py`` can call it on any groups.

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> smooth = np.cumsum(np.cumsum(rng.normal(size=(16, 16, 16)), 0), 1)
>>> blocky = np.repeat(np.repeat(np.repeat(smooth[::2, ::2, ::2], 2, 0), 2, 1), 2, 2)
>>> mask = np.ones(smooth.shape, bool)
>>> grid_artifact_index(blocky, mask) > 1.5, round(grid_artifact_index(smooth, mask), 1)
(True, 1.0)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from scipy.ndimage import maximum_filter, uniform_filter

from medsynth.data.scheme import CLASS_NAMES, TUMOR_CLASSES

TEXTURE_CLASSES = (1, 2, 3, 4, 5, 6)  # csf, gm, wm, netc, snfh, et
DEFAULT_BANDS_MM: tuple[tuple[float, float], ...] = ((4.0, 8.0), (8.0, 16.0), (16.0, 32.0))
MIN_HELD_OUT = 2  # held-out subjects the C2ST needs (see c2st_with_baselines)
MIN_SYNTHETIC = 2  # synthetic cases: one half trains, the other is scored
RATIO_FLOOR = 1e-6  # a real texture value at or below this (a constant region) gives no ratio
GRID_INDEX_CAP = 100.0  # per-axis grid index of a pure nearest-neighbour upsampling (one parity of steps flat)
KINDS = ("all", "tumor", "healthy")  # patch kinds the C2ST is scored on
FEW_REAL_NOTE = (
    "with few real subjects the real-vs-real control is not 0.5: a classifier that learns the training "
    "patients' look ranks the few evaluation patients by chance, so the control shows how far from 0.5 "
    "patient differences alone move the AUC at these sizes"
)


@dataclass(frozen=True)
class CaseArrays:
    """One case as arrays: images (C, X, Y, Z), canonical label map (X, Y, Z), brain mask (default label > 0)."""

    case_id: str
    images: np.ndarray
    label_map: np.ndarray
    brain_mask: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.images.ndim != 4:
            raise ValueError(f"case {self.case_id}: images must be (C, X, Y, Z), got shape {self.images.shape}")
        if self.label_map.shape != self.images.shape[1:]:
            raise ValueError(
                f"case {self.case_id}: label map shape {self.label_map.shape} differs from images {self.images.shape}"
            )
        if self.brain_mask is not None and self.brain_mask.shape != self.label_map.shape:
            raise ValueError(f"case {self.case_id}: brain mask shape {self.brain_mask.shape} differs from the label's")

    @property
    def brain(self) -> np.ndarray:
        return self.label_map > 0 if self.brain_mask is None else self.brain_mask.astype(bool)


# ---------------------------------------------------------------------------------------------- C2ST


def _draw(mask: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` voxel positions (count, 3) of ``mask``, with replacement only when it has fewer voxels."""
    where = np.flatnonzero(mask)
    if not where.size:
        return np.zeros((0, 3), np.int64)
    chosen = rng.choice(where, size=count, replace=where.size < count)
    return np.stack(np.unravel_index(chosen, mask.shape), axis=1)


def patch_centres(case: CaseArrays, patch: int, count: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """``count`` patch centres (count, 3) of each kind: ``tumor`` on netc/snfh/et voxels, ``healthy`` away from it.

    A healthy centre is a brain voxel whose whole ``patch`` cube holds no tumor; on a grid too
    small for that (a large tumor in a small brain) the margin shrinks to half a patch, then to
    none, so that every case with a brain gives healthy patches. A tumor-free case gives no tumor patches.
    """
    tumor = np.isin(case.label_map, TUMOR_CLASSES)
    healthy = case.brain & ~tumor
    far = healthy
    if tumor.any():
        for size in (patch, max(patch // 2, 1)):
            candidate = healthy & ~maximum_filter(tumor.astype(np.uint8), size=size).astype(bool)
            if candidate.any():
                far = candidate
                break
    return {"tumor": _draw(tumor, count, rng), "healthy": _draw(far, count, rng)}


def _extract(images: np.ndarray, centre: np.ndarray, patch: int) -> np.ndarray:
    """The ``patch``-sided cube of ``images`` around ``centre``, zero (background) where it leaves the grid."""
    out = np.zeros((images.shape[0], patch, patch, patch), np.float32)
    start = centre - patch // 2
    source, target = [], []
    for begin, size in zip(start, images.shape[1:], strict=True):
        low, high = max(begin, 0), min(begin + patch, size)
        source.append(slice(low, high))
        target.append(slice(low - begin, high - begin))
    out[(slice(None), *target)] = images[(slice(None), *source)]
    return out


@dataclass
class _Pool:
    """The patches of one side (real or synthetic) of a C2ST: their case, centre and kind."""

    cases: Sequence[CaseArrays]
    case_index: np.ndarray  # (N,)
    centres: np.ndarray  # (N, 3)
    tumor: np.ndarray  # (N,) bool: a tumor patch (else healthy)

    @classmethod
    def sample(cls, cases: Sequence[CaseArrays], patch: int, count: int, rng: np.random.Generator) -> _Pool:
        index, centres, tumor = [], [], []
        for i, case in enumerate(cases):
            for kind, positions in patch_centres(case, patch, count, rng).items():
                index += [i] * len(positions)
                centres.append(positions)
                tumor += [kind == "tumor"] * len(positions)
        return cls(cases, np.array(index, np.int64), np.concatenate(centres), np.array(tumor, bool))

    def batch(self, rows: np.ndarray, patch: int) -> np.ndarray:
        return np.stack([_extract(self.cases[self.case_index[r]].images, self.centres[r], patch) for r in rows])


class PatchClassifier(torch.nn.Module):
    """The C2ST's classifier: 3 stride-2 3x3x3 convolutions (``width``, 2x, 4x channels), global pooling, a logit.

    Small on purpose (~18k weights at width 8): it trains on CPU in seconds and, with a handful of
    subjects, a larger one would learn the patients rather than the generator.

    Args:
        in_channels: modalities of the patches.
        width: channels of the first convolution.

    >>> PatchClassifier(2)(torch.zeros(3, 2, 16, 16, 16)).shape
    torch.Size([3])
    """

    def __init__(self, in_channels: int, width: int = 8) -> None:
        super().__init__()
        if in_channels < 1 or width < 1:
            raise ValueError(f"in_channels and width must be >= 1, got {in_channels}, {width}")
        layers: list[torch.nn.Module] = []
        channels = in_channels
        for out in (width, 2 * width, 4 * width):
            # batch norm, not instance norm: an instance norm would erase each patch's intensity level and
            # contrast, which give a poor generator away; without any norm training stalls for ~100 steps
            layers += [
                torch.nn.Conv3d(channels, out, 3, stride=2, padding=1),
                torch.nn.BatchNorm3d(out),
                torch.nn.LeakyReLU(0.2),
            ]
            channels = out
        self.features = torch.nn.Sequential(*layers)
        self.head = torch.nn.Linear(channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).mean(dim=(2, 3, 4))).squeeze(1)


def case_bootstrap_auc(
    real_scores: Sequence[np.ndarray], synthetic_scores: Sequence[np.ndarray], samples: int = 1000, seed: int = 0
) -> tuple[float | None, tuple[float, float] | None]:
    """AUC P[synthetic patch scores higher than real] (+ half the ties) and its case-level bootstrap 95% interval.

    Each argument holds the patch scores of one case per entry. The bootstrap resamples cases
    (not patches) on each side, with replacement, since patches of one case are not independent:
    a per-patch bootstrap would give an interval far too narrow. (None, None) when a side has no patches.

    >>> real = [np.array([0.1, 0.2]), np.array([0.3, 0.6])]
    >>> synthetic = [np.array([0.5, 0.9]), np.array([0.4, 0.7])]
    >>> auc, (low, high) = case_bootstrap_auc(real, synthetic, samples=200, seed=0)
    >>> auc, low <= auc <= high
    (0.875, True)
    """
    real = [np.asarray(s, np.float64) for s in real_scores if len(s)]
    synthetic = [np.asarray(s, np.float64) for s in synthetic_scores if len(s)]
    if not real or not synthetic:
        return None, None
    # wins[a, b]: pairs (patch of real case a, patch of synthetic case b) won by the synthetic patch; any
    # resample's AUC is then a weighted sum of this matrix, so the bootstrap costs no re-ranking
    wins = np.array(
        [[((s[None, :] > r[:, None]) + 0.5 * (s[None, :] == r[:, None])).sum() for s in synthetic] for r in real]
    )
    pairs = np.outer([len(r) for r in real], [len(s) for s in synthetic]).astype(np.float64)
    auc = float(wins.sum() / pairs.sum())
    rng = np.random.default_rng(seed)
    u = rng.multinomial(len(real), np.full(len(real), 1 / len(real)), size=samples)
    v = rng.multinomial(len(synthetic), np.full(len(synthetic), 1 / len(synthetic)), size=samples)
    boots = ((u @ wins) * v).sum(1) / ((u @ pairs) * v).sum(1)
    return auc, (float(np.quantile(boots, 0.025)), float(np.quantile(boots, 0.975)))


def _train(
    model: PatchClassifier,
    real: _Pool,
    synthetic: _Pool,
    patch: int,
    steps: int,
    batch_size: int,
    lr: float,
    rng: np.random.Generator,
) -> None:
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    half = max(batch_size // 2, 1)
    target = torch.cat([torch.zeros(half), torch.ones(half)])  # balanced batches: 1 = synthetic
    model.train()
    for _ in range(steps):
        x = np.concatenate(
            [
                real.batch(rng.integers(len(real.centres), size=half), patch),
                synthetic.batch(rng.integers(len(synthetic.centres), size=half), patch),
            ]
        )
        loss = torch.nn.functional.binary_cross_entropy_with_logits(model(torch.from_numpy(x)), target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def _scores(model: PatchClassifier, pool: _Pool, patch: int, batch_size: int = 32) -> np.ndarray:
    model.eval()
    out = []
    with torch.no_grad():
        for start in range(0, len(pool.centres), batch_size):
            rows = np.arange(start, min(start + batch_size, len(pool.centres)))
            out.append(model(torch.from_numpy(pool.batch(rows, patch))).numpy())
    return np.concatenate(out) if out else np.zeros(0)


def c2st(
    real_train: Sequence[CaseArrays],
    synthetic_train: Sequence[CaseArrays],
    real_eval: Sequence[CaseArrays],
    synthetic_eval: Sequence[CaseArrays],
    *,
    patch: int = 32,
    patches_per_case: int = 8,
    steps: int = 150,
    batch_size: int = 16,
    width: int = 8,
    learning_rate: float = 3e-3,
    bootstrap_samples: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """Classifier two-sample test: train on ``*_train`` patches, ROC AUC on ``*_eval`` patches, per patch kind.

    A :class:`PatchClassifier` learns real (0) vs synthetic (1) for ``steps`` steps of balanced
    batches of fresh patches (about ``steps * batch_size / 2`` per side, half tumor, half healthy,
    spread over the cases: :func:`patch_centres`); then it scores ``patches_per_case`` tumor and
    ``patches_per_case`` healthy patches of each evaluation case. The four groups must hold
    different cases (no case on both sides, nor in training and evaluation), else the AUC
    measures memorised cases.

    Returns ``{kind: {"auc", "ci95", "patches": [real, synthetic]}}`` for ``all``, ``tumor`` and
    ``healthy`` patches (``auc`` None where a side has no patch of that kind), plus the sizes:
    0.5 = the classifier cannot tell the evaluation sides apart, 1.0 = it always can. The interval
    is :func:`case_bootstrap_auc`'s. Deterministic for a ``seed`` (on one machine and thread count:
    float sums in torch may differ across them); ``patch`` is capped by the grid.
    """
    groups_all = {
        "real_train": real_train,
        "synthetic_train": synthetic_train,
        "real_eval": real_eval,
        "synthetic_eval": synthetic_eval,
    }
    for name, group in groups_all.items():
        if not group:
            raise ValueError(f"c2st: {name} holds no case")
    ids = [c.case_id for g in (real_train, synthetic_train, real_eval, synthetic_eval) for c in g]
    if len(set(ids)) != len(ids):
        raise ValueError("c2st: a case appears in more than one group; the test needs disjoint cases")
    if min(patch, patches_per_case, steps, batch_size, bootstrap_samples) < 1:
        raise ValueError("c2st: patch, patches_per_case, steps, batch_size and bootstrap_samples must be >= 1")
    channels = {c.images.shape[0] for g in (real_train, synthetic_train, real_eval, synthetic_eval) for c in g}
    if len(channels) != 1:
        raise ValueError(f"c2st: cases have different numbers of modalities {sorted(channels)}")
    patch = int(min(patch, *(min(c.images.shape[1:]) for c in real_train)))
    rng = np.random.default_rng(seed)
    half = max(batch_size // 2, 1)
    # fresh patches all along training: from a small fixed pool the classifier memorises the patches
    # themselves (training loss ~0) and learns nothing that carries over to other cases
    pools = [
        _Pool.sample(g, patch, max(patches_per_case, -(-steps * half // (2 * len(g)))), rng)
        for g in (real_train, synthetic_train)
    ]
    pools += [_Pool.sample(g, patch, patches_per_case, rng) for g in (real_eval, synthetic_eval)]
    for name, pool in zip(groups_all, pools, strict=True):
        if not len(pool.centres):
            raise ValueError(f"c2st: no brain voxel in the cases of {name}")
    with torch.random.fork_rng(devices=[]):  # the caller's torch random state stays as it was
        torch.manual_seed(seed)
        model = PatchClassifier(channels.pop(), width)
        _train(model, pools[0], pools[1], patch, steps, batch_size, learning_rate, rng)
    real_scores, synthetic_scores = _scores(model, pools[2], patch), _scores(model, pools[3], patch)
    result: dict[str, Any] = {
        "patch": patch,
        "steps": steps,
        "train_cases": [len(real_train), len(synthetic_train)],
        "eval_cases": [len(real_eval), len(synthetic_eval)],
    }
    for kind in KINDS:
        per_case = []
        for pool, scores in ((pools[2], real_scores), (pools[3], synthetic_scores)):
            keep = np.ones(len(scores), bool) if kind == "all" else pool.tumor == (kind == "tumor")
            per_case.append([scores[keep & (pool.case_index == i)] for i in range(len(pool.cases))])
        auc, ci = case_bootstrap_auc(*per_case, samples=bootstrap_samples, seed=seed)
        result[kind] = {
            "auc": None if auc is None else round(auc, 4),
            "ci95": None if ci is None else [round(ci[0], 4), round(ci[1], 4)],
            "patches": [int(sum(len(s) for s in side)) for side in per_case],
        }
    return result


def gaussian_render(targets: Sequence[CaseArrays], reference: Sequence[CaseArrays], seed: int = 0) -> list[CaseArrays]:
    """Each target's label map rendered voxel by voxel from N(mean, sd) of its class in ``reference``, per modality.

    The C2ST's floor: independent voxels with the right class intensities and no texture at all,
    an obviously unrealistic generator. A class absent from ``reference`` gets the brain's mean and
    sd; outside the brain the images are 0, as prepared scans are.

    >>> label = np.array([[[0, 1], [2, 2]]])
    >>> case = CaseArrays("r", np.array([[[[0.0, 1.0], [5.0, 7.0]]]]), label)
    >>> rendered = gaussian_render([case], [case], seed=0)[0]
    >>> rendered.case_id, float(rendered.images[0, 0, 0, 0]), float(rendered.images[0, 0, 0, 1])
    ('gaussian-r', 0.0, 1.0)
    """
    if not reference:
        raise ValueError("gaussian_render: no reference case")
    channels = reference[0].images.shape[0]
    stats: dict[int, list[tuple[float, float]]] = {}
    values = set(np.unique(np.concatenate([np.unique(c.label_map) for c in targets]))) - {0}
    for value in [*values, -1]:  # -1: the whole brain, for classes the reference lacks
        pooled = [c.images[:, c.label_map == value] if value >= 0 else c.images[:, c.brain] for c in reference]
        pooled = np.concatenate(pooled, axis=1)
        if pooled.shape[1]:
            stats[int(value)] = [(float(p.mean()), float(p.std())) for p in pooled]
    rng = np.random.default_rng(seed)
    rendered = []
    for case in targets:
        images = np.zeros((channels, *case.label_map.shape), np.float32)
        for value in sorted(set(np.unique(case.label_map)) - {0}):
            where = case.label_map == value
            for channel, (mean, sd) in enumerate(stats.get(int(value), stats[-1])):
                images[channel][where] = rng.normal(mean, sd, int(where.sum()))
        rendered.append(CaseArrays(f"gaussian-{case.case_id}", images, case.label_map, case.brain_mask))
    return rendered


def _halves(synthetic: Sequence[CaseArrays], rng: np.random.Generator) -> tuple[list[CaseArrays], list[CaseArrays]]:
    order = rng.permutation(len(synthetic))
    half = (len(synthetic) + 1) // 2
    return [synthetic[i] for i in order[:half]], [synthetic[i] for i in order[half:]]


def _kind_summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    summary = {}
    for kind in KINDS:
        aucs = [r[kind]["auc"] for r in runs if r[kind]["auc"] is not None]
        summary[kind] = (
            {"auc_mean": round(float(np.mean(aucs)), 4), "auc_range": [min(aucs), max(aucs)]} if aucs else None
        )
    return summary


def c2st_with_baselines(
    training: Sequence[CaseArrays],
    held_out: Sequence[CaseArrays],
    synthetic: Sequence[CaseArrays],
    *,
    control_folds: int = 2,
    seed: int = 0,
    **options: Any,
) -> dict[str, Any]:
    """The audit's C2ST: the test, its real-vs-real control and its Gaussian floor (``options``: :func:`c2st`'s).

    - ``test``: ``training`` subjects vs one half of ``synthetic`` (a seeded shuffle), scored on the
      ``held_out`` subjects vs the other half. Needs 2 held-out subjects and 2 synthetic cases, else
      nothing runs (a note says why): one held-out subject is one patient ranked, not a test.
    - ``control``: the same test with real subjects on both sides. All real subjects are shuffled
      (``control_folds`` times, seeded) and cut into four disjoint groups of ``n // 4`` subjects:
      real-train, "synthetic"-train, real-eval, "synthetic"-eval (the rest sit out). Needs 4 real
      subjects; with 4 to 7 each group is one subject, so each fold is a leave-two-pairs-out test
      and the folds' AUCs scatter widely. Its AUCs are what patient differences alone give.
    - ``floor``: the test with each synthetic case replaced by :func:`gaussian_render` of its label
      map (training-subject statistics): an unrealistic generator, near 1.0 when the classifier works.

    The test is informative when its interval sits clearly between the control and the floor; a
    floor well below 1.0 means the classifier is too weak (more ``steps``) to judge the cohort.
    """
    rng = np.random.default_rng(seed)
    result: dict[str, Any] = {"test": None, "control": None, "floor": None, "notes": [FEW_REAL_NOTE]}
    if len(held_out) < MIN_HELD_OUT or len(synthetic) < MIN_SYNTHETIC:
        result["notes"].append(
            f"not run: the C2ST needs {MIN_HELD_OUT} held-out subjects and {MIN_SYNTHETIC} synthetic cases "
            f"({len(held_out)} held-out, {len(synthetic)} synthetic here); with one held-out subject its AUC "
            "would rank one patient and its case-level interval could not vary on the real side"
        )
        return result
    synthetic_train, synthetic_eval = _halves(synthetic, rng)
    result["test"] = c2st(training, synthetic_train, held_out, synthetic_eval, seed=seed, **options)
    result["test"]["synthetic_train"] = [c.case_id for c in synthetic_train]
    rendered = {c.case_id: r for c, r in zip(synthetic, gaussian_render(synthetic, training, seed), strict=True)}
    result["floor"] = c2st(
        training,
        [rendered[c.case_id] for c in synthetic_train],
        held_out,
        [rendered[c.case_id] for c in synthetic_eval],
        seed=seed,
        **options,
    )
    real = [*training, *held_out]
    size = len(real) // 4
    if size and control_folds > 0:
        folds = []
        for fold in range(control_folds):
            order = np.random.default_rng([seed, fold]).permutation(len(real))
            groups = [[real[i] for i in order[g * size : (g + 1) * size]] for g in range(4)]
            run = c2st(*groups, seed=seed + 1 + fold, **options)
            run["groups"] = [[c.case_id for c in g] for g in groups]
            folds.append(run)
        result["control"] = {"folds": folds, "subjects_per_group": size, **_kind_summary(folds)}
    else:
        result["notes"].append(f"control not run: it needs 4 real subjects ({len(real)} here) and control_folds >= 1")
    return result


# ---------------------------------------------------------------------------------------------- texture


def gradient_magnitude(image: np.ndarray, spacing: Sequence[float] = (1.0, 1.0, 1.0)) -> np.ndarray:
    """|grad image| per voxel (central differences, intensity per mm)."""
    return np.sqrt(sum(g**2 for g in np.gradient(image.astype(np.float64), *spacing)))


def local_sd(image: np.ndarray, size: int = 3) -> np.ndarray:
    """Standard deviation of each voxel's ``size``^3 neighbourhood."""
    image = image.astype(np.float64)
    mean = uniform_filter(image, size)
    return np.sqrt(np.clip(uniform_filter(image**2, size) - mean**2, 0, None))


def _wavelengths(shape: Sequence[int], spacing: Sequence[float]) -> np.ndarray:
    """Wavelength (mm) of every coefficient of an ``rfftn`` of ``shape`` (inf at the mean)."""
    axes = [np.fft.fftfreq(n, d) for n, d in zip(shape[:-1], spacing[:-1], strict=True)]
    axes.append(np.fft.rfftfreq(shape[-1], spacing[-1]))
    radius = np.sqrt(sum(f**2 for f in np.meshgrid(*axes, indexing="ij")))
    with np.errstate(divide="ignore"):
        return 1.0 / radius


def band_power(
    image: np.ndarray,
    mask: np.ndarray,
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
    bands_mm: Sequence[tuple[float, float]] = DEFAULT_BANDS_MM,
    wavelengths: np.ndarray | None = None,
) -> list[float | None]:
    """Radially averaged power spectrum of the brain in each wavelength band [low, high) mm (None: no frequency in it).

    The image minus its brain mean, zero outside ``mask``, so the brain's edge adds the same
    low-frequency power to real and synthetic cases of like brains; divided by the brain's voxels.
    A band finer than twice the voxel size lies beyond the grid's Nyquist limit and is None.
    ``wavelengths``: :func:`_wavelengths` of the grid, computed once by callers that loop.
    """
    centred = np.where(mask, image - image[mask].mean(), 0.0)
    power = np.abs(np.fft.rfftn(centred)) ** 2 / max(int(mask.sum()), 1)
    wavelengths = _wavelengths(image.shape, spacing) if wavelengths is None else wavelengths
    out: list[float | None] = []
    for low, high in bands_mm:
        band = (wavelengths >= low) & (wavelengths < high)
        out.append(float(power[band].mean()) if band.any() else None)
    return out


def grid_artifact_index(image: np.ndarray, mask: np.ndarray, label_map: np.ndarray | None = None) -> float | None:
    """Alternate-step ratio: mean |x[i+1] - x[i]| over even i / over odd i, as max(r, 1/r), averaged over axes.

    Only steps with both voxels in ``mask`` count, and with a ``label_map`` only steps within one
    class: a hard class edge (as in phantoms) falls on one parity by chance and would read as a
    grid on a small volume. A 2-voxel grid (nearest-neighbour upsampling,
    a checkerboard of transposed convolutions) makes every other step small, so the ratio rises
    clearly above 1; real scans give ~1.01. Capped at ``GRID_INDEX_CAP`` per axis (a pure copy's flat
    steps would make it infinite). None when no axis has steps of both parities inside the mask.
    """
    ratios = []
    for axis in range(image.ndim):
        step = np.abs(np.diff(image.astype(np.float64), axis=axis))
        inside = np.take(mask, range(1, mask.shape[axis]), axis=axis) & np.take(
            mask, range(mask.shape[axis] - 1), axis=axis
        )
        if label_map is not None:
            inside &= np.diff(label_map, axis=axis) == 0
        parity = (np.arange(step.shape[axis]) % 2).reshape([-1 if a == axis else 1 for a in range(image.ndim)])
        even, odd = step[inside & (parity == 0)], step[inside & (parity == 1)]
        if even.size and odd.size and even.mean() + odd.mean() > 0:
            # a pure nearest-neighbour copy has exactly flat steps of one parity: capped, not infinite
            ratio = max(even.mean(), odd.mean()) / max(min(even.mean(), odd.mean()), 1e-300)
            ratios.append(min(ratio, GRID_INDEX_CAP))
    return float(np.mean(ratios)) if ratios else None


def case_texture(
    case: CaseArrays,
    spacing: Sequence[float],
    modalities: Sequence[str],
    bands_mm: Sequence[tuple[float, float]] = DEFAULT_BANDS_MM,
    wavelengths: np.ndarray | None = None,
) -> dict[str, float | None]:
    """Texture measures of one case: ``gradient/<modality>/<class>``, ``local_sd/...``, ``power/<modality>/<band>``,
    ``grid_index`` (mean over modalities); a class the case lacks is absent."""
    brain = case.brain
    out: dict[str, float | None] = {}
    grid = []
    for modality, image in zip(modalities, case.images, strict=True):
        gradient, spread = gradient_magnitude(image, spacing), local_sd(image)
        for value in TEXTURE_CLASSES:
            where = case.label_map == value
            if where.any():
                out[f"gradient/{modality}/{CLASS_NAMES[value]}"] = float(gradient[where].mean())
                out[f"local_sd/{modality}/{CLASS_NAMES[value]}"] = float(spread[where].mean())
        for (low, high), power in zip(bands_mm, band_power(image, brain, spacing, bands_mm, wavelengths), strict=True):
            out[f"power/{modality}/{low:g}-{high:g}mm"] = power
        grid.append(grid_artifact_index(image, brain, case.label_map))
    measured = [g for g in grid if g is not None]
    out["grid_index"] = float(np.mean(measured)) if measured else None
    return out


def _ratio(a: float | None, b: float | None) -> float | None:
    # a real value of ~0 (a constant region: phantoms, a class filled with one value) has no meaningful ratio
    return None if a is None or b is None or b <= RATIO_FLOOR else round(a / b, 4)


def _mean(values: list[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return float(np.mean(kept)) if kept else None


def texture_report(
    training: Sequence[CaseArrays],
    held_out: Sequence[CaseArrays],
    synthetic: Sequence[CaseArrays],
    spacing: Sequence[float],
    modalities: Sequence[str] | None = None,
    bands_mm: Sequence[tuple[float, float]] = DEFAULT_BANDS_MM,
) -> dict[str, Any]:
    """Synthetic/real ratios of every :func:`case_texture` measure, each beside the real-vs-real spread.

    For each measure: the mean of each group's per-case values, ``ratio`` = synthetic / training,
    ``held_out_ratio`` = held-out / training, and ``real_spread`` = [min, max] over every real
    subject of its value / the mean of the *other* training subjects: how far one patient sits
    from the rest. A synthetic ratio inside that spread is as close as another patient; a
    gradient or local-SD ratio well below it means too smooth, above it too noisy; a power ratio
    below it in the finest band, too blurry. ``grid_index`` is an index, not a ratio: it is listed
    per group (real scans ~1.01; a 2-voxel grid clearly above).
    """
    channels = training[0].images.shape[0] if training else synthetic[0].images.shape[0]
    modalities = list(modalities) if modalities is not None else [f"channel{i}" for i in range(channels)]
    shape = (training or synthetic)[0].label_map.shape
    wavelengths = _wavelengths(shape, spacing)
    groups = {
        name: [case_texture(c, spacing, modalities, bands_mm, wavelengths) for c in cases]
        for name, cases in (("training", training), ("held_out", held_out), ("synthetic", synthetic))
    }
    # first-seen order: modality by modality, classes csf to et, bands fine to coarse, as the report lists them
    keys = [k for k in dict.fromkeys(k for values in groups.values() for v in values for k in v) if k != "grid_index"]
    measures = {}
    for key in keys:
        means = {name: _mean([v.get(key) for v in values]) for name, values in groups.items()}
        spread = []
        real = [
            *(("training", i, v) for i, v in enumerate(groups["training"])),
            *(("held_out", -1, v) for v in groups["held_out"]),
        ]
        for group, index, values in real:
            others = _mean(
                [v.get(key) for j, v in enumerate(groups["training"]) if not (group == "training" and j == index)]
            )
            ratio = _ratio(values.get(key), others)
            if ratio is not None:
                spread.append(ratio)
        measures[key] = {
            **{name: None if m is None else round(m, 6) for name, m in means.items()},
            "ratio": _ratio(means["synthetic"], means["training"]),
            "held_out_ratio": _ratio(means["held_out"], means["training"]),
            "real_spread": [min(spread), max(spread)] if spread else None,
        }
    grid = {name: [v["grid_index"] for v in values if v["grid_index"] is not None] for name, values in groups.items()}
    real_grid = grid["training"] + grid["held_out"]
    return {
        "spacing_mm": [round(float(s), 4) for s in spacing],
        "bands_mm": [list(b) for b in bands_mm],
        "measures": measures,
        "grid_index": {
            "synthetic_mean": None if not grid["synthetic"] else round(float(np.mean(grid["synthetic"])), 4),
            "synthetic_max": None if not grid["synthetic"] else round(float(np.max(grid["synthetic"])), 4),
            "real_mean": None if not real_grid else round(float(np.mean(real_grid)), 4),
            "real_range": None if not real_grid else [round(float(min(real_grid)), 4), round(float(max(real_grid)), 4)],
        },
    }


def realism_report(
    training: Sequence[CaseArrays],
    held_out: Sequence[CaseArrays],
    synthetic: Sequence[CaseArrays],
    spacing: Sequence[float],
    modalities: Sequence[str] | None = None,
    *,
    c2st_run: bool = True,
    control_folds: int = 2,
    seed: int = 0,
    **c2st_options: Any,
) -> dict[str, Any]:
    """The audit's ``realism`` section: :func:`c2st_with_baselines` (unless ``c2st_run`` is false) and
    :func:`texture_report`. ``c2st_options``: :func:`c2st`'s keywords (patch, steps...)."""
    skipped = {"test": None, "control": None, "floor": None, "notes": ["not run: the C2ST was switched off"]}
    return {
        "c2st": c2st_with_baselines(
            training, held_out, synthetic, control_folds=control_folds, seed=seed, **c2st_options
        )
        if c2st_run
        else skipped,
        "texture": texture_report(training, held_out, synthetic, spacing, modalities),
    }
