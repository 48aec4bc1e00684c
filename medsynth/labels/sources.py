"""Sources of new label maps: target anatomies and real tumors, read from prepared manifests.

An :class:`Anatomy` is a brain (tissue classes only) into which a tumor can be placed: a
healthy anatomy (SynthSeg, Colin27) or a real subject with its tumor removed (tumor voxels
take the tissue class of the nearest non-tumor brain voxel). A :class:`Tumor` is a real
subject's tumor with all its sub-regions, cropped to its bounding box.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

from medsynth.data.scheme import ET, NETC, SNFH, TUMOR_CLASSES, manifest_scheme, require_subregions
from medsynth.errors import DataError
from medsynth.io import load_nifti, sha256
from medsynth.manifest import Manifest


@dataclass
class Anatomy:
    """A target brain: tissue label map (0-3), on the prepared grid."""

    case_id: str
    split: str  # the source subject's split; "healthy" for anatomies of no patient
    label_map: np.ndarray  # int16, tissue classes only
    affine: np.ndarray
    source: str  # manifest path
    source_sha256: str  # of the label map file

    @property
    def brain(self) -> np.ndarray:
        return self.label_map > 0


@dataclass
class Tumor:
    """A real tumor cropped to its bounding box (canonical tumor classes, 0 elsewhere)."""

    case_id: str
    split: str
    labels: np.ndarray  # int16 crop
    spacing_mm: tuple[float, float, float]
    source: str
    source_sha256: str

    @property
    def volume_ml(self) -> float:
        return float((self.labels > 0).sum()) * float(np.prod(self.spacing_mm)) / 1000.0

    def fraction(self, tumor_class: int) -> float:
        """Share of the whole tumor taken by one sub-region."""
        whole = (self.labels > 0).sum()
        return float((self.labels == tumor_class).sum() / whole) if whole else 0.0


def remove_tumor(label_map: np.ndarray, affine: np.ndarray | None = None) -> np.ndarray:
    """Replace tumor voxels by the tissue the other hemisphere has at the mirrored place.

    The nearest non-tumor tissue (what this did before, and still the fallback where the mirrored
    voxel is tumor or outside the brain) filled a donor's tumor site mostly with grey matter
    (58-88 %), since tumors reach the cortex: an implausible blob in white matter. The mirror
    across the brain's left-right centre gives the anatomy a healthy hemisphere has there
    (white matter, a ventricle, folded cortex). The left-right axis is read from ``affine``
    (the first voxel axis without one, as in RAS/LPS volumes).

    >>> label_map = np.full((6, 3, 3), 3, np.int16)  # white matter
    >>> label_map[4, 1, 1], label_map[1, 1, 1] = 6, 1  # enhancing tumor on one side, CSF mirrored
    >>> int(remove_tumor(label_map)[4, 1, 1])
    1
    """
    tumor = label_map >= NETC
    if not tumor.any():
        return label_map.copy()
    out = label_map.copy()
    axis = _left_right_axis(affine)
    brain = np.nonzero(label_map > 0)[axis]
    centre = (brain.min() + brain.max()) / 2.0  # of the brain's extent: a tumor's mass effect moves the centroid
    where = np.nonzero(tumor)
    mirrored = list(where)
    mirrored[axis] = np.rint(2 * centre - where[axis]).astype(np.int64)
    inside = (mirrored[axis] >= 0) & (mirrored[axis] < label_map.shape[axis])
    values = np.zeros(len(where[0]), label_map.dtype)
    values[inside] = label_map[tuple(m[inside] for m in mirrored)]
    usable = (values > 0) & (values < NETC)
    out[tuple(w[usable] for w in where)] = values[usable]
    rest = tumor & (out >= NETC)
    if rest.any():
        _, indices = ndimage.distance_transform_edt(rest | (out == 0), return_indices=True)
        out[rest] = out[tuple(indices)][rest]
    return out


def _left_right_axis(affine: np.ndarray | None) -> int:
    if affine is None:
        return 0
    return next((axis for axis, code in enumerate(nib.aff2axcodes(affine)) if code in "LR"), 0)


def _spacing(affine: np.ndarray) -> tuple[float, float, float]:
    return tuple(float(round(s, 4)) for s in np.sqrt((affine[:3, :3] ** 2).sum(0)))


def read_sources(
    manifest_paths: list[str | Path],
    splits: tuple[str, ...] | None = ("train",),
    healthy: bool = False,
) -> tuple[list[Anatomy], list[Tumor]]:
    """Anatomies and tumors of prepared manifests.

    Args:
        manifest_paths: manifests written by ``medsynth prepare``.
        splits: only cases of these splits (``None``: all). Ignored for ``healthy`` sources.
        healthy: the manifests hold healthy anatomies (no patient): their split is "healthy".
    """
    anatomies: list[Anatomy] = []
    tumors: list[Tumor] = []
    for path in manifest_paths:
        manifest = Manifest.load(path, kind="prepared")
        if not healthy:
            require_subregions(
                manifest_scheme(manifest.meta),
                str(path),
                "new label maps are made from real tumors with their sub-regions (netc, snfh, et); "
                "give tumor sources with sub-region labels",
            )
        for case in manifest.cases(None if healthy else splits):
            label_map, affine, _ = load_nifti(case.label, dtype=np.int16)
            digest = sha256(case.label)
            split = "healthy" if healthy else case.split
            anatomies.append(Anatomy(case.case_id, split, remove_tumor(label_map, affine), affine, str(path), digest))
            tumor = np.where(np.isin(label_map, TUMOR_CLASSES), label_map, 0).astype(np.int16)
            if tumor.any():
                box = tuple(slice(a.min(), a.max() + 1) for a in np.nonzero(tumor))
                tumors.append(Tumor(case.case_id, split, tumor[box], _spacing(affine), str(path), digest))
    check_same_grid(anatomies)
    return anatomies, tumors


def check_same_grid(anatomies: list[Anatomy]) -> None:
    """Refuse anatomies on different grids (tumors and maps are placed voxel for voxel)."""
    shapes = {a.label_map.shape for a in anatomies}
    spacings = {_spacing(a.affine) for a in anatomies}
    if len(shapes) > 1 or len(spacings) > 1:
        raise DataError(
            f"sources are on different grids (shapes {sorted(shapes)}, spacings {sorted(spacings)}); "
            "prepare them with the same config"
        )


SUBREGION_NAMES = {NETC: "netc", SNFH: "snfh", ET: "et"}
