"""Tissue classification and FreeSurfer conversion."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import phantom

from medsynth.data.anatomy import classify_tissues, freesurfer_to_anatomy, otsu_threshold
from medsynth.data.scheme import CSF, GM, WM


def test_phantom_tissues_recovered():
    p = phantom(tumor=False)
    brain = p["mask"] > 0
    anatomy = classify_tissues(np.stack([p["t1c"], p["flair"]]), brain, ["t1c", "flair"])
    agreement = (anatomy[brain] == p["tissue"][brain]).mean()
    assert agreement > 0.95
    assert np.all(anatomy[~brain] == 0)


def test_tumor_excluded_from_thresholds_but_classified():
    p = phantom()
    brain = p["mask"] > 0
    tumor = p["label"] > 0
    anatomy = classify_tissues(np.stack([p["t1c"], p["flair"]]), brain, ["t1c", "flair"], exclude=tumor)
    healthy = brain & ~tumor
    assert (anatomy[healthy] == p["tissue"][healthy]).mean() > 0.95
    assert set(np.unique(anatomy[tumor])) <= {CSF, GM, WM}


def test_golden_class_counts():
    """Deterministic across runs and machines: the voxel count of every class on a fixed phantom."""
    p = phantom(seed=3)
    anatomy = classify_tissues(np.stack([p["t1c"], p["flair"]]), p["mask"] > 0, ["t1c", "flair"])
    assert anatomy.dtype == np.int16
    assert np.bincount(anatomy.ravel()).tolist() == [57616, 5376, 8183, 5625]  # background, CSF, GM, WM


def test_bad_arguments():
    p = phantom()
    with pytest.raises(ValueError, match="do not match"):
        classify_tissues(p["t1c"][None], np.ones((3, 3, 3), bool), ["t1c"])
    with pytest.raises(ValueError, match="modality names"):
        classify_tissues(p["t1c"][None], p["mask"] > 0, ["t1c", "flair"])


def test_freesurfer_table():
    labels = np.array([0, 2, 41, 3, 42, 4, 43, 24, 10, 16, 530])
    assert freesurfer_to_anatomy(labels).tolist() == [0, WM, WM, GM, GM, CSF, CSF, CSF, GM, WM, 0]
    with pytest.raises(ValueError, match=r"\[99\]"):
        freesurfer_to_anatomy(np.array([0, 99]))


def test_otsu_between_modes():
    values = np.r_[np.random.default_rng(0).normal(0, 0.1, 500), np.random.default_rng(1).normal(3, 0.1, 500)]
    assert 0.5 < otsu_threshold(values) < 2.5
