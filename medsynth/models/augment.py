"""Differentiable augmentation of what the discriminator sees (DiffAugment, Zhao et al., NeurIPS 2020).

With four training subjects the discriminator memorises the real scans within ~200 steps (hinge
loss ~0.001 from there on, ``reports/training/gan_noaugment_log.csv``) and stops shaping texture. The
remedy for small data sets is to augment the discriminator's real *and* synthetic inputs with
the same random, differentiable transforms, in its update and in the generator's, so it cannot
learn the few real scans by heart while the generator still learns the untransformed
distribution (the transforms are applied to both sides, so they do not leak into the images).

Written here rather than taken from MONAI or TorchIO: their random transforms draw one set of
parameters per call on one image, are not all differentiable, and would need a Python loop per
row; these are batched tensor operations with per-row parameters, so the gradient reaches the
generator through them, and one draw is applied to a real row and to every synthetic row of
the same label map (feature matching compares them voxel by voxel).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

AUGMENTATIONS = ("translation", "cutout", "intensity")


@dataclass(frozen=True)
class AugmentDraw:
    """One step's random parameters, one row per label map of the batch."""

    shifts: torch.Tensor  # (B, 3) integer voxel shifts
    cutout_start: torch.Tensor  # (B, 3) corner of the zeroed box
    cutout_size: tuple[int, int, int]  # size of the zeroed box (0: no cutout)
    gain: torch.Tensor  # (B, 1, 1, 1, 1) image contrast factor
    offset: torch.Tensor  # (B, 1, 1, 1, 1) image brightness offset

    def repeat(self, copies: int) -> AugmentDraw:
        """The draw for ``copies`` images per label map (rows ordered as ``Synthesis.judged``)."""
        return AugmentDraw(
            self.shifts.repeat(copies, 1),
            self.cutout_start.repeat(copies, 1),
            self.cutout_size,
            self.gain.repeat(copies, 1, 1, 1, 1),
            self.offset.repeat(copies, 1, 1, 1, 1),
        )


def check(kinds: list[str]) -> None:
    """Refuse names outside :data:`AUGMENTATIONS` (``loss.augment`` at config load, and :func:`draw`)."""
    unknown = sorted(set(kinds) - set(AUGMENTATIONS))
    if unknown:
        raise ValueError(f"loss.augment: unknown {unknown}; choose from {list(AUGMENTATIONS)}")


def draw(
    kinds: list[str], batch: int, shape: tuple[int, int, int], device: torch.device, generator: torch.Generator | None
) -> AugmentDraw:
    """Random parameters for ``kinds`` (a subset of :data:`AUGMENTATIONS`) from ``generator``.

    Ranges as DiffAugment's: shifts up to 1/8 of each side, a cutout box of half of each side,
    contrast x[0.5, 1.5] and brightness +-0.5 (images are z-scores).
    """
    check(kinds)
    dims = torch.tensor(shape)
    shifts = torch.zeros(batch, 3, dtype=torch.long)
    if "translation" in kinds:
        limit = dims // 8
        shifts = (torch.rand(batch, 3, generator=generator) * (2 * limit + 1)).long() - limit
    size = tuple(int(s) // 2 for s in shape) if "cutout" in kinds else (0, 0, 0)
    start = (torch.rand(batch, 3, generator=generator) * (dims - torch.tensor(size) + 1)).long()
    gain, offset = torch.ones(batch, 1, 1, 1, 1), torch.zeros(batch, 1, 1, 1, 1)
    if "intensity" in kinds:
        gain = 0.5 + torch.rand(batch, 1, 1, 1, 1, generator=generator)
        offset = torch.rand(batch, 1, 1, 1, 1, generator=generator) - 0.5
    return AugmentDraw(shifts, start, size, gain.to(device), offset.to(device))


def apply(inputs: torch.Tensor, params: AugmentDraw, image_channels: int) -> torch.Tensor:
    """The discriminator's input (B, image channels + label channels, X, Y, Z) transformed by ``params``.

    Contrast and brightness act on the image channels inside the brain only (the background stays 0,
    so the brain's outline tells nothing); shifts (zero fill) and the cutout act on every channel.

    >>> x = torch.zeros(1, 3, 8, 8, 8); x[0, [0, 2], 4, 4, 4] = 1  # image, background, one class
    >>> p = AugmentDraw(torch.tensor([[1, 0, -1]]), torch.zeros(1, 3, dtype=torch.long), (0, 0, 0),
    ...                 torch.ones(1, 1, 1, 1, 1), torch.zeros(1, 1, 1, 1, 1))
    >>> apply(x, p, image_channels=1)[0, 0].nonzero().tolist()
    [[5, 4, 3]]
    """
    image, labels = inputs[:, :image_channels], inputs[:, image_channels:]
    brain = (labels[:, 1:].sum(1, keepdim=True) > 0).to(image.dtype)  # channel 0 of the one-hot is background
    image = (image * params.gain.to(image.dtype) + params.offset.to(image.dtype)) * brain
    out = torch.cat([image, labels], 1)
    if params.shifts.any():
        out = _shift(out, params.shifts)
    if any(params.cutout_size):
        out = out * _box_mask(out.shape, params.cutout_start, params.cutout_size, out.device, out.dtype)
    return out


def _shift(x: torch.Tensor, shifts: torch.Tensor) -> torch.Tensor:
    """Each row moved by its integer (dx, dy, dz), zero filled: pad once, then crop each row's window."""
    pad = [int(shifts.abs().max())] * 6
    padded = F.pad(x, pad)
    size = x.shape[2:]
    rows = []
    for row, (dx, dy, dz) in enumerate(shifts.tolist()):
        p = pad[0]
        rows.append(padded[row, :, p - dx : p - dx + size[0], p - dy : p - dy + size[1], p - dz : p - dz + size[2]])
    return torch.stack(rows)


def _box_mask(
    shape: torch.Size, start: torch.Tensor, size: tuple[int, int, int], device: torch.device, dtype: torch.dtype
) -> torch.Tensor:
    """(B, 1, X, Y, Z): 0 inside each row's box, 1 elsewhere."""
    keep = []
    for axis in range(3):
        coords = torch.arange(shape[2 + axis], device=device)
        lo = start[:, axis : axis + 1].to(device)
        keep.append(~((coords >= lo) & (coords < lo + size[axis])))  # (B, n) outside the box along this axis
    inside = ~keep[0][:, :, None, None] & ~keep[1][:, None, :, None] & ~keep[2][:, None, None, :]
    return (~inside).unsqueeze(1).to(dtype)
