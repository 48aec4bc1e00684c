"""Random smooth deformations of a whole label map, so no two cases share a brain (SynthSeg-style).

Each sampled label map's anatomy (with its tumor) is moved by one mapping of the grid onto
itself about the brain's centre: a rotation, per-axis scaling and shear (an affine), plus a
smooth random elastic displacement. Classes are interpolated as one-hot volumes (linear)
and the arg-max taken, as for tumors (:mod:`medsynth.labels.placement`), so thin structures
(cortex, ventricles) bend rather than break. With the default ranges the displacement's
gradient stays far below 1, so the mapping is invertible (its Jacobian determinant is
positive everywhere, :func:`min_jacobian`) and tissue topology is kept; parameters are drawn
once per label map and recorded, so :func:`medsynth.labels.regenerate` replays them.

Why not MONAI's ``Rand3DElastic``/``RandAffine``: their random state is not a parameter record
that a label map's provenance can carry and replay across versions; the mapping here is a
few lines of scipy with every number recorded.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy import ndimage
from scipy.spatial.transform import Rotation

from medsynth.labels.config import DeformationConfig


@dataclass(frozen=True)
class DeformationParams:
    """One drawn deformation; recorded in the label map's record."""

    rotation_deg: tuple[float, float, float]
    scale: tuple[float, float, float]
    shear: tuple[float, float, float]  # xy, xz, yz
    elastic_seed: int
    elastic_magnitude_mm: float
    elastic_smoothness_mm: float

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> DeformationParams:
        return cls(
            rotation_deg=tuple(float(v) for v in data["rotation_deg"]),
            scale=tuple(float(v) for v in data["scale"]),
            shear=tuple(float(v) for v in data["shear"]),
            elastic_seed=int(data["elastic_seed"]),
            elastic_magnitude_mm=float(data["elastic_magnitude_mm"]),
            elastic_smoothness_mm=float(data["elastic_smoothness_mm"]),
        )

    def matrix(self) -> np.ndarray:
        """The affine part (output voxel offsets -> source voxel offsets are its inverse)."""
        rotation = Rotation.from_euler("xyz", self.rotation_deg, degrees=True).as_matrix()
        xy, xz, yz = self.shear
        shear = np.array([[1.0, xy, xz], [0.0, 1.0, yz], [0.0, 0.0, 1.0]])
        return rotation @ shear @ np.diag(self.scale)


def sample_params(rng: np.random.Generator, config: DeformationConfig) -> DeformationParams:
    """Draw one deformation from ``config``'s ranges."""
    return DeformationParams(
        rotation_deg=tuple(
            round(float(a), 4) for a in rng.uniform(-config.max_rotation_deg, config.max_rotation_deg, 3)
        ),
        scale=tuple(round(float(s), 5) for s in rng.uniform(*config.scale, 3)),
        shear=tuple(round(float(s), 5) for s in rng.uniform(-config.max_shear, config.max_shear, 3)),
        elastic_seed=int(rng.integers(2**31 - 1)),
        elastic_magnitude_mm=round(float(rng.uniform(*config.elastic_magnitude_mm)), 4),
        elastic_smoothness_mm=float(config.elastic_smoothness_mm),
    )


def _displacement(shape: tuple[int, ...], params: DeformationParams, spacing: float) -> np.ndarray:
    """Smooth random displacement field (3, *shape) in voxels, largest norm = the magnitude.

    Drawn on a 4x coarser grid and upsampled (cubic): the field is smooth at the
    smoothness scale anyway, and a full-resolution Gaussian of 3 x 80x96x80 noise costs
    ~10x more.
    """
    if params.elastic_magnitude_mm <= 0:
        return np.zeros((3, *shape))
    rng = np.random.default_rng(params.elastic_seed)
    coarse_shape = tuple(max(2, -(-s // 4)) for s in shape)
    sigma = max(params.elastic_smoothness_mm / spacing / 4, 0.5)
    field = np.stack(
        [ndimage.gaussian_filter(f, sigma, mode="reflect") for f in rng.standard_normal((3, *coarse_shape))]
    )
    zoom = [s / c for s, c in zip(shape, coarse_shape, strict=True)]
    field = np.stack([ndimage.zoom(f, zoom, order=3, mode="reflect", grid_mode=True) for f in field])
    field = field[(slice(None), *(slice(0, s) for s in shape))]
    peak = np.sqrt((field**2).sum(0)).max()
    return field * (params.elastic_magnitude_mm / spacing) / max(peak, 1e-12)


def source_coordinates(
    shape: tuple[int, int, int], center: np.ndarray, params: DeformationParams, spacing: float
) -> np.ndarray:
    """Where each output voxel reads from in the input (3, *shape), in voxels."""
    grid = np.stack(np.meshgrid(*[np.arange(s, dtype=np.float64) for s in shape], indexing="ij"))
    grid += _displacement(shape, params, spacing)
    inverse = np.linalg.inv(params.matrix())
    return np.einsum("ij,j...->i...", inverse, grid - center[:, None, None, None]) + center[:, None, None, None]


def deform_label_map(label_map: np.ndarray, spacing_mm: float, params: DeformationParams) -> np.ndarray:
    """``label_map`` moved by ``params`` about the brain's centre, on the same grid (labels kept whole).

    >>> from medsynth.labels.deform import DeformationParams
    >>> ball = np.zeros((32, 32, 32), np.int16); ball[8:24, 8:24, 8:24] = 3; ball[14:18, 14:18, 14:18] = 1
    >>> p = DeformationParams((5.0, 0.0, 0.0), (1.05, 1.0, 0.95), (0.02, 0.0, 0.0), 0, 2.0, 16.0)
    >>> out = deform_label_map(ball, 2.0, p)
    >>> change = abs(int((out > 0).sum()) - int((ball > 0).sum())) / int((ball > 0).sum())
    >>> sorted(np.unique(out).tolist()), change < 0.05
    ([0, 1, 3], True)
    """
    label_map = np.asarray(label_map)
    brain = label_map > 0
    if not brain.any():
        return label_map.copy()
    center = np.argwhere(brain).mean(0)
    source = source_coordinates(label_map.shape, center, params, spacing_mm)
    classes = [int(c) for c in np.unique(label_map) if c != 0] + [0]  # background last: ties go to tissue
    scores = np.stack(
        [
            ndimage.map_coordinates(
                (label_map == c).astype(np.float32), source, order=1, mode="constant", cval=float(c == 0)
            )
            for c in classes
        ]
    )
    return np.asarray(classes, dtype=np.int16)[scores.argmax(0)]


def min_jacobian(shape: tuple[int, int, int], params: DeformationParams, spacing_mm: float) -> float:
    """Smallest Jacobian determinant of the mapping over the grid (> 0: invertible, topology kept)."""
    source = source_coordinates(shape, np.asarray(shape, dtype=np.float64) / 2, params, spacing_mm)
    gradients = np.stack([np.stack(np.gradient(component), 0) for component in source], 0)  # (3, 3, *shape)
    return float(np.linalg.det(np.moveaxis(gradients, (0, 1), (-2, -1))).min())
