"""Coarse tumor locations: hemisphere and lobe-level region from the brain's own extent.

medsynth has no lobe atlas (none ships with the data it may use), so regions come from a
box template in coordinates normalised to the brain's bounding box (RAS, -1..1 per axis:
``u`` left->right, ``v`` posterior->anterior, ``w`` inferior->superior):

- ``deep``: ``|u| < 0.35``, ``|v| < 0.4``, ``-0.3 < w < 0.35`` (basal ganglia, thalamus,
  ventricles, deep white matter);
- ``frontal``: ``v > 0.2``; ``occipital``: ``v < -0.55``;
- ``temporal``: ``w < -0.15`` between them; ``parietal``: the rest.

Crude, but deterministic, symmetric, and the same for every anatomy, which is what
reshaping a cohort to a location distribution needs. The location of a tumor is the
location of its centre of mass.
"""

from __future__ import annotations

import numpy as np

HEMISPHERES = ("left", "right")
REGIONS = ("frontal", "parietal", "temporal", "occipital", "deep")


def brain_frame(brain: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(center, half_extent)`` of the brain's world-space bounding box (mm)."""
    voxels = np.argwhere(brain)
    corners = np.stack([voxels.min(0), voxels.max(0)]).astype(np.float64)
    world = (affine[:3, :3] @ corners.T).T + affine[:3, 3]
    low, high = world.min(0), world.max(0)
    return (low + high) / 2, np.maximum((high - low) / 2, 1e-6)


def normalised_coordinates(
    points_voxel: np.ndarray, affine: np.ndarray, frame: tuple[np.ndarray, np.ndarray]
) -> np.ndarray:
    """Voxel coordinates ``(N, 3)`` -> normalised RAS coordinates ``(N, 3)`` in the brain frame."""
    center, half = frame
    world = (affine[:3, :3] @ np.asarray(points_voxel, dtype=np.float64).T).T + affine[:3, 3]
    return (world - center) / half


def hemisphere_of(uvw: np.ndarray) -> np.ndarray:
    """'left' or 'right' for each normalised point (RAS: +u is the subject's right)."""
    return np.where(uvw[..., 0] >= 0, "right", "left")


def region_of(uvw: np.ndarray) -> np.ndarray:
    """Region name for each normalised point (see the module docstring)."""
    u, v, w = uvw[..., 0], uvw[..., 1], uvw[..., 2]
    deep = (np.abs(u) < 0.35) & (np.abs(v) < 0.4) & (w > -0.3) & (w < 0.35)
    return np.select(
        [deep, v > 0.2, v < -0.55, w < -0.15],
        ["deep", "frontal", "occipital", "temporal"],
        default="parietal",
    )


def location_of(mask: np.ndarray, brain: np.ndarray, affine: np.ndarray) -> tuple[str, str]:
    """(hemisphere, region) of the centre of mass of ``mask``."""
    center = np.argwhere(mask).mean(0)[None]
    uvw = normalised_coordinates(center, affine, brain_frame(brain, affine))
    return str(hemisphere_of(uvw)[0]), str(region_of(uvw)[0])
