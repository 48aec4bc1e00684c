"""Preprocessing and ``prepare``: geometry, grid, normalisation, anatomy, cache, atomic output."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
from conftest import SHAPE, make_dataset

from medsynth.cli import main
from medsynth.config import from_dict, load_config
from medsynth.data.config import PrepareConfig
from medsynth.data.manifest import build_manifest
from medsynth.data.prepare import prepare, run_prepare
from medsynth.data.preprocess import PreprocessConfig, to_original_space
from medsynth.data.scheme import CSF, ET, GM, NETC, SNFH, WM
from medsynth.errors import ConfigError, DataError

TINY = PreprocessConfig(spacing_mm=(2.0, 2.0, 2.0), grid=(48, 48, 48))


@pytest.fixture
def prepared(brats2013_dir, tmp_path):
    build_manifest(brats2013_dir, tmp_path / "m.json")
    return prepare(tmp_path / "m.json", tmp_path / "prepared", TINY, progress=False), tmp_path / "prepared"


def test_prepared_files_grid_and_geometry(prepared):
    manifest, root = prepared
    entry = manifest["training"][0]
    image = nib.load(str(root / entry["image"][0]))
    label = nib.load(str(root / entry["label"]))
    assert image.shape == TINY.grid == label.shape
    assert nib.aff2axcodes(image.affine) == ("R", "A", "S")
    assert np.allclose(np.abs(np.diag(image.affine)[:3]), 2.0)
    # SimpleITK reads the same geometry nibabel wrote
    sitk_image = sitk.ReadImage(str(root / entry["label"]))
    assert np.allclose(sitk_image.GetSpacing(), (2.0, 2.0, 2.0))
    assert np.asarray(label.dataobj).dtype == np.int16


def test_intensities_normalised_inside_brain(prepared):
    manifest, root = prepared
    entry = manifest["training"][0]
    mask = np.asarray(nib.load(str(root / entry["mask"])).dataobj) > 0
    for rel in entry["image"]:
        image = nib.load(str(root / rel)).get_fdata()
        assert abs(image[mask].mean()) < 0.05 and abs(image[mask].std() - 1) < 0.05
        assert np.all(image[~mask] == 0)


def test_label_map_canonical_with_anatomy_and_tumor(prepared):
    manifest, root = prepared
    label_map = np.asarray(nib.load(str(root / manifest["training"][0]["label"])).dataobj)
    assert set(np.unique(label_map)) <= {0, CSF, GM, WM, NETC, SNFH, ET}
    assert {CSF, GM, WM, NETC, SNFH, ET} <= set(np.unique(label_map))
    volumes = manifest["training"][0]["volumes_ml"]
    assert volumes["WT"] == pytest.approx(volumes["netc"] + volumes["snfh"] + volumes["et"])


def test_back_to_original_space(prepared, brats2013_dir):
    manifest, root = prepared
    entry = manifest["training"][0]
    label_map = nib.load(str(root / entry["label"]))
    back = to_original_space(
        np.asarray(label_map.dataobj),
        label_map.affine,
        np.array(entry["original"]["affine"]),
        tuple(entry["original"]["shape"]),
    )
    assert back.shape == SHAPE
    original = np.asarray(nib.load(str(sorted(brats2013_dir.rglob("OTMultiClass.nii.gz"))[0])).dataobj)
    tumor_back, tumor = back >= NETC, original > 0
    dice = 2 * (tumor_back & tumor).sum() / (tumor_back.sum() + tumor.sum())
    assert dice > 0.95


def test_second_run_hits_cache(brats2013_dir, tmp_path):
    build_manifest(brats2013_dir, tmp_path / "m.json")
    cache = tmp_path / "cache"
    first = prepare(tmp_path / "m.json", tmp_path / "a", TINY, cache_dir=cache, progress=False)
    files = sorted(cache.rglob("*.pt"))
    assert len(files) == 3
    second = prepare(tmp_path / "m.json", tmp_path / "b", TINY, cache_dir=cache, previews=False, progress=False)
    assert sorted(cache.rglob("*.pt")) == files
    a = nib.load(str(tmp_path / "a" / first["training"][0]["label"])).get_fdata()
    b = nib.load(str(tmp_path / "b" / second["training"][0]["label"])).get_fdata()
    assert np.array_equal(a, b)
    # a changed config is a different cache folder
    other = PreprocessConfig(spacing_mm=(3.0, 3.0, 3.0), grid=(32, 32, 32))
    prepare(tmp_path / "m.json", tmp_path / "c", other, cache_dir=cache, previews=False, progress=False)
    assert len({p.parent for p in cache.rglob("*.pt")}) == 2


def test_bad_input_leaves_no_output(brats2013_dir, tmp_path, capsys):
    build_manifest(brats2013_dir, tmp_path / "m.json")
    sorted(brats2013_dir.rglob("brainmask.nii.gz"))[-1].write_bytes(b"garbage")
    with pytest.raises(DataError, match=r"brainmask\.nii\.gz: cannot read NIfTI"):
        prepare(tmp_path / "m.json", tmp_path / "out", TINY, progress=False)
    assert not (tmp_path / "out").exists()
    assert main(["prepare", str(tmp_path / "m.json"), "-o", str(tmp_path / "out2")]) == 1
    assert "cannot read NIfTI" in capsys.readouterr().err
    assert not (tmp_path / "out2").exists()
    assert not list(tmp_path.glob(".out*"))


def test_brats2023_and_2021_give_same_label_map(tmp_path):
    maps = []
    for layout in ("brats2021", "brats2023", "brats2013"):
        root = make_dataset(tmp_path / layout, layout, n=2)
        build_manifest(root, tmp_path / f"{layout}.json")
        out = prepare(
            tmp_path / f"{layout}.json",
            tmp_path / f"p_{layout}",
            TINY,
            previews=False,
            progress=False,
        )
        maps.append(nib.load(str(tmp_path / f"p_{layout}" / out["training"][0]["label"])).get_fdata())
    assert np.array_equal(maps[0], maps[1]) and np.array_equal(maps[1], maps[2])


def test_config_validation():
    with pytest.raises(ConfigError, match="unknown key"):
        from_dict(PreprocessConfig, {"spacing": [1, 1, 1]})
    with pytest.raises(ConfigError, match="multiples of 16"):
        from_dict(PreprocessConfig, {"grid": [50, 48, 48]})
    with pytest.raises(ConfigError, match="expected 3 values"):
        from_dict(PreprocessConfig, {"spacing_mm": [1, 1]})
    config = from_dict(PreprocessConfig, {}, overrides=["grid=[32,32,32]", "anatomy.smoothing_voxels=1"])
    assert config.grid == (32, 32, 32) and config.anatomy.smoothing_voxels == 1


def test_prepare_cli_writes_resolved_config(brats2013_dir, tmp_path):
    build_manifest(brats2013_dir, tmp_path / "m.json")
    code = main(
        [
            "prepare",
            str(tmp_path / "m.json"),
            "-o",
            str(tmp_path / "p"),
            "--no-previews",
            "grid=[48,48,48]",
        ]
    )
    assert code == 0
    assert "- 48" in (tmp_path / "p" / "config.yaml").read_text()
    assert (tmp_path / "p" / "manifest.json").exists()
    resolved = load_config(PrepareConfig, tmp_path / "p" / "config.yaml")  # the whole run: it can be replayed
    assert resolved.manifest == str(tmp_path / "m.json") and resolved.previews is False
    assert resolved.preprocess.grid == (48, 48, 48)
    again = run_prepare(resolved, tmp_path / "again", progress=False)
    assert again == tmp_path / "again" / "manifest.json"
    checksums = [
        json.loads((folder / "manifest.json").read_text())["medsynth"]["checksums"]
        for folder in (
            tmp_path / "p",
            tmp_path / "again",
        )
    ]
    assert checksums[0] == checksums[1]
    assert json.loads(again.read_text())["medsynth"]["provenance"]["config"]["manifest"] == resolved.manifest


@pytest.mark.parametrize("name", ["prepare_cpu", "prepare_gpu", "prepare_tiny"])
def test_shipped_prepare_configs_load(name):
    path = Path(__file__).resolve().parents[2] / "configs" / f"{name}.yaml"
    config = load_config(PrepareConfig, path, ["manifest=m.json", "preprocess.grid=[64,64,64]"])
    assert config.preprocess.grid == (64, 64, 64) and config.manifest == "m.json"
    with pytest.raises(ConfigError, match="manifest"):
        load_config(PrepareConfig, path)


def test_tall_brain_keeps_the_vertex():
    import torch
    from monai.data import MetaTensor

    from medsynth.data.preprocess import KeepTopOfBraind

    mask = torch.zeros(1, 8, 8, 40)
    mask[:, 2:6, 2:6, 5:35] = 1  # 30 voxels tall, grid height 16
    out = KeepTopOfBraind(grid=(16, 16, 16), orientation="RAS")({"mask": MetaTensor(mask)})["mask"]
    rows = torch.nonzero(out[0].sum((0, 1))).flatten()
    assert rows.max() == 34 and rows.min() == 34 - 16 + 1
