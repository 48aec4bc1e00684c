"""Loading the audit's cases: a bad case is refused in one line naming its file, before any check runs;
manifests of the wrong kind or modalities are refused too."""

from __future__ import annotations

import json
import re
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest


def _rewrite(path: Path, change) -> None:
    """Rewrite a NIfTI file with ``change(array, affine) -> (array, affine)``."""
    image = nib.load(str(path))
    array, affine = change(np.asarray(image.dataobj).copy(), image.affine.copy())
    nib.save(nib.Nifti1Image(array, affine), str(path))


def _label_shape(array, affine):
    return array[:-2], affine


def _label_affine(array, affine):
    return array, affine @ np.diag([1.5, 1.5, 1.5, 1.0])  # 3 mm voxels in a 2 mm case


def _label_nine(array, affine):
    array[24, 24, 24] = 9
    return array, affine


def _nan_voxel(array, affine):
    array[24, 24, 24] = np.nan
    return array, affine


def _empty_brain(array, affine):
    return np.zeros_like(array), affine


@pytest.mark.parametrize(
    ("side", "suffix", "change", "message"),
    [
        ("synthetic", "label_map", _label_shape, r"label map shape \(46, 48, 48\) differs from \S+_t1c\.nii\.gz"),
        ("synthetic", "label_map", _label_affine, r"label map affine differs from \S+_t1c\.nii\.gz by up to"),
        ("synthetic", "t1c", _nan_voxel, r"1 NaN or Inf voxel\(s\) in the image"),
        ("synthetic", "label_map", _label_nine, r"label values \[9\] are not in the canonical scheme"),
        ("real", "flair", _nan_voxel, r"1 NaN or Inf voxel\(s\) in the image"),
        ("real", "label_map", _empty_brain, r"empty brain"),
    ],
    ids=["label-shape", "label-affine", "synthetic-nan", "label-9", "real-nan", "real-empty-brain"],
)
def test_a_bad_case_is_refused_in_one_line_naming_its_file(
    copies, tmp_path, refused, audit_args, side, suffix, change, message
):
    real, cohort = copies
    folder = next((cohort / "cases").iterdir()) if side == "synthetic" else next((real.parent / "cases").iterdir())
    bad = folder / f"{folder.name}_{suffix}.nii.gz"
    _rewrite(bad, change)
    output = tmp_path / "runs" / "audit"
    err = refused(audit_args(real, cohort, output, "--feature-steps", "1"))
    assert f"{bad}: " in err and re.search(message, err), err
    assert not output.exists() and not any((tmp_path / "runs").iterdir())


def test_a_cohort_of_other_modalities_is_refused(copies, tmp_path, refused, audit_args):
    real, cohort = copies
    manifest = json.loads((cohort / "manifest.json").read_text())
    manifest["medsynth"]["modalities"] = ["flair", "t1c"]  # the same files read as the other modality
    (cohort / "manifest.json").write_text(json.dumps(manifest))
    err = refused(audit_args(real, cohort, tmp_path / "audit"))
    assert f"{cohort / 'manifest.json'}: modalities ['flair', 't1c'] differ from {real}'s ['t1c', 'flair']" in err
    manifest["medsynth"]["modalities"] = ["t2"]
    (cohort / "manifest.json").write_text(json.dumps(manifest))
    assert "modalities ['t2'] differ from" in refused(audit_args(real, cohort, tmp_path / "audit"))
    assert not (tmp_path / "audit").exists()


def test_a_cohort_given_as_the_real_manifest_is_refused(copies, tmp_path, refused, audit_args):
    _, cohort = copies
    err = refused(audit_args(cohort / "manifest.json", cohort, tmp_path / "audit"))
    assert "a cohort manifest; expected a prepared manifest (from `medsynth prepare`)" in err
    assert not (tmp_path / "audit").exists()
