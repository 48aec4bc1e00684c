"""Resampling a case to another voxel size, keeping its world geometry (MONAI ``Spacing``)."""

from __future__ import annotations

import numpy as np


def resample(volume: np.ndarray, affine: np.ndarray, spacing_mm: float, mode: str) -> tuple[np.ndarray, np.ndarray]:
    """Resample ``volume`` (X, Y, Z) or (C, X, Y, Z) to isotropic ``spacing_mm``; returns (array, affine).

    ``mode``: ``"bilinear"`` for images, ``"nearest"`` for label maps (dtype kept).
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
