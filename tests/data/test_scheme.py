"""Canonical label scheme and the mapping of every source scheme."""

import numpy as np
import pytest

from medsynth.data import scheme


@pytest.mark.parametrize(
    ("source", "values", "expected"),
    [
        ("brats2013", [0, 1, 2, 3, 4], [0, scheme.NETC, scheme.SNFH, scheme.NETC, scheme.ET]),
        ("brats2021", [0, 1, 2, 4], [0, scheme.NETC, scheme.SNFH, scheme.ET]),
        ("brats2023", [0, 1, 2, 3, 4], [0, scheme.NETC, scheme.SNFH, scheme.ET, scheme.RC]),
        ("msd", [0, 1, 2, 3], [0, scheme.SNFH, scheme.NETC, scheme.ET]),
    ],
)
def test_to_canonical(source, values, expected):
    assert scheme.to_canonical_tumor(np.array(values), source).tolist() == expected


def test_unknown_values_rejected():
    with pytest.raises(ValueError, match=r"\[3\]"):
        scheme.to_canonical_tumor(np.array([0, 3]), "brats2021")


def test_regions_and_export_round_trip():
    label_map = np.array([0, scheme.CSF, scheme.NETC, scheme.SNFH, scheme.ET])
    regions = scheme.region_masks(label_map)
    assert regions["WT"].tolist() == [False, False, True, True, True]
    assert regions["TC"].tolist() == [False, False, True, False, True]
    assert regions["ET"].tolist() == [False, False, False, False, True]
    brats23 = scheme.from_canonical(label_map, scheme.CANONICAL_TO_BRATS2023)
    assert brats23.tolist() == [0, 0, 1, 2, 3]
    assert scheme.to_canonical_tumor(brats23, "brats2023").tolist() == [
        0,
        0,
        scheme.NETC,
        scheme.SNFH,
        scheme.ET,
    ]
