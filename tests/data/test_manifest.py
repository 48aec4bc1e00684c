"""Manifests: build for every layout, MONAI compatibility, and every bad input named."""

from __future__ import annotations

import gzip
import json
import shutil

import numpy as np
import pytest
from conftest import AFFINE, make_dataset, phantom, save
from monai.data import load_decathlon_datalist

from medsynth.cli import main
from medsynth.data.find import detect_layout
from medsynth.data.manifest import build_manifest, check_manifest
from medsynth.errors import DataError
from medsynth.manifest import Manifest


@pytest.mark.parametrize("layout", ["brats2013", "brats2021", "brats2023"])
def test_build_detects_layout_and_splits(tmp_path, layout):
    root = make_dataset(tmp_path / layout, layout)
    manifest = build_manifest(root, tmp_path / "m.json")
    meta = manifest["medsynth"]
    assert meta["layout"] == layout
    assert meta["modalities"] == ["t1c", "flair"]
    assert meta["split_source"] == "folders"
    assert len(manifest["training"]) == 2 and len(manifest["validation"]) == 1
    assert check_manifest(tmp_path / "m.json") == []


def test_monai_reads_manifest_unchanged(brats2013_dir, tmp_path):
    build_manifest(brats2013_dir, tmp_path / "sub" / "m.json")
    items = load_decathlon_datalist(str(tmp_path / "sub" / "m.json"), data_list_key="training")
    assert len(items) == 2
    for item in items:
        assert all(p.endswith(".nii.gz") and (tmp_path / p).exists() for p in item["image"])
        assert (tmp_path / item["label"]).exists()


def test_paths_are_relative_and_checksummed(brats2013_dir, tmp_path):
    manifest = build_manifest(brats2013_dir, tmp_path / "m.json")
    entry = manifest["training"][0]
    assert not any(p.startswith("/") for p in entry["image"])
    assert set(manifest["medsynth"]["checksums"]) >= {
        *entry["image"],
        entry["label"],
        entry["mask"],
    }


def test_seeded_split_when_no_folders(tmp_path):
    root = make_dataset(tmp_path / "flat", "brats2021", n=5, split_folders=False)
    a = build_manifest(root, tmp_path / "a.json", seed=1)
    b = build_manifest(root, tmp_path / "b.json", seed=1)
    assert a["medsynth"]["split_source"].startswith("seeded")
    assert [e["case_id"] for e in a["validation"]] == [e["case_id"] for e in b["validation"]]
    assert len(a["validation"]) == 1 and len(a["training"]) == 4


def test_msd_layout(tmp_path):
    root = tmp_path / "Task01_BrainTumour"
    p = phantom()
    image = np.stack([p["flair"], p["t1c"]], axis=-1)
    save(image, root / "imagesTr" / "BRATS_001.nii.gz")
    save(
        np.where(p["label"] == 2, 1, np.where(p["label"] == 4, 3, np.where(p["label"] == 1, 2, 0))).astype(np.uint8),
        root / "labelsTr" / "BRATS_001.nii.gz",
    )
    (root / "dataset.json").write_text(
        json.dumps(
            {
                "modality": {"0": "FLAIR", "1": "T1gd"},
                "training": [{"image": "./imagesTr/BRATS_001.nii.gz", "label": "./labelsTr/BRATS_001.nii.gz"}],
            }
        )
    )
    manifest = build_manifest(root, tmp_path / "m.json", validation_fraction=0.0)
    assert manifest["medsynth"]["modalities"] == ["flair", "t1c"]
    assert check_manifest(tmp_path / "m.json") == []


def test_unknown_layout_is_a_clear_error(tmp_path):
    save(np.zeros((4, 4, 4), np.float32), tmp_path / "x" / "scan.nii.gz")
    with pytest.raises(DataError, match="unknown layout"):
        detect_layout(tmp_path / "x")


def test_missing_modality_is_reported(brats2013_dir, tmp_path):
    victim = next(brats2013_dir.rglob("Flair_*.nii.gz"))
    victim.unlink()
    with pytest.raises(DataError, match=rf"{victim.parent.name}: missing modality flair"):
        build_manifest(brats2013_dir, tmp_path / "m.json")
    assert not (tmp_path / "m.json").exists()


def _problems_after(brats2013_dir, tmp_path, damage):
    build_manifest(brats2013_dir, tmp_path / "m.json")
    target = damage(brats2013_dir)
    problems = check_manifest(tmp_path / "m.json")
    assert problems, "damage went unnoticed"
    assert all(str(target) in p or target.name in p for p in problems[:1]), problems
    return problems


def _first(root, pattern):
    return sorted(root.rglob(pattern))[0]


def test_corrupt_file(brats2013_dir, tmp_path):
    def damage(root):
        f = _first(root, "T1c_*.nii.gz")
        f.write_bytes(b"not a nifti at all")
        return f

    problems = _problems_after(brats2013_dir, tmp_path, damage)
    assert any("cannot read NIfTI" in p for p in problems)


def test_truncated_gzip(brats2013_dir, tmp_path):
    def damage(root):
        f = _first(root, "Flair_*.nii.gz")
        data = f.read_bytes()
        f.write_bytes(data[: len(data) // 2])
        return f

    problems = _problems_after(brats2013_dir, tmp_path, damage)
    assert any("cannot read NIfTI" in p for p in problems)


def test_shape_mismatch(brats2013_dir, tmp_path):
    def damage(root):
        f = _first(root, "brainmask.nii.gz")
        save(np.ones((10, 10, 10), np.uint8), f)
        return f

    assert any("shape" in p for p in _problems_after(brats2013_dir, tmp_path, damage))


def test_affine_mismatch(brats2013_dir, tmp_path):
    def damage(root):
        f = _first(root, "OTMultiClass.nii.gz")
        shifted = AFFINE.copy()
        shifted[0, 3] += 5
        save(phantom()["label"], f, affine=shifted)
        return f

    assert any("affine differs" in p for p in _problems_after(brats2013_dir, tmp_path, damage))


def test_label_outside_scheme(brats2013_dir, tmp_path):
    def damage(root):
        f = _first(root, "OTMultiClass.nii.gz")
        label = phantom()["label"]
        label[0, 0, 0] = 7
        save(label, f)
        return f

    assert any("[7]" in p and "outside scheme" in p for p in _problems_after(brats2013_dir, tmp_path, damage))


def test_nan_values(brats2013_dir, tmp_path):
    def damage(root):
        f = _first(root, "T1c_*.nii.gz")
        image = phantom()["t1c"]
        image[5, 5, 5] = np.nan
        save(image, f)
        return f

    assert any("NaN" in p for p in _problems_after(brats2013_dir, tmp_path, damage))


def test_empty_mask(brats2013_dir, tmp_path):
    def damage(root):
        f = _first(root, "brainmask.nii.gz")
        save(np.zeros(phantom()["mask"].shape, np.uint8), f)
        return f

    assert any("brain mask is empty" in p for p in _problems_after(brats2013_dir, tmp_path, damage))


def test_check_cli_exits_nonzero_naming_file(brats2013_dir, tmp_path, capsys):
    build_manifest(brats2013_dir, tmp_path / "m.json")
    victim = _first(brats2013_dir, "T1c_*.nii.gz")
    with gzip.open(victim, "wb") as f:
        f.write(b"\x00" * 10)
    assert main(["manifest", "check", str(tmp_path / "m.json")]) == 1
    err = capsys.readouterr().err
    assert victim.name in err and "cannot read NIfTI" in err


def test_build_cli_unknown_folder(tmp_path, capsys):
    assert main(["manifest", "build", str(tmp_path / "nope"), "-o", str(tmp_path / "m.json")]) == 1
    assert "not found" in capsys.readouterr().err
    assert not (tmp_path / "m.json").exists()


def test_manifest_cases_absolute_paths(brats2013_dir, tmp_path):
    build_manifest(brats2013_dir, tmp_path / "m.json")
    cases = Manifest.load(tmp_path / "m.json").cases(["validation"])
    assert len(cases) == 1 and cases[0].split == "validation"
    assert all(p.is_file() for p in cases[0].images)


def test_load_manifest_rejects_foreign_json(tmp_path):
    (tmp_path / "x.json").write_text('{"training": []}')
    with pytest.raises(DataError, match="not a medsynth manifest"):
        Manifest.load(tmp_path / "x.json")


def test_changed_file_fails_checksum(brats2013_dir, tmp_path):
    build_manifest(brats2013_dir, tmp_path / "m.json")
    victim = _first(brats2013_dir, "Flair_*.nii.gz")
    shutil.copy(_first(brats2013_dir, "T1c_*.nii.gz"), victim)
    assert any("checksum" in p and victim.name in p for p in check_manifest(tmp_path / "m.json"))
