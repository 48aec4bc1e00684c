"""``medsynth train --dry-run``: parameters, one step on random data, peak memory; nothing written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from medsynth.cli import main
from medsynth.config import load_config
from medsynth.data.scheme import MODEL_CLASSES
from medsynth.errors import ConfigError
from medsynth.models import dryrun
from medsynth.models.config import TrainConfig
from medsynth.models.networks import MultiScaleDiscriminator, build_generator
from medsynth.models.train import placement_for

REPO = Path(__file__).resolve().parents[2]


def numel(network: torch.nn.Module) -> int:
    return sum(p.numel() for p in network.parameters())


def test_gan_dry_run_prints_the_built_networks_and_writes_nothing(prepared_phantoms, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    config = REPO / "configs" / "gan_tiny.yaml"
    assert main(["train", "--config", str(config), "--dry-run", f"manifest={prepared_phantoms}"]) == 0
    table = dict(
        line.split(maxsplit=1) for line in capsys.readouterr().out.replace("parameters ", "parameters_").splitlines()
    )
    network = load_config(TrainConfig, config, [f"manifest={prepared_phantoms}"]).network
    generator = build_generator("gan", network, 2, MODEL_CLASSES, (48, 48, 48))
    discriminator = MultiScaleDiscriminator(2 + MODEL_CLASSES, network)
    assert table["parameters_G"] == f"{numel(generator):,}"
    assert table["parameters_D"] == f"{numel(discriminator):,}"
    assert table["grid"].startswith("48x48x48 (") and str(prepared_phantoms) in table["grid"]
    assert table["modalities"] == "t1c, flair"
    assert table["peak"].startswith("memory ") and "CPU peak RSS increase" in table["peak"]
    assert list(tmp_path.iterdir()) == []


def test_vae_dry_run_json_with_a_prepare_config(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # the config's manifest is not there: nothing of it is needed
    config = REPO / "configs" / "vae_tiny.yaml"
    prepare = REPO / "configs" / "prepare_tiny.yaml"
    argv = ["train", "--config", str(config), "--dry-run", "--json", "--prepare-config", str(prepare)]
    assert main([*argv, "modalities=[flair]", "batch_size=2"]) == 0
    result = json.loads(capsys.readouterr().out)
    network = load_config(TrainConfig, config).network
    assert result["parameters_generator"] == numel(build_generator("vae", network, 1, MODEL_CLASSES, (48, 48, 48)))
    assert result["parameters_discriminator"] == 0  # adversarial_weight 0: no discriminator
    assert (result["grid"], result["spacing_mm"], result["modalities"]) == ([48, 48, 48], [4.0, 4.0, 4.0], ["flair"])
    assert result["batch_size"] == 2 and result["device"] == "cpu"
    assert result["peak_memory_bytes"] > 0 and result["step_seconds"] > 0
    assert {"reconstruction_l1", "kl", "g"} <= set(result["losses"])
    assert list(tmp_path.iterdir()) == []


def test_geometry_order(prepared_phantoms, tmp_path):
    config = load_config(TrainConfig, None, [f"manifest={tmp_path / 'absent.json'}"])
    default = dryrun.resolve_geometry(config)
    assert (default.grid, default.modalities, default.source) == (
        (80, 96, 80),
        ["t1c", "flair"],
        "default preprocessing",
    )
    gridded = dryrun.resolve_geometry(config, REPO / "configs" / "prepare_gpu.yaml", grid=(64, 64, 64))
    assert (gridded.grid, gridded.spacing_mm, gridded.source) == ((64, 64, 64), (1.0, 1.0, 1.0), "--grid")
    config = load_config(TrainConfig, None, [f"manifest={prepared_phantoms}", "modalities=[t2]"])
    with pytest.raises(ConfigError, match=r"modalities \['t2'\] are not in"):
        dryrun.resolve_geometry(config)


def test_a_grid_too_small_for_the_discriminator_is_one_line(capsys):
    argv = ["train", "--config", str(REPO / "configs" / "gan_tiny.yaml"), "--dry-run", "--grid", "16", "16", "16"]
    assert main(argv) == 1
    error = capsys.readouterr().err
    assert error.startswith("medsynth: error: gan on 16x16x16 at batch size 1: one training step failed (")
    assert "d_layers" in error and error.count("\n") == 1


def test_output_is_required_without_dry_run(capsys):
    assert main(["train", "--config", str(REPO / "configs" / "gan_tiny.yaml")]) == 2
    assert "-o/--output is required" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("precision", "expected"), [("auto", torch.bfloat16), ("bf16", torch.bfloat16), ("fp32", None)]
)
def test_cuda_placement_without_a_gpu(precision, expected):
    config = load_config(TrainConfig, None, ["manifest=m.json", "device=cuda:1", f"precision={precision}"])
    placement = placement_for(config)
    assert placement.device == torch.device("cuda", 1) and placement.dtype == expected


def test_cuda_peak_memory_reads_the_allocator(monkeypatch):
    allocated = iter([100, 100])
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: None)
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", lambda device=None: None)
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda device=None: next(allocated))
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda device=None: 2**30 + 100)
    with dryrun.peak_memory(torch.device("cuda")) as measured:
        pass
    assert measured == {"bytes": 2**30, "measure": "torch.cuda.max_memory_allocated"}


def test_cpu_peak_memory_sees_a_large_tensor():
    with dryrun.peak_memory(torch.device("cpu")) as measured:
        block = torch.ones(64 * 2**20, dtype=torch.uint8)  # 64 MiB, touched
        del block
    assert measured["bytes"] >= 60 * 2**20
