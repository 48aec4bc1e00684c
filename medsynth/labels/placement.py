"""Transform a real tumor (all sub-regions together) and write it into a target anatomy.

A tumor is moved by one mapping of the target grid back into the tumor's crop: rotation,
isotropic scaling (``volume_scale`` is the volume factor, so lengths scale by its cube
root) and a smooth random elastic displacement. The one-hot sub-regions are interpolated
linearly and the arg-max is taken, so the nested structure of the source (enhancing rim
around the necrotic core, edema around both) is carried over rather than re-invented;
afterwards only the largest connected piece of the tumor is kept and sub-region specks
smaller than ``min_component_voxels`` take the class of the nearest other tumor voxel.

Written with scipy's ``map_coordinates`` instead of MONAI's ``Rand3DElastic`` because the
tumor's crop and the target grid differ in shape and the transform must be replayable
from the recorded parameters alone.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy import ndimage
from scipy.spatial.transform import Rotation

from medsynth.data.scheme import BACKGROUND, TUMOR_CLASSES


@dataclass(frozen=True)
class TumorParams:
    """Everything that decides where and how one tumor lands; recorded per label map."""

    rotation_deg: tuple[float, float, float]  # extrinsic x, y, z Euler angles
    volume_scale: float  # volume factor (lengths scale by its cube root)
    elastic_seed: int  # seed of the displacement field
    elastic_magnitude_mm: float  # largest displacement
    elastic_smoothness_mm: float  # Gaussian width of the displacement field
    center_voxel: tuple[float, float, float]  # target grid voxel of the tumor's centre of mass

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> TumorParams:
        return cls(
            rotation_deg=tuple(data["rotation_deg"]),
            volume_scale=float(data["volume_scale"]),
            elastic_seed=int(data["elastic_seed"]),
            elastic_magnitude_mm=float(data["elastic_magnitude_mm"]),
            elastic_smoothness_mm=float(data["elastic_smoothness_mm"]),
            center_voxel=tuple(data["center_voxel"]),
        )


def _displacement(shape: tuple[int, ...], params: TumorParams, spacing: float) -> np.ndarray:
    """Smooth random displacement field (3, *shape) in voxels, max norm = magnitude."""
    if params.elastic_magnitude_mm <= 0:
        return np.zeros((3, *shape))
    rng = np.random.default_rng(params.elastic_seed)
    field = rng.standard_normal((3, *shape))
    sigma = max(params.elastic_smoothness_mm / spacing, 0.5)
    field = np.stack([ndimage.gaussian_filter(f, sigma, mode="reflect") for f in field])
    peak = np.sqrt((field**2).sum(0)).max()
    return field * (params.elastic_magnitude_mm / spacing) / max(peak, 1e-12)


def _clean(labels: np.ndarray, min_component_voxels: int) -> np.ndarray:
    """Keep the largest tumor piece; merge sub-region specks into the nearest other class."""
    tumor = labels > 0
    components, count = ndimage.label(tumor)
    if count > 1:
        sizes = ndimage.sum_labels(tumor, components, range(1, count + 1))
        labels = np.where(components == 1 + int(np.argmax(sizes)), labels, BACKGROUND)
    specks = np.zeros(labels.shape, bool)
    for tumor_class in TUMOR_CLASSES:
        components, count = ndimage.label(labels == tumor_class)
        if count:
            sizes = ndimage.sum_labels(labels == tumor_class, components, range(1, count + 1))
            small = np.flatnonzero(sizes < min_component_voxels) + 1
            specks |= np.isin(components, small)
    keep = (labels > 0) & ~specks
    if specks.any() and keep.any():
        _, indices = ndimage.distance_transform_edt(~keep, return_indices=True)
        labels = np.where(specks, labels[tuple(indices)], labels)
    return labels.astype(np.int16)


def transform_tumor(
    tumor: np.ndarray,
    spacing_mm: float,
    params: TumorParams,
    target_shape: tuple[int, int, int],
    min_component_voxels: int = 4,
) -> np.ndarray:
    """Tumor labels (crop) -> tumor labels on the full target grid (0 elsewhere).

    >>> crop = np.zeros((14, 14, 14), np.int16); crop[2:12, 2:12, 2:12] = 5
    >>> p = TumorParams((30, 20, 10), 2.0, 0, 3.0, 6.0, (30, 30, 30))
    >>> out = transform_tumor(crop, 2.0, p, (60, 60, 60))
    >>> round(float((out > 0).sum() / (crop > 0).sum()), 1)  # volume x2
    2.0
    """
    linear = params.volume_scale ** (1 / 3)
    rotation = Rotation.from_euler("xyz", params.rotation_deg, degrees=True).as_matrix()
    forward = rotation * linear  # crop -> target, about the centres of mass
    inverse = np.linalg.inv(forward)
    source_center = np.argwhere(tumor > 0).mean(0)
    target_center = np.asarray(params.center_voxel, dtype=np.float64)

    radius = 0.5 * np.linalg.norm(tumor.shape) * linear + params.elastic_magnitude_mm / spacing_mm + 2
    low = np.maximum(np.floor(target_center - radius).astype(int), 0)
    high = np.minimum(np.ceil(target_center + radius).astype(int) + 1, target_shape)
    out = np.zeros(target_shape, np.int16)
    if np.any(high <= low):
        return out
    box_shape = tuple(int(h - lo) for lo, h in zip(low, high, strict=True))
    grid = np.stack(np.meshgrid(*[np.arange(lo, h) for lo, h in zip(low, high, strict=True)], indexing="ij"))
    grid = grid.astype(np.float64) + _displacement(box_shape, params, spacing_mm)
    source = np.einsum("ij,j...->i...", inverse, grid - target_center[:, None, None, None])
    source += source_center[:, None, None, None]

    # background last: a tie at a voxel boundary goes to the tumor, so volume scales without a shrink bias
    classes = (*TUMOR_CLASSES, BACKGROUND)
    scores = np.stack(
        [
            ndimage.map_coordinates(
                (tumor == c).astype(np.float32), source, order=1, mode="constant", cval=float(c == BACKGROUND)
            )
            for c in classes
        ]
    )
    out[tuple(slice(lo, h) for lo, h in zip(low, high, strict=True))] = np.asarray(classes)[scores.argmax(0)]
    return _clean(out, min_component_voxels)
