"""Generators for a subset of the manifest's modalities (``TrainConfig.modalities``)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from medsynth.cohort.config import GenerateConfig
from medsynth.cohort.generate import generate_cases, generate_cohort
from medsynth.cohort.verify import verify_cohort
from medsynth.config import load_config
from medsynth.errors import ConfigError
from medsynth.io import read_json
from medsynth.models import checkpoint
from medsynth.models.config import TrainConfig
from medsynth.models.data import load_training_set
from medsynth.models.generator import load_generator
from medsynth.models.train import run_train

REPO = Path(__file__).resolve().parents[2]
IMAGE_FREE = ("_label_map.nii.gz", "_seg.nii.gz")  # the files of a case folder that are not images


@pytest.mark.parametrize(
    ("wanted", "expected"), [([], ["t1c", "flair"]), (["flair"], ["flair"]), (["flair", "t1c"], ["flair", "t1c"])]
)
def test_training_set_keeps_the_chosen_channels_in_order(prepared_phantoms, wanted, expected):
    every = load_training_set(prepared_phantoms, ["train"])
    chosen = load_training_set(prepared_phantoms, ["train"], wanted)
    assert chosen.modalities == expected
    index = [every.modalities.index(m) for m in expected]
    assert torch.equal(chosen.images, every.images[:, index])
    assert torch.equal(chosen.label_maps, every.label_maps)


def test_unknown_modality_names_the_manifests(prepared_phantoms):
    with pytest.raises(
        ConfigError, match=r"modalities \['t2'\] are not in .*manifest.json, which has \['t1c', 'flair'\]"
    ):
        load_training_set(prepared_phantoms, ["train"], ["t2"])


def test_a_modality_twice_is_refused(prepared_phantoms):
    with pytest.raises(ConfigError, match="names a modality twice"):
        load_config(TrainConfig, None, [f"manifest={prepared_phantoms}", "modalities=[flair, flair]"])


@pytest.fixture(scope="module")
def flair_generator(prepared_phantoms, tmp_path_factory) -> Path:
    """A 2-step GAN trained on the FLAIR channel of the phantoms' T1c + FLAIR manifest."""
    overrides = [f"manifest={prepared_phantoms}", "modalities=[flair]", "steps=2"]
    config = load_config(TrainConfig, REPO / "configs" / "gan_tiny.yaml", overrides)
    return run_train(config, tmp_path_factory.mktemp("flair_gan"), progress=False)


def test_flair_only_generator_records_and_synthesizes_flair(flair_generator, prepared_phantoms):
    assert checkpoint.load(flair_generator, expect="generator")["modalities"] == ["flair"]
    generator = load_generator(flair_generator, device="cpu", precision="fp32")
    assert generator.modalities == ["flair"]
    result = generator.synthesize(load_training_set(prepared_phantoms, ["train"]).label_maps[0].numpy(), seed=0)
    assert result.images.shape == (1, *generator.grid)


def test_flair_only_generator_writes_flair_only_cohorts(flair_generator, tmp_path):
    config = GenerateConfig(checkpoint=str(flair_generator), n=2, precision="fp32", copy_check=False)
    generate_cases(config, tmp_path / "cohort", progress=False)
    cases = sorted((tmp_path / "cohort" / "cases").iterdir())
    assert len(cases) == 2
    for folder in cases:
        images = sorted(p.name for p in folder.glob("*.nii.gz") if not p.name.endswith(IMAGE_FREE))
        assert images == [f"{folder.name}_flair.nii.gz"]
    assert verify_cohort(tmp_path / "cohort") == []


def test_flair_only_cohort_is_copy_checked_against_its_training_data(flair_generator, tmp_path):
    status = generate_cohort(flair_generator, tmp_path / "cohort", n=2, seed=0, progress=False, precision="fp32")
    assert status.finalized
    assert read_json(tmp_path / "cohort" / "cohort.json")["copy_check"] == "training data found by content"


def test_flair_only_cohort_is_audited_against_the_flair_of_a_two_modality_manifest(
    flair_generator, prepared_phantoms, tmp_path
):
    from medsynth.audit.config import AuditConfig
    from medsynth.audit.run import run_audit

    config = GenerateConfig(checkpoint=str(flair_generator), n=2, precision="fp32", copy_check=False)
    generate_cases(config, tmp_path / "cohort", progress=False)
    audit = AuditConfig(real_manifest=str(prepared_phantoms), cohort=str(tmp_path / "cohort"), feature_steps=2)
    report = read_json(run_audit(audit, tmp_path / "audit").parent / "report.json")
    assert report["verdicts"]["intensity_fidelity"]["verdict"].endswith("/6")  # FLAIR x 6 classes, no T1c
