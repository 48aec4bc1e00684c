"""Training transforms of the benchmark arms, all applied after the shared tumor-aware crop.

- :class:`RegionTargetd`: canonical label map -> WT/TC/ET channels (the region-based target
  of nnU-Net and the BraTS winners; the metrics are per region too).
- :func:`classical_augmentation`: nnU-Net's default augmentations, built from MONAI
  transforms, for the "real + classical augmentation" baseline.
- :class:`RandLabelRenderd`: a SynthSeg-style renderer that replaces the image by random
  intensities drawn per label, then blur, bias field and noise -- synthetic data with no
  learned generator at all. MONAI has no label-to-image renderer, hence this class.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.transforms import MapTransform, RandomizableTransform

from medsynth.data.scheme import MODEL_CLASSES, REGIONS


class RegionTargetd(MapTransform):
    """Canonical label map ``(1, X, Y, Z)`` -> float ``(3, X, Y, Z)`` WT, TC, ET masks.

    >>> import torch
    >>> label = torch.tensor([0, 3, 4, 5, 6]).reshape(1, 5, 1, 1)  # wm, netc, snfh, et
    >>> RegionTargetd("label")({"label": label})["label"][:, :, 0, 0].int().tolist()
    [[0, 0, 1, 1, 1], [0, 0, 1, 0, 1], [0, 0, 0, 0, 1]]
    """

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            label = torch.as_tensor(d[key])[0]
            d[key] = torch.stack([torch.isin(label, torch.tensor(REGIONS[r])) for r in ("WT", "TC", "ET")]).float()
        return d


class RandLabelRenderd(RandomizableTransform, MapTransform):
    """Render every channel of ``image`` from ``label`` (SynthSeg-style domain randomisation).

    Applied to items whose ``source`` is in ``sources`` (others pass through). Per channel:
    each label value present gets an intensity ``N(mean, sd)`` with ``mean ~ U(mean_range)``
    and ``sd ~ U(std_range)`` (background stays 0, as in skull-stripped scans); then a
    Gaussian blur (sigma ~ U(0, max_blur_voxels)), a smooth multiplicative bias field
    (``exp`` of a 4x4x4 Gaussian grid upsampled, scale ~ U(0, bias_std)), Gaussian noise
    (sd ~ U(0, noise_std)), and z-scoring inside the brain, as medsynth's preprocessing does.
    Billot et al. (SynthSeg, 2023) draw all of these per training example, as here.

    >>> import torch
    >>> label = torch.zeros(1, 16, 16, 16, dtype=torch.long); label[0, 4:12, 4:12, 4:12] = 3
    >>> label[0, 6:9, 6:9, 6:9] = 6
    >>> render = RandLabelRenderd("image", "label", sources=None); _ = render.set_random_state(seed=0)
    >>> out = render({"image": torch.zeros(2, 16, 16, 16), "label": label})["image"]
    >>> tuple(out.shape), bool(out[:, label[0] == 0].abs().max() == 0)
    ((2, 16, 16, 16), True)
    """

    def __init__(
        self,
        keys: str | Sequence[str],
        label_key: str = "label",
        sources: Sequence[str] | None = ("synthseg",),
        mean_range: tuple[float, float] = (-2.0, 2.0),
        std_range: tuple[float, float] = (0.05, 0.4),
        max_blur_voxels: float = 1.0,
        bias_std: float = 0.3,
        noise_std: float = 0.1,
    ) -> None:
        RandomizableTransform.__init__(self, prob=1.0)
        MapTransform.__init__(self, keys)
        self.label_key = label_key
        self.sources = None if sources is None else set(sources)
        self.mean_range, self.std_range = mean_range, std_range
        self.max_blur_voxels, self.bias_std, self.noise_std = max_blur_voxels, bias_std, noise_std

    def _render(self, label: torch.Tensor, channels: int) -> torch.Tensor:
        from monai.transforms import GaussianSmooth

        brain = label > 0
        rendered = []
        for _ in range(channels):
            means = torch.as_tensor(self.R.uniform(*self.mean_range, MODEL_CLASSES), dtype=torch.float32)
            stds = torch.as_tensor(self.R.uniform(*self.std_range, MODEL_CLASSES), dtype=torch.float32)
            means[0] = stds[0] = 0.0
            noise = torch.as_tensor(self.R.standard_normal(label.shape), dtype=torch.float32)
            image = means[label] + stds[label] * noise
            sigma = self.R.uniform(0, self.max_blur_voxels)
            if sigma > 0.1:
                image = GaussianSmooth(sigma=float(sigma))(image[None])[0]
            coarse = torch.as_tensor(self.R.standard_normal((1, 1, 4, 4, 4)), dtype=torch.float32)
            coarse = coarse * self.R.uniform(0, self.bias_std)
            field = torch.nn.functional.interpolate(coarse, size=tuple(label.shape), mode="trilinear")[0, 0]
            image = image * torch.exp(field)
            image = image + self.R.uniform(0, self.noise_std) * torch.as_tensor(
                self.R.standard_normal(label.shape), dtype=torch.float32
            )
            if brain.any():
                inside = image[brain]
                image = (image - inside.mean()) / inside.std().clamp_min(1e-6)
            rendered.append(image * brain)
        return torch.stack(rendered)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        if self.sources is not None and d.get("source") not in self.sources:
            return d
        label = torch.as_tensor(d[self.label_key])[0].long()
        for key in self.key_iterator(d):
            d[key] = self._render(label, int(d[key].shape[0]))
        return d


def classical_augmentation(keys: Sequence[str] = ("image", "label")) -> list:
    """nnU-Net's default augmentation (probabilities and ranges of its 3D trainer), on MONAI transforms.

    Rotation (+-15 deg per axis) and scaling (0.85-1.25) with p 0.2, mirroring on the other
    two axes (the shared recipe flips left-right already), Gaussian noise p 0.1, blur p 0.2,
    brightness p 0.15, contrast/gamma p 0.3, simulated low resolution p 0.25.
    """
    from monai.transforms import (
        RandAdjustContrastd,
        RandFlipd,
        RandGaussianNoised,
        RandGaussianSmoothd,
        RandRotated,
        RandScaleIntensityd,
        RandSimulateLowResolutiond,
        RandZoomd,
    )

    image, label = keys
    angle = np.deg2rad(15.0)
    return [
        RandRotated(
            keys=[image, label], range_x=angle, range_y=angle, range_z=angle, prob=0.2, mode=("bilinear", "nearest")
        ),
        RandZoomd(keys=[image, label], min_zoom=0.85, max_zoom=1.25, prob=0.2, mode=("trilinear", "nearest")),
        RandFlipd(keys=[image, label], prob=0.5, spatial_axis=1),
        RandFlipd(keys=[image, label], prob=0.5, spatial_axis=2),
        RandGaussianNoised(keys=image, prob=0.1, std=0.1),
        RandGaussianSmoothd(keys=image, prob=0.2, sigma_x=(0.5, 1.0), sigma_y=(0.5, 1.0), sigma_z=(0.5, 1.0)),
        RandScaleIntensityd(keys=image, factors=0.25, prob=0.15),
        RandAdjustContrastd(keys=image, prob=0.3, gamma=(0.7, 1.5)),
        RandSimulateLowResolutiond(keys=image, prob=0.25, zoom_range=(0.5, 1.0)),
    ]
