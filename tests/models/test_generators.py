"""Generators: network shapes, losses, exact resume, safe checkpoints, synthesis API, DDP."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

import medsynth
from medsynth.config import from_dict
from medsynth.data.scheme import MODEL_CLASSES
from medsynth.errors import MedsynthError
from medsynth.models import checkpoint
from medsynth.models.config import ModelConfig, TrainConfig
from medsynth.models.networks import MultiScaleDiscriminator, build_generator
from medsynth.models.train import run_train

TINY_NET = {
    "channels": [4, 4, 8],
    "z_dim": 4,
    "spade_channels": 4,
    "refine_channels": 4,
    "d_channels": 4,
    "d_layers": 2,
    "d_scales": 2,
}
REPO = Path(__file__).resolve().parents[2]


def tiny(manifest, **overrides) -> TrainConfig:
    data = {
        "manifest": str(manifest),
        "network": TINY_NET,
        "steps": 4,
        "log_every": 1,
        "preview_every": 2,
        "checkpoint_every": 2,
        **overrides,
    }
    return from_dict(TrainConfig, data)


@pytest.mark.parametrize(
    ("kind", "shape", "expected"),
    [("gan", (16, 16, 16), (2, 3, 16, 16, 16)), ("vae", (16, 24, 16), (2, 3, 16, 24, 16))],
)
def test_generator_shapes(kind, shape, expected):
    net = build_generator(kind, from_dict(ModelConfig, TINY_NET), 3, MODEL_CLASSES, shape)
    seg = torch.zeros(2, MODEL_CLASSES, *shape)
    seg[:, 2] = 1
    if kind == "gan":
        out = net(seg, torch.randn(2, 4))
    else:
        out, mu, logvar = net(seg, torch.randn(2, 3, *shape))
        assert mu.shape == logvar.shape == (2, 4)
    assert out.shape == expected


def test_discriminator_scales_and_features():
    disc = MultiScaleDiscriminator(3 + MODEL_CLASSES, from_dict(ModelConfig, TINY_NET))
    logits, features = disc(torch.randn(1, 3 + MODEL_CLASSES, 32, 32, 32))
    assert len(logits) == 2 and logits[1].shape[-1] < logits[0].shape[-1]
    assert len(features) >= 2


def test_grid_not_divisible_is_clear():
    with pytest.raises(ValueError, match="divisible"):
        build_generator("gan", from_dict(ModelConfig, TINY_NET), 2, MODEL_CLASSES, (20, 16, 16))


def _rows(path):
    with open(path) as f:
        return [{k: v for k, v in r.items() if k != "seconds"} for r in csv.DictReader(f)]


# the VAE case with the shipped VAE's class-balanced L1
VAE_SHIPPED = {"loss": {"class_balance": 0.5}}


@pytest.mark.parametrize(("model", "overrides"), [("gan", {}), ("vae", VAE_SHIPPED)])
def test_resume_reproduces_uninterrupted_run(prepared_phantoms, tmp_path, model, overrides):
    config = tiny(prepared_phantoms, model=model, **overrides)
    run_train(config, tmp_path / "full", progress=False)
    run_train(config, tmp_path / "split", progress=False, stop_at=2)
    assert not (tmp_path / "split" / "generator.pt").exists()
    run_train(config, tmp_path / "split", resume=True, progress=False)
    assert _rows(tmp_path / "full" / "log.csv") == _rows(tmp_path / "split" / "log.csv")
    a = checkpoint.load(tmp_path / "full" / "generator.pt")["state_dict"]
    b = checkpoint.load(tmp_path / "split" / "generator.pt")["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    for name in ("config.yaml", "checkpoint.pt", "previews/step_000004.png"):
        assert (tmp_path / "full" / name).exists(), name


@pytest.mark.parametrize("adversarial", ["least_squares", "wgan-gp"])
def test_other_adversarial_losses_train(prepared_phantoms, tmp_path, adversarial):
    config = tiny(prepared_phantoms, steps=2, loss={"adversarial": adversarial})
    run_train(config, tmp_path / adversarial, progress=False)
    rows = _rows(tmp_path / adversarial / "log.csv")
    assert len(rows) == 2 and all(np.isfinite(float(r["d"])) for r in rows)
    if adversarial == "wgan-gp":
        assert "gradient_penalty" in rows[0]


def test_class_balanced_weights_hand_built():
    from medsynth.models.losses import class_balanced_weights

    labels = torch.tensor([[0, 0, 1, 1, 1, 1, 1, 1, 6, 6]]).view(1, 10, 1, 1)  # 6 voxels of class 1, 2 of class 6
    flat = class_balanced_weights(labels, 1.0).flatten()
    assert flat[:2].tolist() == [0, 0]  # background
    assert float(flat[2:].mean()) == pytest.approx(1.0)  # mean 1 in the brain
    assert float(flat[2:8].sum()) == pytest.approx(float(flat[8:].sum()))  # exponent 1: equal weight per class
    assert torch.equal(class_balanced_weights(labels, 0.0), (labels > 0).float().unsqueeze(1))
    half = class_balanced_weights(labels, 0.5).flatten()
    assert float(half[8] / half[2]) == pytest.approx(3**0.5)  # (6 / 2) ** 0.5


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"loss": {"class_balance": -1}}, "class_balance"),
        ({"loss": {"kl_weight": -1}}, "kl_weight"),
        ({"loss": {"augment": ["rotation"]}}, "loss.augment: unknown \\['rotation'\\]"),
        ({"network": {**TINY_NET, "style": True, "decoder": "monai"}}, "style needs network.decoder: refined"),
    ],
)
def test_bad_loss_and_augment_settings_are_refused(prepared_phantoms, overrides, message):
    with pytest.raises(MedsynthError, match=message):
        tiny(prepared_phantoms, **overrides)


def test_mode_seeking_loss_hand_built():
    from medsynth.models.losses import mode_seeking_loss

    z1, z2 = torch.zeros(1, 4), torch.ones(1, 4)  # mean |z1 - z2| = 1
    image = torch.zeros(1, 2, 4, 4, 4)
    assert float(mode_seeking_loss(image, image, z1, z2)) == pytest.approx(1e5)  # same image: maximal penalty
    assert float(mode_seeking_loss(image, image + 2, z1, z2)) == pytest.approx(0.5, rel=1e-4)
    assert mode_seeking_loss(image, image + 4, z1, z2) < mode_seeking_loss(image, image + 2, z1, z2)


@pytest.mark.parametrize("model", ["gan", "vae"])
def test_mode_seeking_term_trains_and_is_logged(prepared_phantoms, tmp_path, model):
    with pytest.raises(MedsynthError, match=r"needs loss\.adversarial_weight > 0"):
        tiny(prepared_phantoms, model="vae", loss={"diversity_weight": 1.0, "adversarial_weight": 0.0})
    config = tiny(prepared_phantoms, model=model, steps=2, loss={"diversity_weight": 1.0, "adversarial_weight": 1.0})
    run_train(config, tmp_path / "ms", progress=False)
    rows = _rows(tmp_path / "ms" / "log.csv")
    assert len(rows) == 2 and all(np.isfinite(float(r["mode_seeking"])) for r in rows)
    assert all(np.isfinite(float(r["g_adversarial"])) for r in rows)


def test_vae_prior_branch_matches_spadenet():
    """ConditionalVAE decodes reconstruction and prior draws in one pass, as SPADENet would separately."""
    net = build_generator("vae", from_dict(ModelConfig, TINY_NET), 2, MODEL_CLASSES, (16, 16, 16)).eval()
    seg = torch.nn.functional.one_hot(torch.randint(0, MODEL_CLASSES, (1, 16, 16, 16)), MODEL_CLASSES)
    seg = seg.permute(0, 4, 1, 2, 3).float()
    image, z_prior = torch.randn(1, 2, 16, 16, 16), torch.randn(2, 4)
    torch.manual_seed(0)
    reconstruction, mu, _, prior = net(seg, image, z_prior)
    torch.manual_seed(0)
    expected, expected_mu, _ = net(seg, image)
    assert torch.allclose(reconstruction, expected, atol=1e-5) and torch.equal(mu, expected_mu)
    assert prior.shape == (2, 2, 16, 16, 16)
    assert torch.allclose(prior[1:], net.decode(seg, z_prior[1:]), atol=1e-5)


def test_checkpoint_is_weights_only_and_complete(prepared_phantoms, tmp_path):
    run_train(tiny(prepared_phantoms, steps=2), tmp_path / "run", progress=False)
    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert {"generator", "discriminator", "opt_g", "opt_d", "sched_g", "sched_d", "step", "torch_rng", "config"} <= set(
        state
    )
    assert state["step"] == 2


def test_refuses_to_overwrite_or_resume_other_config(prepared_phantoms, tmp_path):
    config = tiny(prepared_phantoms, steps=2)
    run_train(config, tmp_path / "run", progress=False)
    with pytest.raises(MedsynthError, match="--resume"):
        run_train(config, tmp_path / "run", progress=False)
    with pytest.raises(MedsynthError, match="different config"):
        run_train(tiny(prepared_phantoms, steps=2, lr_generator=1e-3), tmp_path / "run", resume=True, progress=False)


def test_foreign_checkpoint_is_a_clear_error(tmp_path):
    torch.save({"weights": torch.zeros(2)}, tmp_path / "x.pt")
    with pytest.raises(MedsynthError, match="not a medsynth generator"):
        medsynth.load_generator(tmp_path / "x.pt")
    (tmp_path / "y.pt").write_bytes(b"garbage")
    with pytest.raises(MedsynthError, match="cannot load checkpoint safely"):
        medsynth.load_generator(tmp_path / "y.pt")


def test_synthesize_api(tiny_generator, prepared_phantoms, tmp_path):
    gen = medsynth.load_generator(tiny_generator)
    label_path = next(prepared_phantoms.parent.rglob("*_label_map.nii.gz"))
    result = gen.synthesize(label_path, seed=3)
    label = nib.load(str(label_path))
    assert result.images.shape == (2, 48, 48, 48) and result.modalities == ["t1c", "flair"]
    assert np.allclose(result.affine, label.affine)
    assert np.all(result.images[:, np.asarray(label.dataobj) == 0] == 0)
    again = gen.synthesize(label_path, seed=3)
    other = gen.synthesize(label_path, seed=4)
    assert np.array_equal(result.images, again.images)
    assert not np.array_equal(result.images, other.images)
    batch = gen.synthesize(np.stack([np.asarray(label.dataobj)] * 2), seed=3)
    assert batch.images.shape == (2, 2, 48, 48, 48)
    assert np.allclose(batch.images[0], result.images, atol=1e-5)
    paths = result.save(tmp_path / "case")
    written = nib.load(str(paths[0]))
    assert np.allclose(written.affine, label.affine) and written.shape == (48, 48, 48)
    with pytest.raises(MedsynthError, match="does not match the generator's grid"):
        gen.synthesize(np.zeros((10, 10, 10), np.int64))


def test_latent_usage_reads_the_vae_encoder(tiny_generator, prepared_phantoms):
    from medsynth.models.evaluate import latent_usage

    gen = medsynth.load_generator(tiny_generator, precision="fp32")
    label_path = next(prepared_phantoms.parent.rglob("*_label_map.nii.gz"))
    label = np.asarray(nib.load(str(label_path)).dataobj).astype(np.int64)
    images = np.random.default_rng(0).normal(size=(2, *label.shape)).astype(np.float32) * (label > 0)
    usage = latent_usage(gen, images, label)
    assert usage["kl_nats"] > 0 and np.isfinite(usage["kl_nats"])
    # MONAI's SPADE encoder instance-normalises every layer, so global contrast cannot move its output
    assert usage["contrast_response"] < 1e-3
    noise = latent_usage(gen, np.random.default_rng(1).normal(size=images.shape).astype(np.float32), label)
    assert noise["kl_nats"] != pytest.approx(usage["kl_nats"])  # but the image content does


def test_synthesize_precision(tiny_generator, prepared_phantoms):
    label_path = next(prepared_phantoms.parent.rglob("*_label_map.nii.gz"))
    fp32 = medsynth.load_generator(tiny_generator, precision="fp32")
    bf16 = medsynth.load_generator(tiny_generator, precision="bf16")
    assert (fp32.precision, bf16.precision) == ("fp32", "bf16")
    assert medsynth.load_generator(tiny_generator).precision in ("fp32", "bf16")  # auto: what the hardware runs
    a, b = fp32.synthesize(label_path, seed=1).images, bf16.synthesize(label_path, seed=1).images
    assert a.dtype == b.dtype == np.float32
    assert not np.array_equal(a, b)  # bf16 really ran
    assert np.abs(a - b).max() < 0.1 * (np.abs(a).max() + 1e-6)
    with pytest.raises(MedsynthError, match="precision must be"):
        medsynth.load_generator(tiny_generator, precision="fp16")


@pytest.mark.slow
@pytest.mark.parametrize(
    ("model", "overrides", "port"), [("gan", ["loss.diversity_weight=0.3"], 29517), ("vae", [], 29518)]
)
def test_torchrun_two_cpu_processes(prepared_phantoms, tmp_path, model, overrides, port):
    """DDP on CPU, gloo backend: 2 processes train a tiny GAN (mode-seeking term on) or VAE into one generator."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        str(port),
        "-m",
        "medsynth.cli",
        "train",
        "--config",
        str(REPO / "configs" / f"{model}_tiny.yaml"),
        "-o",
        str(tmp_path / "ddp"),
        f"manifest={prepared_phantoms}",
        "steps=2",
        *overrides,
    ]
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "ddp" / "generator.pt").exists()
    assert len(_rows(tmp_path / "ddp" / "log.csv")) == 2


@pytest.mark.parametrize("kind", ["gan", "vae"])
def test_refined_decoder_reads_the_label_map_at_full_resolution(kind):
    """MONAI's decoder sees the label map at half resolution at most; the refined one at every voxel.

    A label changed at an odd voxel vanishes in MONAI's nearest 2x downsampling of the map, so
    its output does not move at all; the refined decoder's output moves at that voxel.
    """
    torch.manual_seed(0)
    seg = torch.zeros(1, MODEL_CLASSES, 16, 16, 16)
    seg[:, 3] = 1
    changed = seg.clone()
    changed[0, :, 5, 5, 5] = 0
    changed[0, 6, 5, 5, 5] = 1
    moved = {}
    for decoder in ("monai", "refined"):
        net = build_generator(
            kind, from_dict(ModelConfig, {**TINY_NET, "decoder": decoder}), 2, MODEL_CLASSES, seg.shape[2:]
        )
        decode = net if kind == "gan" else net.decode
        with torch.no_grad():
            z = torch.randn(1, 4)
            moved[decoder] = (decode(changed, z) - decode(seg, z)).abs()[0, :, 5, 5, 5].max().item()
    assert moved["monai"] == 0.0
    assert moved["refined"] > 1e-4


@pytest.mark.parametrize("kind", ["gan", "vae"])
def test_style_modulation_passes_the_latent_to_every_voxel(kind):
    """``network.style``: the latent scales full-resolution features, so it can set global contrast.

    It starts as the identity (a new network decodes as one without it); once its weights move, two
    latents give images whose difference is not only a coarse pattern: it reaches each voxel's contrast.
    """
    seg = torch.zeros(1, MODEL_CLASSES, 16, 16, 16)
    seg[:, 3] = 1
    seg[0, 3, 4:12, 4:12, 4:12], seg[0, 6, 4:12, 4:12, 4:12] = 0, 1
    torch.manual_seed(0)
    outputs, weights = {}, None
    z = torch.randn(2, 4)
    for style in (False, True):
        net = build_generator(kind, from_dict(ModelConfig, {**TINY_NET, "style": style}), 2, MODEL_CLASSES, (16,) * 3)
        if weights is None:
            weights = net.state_dict()
        missing = net.load_state_dict(weights, strict=False).missing_keys  # the same weights, plus the style layer
        assert all(".style." in key for key in missing) and len(missing) == 2 * style
        decode = net if kind == "gan" else net.decode
        with torch.no_grad():
            outputs[style] = decode(seg.repeat(2, 1, 1, 1, 1), z)
            refine = (net if kind == "gan" else net.decoder).refine
            if style:
                torch.nn.init.normal_(refine.style.weight, std=1.0)
                outputs["moved"] = decode(seg.repeat(2, 1, 1, 1, 1), z)
    torch.testing.assert_close(outputs[True], outputs[False])  # identity at initialisation
    contrast = [(image[:, 4:12, 4:12, 4:12].mean() - image[:, :4].mean()).item() for image in outputs["moved"]]
    before = [(image[:, 4:12, 4:12, 4:12].mean() - image[:, :4].mean()).item() for image in outputs[False]]
    assert abs(contrast[0] - contrast[1]) > 3 * abs(before[0] - before[1]) + 1e-3


def test_generators_saved_before_the_refined_decoder_still_load(tmp_path):
    """A generator saved before ``network.decoder`` existed is rebuilt with MONAI's decoder (as shipped in 0.1)."""
    from medsynth.models.config import LEGACY_NETWORK
    from medsynth.models.generator import Generator

    legacy = {key: value for key, value in TINY_NET.items() if key != "refine_channels"}
    net = build_generator("gan", from_dict(ModelConfig, {**legacy, **LEGACY_NETWORK}), 2, MODEL_CLASSES, (16, 16, 16))
    state = {
        "kind": "gan",
        "modalities": ["t1c", "flair"],
        "grid": [16, 16, 16],
        "spacing_mm": [4.0, 4.0, 4.0],
        "network": legacy,
        "state_dict": net.state_dict(),
    }
    generator = Generator(state, device="cpu", precision="fp32")
    assert generator.network.decoder == "monai"
    with pytest.raises(MedsynthError, match="do not fit"):
        Generator({**state, "network": {**legacy, "decoder": "refined"}}, device="cpu", precision="fp32")
