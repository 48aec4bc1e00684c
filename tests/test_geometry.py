"""One geometry module: same-space checks, resampling, back to the original grid."""

from __future__ import annotations

import numpy as np
import pytest

from medsynth.geometry import orientation, resample, same_space, to_original_space, voxel_spacing

RAS_2MM = np.diag([2.0, 2.0, 2.0, 1.0])
LPS_2MM = np.diag([-2.0, -2.0, 2.0, 1.0])
SHIFTED = RAS_2MM + np.pad(np.array([[0, 0, 0, 5.0]] * 3), ((0, 1), (0, 0)))


@pytest.mark.parametrize(
    ("b", "shape_b", "kwargs", "differs"),
    [
        (RAS_2MM, (8, 8, 8), {}, []),
        (RAS_2MM * [1.0005, 1, 1, 1], (8, 8, 8), {}, []),  # within the tolerance
        (np.diag([1.0, 1.0, 1.0, 1.0]), (8, 8, 8), {}, ["spacing", "position"]),
        (LPS_2MM, (8, 8, 8), {}, ["orientation", "position"]),
        (SHIFTED, (8, 8, 8), {}, ["position"]),
        (SHIFTED, (8, 8, 8), {"position": False}, []),
        (RAS_2MM, (8, 8, 9), {}, ["shape"]),
        (RAS_2MM, None, {}, []),  # shapes compared only when both are given
    ],
)
def test_same_space(b, shape_b, kwargs, differs):
    result = same_space(RAS_2MM, b, (8, 8, 8), shape_b, **kwargs)
    assert list(result.differences) == differs
    assert bool(result) == (not differs)


def test_description_names_both_sides():
    text = same_space(np.eye(4), LPS_2MM, position=False).describe("label map", "generator")
    assert (
        text
        == "voxel spacing 1x1x1 mm (label map) vs 2x2x2 mm (generator); orientation RAS (label map) vs LPS (generator)"
    )
    assert voxel_spacing(LPS_2MM) == (2.0, 2.0, 2.0) and orientation(LPS_2MM) == "LPS"


def test_resample_keeps_world_geometry_and_label_dtype():
    labels = np.zeros((8, 8, 8), dtype=np.int16)
    labels[2:6, 2:6, 2:6] = 3
    out, affine = resample(labels, RAS_2MM, 1.0, "nearest")
    assert out.dtype == np.int16 and out.shape == (15, 15, 15) and set(np.unique(out)) == {0, 3}
    assert voxel_spacing(affine) == (1.0, 1.0, 1.0) and orientation(affine) == "RAS"
    back = to_original_space(out, affine, RAS_2MM, (8, 8, 8))
    assert back.dtype == np.int16 and np.array_equal(back, labels)


def test_preprocess_reexports_to_original_space():
    from medsynth.data import preprocess

    assert preprocess.to_original_space is to_original_space
