"""Declared layouts: a user's own file names in, whole-tumor-only labels handled honestly, bad declarations refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from medsynth.cli import main
from medsynth.data import scheme
from medsynth.data.layouts import Layout, builtin_layouts, load_layout
from medsynth.data.manifest import build_manifest, check_manifest
from medsynth.errors import DataError
from medsynth.io import load_nifti
from medsynth.manifest import Manifest
from tests.conftest import phantom, save

REPO = Path(__file__).resolve().parents[2]
WT_LAYOUT = REPO / "configs" / "layouts" / "brats2018_wt.yaml"


def make_wt_dataset(root: Path, n: int = 3) -> Path:
    """brats2018_wt's shape: <case>/FLAIR.nii.gz, T1.nii.gz (raw scanner intensities), GT_W.nii.gz (0/1 float)."""
    for i in range(n):
        case = phantom(i)
        folder = root / f"Brats18_TEST_{i:03d}_1"
        save((case["flair"] * 120 + 400) * case["mask"], folder / "FLAIR.nii.gz")
        save((case["t1c"] * 90 + 600) * case["mask"], folder / "T1.nii.gz")
        save((case["label"] > 0).astype(np.float32), folder / "GT_W.nii.gz")
    return root


def refused(capsys, argv: list[str]) -> str:
    """The command exits 1 with one line on stderr; returns it."""
    assert main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


@pytest.mark.parametrize("name", sorted(builtin_layouts()))
def test_every_builtin_layout_loads(name):
    layout = load_layout(name)
    assert layout.name == name
    assert layout.index or layout.images or layout.label


def test_example_declaration_loads():
    layout = load_layout(WT_LAYOUT)
    assert (layout.name, layout.modalities, layout.label, layout.mask) == (
        "brats2018_wt",
        ["t1", "flair"],
        "{case}/GT_W",
        None,
    )
    assert not scheme.has_subregions(layout.label_scheme)


def test_declared_layout_builds_checks_and_prepares(tmp_path, capsys):
    data = make_wt_dataset(tmp_path / "mine")
    manifest = tmp_path / "mine.json"
    assert main(["manifest", "build", str(data), "--layout", str(WT_LAYOUT), "-o", str(manifest)]) == 0
    loaded = Manifest.load(manifest)
    assert loaded.modalities == ["t1", "flair"] and loaded.label_scheme == "wt"
    assert loaded.meta["layout"] == "brats2018_wt"
    assert len(loaded.cases()) == 3 and all(c.mask is None for c in loaded.cases())
    assert check_manifest(manifest) == []
    assert main(["prepare", str(manifest), "-o", str(tmp_path / "prepared"), "grid=[48,48,48]"]) == 0
    prepared = Manifest.load(tmp_path / "prepared" / "manifest.json", kind="prepared")
    assert prepared.meta["source_label_scheme"] == "wt"
    for case in prepared.cases():
        label_map = load_nifti(case.label, dtype=np.int16)[0]
        values = set(np.unique(label_map).tolist())
        assert scheme.TUMOR in values and not values & {scheme.NETC, scheme.SNFH, scheme.ET}  # never guessed
        assert {scheme.CSF, scheme.GM, scheme.WM} <= values  # anatomy derived from raw-intensity images
        image = load_nifti(case.images[0])[0]
        brain = load_nifti(case.mask, dtype=np.uint8)[0] > 0
        assert abs(float(image[brain].mean())) < 1e-3  # raw intensities normalised like the rest
        volumes = case.record["volumes_ml"]
        assert volumes["WT"] > 0 and "TC" not in volumes and "ET" not in volumes and "netc" not in volumes
        assert (tmp_path / "prepared" / case.record["preview"]).is_file()


def test_derived_mask_of_images_with_a_constant_nonzero_background(tmp_path, capsys):
    """Images z-scored over the whole volume (BraTS 2013's *_subtrMeanDivStd) have background at e.g. -3.55."""
    data = tmp_path / "zscored"
    for i in range(2):
        case = phantom(i)
        folder = data / f"Brats18_TEST_{i:03d}_1"
        for name, channel in (("FLAIR", case["flair"]), ("T1", case["t1c"])):
            volume = (channel * 120 + 400) * case["mask"]
            save(((volume - volume.mean()) / volume.std()).astype(np.float32), folder / f"{name}.nii.gz")
        save((case["label"] > 0).astype(np.float32), folder / "GT_W.nii.gz")
    manifest = tmp_path / "zscored.json"
    assert main(["manifest", "build", str(data), "--layout", str(WT_LAYOUT), "-o", str(manifest)]) == 0
    assert main(["prepare", str(manifest), "-o", str(tmp_path / "prepared"), "grid=[48,48,48]"]) == 0
    for case in Manifest.load(tmp_path / "prepared" / "manifest.json", kind="prepared").cases():
        brain = load_nifti(case.mask, dtype=np.uint8)[0] > 0
        assert 0.05 < brain.mean() < 0.6  # the head, not the field of view (it was 100% before)
        assert (load_nifti(case.label, dtype=np.int16)[0][~brain] == 0).all()

    rng = np.random.default_rng(0)  # a background with no constant value: nothing to tell the brain from
    for image in data.rglob("*.nii.gz"):
        if "GT_W" not in image.name:
            save(rng.normal(size=load_nifti(image)[0].shape).astype(np.float32), image)
    assert main(["manifest", "build", str(data), "--layout", str(WT_LAYOUT), "-o", str(manifest)]) == 0
    assert main(["prepare", str(manifest), "-o", str(tmp_path / "noise"), "grid=[48,48,48]"]) == 1
    line = capsys.readouterr().err.strip().splitlines()[-1]  # above it: the progress bar
    assert "FLAIR.nii.gz" in line or "T1.nii.gz" in line
    assert "derived from the image covers 100% of the field of view" in line and "give the brain mask" in line


def test_flags_declare_the_same_layout(tmp_path):
    data = make_wt_dataset(tmp_path / "mine", n=2)
    argv = ["manifest", "build", str(data), "--image", "flair={case}/FLAIR", "--image", "T1w={case}/T1.nii.gz"]
    assert main([*argv, "--label", "{case}/GT_W", "--label-scheme", "wt", "-o", str(tmp_path / "m.json")]) == 0
    loaded = Manifest.load(tmp_path / "m.json")
    assert loaded.modalities == ["t1", "flair"] and loaded.label_scheme == "wt"
    assert [p.name for p in loaded.cases()[0].images] == ["T1.nii.gz", "FLAIR.nii.gz"]


def test_declared_mapping_is_recorded_and_applied(tmp_path):
    root = tmp_path / "mine"
    for i in range(2):
        case = phantom(i)
        label = np.select([case["label"] == 1, case["label"] == 2, case["label"] == 4], [7, 3, 9], 0).astype(np.uint8)
        save(case["flair"], root / f"s{i}" / "flair.nii.gz")
        save(label, root / f"s{i}" / "seg.nii.gz")
    layout = Layout(
        name="lab",
        images={"flair": "{case}/flair"},
        label="{case}/seg",
        label_scheme={7: "necrosis", 3: "edema", 9: "ET"},
    )
    build_manifest(root, tmp_path / "m.json", layout=layout)
    loaded = Manifest.load(tmp_path / "m.json")
    assert loaded.label_scheme == {"3": "snfh", "7": "netc", "9": "et"}
    assert check_manifest(tmp_path / "m.json") == []
    label = load_nifti(loaded.cases()[0].label, dtype=np.int16)[0]
    canonical = scheme.to_canonical_tumor(label, loaded.label_scheme)
    assert set(np.unique(canonical).tolist()) == {0, scheme.NETC, scheme.SNFH, scheme.ET}


def test_shared_brats2018_wt_builds_checks_and_prepares(shared_data, tmp_path):
    manifest = tmp_path / "wt.json"
    build_manifest(shared_data / "brats2018_wt", manifest, layout=WT_LAYOUT)
    loaded = Manifest.load(manifest)
    assert len(loaded.cases()) == 7 and loaded.modalities == ["t1", "flair"]
    assert check_manifest(manifest) == []
    from medsynth.data.config import PrepareConfig
    from medsynth.data.prepare import run_prepare

    prepared = Manifest.load(run_prepare(PrepareConfig(manifest=str(manifest)), tmp_path / "prepared", progress=False))
    for case in prepared.cases():
        label_map = load_nifti(case.label, dtype=np.int16)[0]
        assert 20 < case.record["volumes_ml"]["WT"] < 300 and (label_map == scheme.TUMOR).any()


# -- bad declarations and bad data: one line naming the file, exit 1, nothing written


def test_layout_matching_no_file(tmp_path, capsys):
    data = make_wt_dataset(tmp_path / "mine", n=1)
    line = refused(
        capsys, ["manifest", "build", str(data), "--image", "flair={case}/FLAIR_typo", "-o", str(tmp_path / "m.json")]
    )
    assert str(data) in line and "no file matches" in line and "FLAIR_typo" in line
    assert not (tmp_path / "m.json").exists()


def test_two_files_for_one_modality(tmp_path, capsys):
    data = make_wt_dataset(tmp_path / "mine", n=1)
    case = next(data.iterdir())
    (case / "FLAIR_2.nii.gz").write_bytes((case / "FLAIR.nii.gz").read_bytes())
    line = refused(
        capsys, ["manifest", "build", str(data), "--image", "flair={case}/FLAIR*", "-o", str(tmp_path / "m.json")]
    )
    assert "FLAIR" in line and "a second flair file" in line
    assert not (tmp_path / "m.json").exists()


def test_label_value_the_scheme_does_not_know(tmp_path, capsys):
    data = make_wt_dataset(tmp_path / "mine", n=2)
    victim = next(data.iterdir()) / "GT_W.nii.gz"
    label = load_nifti(victim)[0]
    label[label > 0] = 2  # a sub-region value in a whole-tumor-only declaration
    save(label, victim)
    assert main(["manifest", "build", str(data), "--layout", str(WT_LAYOUT), "-o", str(tmp_path / "m.json")]) == 0
    capsys.readouterr()
    assert main(["manifest", "check", str(tmp_path / "m.json")]) == 1
    captured = capsys.readouterr()
    assert f"{victim}: label values [2] are outside scheme 'wt'" in captured.out + captured.err
    line = refused(capsys, ["prepare", str(tmp_path / "m.json"), "-o", str(tmp_path / "prepared")])
    assert line.endswith(f"{victim}: label values [2] are outside scheme 'wt'")
    assert not (tmp_path / "prepared").exists()


@pytest.mark.parametrize(
    ("declaration", "message"),
    [
        ({"images": {"flair": "FLAIR"}}, "has no {case}"),
        ({"images": {"flair": "{case}/{case}"}}, "names the case more than once"),
        ({"images": {"flair": "{case}/FLAIR"}, "label_scheme": {1: "spleen"}}, "'spleen' is not a tumor class"),
        ({"images": {"flair": "{case}/FLAIR"}, "label_scheme": "brats2099"}, "unknown label scheme 'brats2099'"),
        ({"images": {"flair": "{case}/FLAIR"}, "labels": "{case}/GT_W"}, "unknown key(s) ['labels']"),
        ({"images": ["{case}/FLAIR"]}, "images must map each modality"),
        ({}, "declares no images and no label"),
    ],
)
def test_bad_declaration(tmp_path, capsys, declaration, message):
    data = make_wt_dataset(tmp_path / "mine", n=1)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(declaration))
    line = refused(capsys, ["manifest", "build", str(data), "--layout", str(path), "-o", str(tmp_path / "m.json")])
    assert str(path) in line and message in line
    assert not (tmp_path / "m.json").exists()


def test_unknown_layout_folder_says_how_to_declare(tmp_path, capsys):
    data = make_wt_dataset(tmp_path / "mine", n=1)
    line = refused(capsys, ["manifest", "build", str(data), "-o", str(tmp_path / "m.json")])
    assert "unknown layout" in line and "--layout my_layout.yaml" in line and "--image MODALITY=PATTERN" in line


# -- whole-tumor-only labels: every stage that needs sub-regions refuses, saying why


@pytest.fixture(scope="module")
def prepared_wt(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("wt")
    build_manifest(make_wt_dataset(root / "raw", n=3), root / "m.json", layout=WT_LAYOUT)
    from medsynth.data.config import PrepareConfig, PreprocessConfig
    from medsynth.data.prepare import run_prepare

    config = PrepareConfig(
        manifest=str(root / "m.json"), preprocess=PreprocessConfig(grid=(48, 48, 48)), previews=False
    )
    return run_prepare(config, root / "prepared", progress=False)


def test_wt_only_refused_for_generator_training(prepared_wt):
    from medsynth.models.data import load_training_set

    with pytest.raises(DataError, match=r"whole-tumor-only labels \(scheme wt; .*generators are conditioned"):
        load_training_set(prepared_wt, ["train"])


def test_wt_only_refused_as_tumor_source_but_not_as_anatomy(prepared_wt):
    from medsynth.labels.sources import read_sources

    with pytest.raises(DataError, match=r"whole-tumor-only labels .*new label maps are made from real tumors"):
        read_sources([prepared_wt])
    anatomies, _ = read_sources([prepared_wt], healthy=True)
    assert all(not np.isin(a.label_map, [*scheme.TUMOR_CLASSES, scheme.TUMOR]).any() for a in anatomies)


def test_wt_only_refused_by_loader_audit_and_benchmark(prepared_wt):
    from medsynth.audit.loading import load_audit_manifest
    from medsynth.benchmark.config import BenchmarkConfig
    from medsynth.benchmark.run import _split_cases
    from medsynth.config import from_dict
    from medsynth.loaders.mixed import real_items

    with pytest.raises(DataError, match="the loader's label maps carry tumor sub-regions"):
        real_items(prepared_wt)
    with pytest.raises(DataError, match="the audit compares tumor sub-regions"):
        load_audit_manifest(prepared_wt, "prepared")
    config = from_dict(BenchmarkConfig, {"data": {"manifest": str(prepared_wt)}})
    with pytest.raises(DataError, match="the benchmark trains segmenters on and scores WT, TC and ET"):
        _split_cases(config)


def test_wt_only_label_map_refused_by_generator(prepared_wt):
    import medsynth

    generator = medsynth.load_generator("pretrained:gan", device="cpu", precision="fp32")
    label_map = np.zeros(generator.grid, np.int16)
    label_map[30:50, 30:50, 30:50] = scheme.WM
    label_map[38:42, 38:42, 38:42] = scheme.TUMOR
    with pytest.raises(medsynth.MedsynthError, match=r"whole-tumor-only labels .* does not guess them"):
        generator.check_label_map(label_map, generator.default_affine(), "map.nii.gz")


def test_regions_of_wt_only_maps():
    assert sorted(scheme.region_masks(np.array([0, 3, scheme.TUMOR]))) == ["WT"]
    assert sorted(scheme.region_masks(np.array([0, 3, scheme.ET]))) == ["ET", "TC", "WT"]
