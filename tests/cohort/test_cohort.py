"""Cohorts: generate (resumable, sharded, atomic), verify, export to nnU-Net and BraTS layouts."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
from monai.data import load_decathlon_datalist

from medsynth.cli import main
from medsynth.cohort.export import export_brats, export_nnunet
from medsynth.cohort.generate import generate_cohort
from medsynth.cohort.verify import verify_cohort
from medsynth.data.manifest import build_manifest, check_manifest
from medsynth.errors import MedsynthError
from medsynth.models.generator import Generator


@pytest.fixture(scope="module")
def cohort(tiny_generator, tmp_path_factory):
    root = tmp_path_factory.mktemp("cohort") / "cohort"
    status = generate_cohort(tiny_generator, root, n=4, seed=1, label_convention="brats2023", progress=False)
    assert status.finalized and status.written == 4
    return root


def _case_digests(root):
    lines = (root / "checksums.sha256").read_text().splitlines()
    return {rel: digest for digest, rel in (line.split("  ") for line in lines) if rel.startswith("cases/")}


def test_cohort_contents_and_geometry(cohort):
    assert verify_cohort(cohort) == []
    items = load_decathlon_datalist(str(cohort / "manifest.json"), data_list_key="training")
    assert len(items) == 4
    for item in items:
        label = nib.load(item["label"])
        for path in item["image"]:
            image = nib.load(path)
            assert image.shape == label.shape and np.allclose(image.affine, label.affine)
            assert np.allclose(sitk.ReadImage(path).GetSpacing(), image.header.get_zooms()[:3])
    provenance = json.loads(next(cohort.rglob("provenance.json")).read_text())
    assert {"style_seed", "generator_sha256", "label_map_record"} <= set(provenance)
    seg = np.asarray(nib.load(str(next(cohort.rglob("*_seg.nii.gz")))).dataobj)
    assert set(np.unique(seg)) <= {0, 1, 2, 3}
    card = (cohort / "README.md").read_text()
    for heading in ("## Tumors", "## How it was made", "## Intended use and limits", "## Privacy", "## Licence"):
        assert heading in card
    assert (cohort / "preview.png").exists()


def test_tampered_file_is_caught(cohort, tmp_path, capsys):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(cohort, copy)
    victim = sorted(copy.rglob("*_t1c.nii.gz"))[0]
    victim.write_bytes(victim.read_bytes()[:-10])
    assert main(["cohort", "verify", str(copy)]) == 1
    assert f"{victim}: checksum differs" in capsys.readouterr().err
    (copy / "cases" / "extra.txt").write_text("x")
    assert any("not listed" in p for p in verify_cohort(copy))


def test_killed_run_leaves_no_partial_case_and_resumes(tiny_generator, tmp_path, monkeypatch):
    calls = {"n": 0}
    original = Generator.synthesize

    def dying(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt("killed")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Generator, "synthesize", dying)
    with pytest.raises(KeyboardInterrupt):
        generate_cohort(tiny_generator, tmp_path / "c", n=4, seed=1, progress=False)
    assert sorted(p.name for p in (tmp_path / "c" / "cases").iterdir()) == ["synth_00000", "synth_00001"]
    assert not (tmp_path / "c" / "manifest.json").exists()
    monkeypatch.setattr(Generator, "synthesize", original)
    status = generate_cohort(tiny_generator, tmp_path / "c", n=4, seed=1, progress=False)
    assert (status.written, status.skipped, status.finalized) == (2, 2, True)
    assert verify_cohort(tmp_path / "c") == []


def test_shards_are_disjoint_and_union_equals_unsharded(tiny_generator, tmp_path):
    whole = generate_cohort(tiny_generator, tmp_path / "whole", n=5, seed=2, progress=False)
    first = generate_cohort(tiny_generator, tmp_path / "sharded", n=5, seed=2, shard=(0, 2), progress=False)
    assert not first.finalized and first.written == 3
    assert sorted(p.name for p in (tmp_path / "sharded" / "cases").iterdir()) == [
        "synth_00000",
        "synth_00002",
        "synth_00004",
    ]
    second = generate_cohort(tiny_generator, tmp_path / "sharded", n=5, seed=2, shard=(1, 2), progress=False)
    assert second.written == 2 and second.finalized and whole.finalized
    digests = _case_digests(tmp_path / "whole")
    assert digests == _case_digests(tmp_path / "sharded")


def test_other_cohort_in_same_folder_is_refused(cohort, tiny_generator):
    with pytest.raises(MedsynthError, match="different cohort"):
        generate_cohort(tiny_generator, cohort, n=4, seed=99, progress=False)


def test_resample_to_1mm(tiny_generator, tmp_path):
    generate_cohort(tiny_generator, tmp_path / "c", n=1, seed=0, spacing_mm=1.0, progress=False)
    image = nib.load(str(next((tmp_path / "c").rglob("*_flair.nii.gz"))))
    assert np.allclose(image.header.get_zooms()[:3], 1.0)
    assert image.shape[0] >= 95
    assert verify_cohort(tmp_path / "c") == []


def test_labels_from_label_map_folder(prepared_phantoms, tiny_generator, tmp_path):
    from medsynth.labels import generate_label_maps

    generate_label_maps([prepared_phantoms], tmp_path / "labels", n=3, seed=0, progress=False)
    status = generate_cohort(tiny_generator, tmp_path / "c", labels=tmp_path / "labels", progress=False)
    assert status.total == 3 and status.finalized
    a = nib.load(str(tmp_path / "labels" / "label_maps" / "synth_00001_label_map.nii.gz"))
    b = nib.load(str(tmp_path / "c" / "cases" / "synth_00001" / "synth_00001_label_map.nii.gz"))
    assert np.array_equal(np.asarray(a.dataobj), np.asarray(b.dataobj))


def test_export_nnunet(cohort, tmp_path):
    target = export_nnunet(cohort, tmp_path / "raw", dataset_id=501, name="Synth")
    meta = json.loads((target / "dataset.json").read_text())
    assert target.name == "Dataset501_Synth"
    assert meta["channel_names"] == {"0": "T1C", "1": "FLAIR"} and meta["file_ending"] == ".nii.gz"
    assert sorted(meta["labels"].values()) == list(range(len(meta["labels"])))
    assert meta["numTraining"] == 4
    labels = sorted((target / "labelsTr").iterdir())
    assert len(labels) == 4 and len(list((target / "imagesTr").iterdir())) == 8
    for label in labels:
        case = label.name.removesuffix(".nii.gz")
        seg = nib.load(str(label))
        assert set(np.unique(np.asarray(seg.dataobj))) <= set(meta["labels"].values())
        for channel in ("0000", "0001"):
            image = nib.load(str(target / "imagesTr" / f"{case}_{channel}.nii.gz"))
            assert image.shape == seg.shape and np.allclose(image.affine, seg.affine)


@pytest.mark.parametrize("edition", ["2021", "2023"])
def test_export_brats_round_trips_through_manifest(cohort, tmp_path, edition):
    target = export_brats(cohort, tmp_path / f"brats{edition}", edition)
    manifest = build_manifest(target, tmp_path / "m.json", validation_fraction=0)
    assert manifest["medsynth"]["layout"] == f"brats{edition}"
    assert manifest["medsynth"]["modalities"] == ["t1c", "flair"]
    assert check_manifest(tmp_path / "m.json") == []


def test_generate_cli_and_bad_shard(tiny_generator, tmp_path, capsys):
    out = tmp_path / "c"
    assert main(["generate", "--checkpoint", str(tiny_generator), "--n", "2", "-o", str(out)]) == 0
    assert "cohort finalized" in capsys.readouterr().out
    assert main(["cohort", "verify", str(out)]) == 0
    assert main(["generate", "--checkpoint", str(tiny_generator), "--n", "2", "-o", str(out), "--shard", "2/2"]) == 2
    assert "need 0 <= i < n" in capsys.readouterr().err
