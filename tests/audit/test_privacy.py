"""The similarity and AUC primitives of the memorization checks, on hand-built arrays."""

from __future__ import annotations

import numpy as np
import pytest

from medsynth.audit.privacy import auc_with_ci, ncc, similarity


def test_ncc_hand_built():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(1, 8, 8, 8))
    mask = np.ones((8, 8, 8), bool)
    assert ncc(a, a, mask) == pytest.approx(1.0)
    assert ncc(a, -a, mask) == pytest.approx(-1.0)
    assert ncc(a, 3 * a + 2, mask) == pytest.approx(1.0)
    assert similarity(a[:, ::-1], a) == pytest.approx(1.0)  # a mirrored copy is still a copy


def test_auc_hand_built():
    assert auc_with_ci([3, 4], [1, 2])[0] == 1.0
    assert auc_with_ci([1, 2], [3, 4])[0] == 0.0
    auc, (low, high) = auc_with_ci([1, 2, 3], [1, 2, 3])
    assert auc == 0.5 and low <= 0.5 <= high
