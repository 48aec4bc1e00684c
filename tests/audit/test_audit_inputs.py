"""Audit inputs and outputs: a bad case is refused in one line naming its file, the Frechet distance
survives degenerate covariances, and the report folder appears whole or not at all."""

from __future__ import annotations

import errno
import json
import re
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

import medsynth.audit.run as audit_run
from medsynth.audit.features import frechet_distance, mmd
from medsynth.cli import main
from medsynth.errors import MedsynthError


def _audit(real: Path, cohort: Path, output: Path, *options: str) -> list[str]:
    return ["audit", "--real", str(real), "--synthetic", str(cohort), "-o", str(output), *options]


def _refused(capsys, command: list[str]) -> str:
    """The one-line message of a refused command (exit 2, no traceback)."""
    capsys.readouterr()
    assert main(command) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    return err


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


@pytest.fixture
def copies(prepared_phantoms, tiny_cohort, tmp_path) -> tuple[Path, Path]:
    """Private copies of the prepared phantoms and the tiny cohort, to corrupt."""
    real = tmp_path / "prepared"
    shutil.copytree(prepared_phantoms.parent, real)
    cohort = tmp_path / "cohort"
    shutil.copytree(tiny_cohort, cohort)
    return real / "manifest.json", cohort


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
def test_a_bad_case_is_refused_in_one_line_naming_its_file(copies, tmp_path, capsys, side, suffix, change, message):
    real, cohort = copies
    folder = next((cohort / "cases").iterdir()) if side == "synthetic" else next((real.parent / "cases").iterdir())
    bad = folder / f"{folder.name}_{suffix}.nii.gz"
    _rewrite(bad, change)
    output = tmp_path / "runs" / "audit"
    err = _refused(capsys, _audit(real, cohort, output, "--feature-steps", "1"))
    assert f"{bad}: " in err and re.search(message, err), err
    assert not output.exists() and not any((tmp_path / "runs").iterdir())


def test_a_cohort_of_other_modalities_is_refused(copies, tmp_path, capsys):
    real, cohort = copies
    manifest = json.loads((cohort / "manifest.json").read_text())
    manifest["medsynth"]["modalities"] = ["flair", "t1c"]  # the same files read as the other modality
    (cohort / "manifest.json").write_text(json.dumps(manifest))
    err = _refused(capsys, _audit(real, cohort, tmp_path / "audit"))
    assert f"{cohort / 'manifest.json'}: modalities ['flair', 't1c'] differ from {real}'s ['t1c', 'flair']" in err
    assert not (tmp_path / "audit").exists()


@pytest.mark.parametrize("scale", [1e100, 1e150])
def test_frechet_distance_survives_where_scipy_sqrtm_fails(scale):
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(200, 4)), rng.normal(size=(150, 4)) * 1.5 + 0.5
    # the covariance product overflows: MONAI's sqrtm raised "Internal error in scipy.linalg.sqrtm: -102"
    assert frechet_distance(a * scale, b * scale) == pytest.approx(frechet_distance(a, b) * scale**2, rel=1e-6)


def _dead_channels(seed: int) -> np.ndarray:
    """9 feature vectors of 32 channels, half of them dead (0), the rest on scales 1e-6 ... 1e6."""
    features = np.random.default_rng(seed).normal(size=(9, 32)) * np.logspace(-6, 6, 32)
    features[:, :16] = 0
    return features


def test_frechet_distance_of_singular_ill_conditioned_covariances_is_defined():
    # MONAI raised "Imaginary component ... too high" for each of these
    a, b = _dead_channels(0), _dead_channels(1)
    scale = np.trace(np.cov(a, rowvar=False))
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-9 * scale)
    diff = a.mean(0) - b.mean(0)
    bound = np.trace(np.cov(a, rowvar=False)) + np.trace(np.cov(b, rowvar=False))
    assert diff @ diff <= frechet_distance(a, b) <= diff @ diff + bound  # mean term + Bures term in [0, tr A + tr B]


@pytest.mark.parametrize(
    ("a", "message"),
    [
        (np.where(np.eye(50, 4) > 0, np.nan, 1.0), "the first feature set holds NaN or Inf values"),
        (np.ones((1, 4)), "at least two feature vectors on each side, got 1 and 50"),
    ],
)
def test_frechet_and_mmd_refuse_unusable_features(a, message):
    b = np.random.default_rng(0).normal(size=(50, 4))
    with pytest.raises(MedsynthError, match=message.replace("(", r"\(")):
        frechet_distance(a, b)
    with pytest.raises(MedsynthError, match="MMD"):
        mmd(a, b)


@pytest.fixture(scope="module")
def first_audit(prepared_phantoms, tiny_cohort, tmp_path_factory) -> Path:
    """One audit that trains and saves its feature network (1 step: fast); tests work on copies of it."""
    output = tmp_path_factory.mktemp("first_audit") / "audit"
    assert main([*_audit(prepared_phantoms, tiny_cohort, output), "--feature-steps", "1"]) == 0
    return output


def _no_space(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_an_interrupted_audit_leaves_no_output_and_no_temporary(
    prepared_phantoms, tiny_cohort, tmp_path, monkeypatch, capsys
):
    saved = []
    save = audit_run.save_feature_network
    monkeypatch.setattr(audit_run, "save_feature_network", lambda network, path: saved.append(save(network, path)))
    monkeypatch.setattr(audit_run, "_plot", _no_space)  # the disk fills up at the last file
    output = tmp_path / "runs" / "audit"
    err = _refused(capsys, [*_audit(prepared_phantoms, tiny_cohort, output), "--feature-steps", "1"])
    assert "No space left on device" in err
    assert len(saved) == 1  # the network was trained and saved before the failure ...
    assert not output.exists()  # ... and went with the rest
    assert list((tmp_path / "runs").iterdir()) == []  # no stray temporary either


def test_an_interrupted_rerun_keeps_the_previous_audit(
    prepared_phantoms, tiny_cohort, first_audit, tmp_path, monkeypatch, capsys
):
    output = tmp_path / "audit"
    shutil.copytree(first_audit, output)
    before = {p.name: p.read_bytes() for p in output.iterdir()}
    monkeypatch.setattr(audit_run, "_plot", _no_space)  # report.json and report.md are written by then
    command = _audit(prepared_phantoms, tiny_cohort, output, "--features", str(output / "feature_network.pt"))
    assert "No space left on device" in _refused(capsys, command)
    assert {p.name: p.read_bytes() for p in output.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["audit"]


def test_a_second_audit_replaces_the_first_and_keeps_its_feature_network(
    prepared_phantoms, tiny_cohort, first_audit, tmp_path
):
    output = tmp_path / "audit"
    shutil.copytree(first_audit, output)
    network = (output / "feature_network.pt").read_bytes()
    (output / "report.json").write_text("{}")  # what the previous audit wrote, to be replaced
    (output / "scratch.txt").write_text("left in the audit folder")
    # the network of the audit being replaced: read before the swap, carried into the new folder
    command = _audit(prepared_phantoms, tiny_cohort, output, "--features", str(output / "feature_network.pt"))
    assert main(command) == 0
    assert sorted(p.name for p in output.iterdir()) == [
        ".medsynth-output.json",
        "feature_network.pt",
        "report.json",
        "report.md",
        "report.png",
    ]
    assert (output / "feature_network.pt").read_bytes() == network
    report = json.loads((output / "report.json").read_text())
    assert str(output / "feature_network.pt") in report["fidelity_features"]["network"]
    first = json.loads((first_audit / "report.json").read_text())
    assert report["fidelity_features"]["frechet"] == first["fidelity_features"]["frechet"]  # the same network
    assert [p.name for p in tmp_path.iterdir()] == ["audit"]


def test_an_audit_into_a_folder_of_user_files_is_refused_and_the_files_kept(
    prepared_phantoms, tiny_cohort, tmp_path, capsys
):
    output = tmp_path / "mine"
    output.mkdir()
    (output / "notes.txt").write_text("my notes\n")
    err = _refused(capsys, _audit(prepared_phantoms, tiny_cohort, output))
    assert f"{output}: folder exists and holds files medsynth did not write (notes.txt)" in err
    assert [p.name for p in output.iterdir()] == ["notes.txt"]
    assert (output / "notes.txt").read_text() == "my notes\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine"]


def test_an_audit_into_its_own_inputs_is_refused(copies, capsys):
    real, cohort = copies
    before = sorted(p.name for p in cohort.iterdir())
    err = _refused(capsys, _audit(real, cohort, cohort))
    assert f"{cohort}: the output folder holds this command's input" in err
    err = _refused(capsys, _audit(real, cohort, real.parent))
    assert f"{real.parent}: the output folder holds this command's input" in err
    assert sorted(p.name for p in cohort.iterdir()) == before
