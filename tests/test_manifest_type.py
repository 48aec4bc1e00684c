"""The stage contract: one manifest type, one writer, one provenance record."""

import subprocess
import sys

import pytest

from medsynth.errors import DataError
from medsynth.io import sha256
from medsynth.manifest import Manifest, provenance, write_manifest


def _write(folder, kind="label_maps"):
    return write_manifest(
        folder / "manifest.json",
        kind=kind,
        name="maps",
        description="three maps",
        modalities=["t1c", "flair"],
        labels={"0": "background"},
        entries=[
            {"case_id": "a", "split": "train", "image": ["a_t1c.nii.gz", "a_flair.nii.gz"], "label": "a.nii.gz"},
            {"case_id": "b", "split": "test", "label": "b.nii.gz"},
            {"case_id": "c", "split": "train", "label": "c.nii.gz"},
        ],
        provenance=provenance("labels", config={"n": 3}, seed=7),
        label_scheme="canonical",
    )


def test_round_trip_and_monai_reads_it(tmp_path):
    from monai.data import load_decathlon_datalist

    path = _write(tmp_path)
    manifest = Manifest.load(tmp_path, kind="label_maps")  # a folder finds its manifest.json
    assert (manifest.kind, manifest.modalities, manifest.label_scheme) == ("label_maps", ["t1c", "flair"], "canonical")
    assert [c.case_id for c in manifest.cases()] == ["a", "c", "b"]  # split order, entry order within a split
    assert [c.case_id for c in manifest.cases(["test"])] == ["b"]
    case = manifest.cases(["train"])[0]
    assert case.images == [tmp_path / "a_t1c.nii.gz", tmp_path / "a_flair.nii.gz"]
    assert case.label == tmp_path / "a.nii.gz" and case.mask is None
    assert manifest.data["numTraining"] == 2
    assert manifest.meta["provenance"]["seed"] == 7 and manifest.meta["provenance"]["stage"] == "labels"
    training = load_decathlon_datalist(str(path), data_list_key="training")
    assert [item["case_id"] for item in training] == ["a", "c"]


def test_wrong_kind_names_the_file_and_the_command(tmp_path):
    path = _write(tmp_path, kind="cohort")
    with pytest.raises(
        DataError, match=r"manifest\.json: a cohort manifest; expected a prepared manifest \(from `medsynth prepare`\)"
    ):
        Manifest.load(path, kind="prepared")
    assert Manifest.load(path, kind=("prepared", "cohort")).kind == "cohort"


def test_unknown_split_is_refused(tmp_path):
    manifest = Manifest.load(_write(tmp_path))
    with pytest.raises(
        DataError, match=r"unknown split\(s\) \['training'\]; splits are \['train', 'validation', 'test'\]"
    ):
        manifest.cases(["training"])
    with pytest.raises(DataError, match="unknown split 'held_out'"):
        write_manifest(
            tmp_path / "x.json",
            kind="raw",
            name="x",
            description="",
            modalities=[],
            labels={},
            entries=[{"case_id": "a", "split": "held_out"}],
            provenance={},
        )
    assert not (tmp_path / "x.json").exists()


def test_not_a_manifest(tmp_path):
    (tmp_path / "m.json").write_text('{"training": []}')
    with pytest.raises(DataError, match=r"m\.json: not a medsynth manifest"):
        Manifest.load(tmp_path / "m.json")


def test_provenance_records_inputs_by_content(tmp_path):
    data = tmp_path / "input.json"
    data.write_text("{}")
    record = provenance("prepare", config={"grid": [8, 8, 8]}, seed=3, inputs=[data, tmp_path / "missing"])
    assert record["inputs"] == {str(data.resolve()): sha256(data), str((tmp_path / "missing").resolve()): None}
    assert record["config"] == {"grid": [8, 8, 8]} and record["seed"] == 3
    assert {"host", "platform", "cpus"} <= set(record["machine"]) and "medsynth" in record["versions"]


def test_provenance_does_not_import_torch():
    code = "import sys; from medsynth.manifest import provenance; provenance('x'); print('torch' in sys.modules)"
    assert (
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
        == "False"
    )
