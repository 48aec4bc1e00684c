"""Voxel geometry shared by every stage: same-space checks, resampling, and the way back to a scan's grid.

A voxel space is an affine (voxel index -> world mm, RAS+ world as in NIfTI) and a shape.
:func:`same_space` compares two of them and says which aspect differs (voxel spacing, axis
orientation, origin and direction, shape), so each caller can refuse with a message that
names both sides. :func:`resample` changes the voxel size keeping the world geometry (the
cohort's ``--spacing``); :func:`to_original_space` writes a prepared volume back onto the
original scan's grid (benchmark predictions, results of any stage).

>>> import numpy as np
>>> bool(same_space(np.diag([2.0, 2.0, 2.0, 1.0]), np.diag([2.0, 2.0, 2.0, 1.0]), (48,) * 3, (48,) * 3))
True
>>> same_space(np.eye(4), np.diag([2.0, 2.0, 2.0, 1.0]), position=False).describe("label map", "generator")
'voxel spacing 1x1x1 mm (label map) vs 2x2x2 mm (generator)'
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np


def voxel_spacing(affine: np.ndarray) -> tuple[float, float, float]:
    """Voxel size (mm) along each array axis: the lengths of the affine's first three columns."""
    matrix = np.asarray(affine, dtype=np.float64)[:3, :3]
    return tuple(float(s) for s in np.sqrt((matrix**2).sum(0)))


def orientation(affine: np.ndarray) -> str:
    """Axis codes of ``affine``, e.g. ``"RAS"`` (nibabel's ``aff2axcodes``)."""
    import nibabel as nib

    return "".join(nib.aff2axcodes(np.asarray(affine, dtype=np.float64)))


@dataclass(frozen=True)
class SpaceComparison:
    """The outcome of :func:`same_space`: true when the spaces agree.

    ``differences`` maps each differing aspect (``spacing``, ``orientation``, ``position``,
    ``shape``, in that order) to its ``(value in a, value in b)``.
    """

    differences: dict[str, tuple[Any, Any]] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return not self.differences

    def describe(self, name_a: str = "a", name_b: str = "b") -> str:
        """One line naming what differs, e.g. ``voxel spacing 1x1x1 mm (label map) vs 2x2x2 mm (generator)``."""
        parts = []
        for aspect, (a, b) in self.differences.items():
            if aspect == "spacing":
                parts.append(f"voxel spacing {_mm(a)} mm ({name_a}) vs {_mm(b)} mm ({name_b})")
            elif aspect == "position":
                parts.append(f"affine {np.round(a, 4).tolist()} ({name_a}) vs {np.round(b, 4).tolist()} ({name_b})")
            else:
                parts.append(f"{aspect} {a} ({name_a}) vs {b} ({name_b})")
        return "; ".join(parts)


def _mm(spacing: Sequence[float]) -> str:
    return "x".join(f"{s:g}" for s in spacing)


def same_space(
    affine_a: np.ndarray,
    affine_b: np.ndarray,
    shape_a: Sequence[int] | None = None,
    shape_b: Sequence[int] | None = None,
    tolerance: float = 1e-3,
    *,
    position: bool = True,
) -> SpaceComparison:
    """Compare two voxel spaces; the result is true when they agree.

    Args:
        affine_a, affine_b: 4x4 voxel-to-world matrices.
        shape_a, shape_b: spatial shapes; compared only when both are given.
        tolerance: for the voxel spacing, relative and absolute (mm); for the position, absolute.
        position: also compare where the grids lie (origin and direction cosines: every affine
            entry within ``tolerance``); False compares voxel size, axis orientation and shape only,
            as a generator does with label maps placed anywhere in the world.
    """
    a = np.asarray(affine_a, dtype=np.float64)
    b = np.asarray(affine_b, dtype=np.float64)
    differences: dict[str, tuple[Any, Any]] = {}
    spacing_a, spacing_b = voxel_spacing(a), voxel_spacing(b)
    if not np.allclose(spacing_a, spacing_b, rtol=tolerance, atol=tolerance):
        differences["spacing"] = (spacing_a, spacing_b)
    codes_a, codes_b = orientation(a), orientation(b)
    if codes_a != codes_b:
        differences["orientation"] = (codes_a, codes_b)
    if position and not np.allclose(a, b, rtol=0.0, atol=tolerance):
        differences["position"] = (a, b)
    if shape_a is not None and shape_b is not None and tuple(shape_a) != tuple(shape_b):
        differences["shape"] = (tuple(int(s) for s in shape_a), tuple(int(s) for s in shape_b))
    return SpaceComparison(differences)


def resample(volume: np.ndarray, affine: np.ndarray, spacing_mm: float, mode: str) -> tuple[np.ndarray, np.ndarray]:
    """Resample ``volume`` (X, Y, Z) or (C, X, Y, Z) to isotropic ``spacing_mm``; returns (array, affine).

    Keeps the world geometry (MONAI ``Spacing``). ``mode``: ``"bilinear"`` for images,
    ``"nearest"`` for label maps (dtype kept).
    """
    import torch
    from monai.data import MetaTensor
    from monai.transforms import Spacing

    array = np.asarray(volume)
    squeeze = array.ndim == 3
    tensor = MetaTensor(torch.as_tensor(array[None] if squeeze else array, dtype=torch.float32), affine=affine)
    out = Spacing(pixdim=(spacing_mm,) * 3, mode=mode, dtype=torch.float32)(tensor)
    result = np.asarray(out)
    if mode == "nearest":
        result = np.rint(result).astype(array.dtype)
    return (result[0] if squeeze else result), np.asarray(out.affine, dtype=np.float64)


def to_original_space(
    volume: np.ndarray,
    prepared_affine: np.ndarray,
    original_affine: np.ndarray,
    original_shape: tuple[int, int, int],
    mode: str = "nearest",
) -> np.ndarray:
    """Resample a prepared volume ``(X, Y, Z)`` or ``(C, X, Y, Z)`` back onto the original scan grid.

    Uses world coordinates (both affines), so orientation, spacing, crop and pad are all
    undone. ``mode="nearest"`` for label maps, ``"bilinear"`` for images.
    """
    import torch
    from monai.data import MetaTensor
    from monai.transforms import SpatialResample

    array = np.asarray(volume)
    squeeze = array.ndim == 3
    source = MetaTensor(
        torch.as_tensor(array[None] if squeeze else array, dtype=torch.float32),
        affine=torch.as_tensor(prepared_affine, dtype=torch.float64),
    )
    resampled = SpatialResample(mode=mode, padding_mode="zeros", dtype=torch.float32)(
        source,
        dst_affine=torch.as_tensor(original_affine, dtype=torch.float64),
        spatial_size=tuple(original_shape),
    )
    result = np.asarray(resampled)
    if mode == "nearest":
        result = np.rint(result).astype(np.asarray(volume).dtype)
    return result[0] if squeeze else result
