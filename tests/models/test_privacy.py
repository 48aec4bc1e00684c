"""DP-SGD training of the GAN's discriminator: epsilon reported everywhere, honest refusals, resume."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import sys
from pathlib import Path

import pytest
import torch

import medsynth
from medsynth.cli import main
from medsynth.config import from_dict
from medsynth.errors import ConfigError, MedsynthError
from medsynth.models import checkpoint
from medsynth.models.config import TrainConfig
from medsynth.models.data import load_training_set
from medsynth.models.losses import discriminator_loss, patch_loss_per_sample
from medsynth.models.steps import PatchDiscriminatorStep, Placement, Synthesis
from medsynth.models.train import run_train

pytest.importorskip("opacus")

from medsynth.models.privacy import PrivateDiscriminator, describe, epsilon_spent, noise_multiplier_for

TINY_NET = {"channels": [4, 4, 8], "z_dim": 4, "spade_channels": 4, "d_channels": 4, "d_layers": 2, "d_scales": 2}
REPO = Path(__file__).resolve().parents[2]
CPU = torch.device("cpu")
DP_LOSS = {"feature_matching_weight": 0.0, "reconstruction_weight": 0.0}


def tiny_dp(manifest, privacy=None, **overrides) -> TrainConfig:
    data = {
        "manifest": str(manifest),
        "network": TINY_NET,
        "steps": 3,
        "log_every": 1,
        "preview_every": 100,
        "checkpoint_every": 2,
        "precision": "fp32",  # CPU bf16 kernels take seconds to warm up; the DP update is fp32 anyway
        "loss": DP_LOSS,
        "privacy": {"enabled": True, "noise_multiplier": 1.0, **(privacy or {})},
        **overrides,
    }
    return from_dict(TrainConfig, data)


def _rows(path):
    with open(path) as f:
        return [{k: v for k, v in r.items() if k != "seconds"} for r in csv.DictReader(f)]


@pytest.fixture(scope="module")
def dp_run(prepared_phantoms, tmp_path_factory) -> tuple[Path, str]:
    """`medsynth train` on configs/gan_tiny.yaml with privacy on, 3 steps: (run folder, printed output)."""
    run = tmp_path_factory.mktemp("dp") / "run"
    argv = ["train", "--config", str(REPO / "configs" / "gan_tiny.yaml"), "-o", str(run)]
    overrides = [f"manifest={prepared_phantoms}", "steps=3", "precision=fp32", "preview_every=100"]
    overrides += ["loss.feature_matching_weight=0", "loss.reconstruction_weight=0"]
    overrides += ["privacy.enabled=true", "privacy.noise_multiplier=1.0"]
    output = io.StringIO()
    with contextlib.redirect_stdout(output):
        assert main([*argv, *overrides]) == 0
    return run, output.getvalue()


def test_dp_training_runs_on_tiny_config_and_reports_epsilon(dp_run):
    """Epsilon in the log (every step), the checkpoint, generator.pt and the command's output."""
    run, printed = dp_run
    path = run / "generator.pt"
    rows = _rows(run / "log.csv")
    epsilons = [float(r["epsilon"]) for r in rows]
    assert len(rows) == 3 and all(math.isfinite(e) and e > 0 for e in epsilons)
    assert epsilons == sorted(epsilons) and epsilons[0] < epsilons[-1]
    assert "reconstruction_l1" not in rows[0]  # the generator never sees a real image
    expected = epsilon_spent(1.0, 1 / 3, 3, 1e-5)  # batch 1 of the 3 training phantoms
    assert epsilons[-1] == pytest.approx(expected, rel=1e-5)
    report = checkpoint.load(path)["training"]["privacy"]
    assert report["epsilon"] == pytest.approx(expected)
    assert report["steps"] == 3 and report["delta"] == 1e-5 and report["sample_rate"] == pytest.approx(1 / 3)
    assert report["noise_seed"].startswith("secret") and "seed" not in report
    assert "label maps" in report["covers"] and "not protected" in report["covers"]
    state = torch.load(run / "checkpoint.pt", weights_only=True)
    assert state["training"]["privacy"]["epsilon"] == pytest.approx(expected)
    assert state["privacy_state"]["history"] == [[1.0, pytest.approx(1 / 3), 3]]
    assert isinstance(state["privacy_state"]["seed"], int)
    assert medsynth.load_generator(path).training["privacy"]["epsilon"] == pytest.approx(expected)
    assert describe(report).startswith(f"({expected:.3g}, 1e-05)-differentially private after 3 steps")
    assert f"privacy: ({expected:.3g}, 1e-05)-differentially private" in printed


def test_dataset_card_states_the_guarantee_or_its_absence(dp_run):
    from medsynth.cohort.finalize import _privacy_paragraph

    assert "not trained with differential privacy" in _privacy_paragraph(None)
    report = checkpoint.load(dp_run[0] / "generator.pt")["training"]["privacy"]
    paragraph = _privacy_paragraph(report)
    assert paragraph.startswith(f"Differential privacy: the generator's training was ({report['epsilon']:.3g}, 1e-05)")
    assert "the membership they reveal are not protected" in paragraph
    assert "Not covered: the label maps a cohort is generated from" in paragraph


def test_epsilon_grows_with_steps_and_falls_with_noise():
    by_steps = [epsilon_spent(1.0, 0.1, steps, 1e-5) for steps in (10, 100, 1000)]
    by_noise = [epsilon_spent(sigma, 0.1, 100, 1e-5) for sigma in (0.8, 1.5, 4.0)]
    assert by_steps == sorted(by_steps) and by_steps[0] < by_steps[-1]
    assert by_noise == sorted(by_noise, reverse=True) and by_noise[0] > by_noise[-1]
    assert epsilon_spent(1.0, 0.1, 0, 1e-5) == 0.0
    sigma = noise_multiplier_for(2.0, 1e-5, 0.1, 100)
    assert epsilon_spent(sigma, 0.1, 100, 1e-5) <= 2.0 < epsilon_spent(0.9 * sigma, 0.1, 100, 1e-5)


def test_target_epsilon_solves_the_noise_multiplier(prepared_phantoms, tmp_path):
    config = tiny_dp(prepared_phantoms, {"noise_multiplier": None, "target_epsilon": 20.0}, steps=1)
    report = checkpoint.load(run_train(config, tmp_path / "run", progress=False))["training"]["privacy"]
    assert report["epsilon"] <= 20.0
    assert report["noise_multiplier"] == pytest.approx(noise_multiplier_for(20.0, 1e-5, 1 / 3, 1))


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"model": "vae", "loss": {**DP_LOSS, "adversarial_weight": 0.0}}, "model: gan"),
        ({"loss": {"feature_matching_weight": 10.0, "reconstruction_weight": 0.0}}, "feature_matching_weight: 0"),
        ({"loss": {"feature_matching_weight": 0.0, "reconstruction_weight": 1.0}}, "reconstruction_weight: 0"),
        ({"loss": {**DP_LOSS, "adversarial": "wgan-gp"}}, "wgan-gp"),
        ({"loss": {**DP_LOSS, "adversarial_weight": 0.0}}, "adversarial_weight > 0"),
        ({"privacy": {"enabled": True}}, "exactly one of noise_multiplier and target_epsilon"),
        ({"privacy": {"enabled": True, "noise_multiplier": 1.0, "target_epsilon": 3.0}}, "exactly one"),
        ({"privacy": {"enabled": True, "noise_multiplier": 0.0}}, "noise_multiplier must be > 0"),
        ({"privacy": {"enabled": True, "noise_multiplier": 1.0, "delta": 0.0}}, r"delta must be in \(0, 1\)"),
        ({"privacy": {"enabled": True, "noise_multiplier": 1.0, "max_grad_norm": -1.0}}, "max_grad_norm"),
    ],
)
def test_invalid_combinations_are_clear_errors(prepared_phantoms, overrides, match):
    data = {"manifest": str(prepared_phantoms), "loss": DP_LOSS, "privacy": {"enabled": True, "noise_multiplier": 1.0}}
    with pytest.raises(ConfigError, match=match):
        from_dict(TrainConfig, {**data, **overrides})


@pytest.mark.parametrize(
    ("privacy", "overrides", "match"),
    [
        ({"delta": 0.5}, {}, r"below 1 / 3 training cases"),
        ({}, {"batch_size": 4}, "exceeds the 3 training case"),
    ],
)
def test_refusals_that_need_the_data(prepared_phantoms, tmp_path, privacy, overrides, match):
    with pytest.raises(MedsynthError, match=match):
        run_train(tiny_dp(prepared_phantoms, privacy, **overrides), tmp_path / "run", progress=False)


def test_dp_resume_reproduces_uninterrupted_run(prepared_phantoms, tmp_path):
    config = tiny_dp(prepared_phantoms, {"noise_seed": 7}, steps=3)
    run_train(config, tmp_path / "full", progress=False)
    run_train(config, tmp_path / "split", progress=False, stop_at=2)
    run_train(config, tmp_path / "split", resume=True, progress=False)
    assert _rows(tmp_path / "full" / "log.csv") == _rows(tmp_path / "split" / "log.csv")
    a, b = (checkpoint.load(tmp_path / run / "generator.pt") for run in ("full", "split"))
    assert all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"])
    assert a["training"]["privacy"] == b["training"]["privacy"]
    assert a["training"]["privacy"]["steps"] == 3 and "voids the guarantee" in a["training"]["privacy"]["noise_seed"]


def test_conditioning_manifest_must_be_other_subjects(prepared_phantoms, tmp_path):
    manifest = json.loads(prepared_phantoms.read_text())
    renamed = prepared_phantoms.parent / "public_label_maps.json"
    for key in ("training", "validation"):
        for entry in manifest.get(key, []):
            entry["case_id"] = "public_" + entry["case_id"]
    renamed.write_text(json.dumps(manifest))
    report = checkpoint.load(
        run_train(
            tiny_dp(prepared_phantoms, {"conditioning_manifest": str(renamed)}, steps=1),
            tmp_path / "public",
            progress=False,
        )
    )["training"]["privacy"]
    assert report["covers"].startswith("each training case (image and label map)")
    with pytest.raises(MedsynthError, match="shares case"):
        run_train(
            tiny_dp(prepared_phantoms, {"conditioning_manifest": str(prepared_phantoms)}, steps=1),
            tmp_path / "same",
            progress=False,
        )


@pytest.mark.parametrize("kind", ["hinge", "least_squares"])
def test_per_sample_loss_matches_the_batch_loss(kind):
    real = [torch.randn(3, 1, 4, 4, 4), torch.randn(3, 1, 2, 2, 2)]
    fake = [torch.randn(3, 1, 4, 4, 4), torch.randn(3, 1, 2, 2, 2)]
    rows = torch.cat([patch_loss_per_sample(kind, real, True), patch_loss_per_sample(kind, fake, False)])
    assert rows.shape == (6,)
    assert rows.mean().item() == pytest.approx(discriminator_loss(kind, real, fake).item(), rel=1e-5)
    assert patch_loss_per_sample(kind, [r[:0] for r in real], True).shape == (0,)


def test_each_case_gradient_is_exact_and_clipped(prepared_phantoms):
    """Opacus' per-sample gradients of the 3D discriminator equal one-case backward passes; the sum is clipped."""
    config = tiny_dp(prepared_phantoms, {"noise_seed": 1, "max_grad_norm": 1e-3, "noise_multiplier": 1e-9})
    data = load_training_set(config.manifest, config.splits)
    torch.manual_seed(0)
    dp = PrivateDiscriminator(config, data, PatchDiscriminatorStep.build(config, data, Placement(CPU)), world=1)
    batch = dp.draw_batch(data)
    assert batch.images is None  # the generator's conditioning carries no real image
    fake = torch.randn(1, len(data.modalities), *data.grid)
    params = list(dp.network.parameters())
    # the synthetic row alone, by plain autograd, before the update changes the weights
    logits, _ = dp.network(torch.cat([fake, batch.seg], 1))
    patch_loss_per_sample("hinge", logits, target_is_real=False).sum().backward()
    synthetic_gradient = [p.grad.clone() for p in params]
    assert set(dp.update(0, batch, Synthesis(fake, fake, batch.seg))) == {"d"}
    per_sample = [p.grad_sample for p in params]
    assert all(
        torch.allclose(g[-1], r, atol=1e-6, rtol=1e-4) for g, r in zip(per_sample, synthetic_gradient, strict=True)
    )
    norms = torch.stack([g.flatten(1).norm(dim=1) for g in per_sample], 1).norm(dim=1)
    assert (norms > 1e-3).all()  # every row is clipped at this bound
    factor = (1e-3 / (norms + 1e-6)).clamp(max=1)
    for p, g in zip(params, per_sample, strict=True):
        assert torch.allclose(p.summed_grad, torch.einsum("i,i...", factor, g), rtol=1e-5, atol=1e-10)


def test_missing_opacus_is_a_clear_error(prepared_phantoms, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "opacus", None)  # makes `import opacus` raise ImportError
    with pytest.raises(MedsynthError, match=r"pip install 'medsynth\[privacy\]'"):
        run_train(tiny_dp(prepared_phantoms, steps=1), tmp_path / "run", progress=False)
