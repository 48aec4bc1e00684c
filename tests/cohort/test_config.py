"""The cohort stage's config: checked when built, loaded from YAML + flags + KEY=VALUE, written beside the cohort."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from medsynth.audit.anonymity import QuasiIdentifiers
from medsynth.cli import main
from medsynth.cohort.config import GenerateConfig, load_generate_config
from medsynth.cohort.generate import run_generate
from medsynth.config import load_config, to_dict
from medsynth.errors import ConfigError, MedsynthError
from medsynth.labels import LabelConfig

DEFAULT = Path(__file__).parents[2] / "configs" / "generate_default.yaml"


def test_default_file_documents_every_field_at_its_default():
    config = load_generate_config(DEFAULT)
    assert config == GenerateConfig(checkpoint="medsynth/pretrained/vae_cpu.pt")
    assert set(yaml.safe_load(DEFAULT.read_text())) == set(to_dict(config))


@pytest.mark.parametrize(
    ("fields", "error", "expected"),
    [
        ({"n": 0}, MedsynthError, "--n 0: the number of cases must be a positive whole number"),
        ({"n": 2.5}, MedsynthError, "--n 2.5"),
        ({"spacing_mm": -1.0}, MedsynthError, "--spacing -1.0: the voxel size must be a positive"),
        ({"seed": -3}, MedsynthError, "--seed -3: must be a non-negative whole number"),
        ({"shard": "2/2"}, MedsynthError, "need 0 <= i < n"),
        ({"shard": "two"}, MedsynthError, "expected i/n"),
        ({"label_convention": "brats2019"}, MedsynthError, "label convention must be one of"),
        ({"precision": "fp16"}, MedsynthError, "precision must be auto, fp32 or bf16"),
        ({"k_anonymity": 0}, MedsynthError, "K must be an integer >= 1"),
        ({"k_anonymity": 2, "labels": "labels"}, MedsynthError, "give their tumor sources with --from"),
        ({"checkpoint": ""}, ConfigError, "checkpoint: give the generator"),
    ],
)
def test_bad_fields_are_refused_when_built(fields, error, expected):
    with pytest.raises(error, match=expected.replace(".", r"\.").replace("(", r"\(")):
        GenerateConfig(**{"checkpoint": "gen.pt", **fields})


def test_yaml_refuses_unknown_keys_and_literals(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("checkpoint: gen.pt\nlabel_convention: brats2019\n")
    with pytest.raises(ConfigError, match=r"label_convention: 'brats2019' is not one of"):
        load_generate_config(path)
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['spacing'\]"):
        load_generate_config(None, ["checkpoint=gen.pt", "spacing=1"])


def test_file_then_flags_then_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("checkpoint: a.pt\nseed: 1\nn: 4\nshard: 1/2\nlabel_config: {max_rotation_deg: 10.0}\n")
    config = load_generate_config(path, ["n=6", "label_config.max_attempts=5"], seed=2, n=5, checkpoint=None)
    assert (config.checkpoint, config.seed, config.n, config.shard) == ("a.pt", 2, 6, (1, 2))
    assert config.label_config == LabelConfig(max_rotation_deg=10.0, max_attempts=5)
    assert config.for_cohort().shard == (0, 1)
    assert isinstance(config.quasi_identifiers, QuasiIdentifiers)


def test_paths_are_kept_as_strings():
    config = GenerateConfig(checkpoint=Path("gen.pt"), labels=Path("labels"), sources=[Path("m.json")])
    assert (config.checkpoint, config.labels, config.sources) == ("gen.pt", "labels", ["m.json"])


def test_run_generate_writes_config_and_one_provenance(tiny_generator, tmp_path):
    out = tmp_path / "cohort"
    config = GenerateConfig(checkpoint=str(tiny_generator), n=2, seed=4, shard=(0, 2))
    assert run_generate(config, out, progress=False) == out  # shard 1/2 still to run
    assert not (out / "config.yaml").exists()
    path = run_generate(GenerateConfig(checkpoint=str(tiny_generator), n=2, seed=4, shard=(1, 2)), out, progress=False)
    assert path == out / "manifest.json"
    saved = load_config(GenerateConfig, out / "config.yaml")
    assert saved == GenerateConfig(checkpoint=str(tiny_generator), n=2, seed=4)  # the whole cohort's config
    manifest = json.loads(path.read_text())["medsynth"]["provenance"]
    assert json.loads((out / "cohort.json").read_text())["provenance"] == manifest
    assert manifest["stage"] == "generate" and manifest["seed"] == 4
    assert manifest["config"] == to_dict(saved)
    assert str(Path(tiny_generator).resolve()) in manifest["inputs"]
    assert "config.yaml" in (out / "checksums.sha256").read_text()


def test_cli_config_file_overrides_and_flags(tiny_generator, tmp_path, capsys):
    path = tmp_path / "c.yaml"
    path.write_text(f"checkpoint: {tiny_generator}\nn: 3\nseed: 7\n")
    out = tmp_path / "cohort"
    assert main(["generate", "--config", str(path), "--seed", "8", "n=1", "-o", str(out)]) == 0
    assert "wrote 1, skipped 0 finished; 1/1 cases; cohort finalized" in capsys.readouterr().out
    assert load_config(GenerateConfig, out / "config.yaml").seed == 8
    assert main(["generate", "--config", str(path), "label_convention=brats2019", "-o", str(tmp_path / "x")]) == 2
    assert "is not one of" in capsys.readouterr().err
    assert main(["generate", "--n", "1", "-o", str(tmp_path / "y")]) == 2
    assert "checkpoint" in capsys.readouterr().err
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()
