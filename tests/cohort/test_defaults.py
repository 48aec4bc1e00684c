"""The shipped models work anywhere: `generate --checkpoint pretrained:gan --n N` with no other input."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

import medsynth
from medsynth.cli import main
from medsynth.cohort.defaults import default_sources, find_training_data, matches_training
from medsynth.cohort.verify import verify_cohort
from medsynth.data import bundled
from medsynth.io import save_nifti
from medsynth.manifest import Manifest
from medsynth.models.checkpoint import load


@pytest.fixture(scope="module")
def _module_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("shipped_cache")


@pytest.fixture
def shipped_cache(_module_cache, monkeypatch):
    """One cache for the tests that generate from the shipped models (read only: the bundled sample prepared
    once, the copy check calibrated once); a test that edits the prepared sample keeps its own cache."""
    monkeypatch.setenv("MEDSYNTH_CACHE", str(_module_cache))
    return _module_cache


def test_generate_from_the_shipped_gan_with_nothing_else(shipped_cache, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # not the repository: nothing but the installed package
    assert main(["generate", "--checkpoint", "pretrained:gan", "--n", "3", "-o", "cohort"]) == 0
    out = capsys.readouterr().out
    assert "anatomies: the bundled healthy brains" in out and "cohort finalized" in out
    assert verify_cohort(tmp_path / "cohort") == []
    plan = json.loads((tmp_path / "cohort" / "cohort_plan.json").read_text())
    assert plan["default_sources"]["tumors_from"] == "the generator's training subjects (found by content)"
    assert plan["label_config"]["anatomies"] == "healthy"
    assert all(p.startswith(os.environ["MEDSYNTH_CACHE"]) for p in plan["sources"] + plan["healthy"])
    for case in (tmp_path / "cohort" / "cases").iterdir():
        record = json.loads((case / "provenance.json").read_text())["label_map_record"]
        assert record["anatomy"]["split"] == "healthy" and record["tumor"]["split"] == "train"
    gate = json.loads((tmp_path / "cohort" / "cohort.json").read_text())["copy_check"]
    assert gate == "training data found by content"  # the gate on by default
    card = (tmp_path / "cohort" / "README.md").read_text()
    assert "Anatomies: public healthy brains only (SynthSeg label maps, Colin27), each case's randomly deformed" in card
    assert "Copy check before publication (PASS" in card and "published anyway: none." in card


def test_a_generator_whose_training_data_are_elsewhere_says_its_cohort_was_not_checked(tiny_generator, tmp_path):
    from medsynth.models import checkpoint

    state = checkpoint.load(tiny_generator)
    state["training"] = {**state["training"], "manifest": "/elsewhere/prepared/manifest.json"}
    moved = checkpoint.save(state, tmp_path / "moved.pt")
    assert main(["generate", "--checkpoint", str(moved), "--n", "2", "-o", str(tmp_path / "cohort")]) == 0
    plan = json.loads((tmp_path / "cohort" / "cohort_plan.json").read_text())
    gate = json.loads((tmp_path / "cohort" / "cohort.json").read_text())["copy_check"]
    assert gate == "training data not found"
    assert plan["default_sources"]["tumors_from"].startswith("the bundled 2 mm BraTS 2013 sample")
    assert "**This cohort was not checked for copies**" in (tmp_path / "cohort" / "README.md").read_text()


def test_shipped_checkpoints_record_training_data_by_content():
    for kind in ("gan", "vae", "gan_flair"):
        training = load(medsynth.pretrained(kind))["training"]
        subjects = {f"brats_2013_pat000{n}_1" for n in (1, 2, 5, 6)}  # the sample's train split; 3 and 4 held out
        assert set(training["label_maps"]) == set(training["cases"]) == subjects
        assert training["preprocess"]["grid"] == [80, 96, 80]
        assert not os.path.isabs(training["manifest"])  # a hint only, never a path of the training machine


def test_training_data_found_again_in_the_bundled_sample(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    generator = medsynth.load_generator("pretrained:vae", device="cpu", precision="fp32")
    found = find_training_data(generator)
    assert found is not None and found.is_relative_to(os.environ["MEDSYNTH_CACHE"])
    assert found == bundled.prepared("brats2013", bundled.PreprocessConfig(grid=(80, 96, 80)))


def test_changed_training_data_does_not_match(tmp_path):
    generator = medsynth.load_generator("pretrained:gan", device="cpu", precision="fp32")
    sample = find_training_data(generator)
    assert matches_training(sample, generator.training)
    case = next(c for c in Manifest.load(sample).cases() if c.case_id == "brats_2013_pat0005_1")
    from medsynth.io import load_nifti

    label_map, affine, _ = load_nifti(case.label, dtype=np.int16)
    label_map[label_map == 6] = 5  # the enhancing rim relabelled: not the data the model was trained on
    save_nifti(label_map, affine, case.label, dtype=np.int16)
    assert not matches_training(sample, generator.training)
    assert matches_training(sample, {"manifest": str(sample.resolve()), "cases": ["brats_2013_pat0005_1"]})  # legacy


def test_default_sources_fall_back_to_the_bundled_sample(tiny_generator, tmp_path):
    generator = medsynth.load_generator(tiny_generator, device="cpu", precision="fp32")
    generator.training = {**generator.training, "manifest": str(tmp_path / "gone.json")}
    chosen = default_sources(generator)
    assert chosen.tumors_from.startswith("the bundled 2 mm BraTS 2013 sample")
    assert "is not on this machine" in chosen.notes[0]
    assert len(chosen.healthy) == 2
    assert Manifest.load(chosen.sources[0]).meta["preprocess"]["grid"] == list(generator.grid)
    real = default_sources(generator, anatomies="real")
    assert real.healthy == []


def test_unknown_shipped_model_is_one_line(tmp_path, capsys):
    assert main(["generate", "--checkpoint", "pretrained:unet", "--n", "1", "-o", str(tmp_path / "c")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.endswith(
        "pretrained:unet: no such shipped model; choose pretrained:gan, pretrained:gan_flair, pretrained:vae"
    )
    assert not (tmp_path / "c").exists()


def test_python_equivalent(shipped_cache, tmp_path):
    """The Python API with the shipped VAE (the CLI test above covers the GAN)."""
    from medsynth.cohort.config import GenerateConfig

    path = medsynth.run_generate(GenerateConfig(checkpoint="pretrained:vae", n=1, seed=3), tmp_path / "vae")
    assert Manifest.load(path, kind="cohort").cases()[0].images


def test_two_shards_starting_together_prepare_the_bundled_data_once(tmp_path):
    import subprocess
    import sys

    code = (
        "from medsynth.data import bundled; from medsynth.data.config import PreprocessConfig; "
        f"print(bundled.prepared('colin27', PreprocessConfig(grid=(48, 48, 48)), cache_dir={str(tmp_path)!r}))"
    )
    shards = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True) for _ in range(2)]
    paths = {shard.communicate(timeout=120)[0].strip() for shard in shards}
    assert all(shard.returncode == 0 for shard in shards)
    assert len(paths) == 1 and Manifest.load(paths.pop(), kind="prepared").cases()
