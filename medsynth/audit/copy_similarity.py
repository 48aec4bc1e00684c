"""Copy similarity: how close a synthetic case comes to a training scan, through the disguises of a copy.

A memorizing generator rarely returns a voxel-exact copy: it shifts it by a few millimetres,
rotates it by a few degrees, changes its contrast, blurs it, or copies one region (or one
modality) into an otherwise new case. The similarity of a case to a training scan is therefore
the best of several views, each chosen to undo one disguise:

- **contrast**: every modality is rank-equalised inside its brain (each brain voxel replaced by
  its intensity quantile), so any monotone change of contrast (linear, gamma, windowing) leaves
  the volume as it was; the correlations below also ignore affine intensity changes.
- **per modality**: every modality is compared on its own and the best one counts, so one
  modality copied verbatim beside a synthetic other is not averaged away.
- **mirror, shift, rotation**: the training scan is matched as is and left-right mirrored, over
  rotations up to about :data:`MAX_ROTATION_DEG` around its brain centre and integer shifts up
  to :data:`MAX_SHIFT` voxels. Shifts come from one FFT cross-correlation per rotation, which
  scores every shift at once; rotations are searched on a coarse grid at half resolution, the best
  grid point refined by a few coordinate steps (still at half resolution), and only that
  transform (and no rotation, which a pure shift needs) is scored at full resolution. The search
  runs against the training scan the coarse grid ranks first; the others get the in-place views
  below. This keeps a 24-case check against four training subjects under a minute on two cores.
- **partial copy**: the correlation is also taken in overlapping patches (a side of
  :data:`PATCH_SHARE` of the brain's extent, 20-24 voxels on the 2 mm BraTS grid, a quarter-patch
  apart) inside the case's brain, and the best patch counts, so a copied block or hemisphere
  pasted into another brain is found even when the whole-brain correlation is low. Patches are
  compared in place (and mirrored) against every training scan, and through the rigid transform
  found; a region copied and moved on its own, apart from the rest of the case, is not searched.
- **blur**: the training scan is also compared smoothed by :data:`BLUR_SIGMA` voxel (whole brain
  and patches), which a copy blurred by about as much matches closely; smoothing one side only
  raises the correlation of unrelated brains far less. The threshold is calibrated on blurred
  copies too (:mod:`medsynth.audit.disguises`), so what a stronger blur leaves is known.

The correlation is the cosine of the two brain-centred volumes (each modality minus its brain
mean, zero outside the brain, unit norm): NCC of the brains with a shared normalisation, which is
what an FFT can give for all shifts at once. scipy's ``ndimage``/``fft`` do the resampling and the
correlation; the search itself is written here because neither scipy nor MONAI offers a
cheap exhaustive rigid search with a normalised, per-modality score (MONAI's registration
networks need training, scipy's optimisers would spend dozens of full-resolution resamplings per
pair and can stop in a local optimum).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from itertools import product

import numpy as np
from scipy import fft, ndimage
from scipy.stats import rankdata

MAX_SHIFT = 3  # voxels per axis searched at full resolution (a few millimetres on a 1-2 mm grid)
MAX_ROTATION_DEG = 6.0  # no rotation beyond this about any axis is tried (grid +-4, refinement up to +-3 more)
GRID_DEG = 4.0  # coarse grid: identity and +-GRID_DEG about each axis (7 rotations, x2 with the mirror)
REFINE_STEPS_DEG = (2.0, 1.0)  # coordinate steps around the best grid point; residual error <= 0.5 degree per axis
BLUR_SIGMA = 1.0  # voxels: the training scan is also compared smoothed by this much (a blurred copy matches it)
COARSE_SIGMA = 1.0  # voxels: Gaussian smoothing before the coarse search's 2x downsampling
# side of a patch as a share of the brain's extent (geometric mean of its bounding box): about 24 voxels on
# the 2 mm BraTS grid, big enough for anatomy to be specific, small enough to fit inside a copied region
PATCH_SHARE = 0.35
PATCH_MIN_VOXELS = 8  # no smaller patch, whatever the grid: a few voxels correlate by chance
PATCH_MIN_BRAIN = 0.5  # share of a patch inside the case's brain for the patch to count (edges say little)
_CROSS = 1e-8  # a channel whose brain has no contrast (a constant) is not compared


@dataclass(frozen=True)
class Match:
    """The best view of a case against one training scan: its score and how it was reached.

    ``component`` is ``"whole"`` (whole-brain correlation after the rigid search) or ``"patch"``
    (the best patch); ``modality`` the index of the modality that scored it; ``rotation_deg``
    (about axes 0, 1, 2) and ``shift_voxels`` move the training scan (mirrored first when
    ``mirrored``) onto the case; ``blurred_reference``: the training scan was compared smoothed
    by :data:`BLUR_SIGMA` voxels.
    """

    score: float
    component: str
    modality: int
    mirrored: bool
    rotation_deg: tuple[float, float, float]
    shift_voxels: tuple[int, int, int]
    blurred_reference: bool = False

    def record(self) -> dict:
        """JSON-ready, rounded."""
        record = asdict(self)
        record["score"] = round(self.score, 4)
        record["rotation_deg"] = [round(a, 2) for a in self.rotation_deg]
        record["shift_voxels"] = list(self.shift_voxels)
        return record


def equalise(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(rank-equalised images, brain mask): each modality's brain voxels replaced by their quantile in (0, 1].

    Brain = voxels where any modality is non-zero (skull-stripped scans and generator outputs are
    zero outside). Ties share their average rank, so a copy's flat regions equalise as the original's.
    """
    brain = np.any(images != 0, axis=0)
    out = np.zeros(images.shape, np.float32)
    count = int(brain.sum())
    for channel, image in enumerate(images):
        if count:
            out[channel][brain] = rankdata(image[brain]) / count
    return out, brain


def _half(volume: np.ndarray) -> np.ndarray:
    """Mean of 2x2x2 blocks of the last three axes (odd edges dropped): the coarse search's grid."""
    *lead, x, y, z = volume.shape
    v = volume[..., : x // 2 * 2, : y // 2 * 2, : z // 2 * 2]
    return v.reshape(*lead, x // 2, 2, y // 2, 2, z // 2, 2).mean(axis=(-5, -3, -1))


def _unit(images: np.ndarray, brain: np.ndarray) -> np.ndarray:
    """Each modality minus its brain mean, zero outside the brain, unit norm (zero when constant)."""
    out = np.zeros(images.shape, np.float64)
    if not brain.any():
        return out
    for channel, image in enumerate(images):
        values = image[brain] - image[brain].mean()
        norm = np.sqrt((values * values).sum())
        if norm > _CROSS:
            out[channel][brain] = values / norm
    return out


def _blur(images: np.ndarray, brain: np.ndarray) -> np.ndarray:
    """Each modality smoothed by :data:`BLUR_SIGMA` voxels, zero outside the brain (as a blurred copy would be)."""
    return ndimage.gaussian_filter(images, (0, *[BLUR_SIGMA] * 3)) * brain


def _rotation(angles_deg: tuple[float, float, float]) -> np.ndarray:
    """Rotation matrix of small angles about axes 0, 1 and 2, applied in that order."""
    matrix = np.eye(3)
    for axis, angle in enumerate(np.deg2rad(angles_deg)):
        if angle:
            i, j = [a for a in range(3) if a != axis]
            r = np.eye(3)
            r[i, i] = r[j, j] = np.cos(angle)
            r[i, j], r[j, i] = -np.sin(angle), np.sin(angle)
            matrix = r @ matrix
    return matrix


Angles = tuple[float, float, float]
Volume = tuple[np.ndarray, np.ndarray]  # (images (C, X, Y, Z), brain mask)


def _rotate(images: np.ndarray, brain: np.ndarray, angles_deg: Angles, centre: np.ndarray) -> Volume:
    """(images, brain) rotated by ``angles_deg`` about ``centre`` (voxels), linear interpolation."""
    if not any(angles_deg):
        return images, brain
    matrix = _rotation(angles_deg)
    # affine_transform maps output to input coordinates: input = R^T (output - c) + c
    inverse = matrix.T
    offset = centre - inverse @ centre
    rotated = np.stack([ndimage.affine_transform(c, inverse, offset, order=1) for c in images])
    mask = ndimage.affine_transform(brain.astype(np.float32), inverse, offset, order=1) > 0.5
    return rotated, mask


class _Grid:
    """FFT correlation of unit volumes over integer shifts up to ``max_shift``, on one grid shape."""

    def __init__(self, shape: tuple[int, ...], max_shift: int) -> None:
        self.max_shift = max_shift
        # zero padding keeps shifts from wrapping around; FFT-friendly sizes halve the cost of the
        # 80x96x80 grid (86 = 2 x 43 would be padded to 90)
        self.padded = tuple(fft.next_fast_len(s + 2 * max_shift, real=True) for s in shape)
        self.index = np.ix_(*[np.arange(-max_shift, max_shift + 1) % n for n in self.padded])

    def spectrum(self, unit: np.ndarray) -> np.ndarray:
        pad = [(0, 0)] + [
            (self.max_shift, p - s - self.max_shift) for s, p in zip(unit.shape[1:], self.padded, strict=True)
        ]
        return fft.rfftn(np.pad(unit, pad), axes=(1, 2, 3), workers=-1)

    def correlate(self, case: np.ndarray, reference: np.ndarray) -> tuple[float, int, tuple[int, int, int]]:
        """(best correlation, its modality, shift moving the reference onto the case)."""
        # irfft(A * conj(B))[s] = sum_v a[v] b[v - s]: the case equals the reference shifted by +s
        corr = fft.irfftn(case * np.conj(reference), s=self.padded, axes=(1, 2, 3), workers=-1)
        window = np.stack([c[self.index] for c in corr])
        channel, *at = np.unravel_index(int(np.argmax(window)), window.shape)
        return float(window[(channel, *at)]), int(channel), tuple(int(i) - self.max_shift for i in at)


class Scan:
    """A volume prepared once for matching: rank-equalised, its brain, half-resolution copy, spectra."""

    def __init__(self, images: np.ndarray) -> None:
        self.images, self.brain = equalise(np.asarray(images, np.float32))
        # smoothed before halving, so a case shifted by an odd number of voxels (half a coarse voxel)
        # still correlates well at half resolution and the rotation search is not led astray
        self.half = _half(ndimage.gaussian_filter(self.images, (0, *[COARSE_SIGMA] * 3)))
        self.half_brain = _half(self.brain.astype(np.float32)) > 0.5
        self.coarse = _Grid(self.half.shape[1:], (MAX_SHIFT + 1) // 2)
        self.fine = _Grid(self.images.shape[1:], MAX_SHIFT)
        self.half_spectrum = self.coarse.spectrum(_unit(self.half, self.half_brain))
        self._fine_spectrum: np.ndarray | None = None
        self._patches: Patches | None = None

    @property
    def patches(self) -> Patches:
        """The case side of the patch correlation, made when first needed."""
        if self._patches is None:
            self._patches = Patches(self.images, self.brain)
        return self._patches

    @property
    def fine_spectrum(self) -> np.ndarray:
        """Full-resolution spectrum, made when a match first needs it (most scans are only searched coarsely)."""
        if self._fine_spectrum is None:
            self._fine_spectrum = self.fine.spectrum(_unit(self.images, self.brain))
        return self._fine_spectrum


class Reference(Scan):
    """A training scan prepared for matching: also its coarse grid of mirrored and rotated versions.

    The grid depends on the training scan only, so it is made once and every case reuses it.
    """

    GRID = [(0.0, 0.0, 0.0)] + [
        tuple(sign * GRID_DEG if a == axis else 0.0 for a in range(3)) for axis in range(3) for sign in (-1, 1)
    ]

    def __init__(self, images: np.ndarray) -> None:
        super().__init__(images)
        self.smooth = _blur(self.images, self.brain)
        weights = np.argwhere(self.brain)
        self.centre = weights.mean(axis=0) if len(weights) else (np.array(self.brain.shape) - 1) / 2
        self.grid = {
            (mirrored, angles): self.coarse.spectrum(_unit(*self._half_view(mirrored, angles)))
            for mirrored in (False, True)
            for angles in self.GRID
        }

    def _base(self, mirrored: bool, half: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        images, brain = (self.half, self.half_brain) if half else (self.images, self.brain)
        centre = (self.centre - 0.5) / 2 if half else self.centre
        if mirrored:
            images, brain = images[:, ::-1], brain[::-1]
            centre = centre.copy()
            centre[0] = brain.shape[0] - 1 - centre[0]
        return images, brain, centre

    def _half_view(self, mirrored: bool, angles: tuple[float, float, float]) -> tuple[np.ndarray, np.ndarray]:
        images, brain, centre = self._base(mirrored, half=True)
        return _rotate(images, brain, angles, centre)

    def coarse_match(self, case: Scan) -> tuple[float, bool, tuple[float, float, float]]:
        """(score, mirrored, angles) of the best coarse-grid transform, at half resolution."""
        best = max(
            ((self.coarse.correlate(case.half_spectrum, spectrum)[0], key) for key, spectrum in self.grid.items()),
            key=lambda item: item[0],
        )
        score, (mirrored, angles) = best
        return score, mirrored, angles

    def rigid_match(self, case: Scan, coarse: tuple[float, bool, Angles] | None = None) -> Match:
        """Whole-brain match over mirror, rotation and shift: coarse grid, refined, scored at full resolution.

        The better of the whole-brain correlation and the best patch through the transform found.

        ``coarse``: :meth:`coarse_match`'s result when already known. Refinement is one pass of
        coordinate steps per step size (at most 12 half-resolution evaluations): enough to bring
        a rotation between grid points within half a degree per axis, and a bounded cost.
        """
        score, mirrored, angles = coarse if coarse is not None else self.coarse_match(case)
        for step, axis in product(REFINE_STEPS_DEG, range(3)):
            for sign in (-1, 1):
                trial = tuple(a + sign * step if i == axis else a for i, a in enumerate(angles))
                if max(abs(a) for a in trial) > MAX_ROTATION_DEG:
                    continue
                spectrum = self.coarse.spectrum(_unit(*self._half_view(mirrored, trial)))
                trial_score = self.coarse.correlate(case.half_spectrum, spectrum)[0]
                if trial_score > score + 1e-6:
                    score, angles = trial_score, trial
                    break  # the other sign cannot also improve on a smooth score
        base, base_brain, centre = self._base(mirrored, half=False)
        # the refined rotation and no rotation are both scored at full resolution: the half-resolution
        # search can settle a degree or two off, and a pure shift (the commonest disguise) needs none
        candidates = [angles, (0.0, 0.0, 0.0)] if any(angles) else [angles]
        views = []
        for trial in candidates:
            images, brain = _rotate(base, base_brain, trial, centre)
            score, channel, shift = self.fine.correlate(case.fine_spectrum, self.fine.spectrum(_unit(images, brain)))
            views.append((Match(score, "whole", channel, mirrored, trial, shift), images, brain))
        whole, images, brain = max(views, key=lambda view: view[0].score)
        # the blurred training scan through the chosen transform (a blurred copy that was also moved)
        smooth = _blur(images, brain)
        score, channel, shift = self.fine.correlate(case.fine_spectrum, self.fine.spectrum(_unit(smooth, brain)))
        if score > whole.score:
            whole, images = Match(score, "whole", channel, mirrored, whole.rotation_deg, shift, True), smooth
        if whole.rotation_deg == (0.0, 0.0, 0.0) and not any(whole.shift_voxels):
            return whole  # its patches are the in-place views', already scored
        # the patches seen through the same transform: a partial copy moved with the whole case
        shift = whole.shift_voxels
        patch = case.patches.best(ndimage.shift(images, (0, *shift), order=0) if any(shift) else images)
        found = Match(patch[0], "patch", patch[1], mirrored, whole.rotation_deg, shift, whole.blurred_reference)
        return max(whole, found, key=lambda m: m.score)

    def patch_match(self, case: Scan, mirrored: bool, blurred: bool = False) -> Match:
        """Best patch correlation of ``case`` against this scan (mirrored, blurred or not) on the aligned grid."""
        images = self.smooth if blurred else self.images
        score, channel = case.patches.best(images[:, ::-1] if mirrored else images)
        return Match(score, "patch", channel, mirrored, (0.0, 0.0, 0.0), (0, 0, 0), blurred)


class Patches:
    """Patch correlation of one case against any reference: cubic patches at a quarter-patch stride.

    A patch's side is ``share`` of the case's brain extent (at least :data:`PATCH_MIN_VOXELS`),
    so a partial copy is judged alike on any grid. NCC inside the case's brain voxels of each
    patch; patches with less than :data:`PATCH_MIN_BRAIN` of their voxels in the brain are
    skipped. The quarter-patch stride puts a whole patch inside any copied region of 1.25 patch
    sides. Written with
    block sums (blocks of a quarter patch side, a patch = 4x4x4 blocks, summed by cumulative sums) rather
    than sliding-window filters: one pass over the volume per moment, only the patches needed, and
    the case's own moments computed once and reused for every training scan it is compared with.
    """

    def __init__(self, case: np.ndarray, brain: np.ndarray, share: float = PATCH_SHARE) -> None:
        # only the brain's bounding box holds patches that count
        where = np.argwhere(brain)
        low, high = (where.min(axis=0), where.max(axis=0) + 1) if len(where) else (np.zeros(3, int), brain.shape)
        extent = float(np.prod(np.subtract(high, low), dtype=np.float64) ** (1 / 3))
        self.block = max(1, max(PATCH_MIN_VOXELS, round(share * extent)) // 4)
        self.size = 4 * self.block
        self.crop = tuple(slice(int(a), int(b)) for a, b in zip(low, high, strict=True))
        brain = brain[self.crop]
        shape = [-(-s // self.block) * self.block for s in brain.shape]
        self.pad = [(0, t - s) for s, t in zip(brain.shape, shape, strict=True)]
        # blocks per patch side, fewer on a grid smaller than a patch
        self.span = [max(1, min(4, t // self.block)) for t in shape]
        self.mask = brain.astype(np.float32)
        count = self._sums(self.mask)
        self.enough = count >= PATCH_MIN_BRAIN * np.prod(self.span) * self.block**3
        self.n = count[self.enough]
        self.case = [c[self.crop] * self.mask for c in case.astype(np.float32)]
        self.moments = []
        for a in self.case:
            sa = self._sums(a)[self.enough]
            self.moments.append((sa, self._sums(a * a)[self.enough] - sa * sa / np.maximum(self.n, 1)))

    def _sums(self, volume: np.ndarray) -> np.ndarray:
        v = np.pad(volume, self.pad)
        x, y, z = (s // self.block for s in v.shape)
        b = self.block
        sums = v.reshape(x, b, y, b, z, b).sum(axis=(1, 3, 5), dtype=np.float64)
        for axis, span in enumerate(self.span):  # sums over ``span`` consecutive blocks per axis
            total = np.cumsum(sums, axis=axis)
            zero = np.zeros_like(np.take(total, [0], axis))
            total = np.concatenate([zero, total], axis=axis)
            length = total.shape[axis]
            sums = np.take(total, range(span, length), axis) - np.take(total, range(length - span), axis)
        return sums

    def best(self, reference: np.ndarray) -> tuple[float, int]:
        """(best patch NCC over modalities, its modality) of ``reference`` (C, X, Y, Z); -1 when no patch counts."""
        best, best_channel = -1.0, 0
        if not self.enough.any():
            return best, best_channel
        n = self.n
        for channel, (a, (sa, var_a), b) in enumerate(zip(self.case, self.moments, reference, strict=True)):
            b = b[self.crop].astype(np.float32) * self.mask
            sb = self._sums(b)[self.enough]
            var_b = self._sums(b * b)[self.enough] - sb * sb / n
            valid = (var_a > _CROSS * n) & (var_b > _CROSS * n)
            if not valid.any():
                continue
            covariance = self._sums(a * b)[self.enough] - sa * sb / n
            r = covariance[valid] / np.sqrt(var_a[valid] * var_b[valid])
            if r.max() > best:
                best, best_channel = float(r.max()), channel
        return best, best_channel


def match(
    case: Scan, reference: Reference, rigid: bool = True, coarse: tuple[float, bool, Angles] | None = None
) -> Match:
    """The best view of ``case`` against ``reference`` (see the module docstring).

    ``coarse``: the reference's :meth:`~Reference.coarse_match` of the case, when already known.
    ``rigid=False`` skips the whole-brain rigid search and keeps the patch views at the aligned
    grid and its mirror: used for training scans other than the case's coarse nearest, where a
    partial copy pasted in place is what remains to be found.
    """
    views = [reference.patch_match(case, mirrored, blurred) for mirrored, blurred in product((False, True), repeat=2)]
    if rigid:
        views.append(reference.rigid_match(case, coarse))
    return max(views, key=lambda m: m.score)


def nearest_match(case: Scan, references: list[Reference]) -> tuple[int, Match]:
    """(index, match) of the training scan a case is closest to.

    The rigid search runs on the training scan that the coarse grid ranks first; the others get
    the in-place patch views, so the cost grows little with more training subjects.
    """
    coarse = [r.coarse_match(case) for r in references]
    first = int(np.argmax([c[0] for c in coarse]))
    matches = [match(case, r, rigid=i == first, coarse=coarse[i]) for i, r in enumerate(references)]
    index = int(np.argmax([m.score for m in matches]))
    return index, matches[index]
