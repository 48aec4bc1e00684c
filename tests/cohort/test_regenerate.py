"""Every case of a cohort can be regenerated from its provenance.json: one call, the written files back."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from medsynth.cohort.generate import GenerateConfig, run_generate
from medsynth.cohort.regenerate import regenerate_case
from medsynth.errors import MedsynthError
from medsynth.io import load_nifti


def _assert_regenerates(cohort, case_id):
    case = regenerate_case(cohort / "cases" / case_id / "provenance.json")
    folder = cohort / "cases" / case_id
    label_map, affine, _ = load_nifti(folder / f"{case_id}_label_map.nii.gz", dtype=None)
    assert case.label_map.dtype == np.int16 and np.array_equal(case.label_map, label_map)
    assert np.allclose(case.affine, affine, atol=1e-5)
    precision = json.loads((cohort / "cohort_plan.json").read_text())["generator"]["precision"]
    for channel, modality in zip(case.images, case.modalities, strict=True):
        written, _, _ = load_nifti(folder / f"{case_id}_{modality}.nii.gz", dtype=np.float32)
        if precision == "fp32":
            assert np.array_equal(channel.astype(np.float32), written)  # bit for bit
        else:  # bf16 kernels may differ between machines: to bf16 rounding of z-scored intensities
            assert np.allclose(channel, written, atol=0.05)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_sampled_cases_regenerate(tiny_generator, tmp_path, precision):
    cohort = tmp_path / "cohort"
    run_generate(GenerateConfig(str(tiny_generator), n=2, seed=6, precision=precision), cohort, progress=False)
    for case_id in ("synth_00000", "synth_00001"):
        _assert_regenerates(cohort, case_id)


def test_resampled_case_and_label_map_folder(prepared_phantoms, tiny_generator, tmp_path):
    from medsynth.labels import generate_label_maps

    generate_label_maps([prepared_phantoms], tmp_path / "labels", n=1, seed=2, progress=False)
    config = GenerateConfig(str(tiny_generator), labels=str(tmp_path / "labels"), spacing_mm=1.5, precision="fp32")
    run_generate(config, tmp_path / "cohort", progress=False)
    _assert_regenerates(tmp_path / "cohort", "synth_00000")


def test_another_generator_is_refused(tiny_generator, tmp_path):
    cohort = tmp_path / "cohort"
    run_generate(GenerateConfig(str(tiny_generator), n=1, precision="fp32"), cohort, progress=False)
    other = tmp_path / "other.pt"
    shutil.copy(tiny_generator, other)
    with other.open("ab") as handle:
        handle.write(b"\0")
    provenance = cohort / "cases" / "synth_00000"
    with pytest.raises(MedsynthError, match="is not the generator that made this case"):
        regenerate_case(provenance, checkpoint=other)
    record = json.loads((provenance / "provenance.json").read_text())
    with pytest.raises(MedsynthError, match="give plan="):
        regenerate_case(record)
    assert regenerate_case(record, plan=cohort / "cohort_plan.json").label_map.any()
