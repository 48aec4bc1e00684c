"""The cohort stage's export gate: the copy check of generated case folders (``copy_check_cohort``)."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from medsynth.manifest import Manifest


def test_export_gate(prepared_phantoms, tiny_generator, tmp_path, monkeypatch):
    from medsynth.cohort.generate import generate_cohort
    from medsynth.errors import MedsynthError
    from medsynth.models.generator import Generator

    status = generate_cohort(tiny_generator, tmp_path / "ok", n=2, audit_against=prepared_phantoms, progress=False)
    assert status.finalized
    assert "Copy check before publication (PASS" in (tmp_path / "ok" / "README.md").read_text()

    training = Manifest.load(prepared_phantoms).cases(["train"])[0]
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


def test_copy_check_of_a_one_modality_cohort_reads_that_modality_of_the_training_subjects(prepared_phantoms, tmp_path):
    """A FLAIR-only generator's cases are checked against the FLAIR of its two-modality training subjects."""
    import shutil

    from medsynth.audit.memorization import copy_check_cohort
    from medsynth.errors import DataError

    training = Manifest.load(prepared_phantoms).cases(["train"])[0]
    folder = tmp_path / "cases" / "synth_00000"
    folder.mkdir(parents=True)
    shutil.copy(training.images[1], folder / "synth_00000_flair.nii.gz")  # the manifest's second modality
    shutil.copy(training.label, folder / "synth_00000_label_map.nii.gz")
    result = copy_check_cohort(prepared_phantoms, [folder], ["flair"])
    assert result["flagged"] == ["synth_00000"] and result["cases"][0]["nearest_training"] == training.case_id
    with pytest.raises(DataError, match=r"cases in .*: modalities \['t2'\] differ from .*'s \['t1c', 'flair'\]"):
        copy_check_cohort(prepared_phantoms, [folder], ["t2"])
    with pytest.raises(DataError, match="a subset of them, in the same order"):
        copy_check_cohort(prepared_phantoms, [folder], ["flair", "t1c"])
