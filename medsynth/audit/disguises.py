"""Disguised copies of a training scan: what the copy threshold is calibrated on.

Each family is one way a memorizing generator (or a careless pipeline) hides a copy. As in
TorchIO, a family first samples its parameters (:func:`sample`) and then applies them
deterministically (:func:`apply`), and the parameters are recorded beside the calibration score,
so every calibration copy can be rebuilt. The edits are scipy.ndimage calls rather than MONAI's
``Rand*`` transforms (``RandAffine``, ``RandGaussianSmooth``, ``RandAdjustContrast`` do the same
edits): their sampled parameters live inside the transform object, while here they are plain
values recorded in the report, and the check stays on numpy arrays without torch.

- ``shift``: sub-voxel translation up to 3 voxels per axis (linear interpolation).
- ``rotation``: 3-6 degrees about a random axis through the brain centre.
- ``contrast``: per modality, a gamma of 0.6-1.6 on the brain's intensity range and a linear
  rescale: monotone but not affine, the kind of change a style latent makes.
- ``blur``: Gaussian, sigma 0.7-1.3 voxels, inside the original brain (a generator's output is
  masked by its label map's brain).
- ``partial``: a box of 55-75% of the brain's extent per axis (about a sixth to two fifths of the
  brain) or one hemisphere, pasted in place into another subject's brain.
- ``one_modality``: one modality verbatim, the others from another subject (multi-modal scans only).
- ``mixed``: mirror, rotation up to 5 degrees, intensity scale and noise together
  (:func:`augment`, the cheap edits of the first copy check).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import ndimage

FAMILIES = ("shift", "rotation", "contrast", "blur", "partial", "one_modality", "mixed")


def families(modalities: int) -> tuple[str, ...]:
    """The families that apply to scans of ``modalities`` modalities."""
    return FAMILIES if modalities > 1 else tuple(f for f in FAMILIES if f != "one_modality")


def sample(family: str, volume: np.ndarray, rng: np.random.Generator) -> dict[str, Any]:
    """Random parameters of one disguise of ``family`` for ``volume`` (C, X, Y, Z)."""
    if family == "shift":
        return {"shift_voxels": [round(float(s), 3) for s in rng.uniform(-3, 3, 3)]}
    if family == "rotation":
        axis = rng.normal(size=3)
        return {
            "axis": [round(float(a), 4) for a in axis / np.linalg.norm(axis)],
            "angle_deg": float(rng.uniform(3, 6)),
        }
    if family == "contrast":
        channels = len(volume)
        return {
            "gamma": [round(float(g), 3) for g in np.exp(rng.uniform(np.log(0.6), np.log(1.6), channels))],
            "scale": [round(float(s), 3) for s in rng.uniform(0.7, 1.3, channels)],
            "offset": [round(float(o), 3) for o in rng.uniform(-0.3, 0.3, channels)],
        }
    if family == "blur":
        return {"sigma_voxels": round(float(rng.uniform(0.7, 1.3)), 3)}
    if family == "partial":
        if rng.random() < 0.25:
            return {"hemisphere": int(rng.integers(2))}
        return {"extent": [round(float(e), 3) for e in rng.uniform(0.55, 0.75, 3)], "position": rng.random(3).tolist()}
    if family == "one_modality":
        return {"modality": int(rng.integers(len(volume)))}
    if family == "mixed":
        return {"seed": int(rng.integers(2**31))}
    raise ValueError(f"family {family!r} is not one of {list(FAMILIES)}")


def apply(family: str, params: dict[str, Any], volume: np.ndarray, host: np.ndarray) -> np.ndarray:
    """``volume`` disguised by ``family`` with ``params``; ``host`` is the other subject of partial copies."""
    brain = np.any(volume != 0, axis=0)
    if family == "shift":
        out = np.stack([ndimage.shift(c, params["shift_voxels"], order=1) for c in volume])
    elif family == "rotation":
        out = _rotate(volume, brain, np.asarray(params["axis"]), params["angle_deg"])
    elif family == "contrast":
        out = np.zeros_like(volume)
        for channel, (image, gamma, scale, offset) in enumerate(
            zip(volume, params["gamma"], params["scale"], params["offset"], strict=True)
        ):
            values = image[brain]
            low, high = values.min(), values.max()
            unit = (values - low) / (high - low) if high > low else np.zeros_like(values)
            out[channel][brain] = scale * (low + (high - low) * unit**gamma) + offset
    elif family == "blur":
        out = np.stack([ndimage.gaussian_filter(c, params["sigma_voxels"]) for c in volume]) * brain
    elif family == "partial":
        out = host.copy()
        region = _region(params, brain | np.any(host != 0, axis=0))
        out[:, region] = volume[:, region]
    elif family == "one_modality":
        out = host.copy()
        out[params["modality"]] = volume[params["modality"]]
    elif family == "mixed":
        out = augment(volume, np.random.default_rng(params["seed"]))
    else:
        raise ValueError(f"family {family!r} is not one of {list(FAMILIES)}")
    return out.astype(np.float32)


def _rotate(volume: np.ndarray, brain: np.ndarray, axis: np.ndarray, angle_deg: float) -> np.ndarray:
    """Rotation by ``angle_deg`` about ``axis`` through the brain's centre (Rodrigues' formula)."""
    centre = np.argwhere(brain).mean(axis=0)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    angle = np.deg2rad(angle_deg)
    matrix = np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * k @ k
    inverse = matrix.T
    return np.stack([ndimage.affine_transform(c, inverse, centre - inverse @ centre, order=1) for c in volume])


def _region(params: dict[str, Any], brain: np.ndarray) -> np.ndarray:
    """The copied region: one hemisphere (axis 0 split at the brain centre) or a box in the brain's extent."""
    where = np.argwhere(brain)
    low, high = where.min(axis=0), where.max(axis=0) + 1
    region = np.zeros(brain.shape, bool)
    if "hemisphere" in params:
        middle = int(round(where[:, 0].mean()))
        region[:middle] = params["hemisphere"] == 0
        region[middle:] = params["hemisphere"] == 1
    else:
        size = np.maximum(1, np.round((high - low) * np.asarray(params["extent"]))).astype(int)
        start = low + np.floor((high - low - size) * np.asarray(params["position"])).astype(int)
        region[tuple(slice(s, s + n) for s, n in zip(start, size, strict=True))] = True
    return region & brain


def disguised_copies(
    training: list[np.ndarray], copies_per_scan: int, seed: int = 0
) -> list[tuple[int, str, dict[str, Any], np.ndarray]]:
    """``copies_per_scan`` disguised copies of each training scan: (scan index, family, params, volume).

    Families go round-robin over all copies (not restarting per scan), so every family is
    calibrated once there are as many copies in all as families. Partial and one-modality copies
    paste into the next training scan; with a single training scan, into that scan flipped front
    to back (a brain other than the source, with the same intensities).
    """
    rng = np.random.default_rng(seed)
    kinds = families(training[0].shape[0])
    copies = []
    for index, scan in enumerate(training):
        host = training[(index + 1) % len(training)] if len(training) > 1 else scan[:, :, ::-1]
        for k in range(copies_per_scan):
            family = kinds[(index * copies_per_scan + k) % len(kinds)]
            params = sample(family, scan, rng)
            copies.append((index, family, params, apply(family, params, scan, host)))
    return copies


def augment(volume: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A cheap edit of a scan: mirror, rotation up to 5 degrees, intensity scale, Gaussian noise."""
    out = volume[:, ::-1] if rng.random() < 0.5 else volume
    angle = rng.uniform(-5, 5)
    axes = [(0, 1), (0, 2), (1, 2)][rng.integers(3)]
    out = np.stack([ndimage.rotate(c, angle, axes=axes, reshape=False, order=1) for c in out])
    brain = np.any(out != 0, axis=0)
    out = out * rng.uniform(0.85, 1.15) + rng.normal(0, 0.1, out.shape) * brain
    return out.astype(np.float32)
