"""Preprocessing: the one implementation every later stage uses (models, loaders, benchmark).

MONAI transforms, in order: load (modalities stacked as channels), brain mask (derived
when the layout has none), orient to RAS, resample to the configured spacing (linear for
images, nearest for labels), labels to the canonical scheme, intensities z-scored inside
the brain, crop around the brain and pad/crop to a fixed grid divisible by 16, and the
anatomy label map (tissue classes + tumor sub-regions).

Outputs carry the prepared grid's affine and the original scan's affine and shape, so
results can be written back into the original space with :func:`to_original_space`.

Deterministic outputs are cached on disk with MONAI's ``PersistentDataset`` (medsynth's own steps subclass MONAI's
``Transform`` so it knows they are deterministic and cacheable) under a folder
named by the hash of the config, the label scheme and medsynth's preprocessing version;
cache items also hash the input files' SHA-256, so a changed file or config misses the cache.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from monai.transforms import Transform
from scipy import ndimage

from medsynth.data import scheme
from medsynth.data.anatomy import classify_tissues, freesurfer_to_anatomy
from medsynth.data.config import AnatomyConfig, PreprocessConfig
from medsynth.errors import DataError
from medsynth.geometry import to_original_space  # noqa: F401  (re-exported: it lived here)
from medsynth.io import cache_root

if TYPE_CHECKING:
    from monai.transforms import Compose

# Bump when the transforms below change what they produce, to invalidate old caches.
PREPROCESS_VERSION = "3"  # 3: a derived mask tells a constant non-zero background from the brain


def build_transforms(
    config: PreprocessConfig,
    modalities: list[str],
    label_scheme: str | None,
    has_image: bool,
    has_label: bool,
    has_mask: bool,
) -> Compose:
    """The MONAI ``Compose`` that turns a manifest item into a prepared case.

    Input item keys: ``image`` (list of files or one 4D file), ``label``, ``mask`` (each
    optional). Output keys: ``image`` (C, X, Y, Z float32), ``label_map`` (1, X, Y, Z,
    canonical scheme), ``mask`` (1, X, Y, Z, 0/1).
    """
    from monai.data import NibabelReader
    from monai.transforms import (
        Compose,
        CropForegroundd,
        EnsureChannelFirstd,
        LoadImaged,
        MaskIntensityd,
        NormalizeIntensityd,
        Orientationd,
        ResizeWithPadOrCropd,
        Spacingd,
    )

    loaded = [k for k, present in (("image", has_image), ("label", has_label), ("mask", has_mask)) if present]
    spatial_keys = [*loaded] if has_mask else [*loaded, "mask"]
    modes = ["bilinear" if k == "image" else "nearest" for k in spatial_keys]
    transforms = [
        # (X, Y, Z, 1) files read as 3D, as check_manifest accepts them (MONAI keeps the axis by default)
        LoadImaged(keys=loaded, image_only=True, reader=NibabelReader(squeeze_non_spatial_dims=True)),
        EnsureChannelFirstd(keys=loaded),
    ]
    if not has_mask:
        transforms.append(DeriveBrainMaskd(label_scheme=label_scheme))
    transforms += [
        # explicit labels: the same as MONAI's current default, without its deprecation warning
        Orientationd(keys=spatial_keys, axcodes=config.orientation, labels=(("L", "R"), ("P", "A"), ("I", "S"))),
        Spacingd(keys=spatial_keys, pixdim=config.spacing_mm, mode=modes, dtype=np.float32),
        BinarizeMaskd(),
    ]
    if has_image:
        transforms += [
            # MONAI's NormalizeIntensityd takes no explicit mask: zero the outside first, then
            # normalise the non-zero (= brain) voxels per channel.
            MaskIntensityd(keys="image", mask_key="mask"),
            NormalizeIntensityd(keys="image", nonzero=True, channel_wise=True),
        ]
    transforms += [
        KeepTopOfBraind(grid=config.grid, orientation=config.orientation),
        CropForegroundd(keys=spatial_keys, source_key="mask", allow_smaller=True),
        ResizeWithPadOrCropd(keys=spatial_keys, spatial_size=config.grid),
        AnatomyLabelMapd(config=config.anatomy, modalities=modalities, label_scheme=label_scheme),
        PlainTensorsd(),
    ]
    return Compose(transforms)


MAX_DERIVED_BRAIN = 0.9  # a derived brain over this share of the field of view found no background: refused


def background_value(channel: np.ndarray) -> float:
    """The value that fills the volume's border (its six faces) when one value covers most of it, else 0.

    Skull-stripped scans have a constant background, but not always 0: images z-scored over the whole
    volume (BraTS 2013's ``*_subtrMeanDivStd``) have it at e.g. -3.55, and a non-zero test would call the
    whole field of view brain. (MONAI's foreground helpers select ``> 0``, which drops negative brain voxels.)
    """
    faces = np.concatenate([np.moveaxis(channel, axis, 0)[index].ravel() for axis in range(3) for index in (0, -1)])
    values, counts = np.unique(faces, return_counts=True)
    top = int(np.argmax(counts))
    return float(values[top]) if counts[top] >= 0.5 * faces.size else 0.0


class DeriveBrainMaskd(Transform):
    """Add ``mask`` when a layout has none: voxels off the background value, or label values in the brain.

    The background of each image channel is the value filling its border (:func:`background_value`, 0
    for most scans). Holes are filled and only the largest connected component is kept. A derived brain
    covering over 90% of the field of view is refused with the file named: there was no background to tell
    it from, and z-scoring "in the brain" would then use the whole volume.
    """

    def __init__(self, label_scheme: str | None) -> None:
        self.label_scheme = label_scheme

    def __call__(self, data: dict[str, Any]) -> dict[str, Any]:
        from monai.data import MetaTensor

        if "image" in data:
            reference = data["image"]
            image = np.asarray(reference)
            brain = np.any([channel != background_value(channel) for channel in image], axis=0)
        else:
            reference = data["label"]
            labels = np.asarray(reference[0])
            brain = labels > 0
            if self.label_scheme == "freesurfer":
                brain &= labels < 500
        brain = ndimage.binary_fill_holes(brain)
        components, count = ndimage.label(brain)
        if count > 1:
            sizes = ndimage.sum_labels(brain, components, range(1, count + 1))
            brain = components == (1 + int(np.argmax(sizes)))
        coverage = float(brain.mean())
        if "image" in data and coverage > MAX_DERIVED_BRAIN:
            source = reference.meta.get("filename_or_obj", "an image")
            raise DataError(
                f"{source}: the brain mask derived from the image covers {coverage:.0%} of the field of view "
                "(no constant background found); give the brain mask: a layout's `mask:` pattern, "
                "`medsynth manifest build --mask`, or a datalist's `mask` entry"
            )
        out = dict(data)
        out["mask"] = MetaTensor(brain[None].astype(np.float32), meta=dict(reference.meta))
        return out


class BinarizeMaskd(Transform):
    """Brain masks come as float (e.g. 0.99999997) or resampled; make them exactly 0/1."""

    def __call__(self, data: dict[str, Any]) -> dict[str, Any]:
        out = dict(data)
        out["mask"] = (data["mask"] > 0.5).float()
        return out


class KeepTopOfBraind(Transform):
    """Drop mask voxels more than one grid height below the top of the brain.

    A brain taller than the grid (e.g. SynthSeg maps, which run down the brainstem) would
    otherwise be cropped about its centre, cutting the cortex at the vertex; this keeps the
    cortex and gives up the lowest brainstem instead.
    """

    def __init__(self, grid: tuple[int, int, int], orientation: str) -> None:
        codes = orientation.upper()
        self.axis = next(i for i, c in enumerate(codes) if c in "SI")
        self.superior_is_high = codes[self.axis] == "S"
        self.height = grid[self.axis]

    def __call__(self, data: dict[str, Any]) -> dict[str, Any]:
        mask = data["mask"]
        occupied = np.flatnonzero(np.asarray(mask[0]).any(axis=tuple(i for i in range(3) if i != self.axis)))
        if len(occupied) == 0 or occupied[-1] - occupied[0] < self.height:
            return data
        index = [slice(None)] * 4
        if self.superior_is_high:
            index[self.axis + 1] = slice(None, occupied[-1] + 1 - self.height)
        else:
            index[self.axis + 1] = slice(occupied[0] + self.height, None)
        out = dict(data)
        out["mask"] = mask.clone()
        out["mask"][tuple(index)] = 0
        return out


class AnatomyLabelMapd(Transform):
    """Build ``label_map`` (canonical scheme) from the tumor labels and the anatomy.

    Real subjects: tissues by :func:`~medsynth.data.anatomy.classify_tissues` on the
    prepared images with the tumor excluded, tumor labels written over them. FreeSurfer
    label maps: tissues by lookup table, no tumor. Everything outside the brain mask is 0.
    """

    def __init__(self, config: AnatomyConfig, modalities: list[str], label_scheme: str | None) -> None:
        self.config = config
        self.modalities = modalities
        self.label_scheme = label_scheme

    def __call__(self, data: dict[str, Any]) -> dict[str, Any]:
        from monai.data import MetaTensor

        brain = np.asarray(data["mask"][0]) > 0
        out = dict(data)
        label = np.rint(np.asarray(data["label"][0])).astype(np.int64) if "label" in data else None
        if self.label_scheme == "freesurfer":
            label_map = freesurfer_to_anatomy(label)
        else:
            tumor = (
                scheme.to_canonical_tumor(label, self.label_scheme)
                if label is not None and self.label_scheme
                else np.zeros(brain.shape, np.int16)
            )
            label_map = classify_tissues(
                np.asarray(data["image"]),
                brain,
                self.modalities,
                exclude=tumor > 0,
                smoothing_voxels=self.config.smoothing_voxels,
            )
            label_map = np.where(tumor > 0, tumor, label_map)
        label_map = np.where(brain, label_map, scheme.BACKGROUND).astype(np.int16)
        out["label_map"] = MetaTensor(label_map[None], meta=dict(data["mask"].meta))
        out.pop("label", None)
        return out


class PlainTensorsd(Transform):
    """Replace MetaTensors by plain tensors plus the geometry, as plain tensors and strings.

    The persistent cache is read back with ``torch.load(weights_only=True)``, which refuses
    MetaTensor and the arbitrary objects in its metadata; plain tensors keep the cache
    loadable safely and small. Output keys: ``image`` (float32), ``label_map`` (int16),
    ``mask`` (uint8), ``affine`` and ``original_affine`` (float64 4x4), ``original_shape``,
    ``filename``.
    """

    def __call__(self, data: dict[str, Any]) -> dict[str, Any]:
        import torch

        meta = data["mask"].meta
        out = {k: v for k, v in data.items() if k not in ("image", "label_map", "mask")}
        if "image" in data:
            out["image"] = data["image"].as_tensor().to(torch.float32)
        out["label_map"] = data["label_map"].as_tensor().to(torch.int16)
        out["mask"] = data["mask"].as_tensor().to(torch.uint8)
        out["affine"] = torch.as_tensor(np.asarray(data["mask"].affine), dtype=torch.float64)
        out["original_affine"] = torch.as_tensor(np.asarray(meta["original_affine"]), dtype=torch.float64)
        out["original_shape"] = torch.as_tensor(np.asarray(meta["spatial_shape"]), dtype=torch.int64)
        out["filename"] = str(meta.get("filename_or_obj", ""))
        return out


def cache_dir_for(config: PreprocessConfig, label_scheme: str | None, root: str | Path | None = None) -> Path:
    """The cache folder of one preprocessing config (``$MEDSYNTH_CACHE`` or ~/.cache/medsynth)."""
    from medsynth.config import config_hash

    return cache_root(root) / "preprocess" / config_hash(config, extra=f"{label_scheme}|{PREPROCESS_VERSION}")
