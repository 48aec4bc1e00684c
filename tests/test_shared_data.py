"""Integration on the real data in ../shared/data (skipped with a reason when absent)."""

from __future__ import annotations

import shutil

import nibabel as nib
import numpy as np
import pytest

from medsynth.data.manifest import build_manifest, check_manifest
from medsynth.data.prepare import prepare
from medsynth.data.preprocess import PreprocessConfig

pytestmark = pytest.mark.shared

NAMES_2021 = {"T1c": "t1ce", "Flair": "flair", "OTMultiClass": "seg"}
NAMES_2023 = {"T1c": "t1c", "Flair": "t2f", "OTMultiClass": "seg"}
LABELS_2021 = {1: 1, 2: 2, 3: 1, 4: 4}
LABELS_2023 = {1: 1, 2: 2, 3: 1, 4: 3}


def test_brats2013_manifest_and_check(shared_data, tmp_path):
    manifest = build_manifest(shared_data / "brats2013_small", tmp_path / "m.json")
    assert [e["case_id"] for e in manifest["training"]] == [
        "brats_2013_pat0005_1",
        "brats_2013_pat0006_1",
    ]
    assert [e["case_id"] for e in manifest["validation"]] == [
        "brats_2013_pat0003_1",
        "brats_2013_pat0004_1",
    ]
    assert check_manifest(tmp_path / "m.json") == []


@pytest.mark.parametrize(
    ("edition", "names", "labels", "sep"),
    [
        ("brats2021", NAMES_2021, LABELS_2021, "_"),
        ("brats2023", NAMES_2023, LABELS_2023, "-"),
    ],
)
def test_same_files_in_other_namings(shared_data, tmp_path, edition, names, labels, sep):
    root = tmp_path / edition
    for folder in sorted((shared_data / "brats2013_small").glob("*/brats_*")):
        case = folder.name
        out = root / folder.parent.name / case
        out.mkdir(parents=True)
        for source in folder.glob("*.nii.gz"):
            key = source.name.split("_")[0].replace(".nii.gz", "")
            if key not in names:
                continue
            target = out / f"{case}{sep}{names[key]}.nii.gz"
            if key == "OTMultiClass":
                image = nib.load(str(source))
                data = np.asarray(image.dataobj)
                remapped = np.zeros(data.shape, np.uint8)
                for a, b in labels.items():
                    remapped[data == a] = b
                nib.save(nib.Nifti1Image(remapped, image.affine), str(target))
            else:
                shutil.copy(source, target)
    manifest = build_manifest(root, tmp_path / "m.json")
    assert manifest["medsynth"]["layout"] == edition
    assert manifest["medsynth"]["modalities"] == ["t1c", "flair"]
    assert len(manifest["training"]) == 2 and len(manifest["validation"]) == 2
    assert check_manifest(tmp_path / "m.json") == []


def test_committed_manifests_are_valid(shared_data):
    from pathlib import Path

    for path in sorted((Path(__file__).resolve().parents[1] / "data_manifests").glob("*.json")):
        assert check_manifest(path) == [], path


@pytest.mark.slow
def test_prepare_real_subject(shared_data, tmp_path):
    build_manifest(shared_data / "brats2013_small", tmp_path / "m.json")
    manifest = prepare(tmp_path / "m.json", tmp_path / "p", PreprocessConfig(), progress=False)
    for entry in manifest["training"] + manifest["validation"]:
        volumes = entry["volumes_ml"]
        brain = volumes["csf"] + volumes["gm"] + volumes["wm"] + volumes["WT"]
        assert 1000 < brain < 1900, entry["case_id"]
        assert volumes["WT"] > 10
