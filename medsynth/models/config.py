"""Training configs of the generators (``configs/gan_*.yaml``, ``configs/vae_*.yaml``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


@dataclass
class ModelConfig:
    """Network sizes (MONAI SPADE decoder/encoder, PatchGAN discriminator)."""

    channels: list[int] = field(default_factory=lambda: [16, 16, 32, 32])  # widths, full resolution to deepest
    z_dim: int = 16  # style latent (VAE) / noise (GAN) size
    spade_channels: int = 16  # hidden width of every SPADE block (MONAI default 128 is too slow on CPU)
    d_channels: int = 16  # discriminator base width
    d_layers: int = 3  # discriminator depth (receptive field ~ 2**layers * 4 voxels)
    d_scales: int = 2  # discriminators on the full and on 2x, 4x... downsampled inputs


@dataclass
class LossConfig:
    adversarial: Literal["hinge", "least_squares", "wgan-gp"] = "hinge"
    adversarial_weight: float = 1.0  # GAN; for the VAE 0 disables the discriminator
    gradient_penalty_weight: float = 10.0  # only with wgan-gp
    feature_matching_weight: float = 10.0  # L1 between discriminator features of real and fake
    reconstruction_weight: float = 10.0  # L1 between image and synthesis inside the brain
    kl_weight: float = 0.01  # VAE only


@dataclass
class TrainConfig:
    """Everything a training run needs; written resolved as ``config.yaml`` beside its output."""

    model: Literal["gan", "vae"] = "gan"
    manifest: str = ""  # prepared manifest (``medsynth prepare``) with the training subjects
    splits: list[str] = field(default_factory=lambda: ["train"])  # which of its splits train the model
    network: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    steps: int = 1000  # optimisation steps (one batch each)
    batch_size: int = 1
    lr_generator: float = 2e-4
    lr_discriminator: float = 2e-4
    betas: tuple[float, float] = (0.5, 0.999)
    lr_decay_start: float = 0.5  # linear decay to 0 from this fraction of the steps
    flip_probability: float = 0.5  # left-right flip of image and label map
    precision: Literal["auto", "fp32", "bf16"] = "auto"  # auto: bf16 on CUDA and on CPUs with native bf16, else fp32
    channels_last: bool = False  # channels_last_3d memory format for the networks (scripts/bench_speed.py)
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    seed: int = 0
    log_every: int = 10
    preview_every: int = 200
    checkpoint_every: int = 200

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_size < 1:
            raise ValueError("steps and batch_size must be >= 1")
        if not self.manifest:
            raise ValueError("manifest: set the prepared manifest to train on (manifest=PATH)")
        if self.loss.adversarial == "wgan-gp" and self.loss.gradient_penalty_weight <= 0:
            raise ValueError("wgan-gp needs gradient_penalty_weight > 0")
