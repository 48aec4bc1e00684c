"""Tampered cohorts are refused by ``cohort verify`` and ``export``; exports never leave ``-o`` or overwrite.

Each tampering recomputes ``checksums.sha256`` afterwards (that is cheap for a tamperer), so
what catches it is verify's layout, manifest and provenance checks, not the checksums.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest

from medsynth.cli import main
from medsynth.cohort.export import export_brats, export_nnunet
from medsynth.cohort.finalize import write_checksums
from medsynth.cohort.generate import generate_cohort
from medsynth.cohort.verify import verify_cohort
from medsynth.errors import DataError, MedsynthError, OutputError
from medsynth.io import OWNER_FILE

A, B = "synth_00000", "synth_00001"


@pytest.fixture(scope="module")
def cohort(tiny_generator, tmp_path_factory):
    root = tmp_path_factory.mktemp("verify") / "cohort"
    status = generate_cohort(tiny_generator, root, n=3, seed=5, label_convention="brats2023", progress=False)
    assert status.finalized
    assert verify_cohort(root) == []
    return root


@pytest.fixture
def copy(cohort, tmp_path):
    target = tmp_path / "copy"
    shutil.copytree(cohort, target, symlinks=True)
    return target


def _edit_manifest(root, edit):
    path = root / "manifest.json"
    manifest = json.loads(path.read_text())
    edit(manifest)
    path.write_text(json.dumps(manifest, indent=2))
    write_checksums(root)


def _entry(manifest, case_id):
    return next(e for e in manifest["training"] if e["case_id"] == case_id)


def _problems(root):
    """verify's problems after recomputing the checksums (what a tamperer would do)."""
    write_checksums(root)
    problems = verify_cohort(root)
    assert problems, "the tampering was not caught"
    return "\n".join(problems)


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


# --- verify --------------------------------------------------------------------------------


def test_clean_cohort_with_owner_record_and_running_temporaries_verifies(copy):
    (copy / OWNER_FILE).write_text(json.dumps({"stage": "generate", "medsynth": "0"}))
    live = f"{socket.gethostname()}-{os.getpid()}"
    (copy / f".manifest.json.{live}.a1b2c3d4.tmp.json").write_text("{")
    running_case = copy / "cases" / f".synth_00007.{live}.x9y8z7w6.tmp"
    running_case.mkdir()
    (running_case / "synth_00007_t1c.nii.gz").write_bytes(b"partial")
    assert verify_cohort(copy) == []
    assert main(["cohort", "verify", str(copy)]) == 0


def test_stale_temporary_and_hidden_files_are_reported(copy):
    stale = copy / "cases" / A / f".provenance.json.{socket.gethostname()}-{_dead_pid()}.q1w2e3r4.tmp.json"
    stale.write_text("{}")
    (copy / ".hidden").write_text("smuggled")
    (copy / "cases" / A / ".also_hidden").write_text("smuggled")
    (copy / "cases" / A / OWNER_FILE).write_text(json.dumps({"stage": "generate"}))  # only the root may hold one
    problems = _problems(copy)
    assert f"{stale}: temporary left by a stopped run" in problems
    for path in (copy / ".hidden", copy / "cases" / A / ".also_hidden", copy / "cases" / A / OWNER_FILE):
        assert f"{path}: not listed in checksums.sha256" in problems


def test_bad_owner_record_is_reported(copy):
    (copy / OWNER_FILE).write_text("[1, 2]")
    assert f"{copy / OWNER_FILE}: not a medsynth ownership record" in _problems(copy)


def test_entry_repointed_at_another_cases_file(copy):
    _edit_manifest(copy, lambda m: _entry(m, A).update(label=f"cases/{B}/{B}_label_map.nii.gz"))
    problems = _problems(copy)
    assert f"case {A}: label 'cases/{B}/{B}_label_map.nii.gz' lies outside the case's folder cases/{A}/" in problems
    assert f"{B}_label_map.nii.gz: named 2 times in manifest.json (cases {A}, {B})" in problems
    assert f"{copy / 'cases' / A / f'{A}_label_map.nii.gz'}: in the case folder but not named in manifest.json" in (
        problems
    )


def test_one_cases_image_copied_over_anothers(copy):
    """A case file replaced by another case's (checksums recomputed): two cases cannot share an image."""
    shutil.copyfile(copy / "cases" / B / f"{B}_t1c.nii.gz", copy / "cases" / A / f"{A}_t1c.nii.gz")
    problems = _problems(copy)
    assert f"{B}_t1c.nii.gz: same content as {copy / 'cases' / A / f'{A}_t1c.nii.gz'}" in problems


def test_entry_repointed_outside_the_cohort(copy, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    shutil.copyfile(copy / "cases" / A / f"{A}_t1c.nii.gz", outside / f"{A}_t1c.nii.gz")

    def edit(manifest):
        _entry(manifest, A)["image"][0] = f"../outside/{A}_t1c.nii.gz"
        _entry(manifest, B)["image"][0] = str(outside / f"{A}_t1c.nii.gz")

    _edit_manifest(copy, edit)
    problems = _problems(copy)
    assert f"case {A}: image 0 (t1c) '../outside/{A}_t1c.nii.gz' lies outside the cohort" in problems
    assert f"case {B}: image 0 (t1c) '{outside / f'{A}_t1c.nii.gz'}' lies outside the cohort" in problems


def test_entry_named_for_another_case_or_modality(copy):
    def edit(manifest):
        entry = _entry(manifest, A)
        entry["image"] = [entry["image"][1], entry["image"][0]]  # flair and t1c swapped

    _edit_manifest(copy, edit)
    shutil.copyfile(copy / "cases" / A / f"{A}_t1c.nii.gz", copy / "cases" / A / f"{B}_t1c.nii.gz")
    _edit_manifest(copy, lambda m: _entry(m, A).update(label=f"cases/{A}/{B}_t1c.nii.gz"))
    problems = _problems(copy)
    assert f"image 0 (t1c) 'cases/{A}/{A}_flair.nii.gz' is not named for the case (expected {A}_t1c.nii.gz)" in (
        problems
    )
    assert f"label 'cases/{A}/{B}_t1c.nii.gz' is not named for the case (expected {A}_label_map.nii.gz)" in problems


def test_symlinked_case_file_is_caught(copy, tmp_path):
    victim = copy / "cases" / A / f"{A}_t1c.nii.gz"
    victim.unlink()
    victim.symlink_to(copy / "cases" / B / f"{B}_t1c.nii.gz")
    flair = copy / "cases" / A / f"{A}_flair.nii.gz"
    outside = tmp_path / f"{A}_flair.nii.gz"
    shutil.move(flair, outside)
    flair.symlink_to(outside)
    problems = _problems(copy)
    assert f"{victim}: symbolic link" in problems and f"{flair}: symbolic link" in problems
    assert f"image 0 (t1c) 'cases/{A}/{A}_t1c.nii.gz' lies outside the case's folder cases/{A}/" in problems
    assert f"image 1 (flair) 'cases/{A}/{A}_flair.nii.gz' lies outside the cohort" in problems


def test_provenance_of_another_case(copy):
    shutil.copyfile(copy / "cases" / B / "provenance.json", copy / "cases" / A / "provenance.json")
    path = copy / "cases" / A / "provenance.json"
    problems = _problems(copy)
    assert f"{path}: provenance of case '{B}', not of {A}" in problems
    assert f"{path}: index 1 does not match case {A}" in problems


def test_provenance_of_another_cohort(copy):
    path = copy / "cases" / A / "provenance.json"
    provenance = json.loads(path.read_text())
    path.write_text(json.dumps({**provenance, "cohort_seed": 99, "generator_sha256": "0" * 64}))
    problems = _problems(copy)
    assert f"{path}: cohort seed 99, the cohort's is 5" in problems
    assert f"{path}: made by another generator than the cohort's" in problems


def test_case_folder_missing_from_manifest(copy):
    def edit(manifest):
        manifest["training"] = [e for e in manifest["training"] if e["case_id"] != B]
        manifest["numTraining"] = len(manifest["training"])

    _edit_manifest(copy, edit)
    assert f"{copy / 'cases' / B}: case folder not in manifest.json" in _problems(copy)


def test_extra_files_in_cases_are_caught(copy):
    (copy / "cases" / A / f"{A}_t2.nii.gz").write_bytes(b"extra")
    (copy / "cases" / "notes.txt").write_text("extra")
    problems = _problems(copy)
    assert f"{copy / 'cases' / A / f'{A}_t2.nii.gz'}: in the case folder but not named in manifest.json" in problems
    assert f"{copy / 'cases' / 'notes.txt'}: not a case file" in problems


def test_unlisted_and_outside_checksum_lines(copy):
    (copy / "extra.bin").write_bytes(b"x")
    problems = verify_cohort(copy)  # checksums not recomputed: the file is not listed
    assert f"{copy / 'extra.bin'}: not listed in checksums.sha256" in "\n".join(problems)
    listing = copy / "checksums.sha256"
    write_checksums(copy)
    lines = listing.read_text().splitlines()
    listing.write_text("\n".join([*lines, f"{'0' * 64}  ../victim.txt", lines[0]]) + "\n")
    problems = "\n".join(verify_cohort(copy))
    assert f"{listing}:{len(lines) + 1}: '../victim.txt' is not a path inside the cohort" in problems
    assert f"{listing}:{len(lines) + 2}: {lines[0].split('  ')[1]} listed twice" in problems


def test_bad_case_ids_and_duplicate_entries(copy):
    def edit(manifest):
        manifest["training"].append(dict(_entry(manifest, A)))
        manifest["training"].append({**_entry(manifest, B), "case_id": "../../x"})
        manifest["training"].append("not an entry")
        manifest["numTraining"] = len(manifest["training"])

    _edit_manifest(copy, edit)
    problems = _problems(copy)
    assert f"case {A} appears more than once" in problems
    assert "case_id '../../x' is not a case id" in problems
    assert "training[5]: not an object" in problems


def test_malformed_entry_values_give_problems_not_tracebacks(copy):
    def edit(manifest):
        entry = _entry(manifest, A)
        entry["label"] = 5
        entry["image"] = {"t1c": "x"}
        del entry["provenance"]
        _entry(manifest, B)["mask"] = f"cases/{B}/{B}_mask.nii.gz"

    _edit_manifest(copy, edit)
    problems = _problems(copy)
    assert f"case {A}: no image list" in problems
    assert f"case {A}: label 5 is not a path" in problems
    assert f"case {A}: no provenance (expected cases/{A}/provenance.json)" in problems
    assert f"case {B}: mask 'cases/{B}/{B}_mask.nii.gz': a cohort case has no such file" in problems


def test_case_moved_to_another_split(copy):
    def edit(manifest):
        entry = _entry(manifest, A)
        manifest["training"].remove(entry)
        manifest["numTraining"] = len(manifest["training"])
        manifest["test"] = [entry]

    _edit_manifest(copy, edit)
    problems = _problems(copy)
    assert f"{copy / 'cases' / A / 'provenance.json'}: split 'train' but the case is in manifest.json's 'test'" in (
        problems
    )


def test_seg_that_is_not_the_label_map_is_caught(copy):
    seg_path = copy / "cases" / A / f"{A}_seg.nii.gz"
    seg = nib.load(str(seg_path))
    nib.save(nib.Nifti1Image(np.zeros(seg.shape, np.uint8), seg.affine, seg.header), str(seg_path))
    assert f"{seg_path}: differs from the label map in the cohort's label convention" in _problems(copy)


def _plant_label_value(root, case_id, value):
    path = root / "cases" / case_id / f"{case_id}_label_map.nii.gz"
    image = nib.load(str(path))
    array = np.asarray(image.dataobj).copy()
    array[0, 0, 0] = value
    nib.save(nib.Nifti1Image(array, image.affine, image.header), str(path))
    write_checksums(root)
    return path


def test_label_value_outside_scheme(copy, tmp_path, capsys):
    path = _plant_label_value(copy, A, 9)
    assert f"{path}: label values [9] outside the canonical scheme" in "\n".join(verify_cohort(copy))
    with pytest.raises(DataError, match=f"does not verify.*{path}: label values \\[9\\]"):
        export_nnunet(copy, tmp_path / "raw", 501, "Synth")
    assert main(["export", "brats", str(copy), "-o", str(tmp_path / "brats"), "--edition", "2023"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"{path}: label values [9]" in err and "Traceback" not in err
    assert not (tmp_path / "raw").exists() and not (tmp_path / "brats").exists()


def test_missing_case_refuses_export_with_one_line(copy, tmp_path, capsys):
    shutil.rmtree(copy / "cases" / B)
    write_checksums(copy)
    label = copy / "cases" / B / f"{B}_label_map.nii.gz"
    assert f"{label}: named in manifest.json but missing" in "\n".join(verify_cohort(copy))
    code = main(["export", "nnunet", str(copy), "-o", str(tmp_path / "raw"), "--dataset-id", "501"])
    err = capsys.readouterr().err.strip()
    assert code == 1 and len(err.splitlines()) == 1
    assert "does not verify" in err and "named in manifest.json but missing" in err and "Traceback" not in err
    assert not (tmp_path / "raw").exists()


def test_export_refuses_a_repointed_cohort(copy, tmp_path):
    _edit_manifest(copy, lambda m: _entry(m, A).update(label=f"cases/{B}/{B}_label_map.nii.gz"))
    with pytest.raises(DataError, match="lies outside the case's folder"):
        export_brats(copy, tmp_path / "brats", "2021")
    assert not (tmp_path / "brats").exists()


# --- export: names, ids and output folders ---------------------------------------------------


@pytest.mark.parametrize("name", ["x/../../../victim", "..", "", "a b", "a/b", "a\\b", ".hidden", "x" * 101])
def test_nnunet_name_that_is_not_one_path_component_is_refused(cohort, tmp_path, name, capsys):
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep.txt").write_text("mine")
    raw = tmp_path / "raw" / "a" / "b"
    code = main(["export", "nnunet", str(cohort), "-o", str(raw), "--dataset-id", "501", "--name", name])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "nnU-Net dataset name" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["victim"]  # nothing written, not even -o
    assert [p.name for p in victim.iterdir()] == ["keep.txt"] and (victim / "keep.txt").read_text() == "mine"


@pytest.mark.parametrize("dataset_id", [0, 1000, -5, True, "501"])
def test_nnunet_bad_dataset_id_is_refused(cohort, tmp_path, dataset_id):
    with pytest.raises(MedsynthError, match="must be a whole number from 1 to 999"):
        export_nnunet(cohort, tmp_path / "raw", dataset_id, "Synth")
    assert not (tmp_path / "raw").exists()


def test_nnunet_dataset_id_used_by_another_dataset_is_refused(cohort, tmp_path):
    other = tmp_path / "raw" / "Dataset501_Other"
    other.mkdir(parents=True)
    (other / "dataset.json").write_text("{}")
    with pytest.raises(OutputError, match="dataset id 501 is already used by Dataset501_Other"):
        export_nnunet(cohort, tmp_path / "raw", 501, "Synth")
    assert sorted(p.name for p in (tmp_path / "raw").iterdir()) == ["Dataset501_Other"]
    assert export_nnunet(cohort, tmp_path / "raw", 502, "Synth").name == "Dataset502_Synth"


def test_nnunet_reexport_replaces_own_export_but_not_a_users_folder(cohort, tmp_path):
    first = export_nnunet(cohort, tmp_path / "raw", 501, "Synth")
    (first / "notes.txt").write_text("added by the user after the export")
    with pytest.raises(OutputError, match=r"holds files medsynth did not write \(notes\.txt\)"):
        export_nnunet(cohort, tmp_path / "raw", 501, "Synth", anatomy=True)
    (first / "notes.txt").unlink()
    again = export_nnunet(cohort, tmp_path / "raw", 501, "Synth", anatomy=True)
    assert again == first
    assert json.loads((first / OWNER_FILE).read_text())["stage"] == "export-nnunet"
    assert "wm" in json.loads((first / "dataset.json").read_text())["labels"]
    assert [p.name for p in (tmp_path / "raw").iterdir()] == ["Dataset501_Synth"]  # no temporaries left

    users = tmp_path / "raw2" / "Dataset501_Synth"
    users.mkdir(parents=True)
    (users / "mine.nii.gz").write_bytes(b"user data")
    with pytest.raises(OutputError, match="holds files medsynth did not write"):
        export_nnunet(cohort, tmp_path / "raw2", 501, "Synth")
    assert [p.name for p in users.iterdir()] == ["mine.nii.gz"]


def test_brats_export_does_not_overwrite_a_users_folder(cohort, tmp_path):
    users = tmp_path / "brats"
    users.mkdir()
    (users / "thesis.tex").write_text("mine")
    with pytest.raises(OutputError, match="holds files medsynth did not write"):
        export_brats(cohort, users, "2023")
    assert [p.name for p in users.iterdir()] == ["thesis.tex"]

    target = export_brats(cohort, tmp_path / "brats_ok", "2023")
    (target / "notes.txt").write_text("added by the user after the export")
    with pytest.raises(OutputError, match=r"holds files medsynth did not write \(notes\.txt\)"):
        export_brats(cohort, target, "2021")
    assert (target / "notes.txt").is_file() and (target / "BraTS-GLI-00000-000").is_dir()
    (target / "notes.txt").unlink()
    export_brats(cohort, target, "2021")
    assert (target / "BraTS2021_00000").is_dir() and not (target / "BraTS-GLI-00000-000").exists()
    assert json.loads((target / OWNER_FILE).read_text())["stage"] == "export-brats"
    nnunet = export_nnunet(cohort, tmp_path / "raw", 501, "Synth")
    with pytest.raises(OutputError, match="written by `medsynth export-nnunet`"):
        export_brats(cohort, nnunet, "2023")


def test_export_into_the_cohort_is_refused(copy):
    with pytest.raises(OutputError, match="lies inside the cohort"):
        export_brats(copy, copy / "brats", "2023")
    with pytest.raises(OutputError, match="lies inside the cohort"):
        export_nnunet(copy, copy / "cases", 501, "Synth")
    assert verify_cohort(copy) == []
