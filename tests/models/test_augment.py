"""DiffAugment of the discriminator's inputs: hand-built volumes, gradients, one draw per label map."""

from __future__ import annotations

import pytest
import torch

from medsynth.models import augment


def _inputs(batch: int = 2) -> torch.Tensor:
    """(B, 1 image + 3 label channels, 16, 16, 16): a brain cube of class 1 with a class-2 core."""
    x = torch.zeros(batch, 4, 16, 16, 16)
    x[:, 1] = 1  # background
    x[:, 1, 4:12, 4:12, 4:12], x[:, 2, 4:12, 4:12, 4:12] = 0, 1
    x[:, 2, 7:9, 7:9, 7:9], x[:, 3, 7:9, 7:9, 7:9] = 0, 1
    x[:, 0] = torch.randn(batch, 16, 16, 16) * (x[:, 1] == 0)
    return x


def test_every_kind_is_drawn_within_its_range():
    params = augment.draw(
        list(augment.AUGMENTATIONS), 64, (16, 24, 16), torch.device("cpu"), torch.Generator().manual_seed(0)
    )
    assert params.shifts.abs().max(0).values.tolist() == [2, 3, 2]  # up to 1/8 of each side
    assert params.cutout_size == (8, 12, 8)
    assert (
        (params.cutout_start >= 0) & (params.cutout_start + torch.tensor([8, 12, 8]) <= torch.tensor([16, 24, 16]))
    ).all()
    assert params.gain.min() >= 0.5 and params.gain.max() <= 1.5 and params.offset.abs().max() <= 0.5
    with pytest.raises(ValueError, match=r"loss\.augment: unknown"):
        augment.draw(["rotation"], 1, (16, 16, 16), torch.device("cpu"), None)


def test_nothing_drawn_changes_nothing():
    x = _inputs()
    params = augment.draw([], 2, (16, 16, 16), torch.device("cpu"), None)
    assert torch.equal(augment.apply(x, params, image_channels=1), x)


def test_shift_moves_image_and_labels_together_with_zero_fill():
    x = _inputs(1)
    params = augment.AugmentDraw(
        torch.tensor([[2, -1, 0]]),
        torch.zeros(1, 3, dtype=torch.long),
        (0, 0, 0),
        torch.ones(1, 1, 1, 1, 1),
        torch.zeros(1, 1, 1, 1, 1),
    )
    out = augment.apply(x, params, image_channels=1)
    torch.testing.assert_close(out[0, :, 2:, :15], x[0, :, :14, 1:])
    assert out[0, :, :2].abs().sum() == 0 and out[0, :, :, 15].abs().sum() == 0  # filled with zeros, not wrapped


def test_cutout_zeroes_one_box_in_every_channel():
    x = _inputs(1)
    params = augment.AugmentDraw(
        torch.zeros(1, 3, dtype=torch.long),
        torch.tensor([[4, 6, 0]]),
        (8, 8, 8),
        torch.ones(1, 1, 1, 1, 1),
        torch.zeros(1, 1, 1, 1, 1),
    )
    out = augment.apply(x, params, image_channels=1)
    assert out[0, :, 4:12, 6:14, 0:8].abs().sum() == 0
    keep = torch.ones(16, 16, 16, dtype=torch.bool)
    keep[4:12, 6:14, 0:8] = False
    assert torch.equal(out[0, :, keep], x[0, :, keep])


def test_intensity_acts_inside_the_brain_only():
    x = _inputs(1)
    params = augment.AugmentDraw(
        torch.zeros(1, 3, dtype=torch.long),
        torch.zeros(1, 3, dtype=torch.long),
        (0, 0, 0),
        torch.full((1, 1, 1, 1, 1), 1.5),
        torch.full((1, 1, 1, 1, 1), 0.25),
    )
    out = augment.apply(x, params, image_channels=1)
    brain = x[0, 1] == 0
    torch.testing.assert_close(out[0, 0][brain], 1.5 * x[0, 0][brain] + 0.25)
    assert out[0, 0][~brain].abs().sum() == 0
    assert torch.equal(out[:, 1:], x[:, 1:])  # label channels untouched


def test_gradient_reaches_the_image_and_copies_share_their_label_maps_draw():
    params = augment.draw(
        list(augment.AUGMENTATIONS), 2, (16, 16, 16), torch.device("cpu"), torch.Generator().manual_seed(1)
    )
    x = _inputs(2)
    image = x[:, :1].clone().requires_grad_(True)
    out = augment.apply(torch.cat([image, x[:, 1:]], 1), params, image_channels=1)
    out.sum().backward()
    assert image.grad is not None and image.grad.abs().sum() > 0
    doubled = augment.apply(x.repeat(2, 1, 1, 1, 1), params.repeat(2), image_channels=1)
    torch.testing.assert_close(doubled[:2], doubled[2:])  # row i and row B + i: the same label map, the same draw
