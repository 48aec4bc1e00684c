"""Dice and HD95 against hand-computed cases, and the BraTS rules for empty regions."""

import numpy as np
import pytest

from medsynth.benchmark.metrics import HD95_EMPTY_MM, dice, hd95, region_metrics


def test_dice_by_hand():
    reference = np.zeros((6, 6, 6), bool)
    reference[1, 1, 1:3] = True  # 2 voxels
    prediction = np.zeros_like(reference)
    prediction[1, 1, 2:5] = True  # 3 voxels, 1 shared
    assert dice(prediction, reference) == pytest.approx(2 * 1 / (2 + 3))


def test_hd95_is_a_distance_in_mm():
    reference = np.zeros((12, 6, 6), bool)
    prediction = np.zeros_like(reference)
    reference[1, 2, 2] = True
    prediction[4, 2, 2] = True  # 3 voxels apart along x
    assert hd95(prediction, reference, spacing_mm=(2.0, 1.0, 1.0)) == pytest.approx(6.0)
    assert hd95(prediction, reference, spacing_mm=(1.0, 1.0, 1.0)) == pytest.approx(3.0)


def test_hd95_ignores_the_worst_five_percent_of_surface_points():
    reference = np.zeros((12, 12, 24), bool)
    reference[1:11, 1:11, 5] = True  # a 10x10 plane: 100 surface voxels
    prediction = reference.copy()
    prediction[5, 5, 15] = True  # one outlier voxel 10 mm away (1 of 101 points)
    assert hd95(prediction, reference) == pytest.approx(0.0)
    import torch
    from monai.metrics import compute_hausdorff_distance

    as_tensor = lambda m: torch.as_tensor(m)[None, None].float()  # noqa: E731
    full = compute_hausdorff_distance(as_tensor(prediction), as_tensor(reference), include_background=True)
    assert float(full) == pytest.approx(10.0)  # the plain Hausdorff distance sees it


@pytest.mark.parametrize(
    ("predicted", "expected", "result"),
    [(False, False, (1.0, 0.0)), (True, False, (0.0, HD95_EMPTY_MM)), (False, True, (0.0, HD95_EMPTY_MM))],
)
def test_empty_regions_follow_brats(predicted, expected, result):
    reference = np.zeros((5, 5, 5), bool)
    prediction = np.zeros_like(reference)
    reference[2, 2, 2] = expected
    prediction[2, 2, 2] = predicted
    assert (dice(prediction, reference), hd95(prediction, reference)) == pytest.approx(result)
    assert pytest.approx(np.sqrt(240**2 + 240**2 + 155**2), abs=0.01) == HD95_EMPTY_MM


def test_regions_of_brats2023_labels():
    reference = np.zeros((10, 10, 10), np.uint8)
    reference[2:8, 2:8, 2:8] = 2  # SNFH
    reference[4:6, 4:6, 4:6] = 3  # ET
    prediction = reference.copy()
    prediction[prediction == 3] = 1  # ET called NETC: WT and TC right, ET missed
    metrics = region_metrics(prediction, reference)
    assert metrics["WT"] == {"dice": 1.0, "hd95_mm": 0.0}
    assert metrics["TC"] == {"dice": 1.0, "hd95_mm": 0.0}
    assert metrics["ET"] == {"dice": 0.0, "hd95_mm": HD95_EMPTY_MM}
    with pytest.raises(ValueError, match="differ in shape"):
        region_metrics(prediction[1:], reference)
