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


def test_export_gate(prepared_phantoms, tiny_generator, tmp_path, monkeypatch):
    from medsynth.cohort.generate import generate_cohort
    from medsynth.errors import MedsynthError
    from medsynth.models.generator import Generator

    status = generate_cohort(tiny_generator, tmp_path / "ok", n=2, audit_against=prepared_phantoms, progress=False)
    assert status.finalized
    assert "Copy check before publication (PASS" in (tmp_path / "ok" / "README.md").read_text()

    training = next(c for c in manifest_cases(load_manifest(prepared_phantoms)) if c.split == "train")
    copy = np.stack([np.asarray(nib.load(str(p)).dataobj) for p in training.images])
    original = Generator.synthesize

    def copying(self, label_map, seed=None, affine=None):
        result = original(self, label_map, seed=seed, affine=affine)
        result.images = copy.copy()
        return result

    monkeypatch.setattr(Generator, "synthesize", copying)
    with pytest.raises(MedsynthError, match="not finalized"):
        generate_cohort(tiny_generator, tmp_path / "bad", n=1, audit_against=prepared_phantoms, progress=False)
    assert not (tmp_path / "bad" / "manifest.json").exists()
    status = generate_cohort(
        tiny_generator, tmp_path / "bad", n=1, audit_against=prepared_phantoms, allow_flagged=True, progress=False
    )
    assert status.finalized
    provenance = json.loads((tmp_path / "bad" / "cases" / "synth_00000" / "provenance.json").read_text())
    assert provenance["flagged_copy"] is True
