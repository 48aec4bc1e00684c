"""Audit: metric functions on hand-built cases; a planted copy is flagged, an independent cohort is not."""

from __future__ import annotations

import json
import shutil

import nibabel as nib
import numpy as np
import pytest

from medsynth.audit.privacy import auc_with_ci, ncc, similarity
from medsynth.audit.run import audit
from medsynth.cli import main
from medsynth.data.manifest import load_manifest, manifest_cases


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


def test_planted_copy_is_flagged_and_independent_cohort_is_not(prepared_phantoms, tiny_cohort, tmp_path, capsys):
    clean = audit(prepared_phantoms, tiny_cohort, tmp_path / "clean")
    assert clean["memorization"]["flagged"] == []
    planted = tmp_path / "planted"
    shutil.copytree(tiny_cohort, planted)
    training = next(c for c in manifest_cases(load_manifest(prepared_phantoms)) if c.split == "train")
    victim = manifest_cases(load_manifest(planted / "manifest.json"))[1]
    rng = np.random.default_rng(0)
    for source, target in zip(training.images, victim.images, strict=True):
        image = nib.load(str(source))
        data = np.asarray(image.dataobj)[::-1]  # mirrored + noise: a lightly augmented copy
        data = (data + rng.normal(0, 0.05, data.shape) * (data != 0)).astype(np.float32)
        nib.save(nib.Nifti1Image(data, image.affine), str(target))
    assert (
        main(["audit", "--real", str(prepared_phantoms), "--synthetic", str(planted), "-o", str(tmp_path / "a")]) == 1
    )
    report = json.loads((tmp_path / "a" / "report.json").read_text())
    assert report["memorization"]["flagged"] == [victim.case_id]
    assert "FAIL" in (tmp_path / "a" / "report.md").read_text()
