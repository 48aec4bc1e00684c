"""Training configs of the generators (``configs/gan_*.yaml``, ``configs/vae_*.yaml``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from medsynth.models import augment


@dataclass
class ModelConfig:
    """Network sizes (MONAI SPADE decoder/encoder, PatchGAN discriminator)."""

    channels: list[int] = field(default_factory=lambda: [16, 16, 32, 32])  # widths, full resolution to deepest
    z_dim: int = 16  # style latent (VAE) / noise (GAN) size
    spade_channels: int = 16  # hidden width of every SPADE block (MONAI default 128 is too slow on CPU)
    d_channels: int = 16  # discriminator base width
    d_layers: int = 3  # discriminator depth (receptive field ~ 2**layers * 4 voxels)
    d_scales: int = 2  # discriminators on the full and on 2x, 4x... downsampled inputs
    # How the decoder reaches full resolution. MONAI's SPADE decoder ends with its last block at half
    # resolution (already at the image's channel count), a nearest 2x upsampling and one convolution: the
    # image is a 2-voxel-block picture, the label map never acts at full resolution (issue #20: alternate
    # steps 1.2-1.6x, 4-8 mm detail 0.06-0.3x real). "refined": trilinear upsampling, the last block keeps
    # `channels[0]` features, and a SPADE residual block at full resolution draws the image from them and
    # the label map. "monai": the decoder as MONAI builds it (the generators shipped before 0.2).
    decoder: Literal["refined", "monai"] = "refined"
    refine_channels: int = 8  # width of the full-resolution part of the refined decoder (and of its SPADE layers)
    # The latent also scales and shifts the refined decoder's full-resolution features, per channel (a style
    # modulation as in StyleGAN's AdaIN / SEAN). Without it the latent enters once, as the deepest feature map, which
    # every SPADE block then instance-normalises: no global intensity or tissue contrast can pass from it to the
    # image, and VAE samples of one label map were alike (MS-SSIM 0.996; issue #20). Needs decoder: refined.
    style: bool = False

    def __post_init__(self) -> None:
        if self.style and self.decoder != "refined":
            raise ValueError("network.style needs network.decoder: refined")


# ModelConfig keys added since generators were first saved, with the value that rebuilds the old network
LEGACY_NETWORK = {"decoder": "monai"}


@dataclass
class LossConfig:
    adversarial: Literal["hinge", "least_squares", "wgan-gp"] = "hinge"
    adversarial_weight: float = 1.0  # GAN; for the VAE 0 disables the discriminator
    gradient_penalty_weight: float = 10.0  # only with wgan-gp
    feature_matching_weight: float = 10.0  # L1 between discriminator features of real and fake
    reconstruction_weight: float = 10.0  # L1 between image and synthesis inside the brain
    kl_weight: float = 0.01  # VAE only
    # Reconstruction voxels weighted by class frequency ** -class_balance (losses.class_balanced_weights):
    # 0 = every brain voxel alike; 0.5 lets small tumor classes (enhancing tumor ~0.3 % of the brain) count.
    class_balance: float = 0.0

    # Mode-seeking term (Mao et al. 2019, MSGAN): two noise draws per label map, loss
    # 1 / (mean |G(s, z1) - G(s, z2)| / mean |z1 - z2|). L1 reconstruction alone pulls every draw
    # to the conditional mean (reports/generators.md: MS-SSIM 0.996 between samples). 0 disables.
    # On the VAE it acts on two prior draws, the first of which is also trained like the GAN's noise
    # draw (L1, feature matching, discriminator): a VAE-GAN with a prior branch; needs adversarial_weight > 0.
    diversity_weight: float = 0.0
    # Differentiable augmentation of the discriminator's real and synthetic inputs (medsynth.models.augment,
    # DiffAugment): any of translation, cutout, intensity. With four training subjects and none, the discriminator
    # learns the real scans by heart within ~200 steps (hinge loss ~0.001) and the images blur (issue #20).
    augment: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        for name, value in vars(self).items():
            if name not in ("adversarial", "augment") and value < 0:
                raise ValueError(f"loss.{name} must be >= 0, got {value}")
        augment.check(self.augment)


@dataclass
class PrivacyConfig:
    """DP-SGD on the discriminator (GAN only); see :mod:`medsynth.models.privacy` for what it covers."""

    enabled: bool = False
    noise_multiplier: float | None = None  # Gaussian noise std / max_grad_norm; or set target_epsilon instead
    target_epsilon: float | None = None  # solve the noise multiplier that spends this epsilon in `steps` steps
    max_grad_norm: float = 1.0  # per-case clipping bound of the discriminator's gradient (L2, all parameters)
    delta: float = 1e-5  # the delta of (epsilon, delta); must be below 1 / (number of training cases)
    # None: a secret seed from the OS for the Poisson sampling and the noise, kept only in checkpoint.pt.
    # An int makes runs reproducible, but anyone who knows it can regenerate the noise: tests only.
    noise_seed: int | None = None
    # Prepared manifest of other subjects (public or consenting) whose label maps, all splits, condition
    # the generator instead of the training label maps; "" = the training label maps, which the
    # guarantee then does not cover.
    conditioning_manifest: str = ""

    def __post_init__(self) -> None:
        if not self.enabled:
            return
        if (self.noise_multiplier is None) == (self.target_epsilon is None):
            raise ValueError("privacy: set exactly one of noise_multiplier and target_epsilon")
        if self.noise_multiplier is not None and self.noise_multiplier <= 0:
            raise ValueError(f"privacy.noise_multiplier must be > 0, got {self.noise_multiplier}")
        if self.target_epsilon is not None and self.target_epsilon <= 0:
            raise ValueError(f"privacy.target_epsilon must be > 0, got {self.target_epsilon}")
        if self.max_grad_norm <= 0:
            raise ValueError(f"privacy.max_grad_norm must be > 0, got {self.max_grad_norm}")
        if not 0 < self.delta < 1:
            raise ValueError(f"privacy.delta must be in (0, 1), got {self.delta}")


@dataclass
class TrainConfig:
    """Everything a training run needs; written resolved as ``config.yaml`` beside its output.

    Args:
        model: ``gan`` or ``vae``.
        manifest: prepared manifest with the training subjects; ``splits``: which of its splits train.
        modalities: the manifest's modalities the generator synthesizes (``[]``: all).
        network, loss: architecture and loss weights (:class:`ModelConfig`, :class:`LossConfig`).
        steps, batch_size, lr_generator, lr_discriminator: the optimisation.
        precision: ``auto`` (bf16 where native), ``fp32`` or ``bf16``; ``device``: ``auto``, ``cpu``, ``cuda[:N]``.
        seed: every step is seeded from (seed, rank, step).
        (the other fields: see their comments)

    >>> from medsynth.config import load_config
    >>> config = load_config(TrainConfig, "configs/gan_tiny.yaml", ["manifest=prepared/manifest.json", "steps=2"])
    >>> config.model, config.steps, config.loss.adversarial
    ('gan', 2, 'hinge')
    """

    model: Literal["gan", "vae"] = "gan"
    manifest: str = ""  # prepared manifest (``medsynth prepare``) with the training subjects
    splits: list[Literal["train", "validation", "test"]] = field(default_factory=lambda: ["train"])  # training splits
    # Modalities the generator synthesizes, a subset of the manifest's in any order (e.g. [flair] from a t1c+flair
    # manifest: a generator for data sets that have FLAIR only); [] = every modality of the manifest.
    modalities: list[str] = field(default_factory=list)
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
    privacy: PrivacyConfig = field(default_factory=PrivacyConfig)  # differentially private training (DP-SGD)

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_size < 1:
            raise ValueError("steps and batch_size must be >= 1")
        if len(set(self.modalities)) != len(self.modalities):
            raise ValueError(f"modalities {self.modalities} names a modality twice")
        if not self.manifest:
            raise ValueError("manifest: set the prepared manifest to train on (manifest=PATH)")
        if self.loss.adversarial == "wgan-gp" and self.loss.gradient_penalty_weight <= 0:
            raise ValueError("wgan-gp needs gradient_penalty_weight > 0")
        if self.model == "vae" and self.loss.diversity_weight > 0 and self.loss.adversarial_weight <= 0:
            # tried without: with nothing but the term judging prior draws they diverged (PSNR ~0 dB)
            raise ValueError(
                "loss.diversity_weight on the VAE needs loss.adversarial_weight > 0: the discriminator keeps its "
                "prior draws realistic while the term pushes them apart (reports/generators.md)"
            )
        if self.privacy.enabled:
            self._check_privacy()

    def _check_privacy(self) -> None:
        """Refuse the settings that would let real images reach a network without clipping and noise."""
        if self.model != "gan":
            raise ValueError(
                "privacy.enabled needs model: gan (the VAE's encoder reads real images and would need DP-SGD too)"
            )
        if self.loss.adversarial_weight <= 0:
            raise ValueError("privacy.enabled needs loss.adversarial_weight > 0 (the discriminator is what learns)")
        if self.loss.reconstruction_weight != 0:
            raise ValueError(
                "privacy.enabled needs loss.reconstruction_weight: 0 (the L1 term feeds real images into the "
                "generator's gradient without clipping or noise, which voids the guarantee)"
            )
        if self.loss.feature_matching_weight != 0:
            raise ValueError(
                "privacy.enabled needs loss.feature_matching_weight: 0 (feature matching feeds the discriminator's "
                "features of real images into the generator's gradient without clipping or noise)"
            )
        if self.loss.augment:
            raise ValueError(
                "privacy.enabled does not support loss.augment yet (the private discriminator's update draws its own "
                "Poisson batch and would judge unaugmented inputs while the generator's terms see augmented ones)"
            )
        if self.loss.adversarial == "wgan-gp":
            raise ValueError(
                "privacy.enabled does not support loss.adversarial: wgan-gp (its gradient penalty differentiates "
                "through the discriminator twice, which Opacus' per-sample gradient hooks cannot do: Opacus 1.6 fails "
                "with 'pop from empty list'; and each interpolate mixes a real and a synthetic case); use hinge or "
                "least_squares"
            )
