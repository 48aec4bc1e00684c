"""Atomic writes and checked NIfTI reading."""

import numpy as np
import pytest

from medsynth.errors import DataError
from medsynth.io import atomic_path, load_nifti, save_nifti


def test_atomic_path_leaves_nothing_on_error(tmp_path):
    with pytest.raises(RuntimeError), atomic_path(tmp_path / "out.nii.gz") as tmp:
        tmp.write_text("partial")
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_atomic_folder_replaces(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "old").write_text("old")
    with atomic_path(tmp_path / "d") as tmp:
        tmp.mkdir()
        (tmp / "new").write_text("new")
    assert [p.name for p in (tmp_path / "d").iterdir()] == ["new"]


def test_save_and_load_round_trip(tmp_path):
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    array = np.arange(24, dtype=np.int16).reshape(2, 3, 4)
    save_nifti(array, affine, tmp_path / "a.nii.gz")
    loaded, loaded_affine, _ = load_nifti(tmp_path / "a.nii.gz", dtype=None)
    assert np.array_equal(loaded, array) and np.allclose(loaded_affine, affine)


def test_missing_file_named(tmp_path):
    with pytest.raises(DataError, match=r"a\.nii\.gz: file not found"):
        load_nifti(tmp_path / "a.nii.gz")
