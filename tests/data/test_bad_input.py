"""Bad input the data layer used to accept without a word: each refused with one line naming the file.

Bit rot inside a ``.nii.gz``, one subject under two ids or in two splits, 4D volumes, dangling
or looping symbolic links, unreadable files and folders.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import shutil
import zlib
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from conftest import make_dataset, phantom, save

from medsynth.cli import main
from medsynth.data.manifest import build_manifest, check_manifest
from medsynth.data.prepare import prepare
from medsynth.data.preprocess import PreprocessConfig
from medsynth.errors import DataError
from medsynth.io import load_nifti

TINY = PreprocessConfig(spacing_mm=(2.0, 2.0, 2.0), grid=(48, 48, 48))


def _first(root: Path, pattern: str) -> Path:
    return sorted(root.rglob(pattern))[0]


def _deflate_start(data: bytes) -> int:
    """Offset of the deflate stream of a one-member gzip file (after the optional header fields)."""
    flags, start = data[3], 10
    if flags & 4:  # FEXTRA
        start += 2 + int.from_bytes(data[start : start + 2], "little")
    for field in (8, 16):  # FNAME, FCOMMENT: NUL-terminated
        if flags & field:
            start = data.index(b"\0", start) + 1
    return start + (2 if flags & 2 else 0)  # FHCRC


def rot_one_bit(path: Path) -> Path:
    """Flip one bit in the second half of the deflate stream such that the file still inflates to
    the same length (so nibabel reads it) but no longer matches its gzip CRC."""
    data = path.read_bytes()
    original = gzip.decompress(data)
    start = _deflate_start(data)
    for position in range(start + (len(data) - start) // 2, len(data) - 8):
        for bit in range(8):
            rotted = bytearray(data)
            rotted[position] ^= 1 << bit
            inflater = zlib.decompressobj(-zlib.MAX_WBITS)
            try:
                content = inflater.decompress(bytes(rotted[start:]))
            except zlib.error:
                continue
            if inflater.eof and len(content) == len(original) and content != original:
                path.write_bytes(bytes(rotted))
                return path
    raise AssertionError(f"no bit of {path} can be flipped and still inflate")


# --- 1. bit rot in .nii.gz -----------------------------------------------------------------------


def test_load_nifti_refuses_bit_rot_that_nibabel_reads(tmp_path):
    path = rot_one_bit(save(phantom()["t1c"], tmp_path / "t1c.nii.gz"))
    assert np.asarray(nib.load(str(path)).dataobj).shape == (40, 48, 40)  # nibabel does not notice
    with pytest.raises(DataError, match=rf"^{re.escape(str(path))}: gzip data corrupt \(CRC check failed\)$"):
        load_nifti(path)


def test_load_nifti_refuses_wrong_length_in_gzip_trailer(tmp_path):
    path = save(phantom()["mask"], tmp_path / "mask.nii.gz")
    data = bytearray(path.read_bytes())
    data[-4:] = (int.from_bytes(data[-4:], "little") + 1).to_bytes(4, "little")  # ISIZE
    path.write_bytes(bytes(data))
    with pytest.raises(DataError, match=rf"^{re.escape(str(path))}: gzip data corrupt \(length check failed\)$"):
        load_nifti(path)


def test_load_nifti_names_a_deflate_stream_that_does_not_inflate(tmp_path):
    path = save(phantom()["t1c"], tmp_path / "t1c.nii.gz")
    data = bytearray(path.read_bytes())
    data[_deflate_start(bytes(data))] |= 0b110  # block type 3: reserved, never valid
    path.write_bytes(bytes(data))
    with pytest.raises(
        DataError, match=rf"^{re.escape(str(path))}: gzip data corrupt \(Error -3 .*invalid block type\)$"
    ):
        load_nifti(path)


def test_load_nifti_reads_plain_and_compressed_alike(tmp_path):
    image = phantom()["t1c"]
    a, affine_a, _ = load_nifti(save(image, tmp_path / "a.nii.gz"))
    b, affine_b, _ = load_nifti(save(image, tmp_path / "b.nii"))
    assert np.array_equal(a, image) and np.array_equal(b, image) and np.array_equal(affine_a, affine_b)
    nib.save(nib.Nifti2Image(image, affine_a), str(tmp_path / "c.nii.gz"))
    assert np.array_equal(load_nifti(tmp_path / "c.nii.gz")[0], image)


def test_manifest_check_reports_bit_rot(tmp_path, capsys):
    root = make_dataset(tmp_path / "raw", n=2)
    victim = rot_one_bit(_first(root, "Flair_*.nii.gz"))  # before the build: the checksum matches
    build_manifest(root, tmp_path / "m.json")
    assert check_manifest(tmp_path / "m.json") == [f"{victim}: gzip data corrupt (CRC check failed)"]
    assert main(["manifest", "check", str(tmp_path / "m.json")]) == 1
    assert f"{victim}: gzip data corrupt (CRC check failed)" in capsys.readouterr().err


def test_prepare_refuses_bit_rot(tmp_path):
    root = make_dataset(tmp_path / "raw", n=2)
    victim = rot_one_bit(_first(root, "OTMultiClass.nii.gz"))
    build_manifest(root, tmp_path / "m.json")
    with pytest.raises(DataError, match=rf"{re.escape(str(victim))}: gzip data corrupt \(CRC check failed\)"):
        prepare(tmp_path / "m.json", tmp_path / "out", TINY, previews=False, progress=False)
    assert not (tmp_path / "out").exists()


# --- 2. one subject under two ids, or one id in two splits -----------------------------------------


def test_same_case_id_in_two_split_folders_is_refused(tmp_path):
    root = make_dataset(tmp_path / "raw", "brats2021", n=3)
    case = "BraTS2021_00000"
    shutil.copytree(root / "train" / case, root / "validation" / case)
    with pytest.raises(DataError, match=rf"case id '{case}' is in two splits \(train at .*, validation at .*\)"):
        build_manifest(root, tmp_path / "m.json")
    assert not (tmp_path / "m.json").exists()


def test_same_subject_folder_name_twice_is_refused(tmp_path):
    root = make_dataset(tmp_path / "raw", "brats2013", n=3)
    case = "brats_2013_pat0000_1"
    for name, array in (("T1c_x", phantom(7)["t1c"]), ("Flair_x", phantom(7)["flair"])):
        save(array, root / "validation" / case / f"{name}.nii.gz")
    for name in ("brainmask", "OTMultiClass"):
        shutil.copy(root / "train" / case / f"{name}.nii.gz", root / "validation" / case)
    with pytest.raises(
        DataError, match=rf"case id '{case}' (found twice|is in two splits) \(train at .*, validation at .*\)"
    ):
        build_manifest(root, tmp_path / "m.json")


def test_same_file_name_in_two_splits_is_refused(tmp_path):
    for split in ("train", "validation"):
        save(phantom(len(split))["t1c"], tmp_path / "raw" / split / "colin.nii.gz")
    with pytest.raises(DataError, match=r"case id 'colin' (found twice|is in two splits)"):
        build_manifest(tmp_path / "raw", tmp_path / "m.json", layout="t1")


def test_one_scan_under_two_ids_is_refused(tmp_path):
    root = make_dataset(tmp_path / "raw", "brats2013", n=3)
    shutil.copytree(root / "train" / "brats_2013_pat0000_1", root / "validation" / "brats_2013_pat0099_1")
    copy = root / "validation" / "brats_2013_pat0099_1" / "T1c_subtrMeanDivStd.nii.gz"
    original = root / "train" / "brats_2013_pat0000_1" / copy.name
    with pytest.raises(DataError, match=rf"^{re.escape(f'{copy}: same content as {original}')} \(cases "):
        build_manifest(root, tmp_path / "m.json")


def test_msd_entry_naming_a_missing_file_is_refused(tmp_path):
    root = tmp_path / "Task01_BrainTumour"
    save(np.stack([phantom()["flair"], phantom()["t1c"]], axis=-1), root / "imagesTr" / "BRATS_001.nii.gz")
    entry = {"image": "./imagesTr/BRATS_001.nii.gz", "label": "./labelsTr/BRATS_001.nii.gz"}
    (root / "dataset.json").write_text(json.dumps({"modality": {"0": "FLAIR", "1": "T1gd"}, "training": [entry]}))
    with pytest.raises(DataError) as raised:
        build_manifest(root, tmp_path / "m.json", validation_fraction=0.0)
    assert str(raised.value) == f"{root / 'labelsTr' / 'BRATS_001.nii.gz'}: file not found"


def _edit(path: Path, change) -> None:
    manifest = json.loads(path.read_text())
    change(manifest)
    path.write_text(json.dumps(manifest))


def test_check_reports_one_case_id_in_two_splits(brats2013_dir, tmp_path):
    build_manifest(brats2013_dir, tmp_path / "m.json")
    _edit(tmp_path / "m.json", lambda m: m["validation"].append({**m["training"][0], "split": "validation"}))
    problems = check_manifest(tmp_path / "m.json")
    case = "brats_2013_pat0000_1"
    assert problems == [
        f"{tmp_path / 'm.json'}: case id '{case}' appears twice (splits train and validation); "
        "one case id must name one subject"
    ]


@pytest.mark.parametrize("checksums", [True, False])
def test_check_reports_one_scan_under_two_ids(brats2013_dir, tmp_path, checksums):
    build_manifest(brats2013_dir, tmp_path / "m.json", checksums=checksums)

    def point_validation_at_training_images(manifest):
        manifest["validation"][0]["image"] = manifest["training"][0]["image"]

    _edit(tmp_path / "m.json", point_validation_at_training_images)
    problems = [p for p in check_manifest(tmp_path / "m.json") if "same content" in p]
    assert len(problems) == 2  # both modalities
    assert "(cases brats_2013_pat0000_1 and brats_2013_pat0002_1)" in problems[0]


def test_shared_brain_mask_is_not_a_duplicate(tmp_path):
    root = make_dataset(tmp_path / "raw", "brats2013", n=2)
    masks = sorted(root.rglob("brainmask.nii.gz"))
    shutil.copy(masks[0], masks[1])  # a template mask used for every subject
    build_manifest(root, tmp_path / "m.json")
    assert check_manifest(tmp_path / "m.json") == []


# --- 3. volumes that are not 3D ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "role", "shape"),
    [("T1c_*.nii.gz", "image", (40, 48, 40, 2)), ("brainmask.nii.gz", "mask", (40, 48, 40, 3))],
)
def test_4d_volume_is_refused_by_check_and_prepare(tmp_path, pattern, role, shape):
    root = make_dataset(tmp_path / "raw", n=2)
    victim = _first(root, pattern)
    save(np.ones(shape, np.float32), victim)
    build_manifest(root, tmp_path / "m.json")
    message = f"{victim}: expected a 3D {role} volume, got shape {shape}"
    assert check_manifest(tmp_path / "m.json") == [message]
    with pytest.raises(DataError) as raised:
        prepare(tmp_path / "m.json", tmp_path / "out", TINY, previews=False, progress=False)
    assert message in str(raised.value) and "monai" not in str(raised.value).lower()


def test_trailing_singleton_axis_is_accepted_by_check_and_prepare(tmp_path):
    root = make_dataset(tmp_path / "raw", n=2)
    victim = _first(root, "T1c_*.nii.gz")
    save(phantom(0)["t1c"][..., None], victim)
    assert nib.load(str(victim)).shape == (40, 48, 40, 1)
    build_manifest(root, tmp_path / "m.json")
    assert check_manifest(tmp_path / "m.json") == []
    manifest = prepare(tmp_path / "m.json", tmp_path / "out", TINY, previews=False, progress=False)
    entry = manifest["training"][0]
    assert [nib.load(str(tmp_path / "out" / rel)).shape for rel in entry["image"]] == [TINY.grid, TINY.grid]


def test_prepare_failure_names_the_root_cause_not_a_transform(brats2013_dir, tmp_path, monkeypatch):
    from medsynth.data import preprocess

    def fail(self, data):
        raise ValueError("tissue classes did not converge\nsecond line of detail")

    monkeypatch.setattr(preprocess.AnatomyLabelMapd, "__call__", fail)
    build_manifest(brats2013_dir, tmp_path / "m.json")
    with pytest.raises(DataError) as raised:
        prepare(tmp_path / "m.json", tmp_path / "out", TINY, previews=False, progress=False)
    message = str(raised.value)
    assert message.startswith("case brats_2013_pat0000_1 (")
    assert message.endswith("preprocessing failed: ValueError: tissue classes did not converge")
    assert "\n" not in message and "applying transform" not in message


# --- 4. links and permissions -----------------------------------------------------------------------


def test_dangling_symlink_is_refused(tmp_path, capsys):
    root = make_dataset(tmp_path / "raw", n=1)
    victim = _first(root, "Flair_*.nii.gz")
    victim.unlink()
    victim.symlink_to(tmp_path / "gone" / "flair.nii.gz")
    expected = f"{victim}: broken symbolic link (target {tmp_path / 'gone' / 'flair.nii.gz'} does not exist)"
    with pytest.raises(DataError) as raised:
        build_manifest(root, tmp_path / "m.json")
    assert str(raised.value) == expected
    assert main(["manifest", "build", str(root), "-o", str(tmp_path / "m.json")]) == 1
    assert expected in capsys.readouterr().err
    assert not (tmp_path / "m.json").exists()


def test_looping_symlink_is_refused(tmp_path):
    root = make_dataset(tmp_path / "raw", n=1)
    victim = _first(root, "Flair_*.nii.gz")
    victim.unlink()
    other = victim.with_name("loop")
    victim.symlink_to(other)
    other.symlink_to(victim)
    with pytest.raises(DataError, match=rf"^{re.escape(str(victim))}: symbolic link loop$"):
        build_manifest(root, tmp_path / "m.json")


def test_broken_link_the_layout_ignores_is_ignored(tmp_path):
    root = make_dataset(tmp_path / "raw", n=1)
    (_first(root, "Flair_*.nii.gz").parent / "notes.nii.gz").symlink_to(tmp_path / "nowhere")
    manifest = build_manifest(root, tmp_path / "m.json")
    assert manifest["medsynth"]["modalities"] == ["t1c", "flair"]


def test_unreadable_folder_is_refused(tmp_path, monkeypatch, capsys):
    root = make_dataset(tmp_path / "raw", n=2)
    locked = _first(root, "Flair_*.nii.gz").parent
    scandir = os.scandir

    def denied(path="."):
        if Path(path) == locked:
            raise PermissionError(13, "Permission denied", str(path))
        return scandir(path)

    monkeypatch.setattr(os, "scandir", denied)
    with pytest.raises(DataError, match=rf"^{re.escape(str(locked))}: cannot list folder \(Permission denied\)$"):
        build_manifest(root, tmp_path / "m.json")
    assert main(["manifest", "build", str(root), "-o", str(tmp_path / "m.json")]) == 1
    assert f"{locked}: cannot list folder (Permission denied)" in capsys.readouterr().err


def test_unreadable_file_is_refused(tmp_path, monkeypatch):
    root = make_dataset(tmp_path / "raw", n=2)
    locked = _first(root, "T1c_*.nii.gz")
    os_open = os.open

    def denied(path, flags, *args, **kwargs):
        if Path(path) == locked:
            raise PermissionError(13, "Permission denied", str(path))
        return os_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", denied)
    with pytest.raises(DataError, match=rf"^{re.escape(str(locked))}: cannot read \(Permission denied\)$"):
        build_manifest(root, tmp_path / "m.json")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their permissions")
def test_unreadable_file_and_folder_for_real(tmp_path):
    root = make_dataset(tmp_path / "raw", n=2)
    locked = _first(root, "T1c_*.nii.gz")
    locked.chmod(0)
    try:
        with pytest.raises(DataError, match=rf"^{re.escape(str(locked))}: cannot read \(Permission denied\)$"):
            build_manifest(root, tmp_path / "m.json")
    finally:
        locked.chmod(0o644)
    folder = locked.parent
    folder.chmod(0)
    try:
        with pytest.raises(DataError, match=rf"^{re.escape(str(folder))}: cannot list folder \(Permission denied\)$"):
            build_manifest(root, tmp_path / "m.json")
    finally:
        folder.chmod(0o755)
