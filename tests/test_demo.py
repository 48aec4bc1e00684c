"""The demo on the bundled sample (what ``make demo`` runs), and the sample's contents."""

import json

import nibabel as nib
import numpy as np

from medsynth.cli import main
from medsynth.demo import SAMPLE_DATASETS, sample_data_dir


def test_sample_ships_with_licences():
    root = sample_data_dir()
    assert (root / "README.md").exists()
    assert (root / "brats2013_2mm" / "LICENSE_CC_BY_NC_SA_3.0.txt").exists()
    assert (root / "healthy" / "synthseg_2mm" / "LICENSE.txt").exists()
    assert (root / "healthy" / "colin27_2mm" / "license.txt").exists()
    size = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
    assert size < 8e6


def test_demo_end_to_end(tmp_path, monkeypatch):
    monkeypatch.setattr("medsynth.demo.SEGMENTER_STEPS", 20)  # ~3 min less; the demo's Dice is not asserted here
    assert main(["demo", "-o", str(tmp_path / "demo")]) == 0
    for name in SAMPLE_DATASETS:
        manifest = json.loads((tmp_path / "demo" / "prepared" / name / "manifest.json").read_text())
        entries = manifest["training"] + manifest.get("validation", [])
        assert entries
        for entry in entries:
            label_map = np.asarray(nib.load(str(tmp_path / "demo" / "prepared" / name / entry["label"])).dataobj)
            assert label_map.shape == (80, 96, 80)
            assert {1, 2, 3} <= set(np.unique(label_map).tolist())
            assert (tmp_path / "demo" / "prepared" / name / entry["preview"]).exists()
    labels = json.loads((tmp_path / "demo" / "labels" / "manifest.json").read_text())
    assert len(labels["training"]) == 8
    assert (tmp_path / "demo" / "labels" / "report.md").exists()
    from medsynth.cohort.verify import verify_cohort

    for kind in ("gan", "vae"):
        cohort = tmp_path / "demo" / f"cohort_{kind}"
        assert verify_cohort(cohort) == []
        images = sorted(cohort.rglob("*_t1c.nii.gz"))
        assert len(images) == 8
        synthetic = nib.load(str(images[0]))
        label = nib.load(str(tmp_path / "demo" / "labels" / labels["training"][0]["label"]))
        assert synthetic.shape == label.shape and np.allclose(synthetic.affine, label.affine)
        assert (cohort / "README.md").exists() and (cohort / "preview.png").exists()
    results = json.loads((tmp_path / "demo" / "benchmark" / "results.json").read_text())
    assert set(results["summary"]) == {"real_classical", "classical_gan_50"}
    assert all(0 <= results["summary"]["real_classical"][r]["dice_mean"] <= 1 for r in ("WT", "TC", "ET"))
    assert (tmp_path / "demo" / "benchmark" / "report.md").exists()
