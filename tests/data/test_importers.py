"""Index layouts: nnU-Net v2 raw datasets and MONAI datalists to manifests, and every bad index refused in one line."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

import medsynth
from medsynth.cli import main
from medsynth.data.config import PrepareConfig
from medsynth.data.find import find_cases
from medsynth.data.layouts import Layout
from medsynth.data.manifest import build_manifest, check_manifest
from medsynth.data.prepare import run_prepare
from medsynth.errors import DataError
from medsynth.manifest import Manifest

SAMPLE = Path(medsynth.__file__).parent / "sample_data" / "brats2013_2mm"
BRATS2013_TO_NNUNET = {1: 2, 2: 1, 3: 2, 4: 3}  # necrosis, edema, non-enhancing, enhancing -> 2, 1, 2, 3
GLIOMA_LABELS = {"background": 0, "edema": 1, "necrosis": 2, "enhancing tumor": 3}
GLIOMA_SCHEME = {"1": "snfh", "2": "netc", "3": "et"}
AFFINE = np.diag([2.0, 2.0, 2.0, 1.0])


def _save(array: np.ndarray, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(array, AFFINE), str(path))
    return path


def _dataset_json(root: Path, **fields) -> Path:
    meta = {"channel_names": {"0": "T1c", "1": "FLAIR"}, "labels": GLIOMA_LABELS, "file_ending": ".nii.gz"}
    meta.update(fields)
    root.mkdir(parents=True, exist_ok=True)
    (root / "dataset.json").write_text(json.dumps({k: v for k, v in meta.items() if v is not None}))
    return root / "dataset.json"


def nnunet_from_sample(root: Path, test_cases: int = 0) -> Path:
    """The bundled BraTS 2013 subjects as an nnU-Net v2 raw dataset (labels 1 edema, 2 necrosis, 3 enhancing)."""
    subjects = sorted(p for p in SAMPLE.glob("*/*") if p.is_dir())
    for number, subject in enumerate(subjects):
        images, labels = ("imagesTs", "labelsTs") if number >= len(subjects) - test_cases else ("imagesTr", "labelsTr")
        (root / images).mkdir(parents=True, exist_ok=True)
        shutil.copy(subject / "T1c_subtrMeanDivStd.nii.gz", root / images / f"{subject.name}_0000.nii.gz")
        shutil.copy(subject / "Flair_subtrMeanDivStd.nii.gz", root / images / f"{subject.name}_0001.nii.gz")
        source = nib.load(subject / "OTMultiClass.nii.gz")
        label = np.asarray(source.dataobj)
        remapped = np.zeros_like(label)
        for value, target in BRATS2013_TO_NNUNET.items():
            remapped[label == value] = target
        (root / labels).mkdir(parents=True, exist_ok=True)
        nib.save(nib.Nifti1Image(remapped, source.affine, source.header), root / labels / f"{subject.name}.nii.gz")
    _dataset_json(root, numTraining=len(subjects) - test_cases)
    return root


def tiny_nnunet(root: Path, cases: tuple[str, ...] = ("case_a", "case_b"), channels: int = 2, **fields) -> Path:
    """An 8^3 nnU-Net v2 dataset: ``channels`` channels and a label per case, seeded."""
    rng = np.random.default_rng(0)
    for case in cases:
        for channel in range(channels):
            _save(rng.standard_normal((8, 8, 8)).astype(np.float32), root / "imagesTr" / f"{case}_{channel:04d}.nii.gz")
        _save(rng.integers(0, 4, (8, 8, 8)).astype(np.uint8), root / "labelsTr" / f"{case}.nii.gz")
    names = ("T1c", "FLAIR", "T2w")
    _dataset_json(
        root, **{"channel_names": {str(i): names[i] for i in range(channels)}, "numTraining": len(cases), **fields}
    )
    return root


@pytest.fixture(scope="module")
def sample_nnunet(tmp_path_factory) -> Path:
    return nnunet_from_sample(tmp_path_factory.mktemp("nnunet") / "Dataset501_Glioma")


def test_nnunet_sample_builds_checks_and_prepares(sample_nnunet, tmp_path):
    manifest = build_manifest(sample_nnunet, tmp_path / "m.json")
    meta = manifest["medsynth"]
    assert meta["layout"] == "nnunet"
    assert meta["modalities"] == ["t1c", "flair"]
    assert meta["label_scheme"] == GLIOMA_SCHEME
    assert len(manifest["training"]) + len(manifest["validation"]) == 6 and not manifest.get("test")  # the sample
    assert meta["split_source"].startswith("seeded")
    first = manifest["training"][0]
    assert [Path(p).name for p in first["image"]] == [
        f"{first['case_id']}_0000.nii.gz",
        f"{first['case_id']}_0001.nii.gz",
    ]
    assert check_manifest(tmp_path / "m.json") == []

    prepared = Manifest.load(
        run_prepare(PrepareConfig(manifest=str(tmp_path / "m.json"), previews=False), tmp_path / "out", progress=False)
    )
    values = set()
    for entry in prepared.data["training"] + prepared.data["validation"]:
        values |= set(np.unique(np.asarray(nib.load(prepared.path.parent / entry["label"]).dataobj)).tolist())
    assert {4, 5, 6} <= values  # netc, snfh, et
    assert not values & {7, 8}


def test_nnunet_through_the_cli(sample_nnunet, tmp_path, capsys):
    assert main(["manifest", "build", str(sample_nnunet), "-o", str(tmp_path / "cli.json")]) == 0
    assert "layout nnunet" in capsys.readouterr().out
    api = build_manifest(sample_nnunet, tmp_path / "api.json")
    cli = json.loads((tmp_path / "cli.json").read_text())
    assert cli["training"] == api["training"] and cli["validation"] == api["validation"]


def test_nnunet_images_ts_are_the_test_split(tmp_path):
    root = nnunet_from_sample(tmp_path / "Dataset502_Glioma", test_cases=2)
    (root / "labelsTs" / sorted((root / "labelsTs").iterdir())[0].name).unlink()  # a test case without label
    manifest = build_manifest(root, tmp_path / "m.json")
    assert len(manifest["test"]) == 2 and sum("label" in e for e in manifest["test"]) == 1
    assert len(manifest["training"]) + len(manifest["validation"]) == 4  # 6 in the sample, 2 of them in imagesTs
    assert manifest["medsynth"]["split_source"].startswith("folders (test)")
    assert check_manifest(tmp_path / "m.json") == []


def test_nnunet_declared_scheme_replaces_unknown_names(tmp_path):
    root = tiny_nnunet(tmp_path / "d", labels={"background": 0, "spleen": 1, "liver": 2, "kidney": 3})
    code = main(
        [
            "manifest",
            "build",
            str(root),
            "-o",
            str(tmp_path / "m.json"),
            "--layout",
            "nnunet",
            "--label-scheme",
            "1=edema,2=netc,3=et",
        ]
    )
    assert code == 0
    assert json.loads((tmp_path / "m.json").read_text())["medsynth"]["label_scheme"] == GLIOMA_SCHEME


def test_nnunet_region_labels_with_declared_scheme(tmp_path):
    regions = {"background": 0, "whole tumor": [1, 2, 3], "tumor core": [2, 3], "enhancing tumor": 3}
    root = tiny_nnunet(tmp_path / "d", labels=regions, regions_class_order=[1, 2, 3])
    layout = Layout(name="glioma", index="nnunet", label_scheme={1: "edema", 2: "netc", 3: "et"})
    assert find_cases(root, layout).label_scheme == {1: "edema", 2: "netc", 3: "et"}


def test_nnunet_dataset_json_may_list_the_files(tmp_path):
    root = tiny_nnunet(tmp_path / "d")
    (root / "imagesTr").rename(root / "scans")
    listed = {
        c: {"images": [f"scans/{c}_0000.nii.gz", f"scans/{c}_0001.nii.gz"], "label": f"labelsTr/{c}.nii.gz"}
        for c in ("case_a", "case_b")
    }
    _dataset_json(root, numTraining=2, dataset=listed)
    found = find_cases(root)
    assert [c.case_id for c in found.cases] == ["case_a", "case_b"]
    assert found.cases[1].images["flair"] == root / "scans" / "case_b_0001.nii.gz"


def test_msd_without_declared_scheme_reads_its_label_names(tmp_path):
    _save(np.ones((8, 8, 8, 2), np.float32), tmp_path / "imagesTr" / "BRATS_001.nii.gz")
    _save(np.ones((8, 8, 8), np.uint8), tmp_path / "labelsTr" / "BRATS_001.nii.gz")
    entry = {"image": "./imagesTr/BRATS_001.nii.gz", "label": "./labelsTr/BRATS_001.nii.gz"}
    labels = {"0": "background", "1": "edema", "2": "non-enhancing tumor", "3": "enhancing tumour"}
    meta = {"modality": {"0": "FLAIR", "1": "T1gd"}, "labels": labels, "training": [entry], "test": []}
    (tmp_path / "dataset.json").write_text(json.dumps(meta))
    found = find_cases(tmp_path, Layout(name="task01", index="msd"))
    assert found.label_scheme == {1: "snfh", 2: "netc", 3: "et"}
    assert found.modalities == ["flair", "t1c"] and found.cases[0].images == {
        "*": tmp_path / "imagesTr" / "BRATS_001.nii.gz"
    }


def test_nnunet_include_selects_cases(tmp_path):
    root = tiny_nnunet(tmp_path / "d", cases=("a1", "a2", "b1"))
    found = find_cases(root, include="a*")
    assert [c.case_id for c in found.cases] == ["a1", "a2"]
    assert found.modalities == ["t1c", "flair"]


def _break(name: str, root: Path) -> Path:
    """Damage a tiny nnU-Net dataset one way; return the file the refusal must name."""
    where = root / "dataset.json"
    if name == "invalid json":
        where.write_text("{not json")
    elif name in ("no channel_names", "no labels", "no file_ending"):
        meta = json.loads(where.read_text())
        del meta[name.removeprefix("no ")]
        where.write_text(json.dumps(meta))
    elif name == "file_ending mha":
        _dataset_json(root, file_ending=".mha", numTraining=2)
    elif name == "unknown label name":
        _dataset_json(root, labels={"background": 0, "spleen": 1}, numTraining=2)
    elif name == "region labels":
        _dataset_json(root, labels={"background": 0, "whole tumor": [1, 2, 3], "enhancing tumor": 3}, numTraining=2)
    elif name == "numTraining":
        _dataset_json(root, numTraining=5)
    elif name == "missing channel":
        where = root / "imagesTr" / "case_b_0001.nii.gz"
        where.unlink()
    elif name == "extra channel":
        where = shutil.copy(root / "imagesTr" / "case_b_0001.nii.gz", root / "imagesTr" / "case_b_0002.nii.gz")
    elif name == "training case without label":
        where = root / "labelsTr" / "case_b.nii.gz"
        where.unlink()
    elif name == "label without image":
        where = shutil.copy(root / "labelsTr" / "case_b.nii.gz", root / "labelsTr" / "case_c.nii.gz")
    else:
        raise ValueError(name)
    return Path(where)


NNUNET_DAMAGE = {
    "invalid json": "invalid JSON",
    "no channel_names": "missing channel_names",
    "no labels": "missing labels",
    "no file_ending": "missing file_ending",
    "file_ending mha": "medsynth reads NIfTI only",
    "unknown label name": "'spleen' (value 1) is not a tumor class medsynth knows; "
    "declare what the values mean: --label-scheme 1=edema,2=netc,3=et",
    "region labels": "'whole tumor' is a region",
    "numTraining": "numTraining is 5, but imagesTr holds 2 case(s)",
    "missing channel": "missing; case case_b needs channel 0001 (FLAIR)",
    "extra channel": "channel 0002, but dataset.json names 2 channel(s)",
    "training case without label": "training case case_b has no label",
    "label without image": "a label with no image",
}


@pytest.mark.parametrize("damage", sorted(NNUNET_DAMAGE))
def test_bad_nnunet_dataset_is_refused_in_one_line(tmp_path, capsys, damage):
    root = tiny_nnunet(tmp_path / "Dataset503_Tiny")
    named = _break(damage, root)
    output = tmp_path / "m.json"
    code = main(["manifest", "build", str(root), "-o", str(output), "--layout", "nnunet"])
    error = capsys.readouterr().err.strip()
    assert code != 0
    assert len(error.splitlines()) == 1, error
    assert f"{named}: " in error and NNUNET_DAMAGE[damage] in error, error
    assert not output.exists()


def test_bad_dataset_json_is_refused_when_detected(tmp_path):
    root = tiny_nnunet(tmp_path / "d")
    _break("no labels", root)
    with pytest.raises(DataError, match=r"dataset.json: missing labels \(an nnU-Net v2"):
        build_manifest(root, tmp_path / "m.json")


def _tiny_datalist(root: Path, validation: bool = False, labels: bool = True) -> Path:
    """A MONAI datalist of 8^3 two-channel cases, paths relative to it (one absolute)."""
    rng = np.random.default_rng(1)

    def entry(case: str) -> dict:
        images = [
            _save(rng.standard_normal((8, 8, 8)).astype(np.float32), root / "img" / f"{case}_{c:04d}.nii.gz")
            for c in range(2)
        ]
        item = {"image": [p.relative_to(root).as_posix() for p in images]}
        if labels:
            label = _save(rng.integers(0, 4, (8, 8, 8)).astype(np.uint8), root / "seg" / f"{case}.nii.gz")
            item["label"] = label.relative_to(root).as_posix()
        return item

    _save(rng.standard_normal((8, 8, 8, 2)).astype(np.float32), root / "img" / "s5_0000.nii.gz")  # 4D: both channels
    data = {"training": [entry("s1"), entry("s2"), entry("s3")], "test": ["img/s5_0000.nii.gz"]}
    data["training"][2]["image"][0] = str(root / data["training"][2]["image"][0])  # absolute paths work too
    if validation:
        data["validation"] = [{**entry("s4"), "case_id": "subject4"}]
    (root / "datalist.json").write_text(json.dumps(data))
    return root / "datalist.json"


def test_datalist_through_the_cli(tmp_path, capsys):
    datalist = _tiny_datalist(tmp_path / "dl")
    argv = ["manifest", "build", str(datalist), "-o", str(tmp_path / "m.json"), "--layout", "datalist"]
    assert main([*argv, "--channels", "t1c,flair", "--label-scheme", "msd"]) == 0
    manifest = json.loads((tmp_path / "m.json").read_text())
    meta = manifest["medsynth"]
    assert meta["modalities"] == ["t1c", "flair"] and meta["label_scheme"] == "msd"
    assert meta["split_source"].startswith("folders (test) + seeded")
    assert sorted(e["case_id"] for e in manifest["training"] + manifest["validation"]) == ["s1", "s2", "s3"]
    assert [e["case_id"] for e in manifest["test"]] == ["s5"]  # a plain path to a 4D image; _0000 stripped
    assert check_manifest(tmp_path / "m.json") == []


def test_datalist_with_layout_and_its_own_validation(tmp_path):
    datalist = _tiny_datalist(tmp_path / "dl", validation=True)
    layout = Layout(
        name="mine", index="datalist", channels=["T1Gd", "FLAIR"], label_scheme={1: "edema", 2: "netc", 3: "et"}
    )
    manifest = build_manifest(datalist, tmp_path / "m.json", layout=layout)
    assert manifest["medsynth"]["split_source"] == "folders"
    assert [e["case_id"] for e in manifest["validation"]] == ["subject4"]
    assert {e["split"] for e in manifest["training"]} == {"train"}
    assert manifest["medsynth"]["modalities"] == ["t1c", "flair"]


def test_medsynth_manifest_reads_as_a_datalist(sample_nnunet, tmp_path):
    first = build_manifest(sample_nnunet, tmp_path / "first.json")
    again = build_manifest(tmp_path / "first.json", tmp_path / "again.json")
    assert again["medsynth"]["modalities"] == ["t1c", "flair"]
    assert again["medsynth"]["label_scheme"] == GLIOMA_SCHEME
    assert [e["case_id"] for e in again["validation"]] == [e["case_id"] for e in first["validation"]]
    assert check_manifest(tmp_path / "again.json") == []


def test_datalist_4d_image_path_holds_every_channel(tmp_path):
    _save(np.ones((8, 8, 8, 2), np.float32), tmp_path / "imagesTr" / "BRATS_001.nii.gz")
    (tmp_path / "dl.json").write_text(json.dumps({"training": ["imagesTr/BRATS_001.nii.gz"]}))
    found = find_cases(tmp_path / "dl.json", {"name": "d", "index": "datalist", "channels": ["flair", "t1c"]})
    assert found.cases[0].images == {"*": tmp_path / "imagesTr" / "BRATS_001.nii.gz"}


def _damage_datalist(name: str, datalist: Path) -> tuple[list[str], str, Path]:
    """Extra CLI flags, the expected message and the file it names."""
    declared = ["--channels", "t1c,flair", "--label-scheme", "msd"]
    data = json.loads(datalist.read_text())
    named = datalist
    if name == "no channels":
        return (
            ["--label-scheme", "msd"],
            "does not name its image channels; declare them in order, e.g. --channels",
            named,
        )
    if name == "no label scheme":
        return ["--channels", "t1c,flair"], "does not say what its label values mean; declare it: --label-scheme", named
    if name == "missing file":
        named = datalist.parent / "img" / "s2_0001.nii.gz"
        named.unlink()
        return declared, "file not found", named
    if name == "channel count":
        data["training"][0]["image"] = data["training"][0]["image"][:1]
        message = "training[0]: 1 image file(s), but 2 channel(s) declared (t1c, flair)"
    elif name == "not a datalist":
        data = {"images": []}
        message = "no 'training', 'validation' or 'test' list; not a MONAI datalist"
    else:
        raise ValueError(name)
    datalist.write_text(json.dumps(data))
    return declared, message, named


@pytest.mark.parametrize(
    "damage", ["no channels", "no label scheme", "missing file", "channel count", "not a datalist"]
)
def test_bad_datalist_is_refused_in_one_line(tmp_path, capsys, damage):
    datalist = _tiny_datalist(tmp_path / "dl")
    flags, message, named = _damage_datalist(damage, datalist)
    output = tmp_path / "m.json"
    code = main(["manifest", "build", str(datalist), "-o", str(output), "--layout", "datalist", *flags])
    error = capsys.readouterr().err.strip()
    assert code != 0
    assert len(error.splitlines()) == 1, error
    assert f"{named}: " in error and message in error, error
    assert not output.exists()


def test_datalist_single_image_without_channels_is_refused(tmp_path):
    _save(np.ones((8, 8, 8), np.float32), tmp_path / "a.nii.gz")
    (tmp_path / "dl.json").write_text(json.dumps({"training": [{"image": "a.nii.gz"}]}))
    with pytest.raises(DataError, match=r"dl.json: a datalist does not name its image channels"):
        find_cases(tmp_path / "dl.json")
