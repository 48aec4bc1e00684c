"""One training step, split by who does what: a generator family's step and a discriminator's step.

``medsynth.models.train`` calls, every step::

    batch = discriminator.draw_batch(data)          # what the generator may see (DP: no real image)
    synthesis = generator.synthesize(batch)          # forward; ``synthesis.judged`` is what gets judged
    losses = discriminator.update(step, batch, synthesis)
    losses.update(generator.generator_step(batch, synthesis, discriminator))

A generator family is a :class:`GeneratorStep` subclass in :data:`GENERATOR_STEPS` (its network,
its forward pass, its own loss terms); the reconstruction, mode-seeking and adversarial terms
are shared. A discriminator step is a :class:`DiscriminatorStep`: none (the base class),
:class:`PatchDiscriminatorStep`, or its DP-SGD variant
:class:`medsynth.models.privacy.PrivateDiscriminator`.
"""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import torch
from torch import nn

from medsynth.data.scheme import MODEL_CLASSES
from medsynth.models import augment
from medsynth.models.config import TrainConfig
from medsynth.models.data import TrainingSet, draw_batch, one_hot
from medsynth.models.losses import (
    class_balanced_weights,
    discriminator_loss,
    feature_matching_loss,
    generator_adversarial_loss,
    gradient_penalty,
    interpolate,
    kl_divergence,
    masked_l1,
    mode_seeking_loss,
)
from medsynth.models.networks import MultiScaleDiscriminator, build_generator


@dataclass(frozen=True)
class Placement:
    """Where and how the networks run: the device, the autocast dtype (None: fp32) and the memory format."""

    device: torch.device
    dtype: torch.dtype | None = None
    memory_format: torch.memory_format = torch.contiguous_format

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)


@dataclass
class Batch:
    """One step's conditioning, on the device."""

    label_maps: torch.Tensor  # (B, X, Y, Z) canonical classes
    seg: torch.Tensor  # (B, K, X, Y, Z) one-hot: what the generator is conditioned on
    brain: torch.Tensor  # (B, 1, X, Y, Z) float mask: the generator's output is 0 outside
    images: torch.Tensor | None  # (B, C, X, Y, Z) the real images; None when the generator may not see them (DP)

    @classmethod
    def on(cls, placement: Placement, label_maps: torch.Tensor, images: torch.Tensor | None = None) -> Batch:
        if images is not None:
            images = images.to(placement.device).contiguous(memory_format=placement.memory_format)
        label_maps = label_maps.to(placement.device)
        seg = one_hot(label_maps).contiguous(memory_format=placement.memory_format)
        return cls(label_maps, seg, (label_maps > 0).unsqueeze(1).float(), images)


@dataclass
class Synthesis:
    """A generator's forward pass: what the losses against the real images and the discriminator judge."""

    fake: torch.Tensor  # (B, C, X, Y, Z) the synthesis of each label map, 0 outside the brain
    judged: torch.Tensor  # (k * B, ...) judged against the real images: ``fake``, then any further draws
    seg: torch.Tensor  # (B, K, X, Y, Z) the batch's one-hot label maps
    draws: tuple[torch.Tensor, torch.Tensor] | None = None  # two draws per label map (mode-seeking term)
    latents: tuple[torch.Tensor, torch.Tensor] | None = None  # the latents of ``draws``
    judged_seg: torch.Tensor = field(init=False)  # the label maps of ``judged``: ``seg`` k times

    def __post_init__(self) -> None:
        self.judged_seg = self.seg.repeat(self.copies, 1, 1, 1, 1)

    @property
    def copies(self) -> int:
        """k: how many images per label map are judged."""
        return self.judged.shape[0] // self.seg.shape[0]


@dataclass
class VaeSynthesis(Synthesis):
    """The VAE's forward pass, with the posterior its KL term needs."""

    mu: torch.Tensor | None = None  # (B, z_dim) the encoder's posterior
    logvar: torch.Tensor | None = None


class LossTerm(NamedTuple):
    """``weight * value`` joins the generator's loss; ``logged`` (default: ``value``) goes to log.csv."""

    name: str
    weight: float
    value: torch.Tensor
    logged: float | None = None


def linear_decay(total: int, start_fraction: float) -> Callable[[int], float]:
    """Learning-rate factor: 1 until ``start_fraction`` of ``total`` steps, then linearly to 0."""
    start = int(total * start_fraction)
    return lambda step: 1.0 if step < start else max(0.0, 1 - (step - start) / max(total - start, 1))


class DiscriminatorStep:
    """The discriminator's side of a step; this base class is the step without one.

    It draws the real batch, updates nothing and adds no term to the generator's loss (the VAE
    at ``loss.adversarial_weight: 0``). Subclasses: :class:`PatchDiscriminatorStep` and its
    DP-SGD variant :class:`medsynth.models.privacy.PrivateDiscriminator`.
    """

    network: nn.Module | None = None  # the weights, for checkpoints
    model: nn.Module | None = None  # what forward passes call: ``network``, or its DDP wrapper under torchrun
    optimizer: torch.optim.Optimizer | None = None
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None

    def __init__(self, config: TrainConfig, placement: Placement) -> None:
        self.config = config
        self.placement = placement

    def draw_batch(self, data: TrainingSet) -> Batch:
        """A batch of training cases from the global RNG (seeded per step)."""
        config = self.config
        images, label_maps = draw_batch(data, config.batch_size, config.flip_probability, torch.default_generator)
        return Batch.on(self.placement, label_maps, images)

    def update(self, step: int, batch: Batch, synthesis: Synthesis) -> dict[str, float]:
        """Update on the real batch and ``synthesis.judged``; returns the losses to log."""
        return {}

    def generator_terms(self, batch: Batch, synthesis: Synthesis) -> list[LossTerm]:
        """What the discriminator adds to the generator's loss (after its update)."""
        return []

    def distribute(self) -> None:
        """Wrap the network for DDP (torchrun)."""

    def log_values(self) -> dict[str, float]:
        """Values logged beside the losses (DP: the epsilon spent so far)."""
        return {}

    def privacy_state(self) -> dict[str, Any] | None:
        """What ``--resume`` needs besides the weights and optimizer (DP: the accountant and the secret seed)."""
        return None

    def privacy_report(self) -> dict[str, Any] | None:
        """The public DP record written into ``generator.pt``; None without DP."""
        return None


class PatchDiscriminatorStep(DiscriminatorStep):
    """The multi-scale PatchGAN discriminator: hinge, least-squares or WGAN-GP, plus feature matching."""

    def __init__(
        self,
        config: TrainConfig,
        placement: Placement,
        network: nn.Module,
        optimizer: torch.optim.Optimizer,
        scheduler: torch.optim.lr_scheduler.LRScheduler,
    ) -> None:
        super().__init__(config, placement)
        self.network = self.model = network
        self.optimizer = optimizer
        self.scheduler = scheduler
        self._augment: augment.AugmentDraw | None = None  # this step's draw, shared by both updates

    def _augmented(self, inputs: torch.Tensor, rows_per_map: int) -> torch.Tensor:
        """``inputs`` (rows_per_map images per label map) through this step's ``loss.augment`` draw."""
        if self._augment is None:
            return inputs
        channels = inputs.shape[1] - MODEL_CLASSES
        return augment.apply(inputs, self._augment.repeat(rows_per_map), channels)

    @classmethod
    def build(cls, config: TrainConfig, data: TrainingSet, placement: Placement) -> PatchDiscriminatorStep:
        """A new discriminator (label map + image in) with its Adam optimizer and learning-rate decay."""
        network = MultiScaleDiscriminator(len(data.modalities) + MODEL_CLASSES, config.network).to(placement.device)
        network = network.to(memory_format=placement.memory_format)
        optimizer = torch.optim.Adam(network.parameters(), lr=config.lr_discriminator, betas=config.betas)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, linear_decay(config.steps, config.lr_decay_start))
        return cls(config, placement, network, optimizer, scheduler)

    def update(self, step: int, batch: Batch, synthesis: Synthesis) -> dict[str, float]:
        loss_cfg = self.config.loss
        losses: dict[str, float] = {}
        # one pass over real, fake (and WGAN-GP interpolates): DDP expects one forward per backward
        self._augment = None
        if loss_cfg.augment:  # one draw per label map, for its real image and its syntheses, in both updates
            grid = tuple(batch.seg.shape[2:])
            n = batch.seg.shape[0]
            self._augment = augment.draw(loss_cfg.augment, n, grid, self.placement.device, torch.default_generator)
        real_input = self._augmented(torch.cat([batch.images, batch.seg], 1), 1)
        fake_input = self._augmented(torch.cat([synthesis.judged.detach(), synthesis.judged_seg], 1), synthesis.copies)
        inputs = [real_input, fake_input]
        if loss_cfg.adversarial == "wgan-gp":
            inputs.append(interpolate(real_input, fake_input[: real_input.shape[0]]))
        with self.placement.autocast():
            logits, _ = self.model(torch.cat(inputs, 0))
        parts = [logit.split([len(i) for i in inputs], 0) for logit in logits]
        d_loss = discriminator_loss(loss_cfg.adversarial, [p[0] for p in parts], [p[1] for p in parts])
        if loss_cfg.adversarial == "wgan-gp":
            penalty = gradient_penalty([p[2] for p in parts], inputs[2])
            d_loss = d_loss + loss_cfg.gradient_penalty_weight * penalty
            losses["gradient_penalty"] = penalty.item()
        self.optimizer.zero_grad(set_to_none=True)
        d_loss.backward()
        self.optimizer.step()
        self.scheduler.step()
        losses["d"] = d_loss.item()
        return losses

    def generator_terms(self, batch: Batch, synthesis: Synthesis) -> list[LossTerm]:
        loss_cfg = self.config.loss
        fake_input = self._augmented(torch.cat([synthesis.judged, synthesis.judged_seg], 1), synthesis.copies)
        fake_logits, fake_features = self.model(fake_input)
        adversarial = generator_adversarial_loss(loss_cfg.adversarial, fake_logits)
        terms = [LossTerm("g_adversarial", loss_cfg.adversarial_weight, adversarial)]
        if loss_cfg.feature_matching_weight > 0:
            with torch.no_grad():
                _, real_features = self.model(self._augmented(torch.cat([batch.images, batch.seg], 1), 1))
            real_features = [f.repeat(synthesis.copies, *([1] * (f.ndim - 1))) for f in real_features]
            matching = feature_matching_loss(real_features, fake_features)
            terms.append(LossTerm("feature_matching", loss_cfg.feature_matching_weight, matching))
        return terms

    def distribute(self) -> None:
        self.model = nn.parallel.DistributedDataParallel(self.network)


class GeneratorStep(ABC):
    """A generator family: its network, its forward pass and its update.

    Subclasses give :meth:`build_network`, :meth:`synthesize` and :meth:`decode`; they may add
    loss terms (:meth:`family_terms`) and say when they need a discriminator.
    """

    def __init__(self, config: TrainConfig, data: TrainingSet, placement: Placement) -> None:
        self.config = config
        self.placement = placement
        network = self.build_network(len(data.modalities), data.grid).to(placement.device)
        self.network = network.to(memory_format=placement.memory_format)  # the weights, for checkpoints
        self.model = self.network  # what forward passes call: ``network``, or its DDP wrapper under torchrun
        self.optimizer = torch.optim.Adam(self.network.parameters(), lr=config.lr_generator, betas=config.betas)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, linear_decay(config.steps, config.lr_decay_start)
        )

    @property
    def needs_discriminator(self) -> bool:
        return self.config.loss.adversarial_weight > 0

    @abstractmethod
    def build_network(self, n_channels: int, grid: tuple[int, int, int]) -> nn.Module:
        """The untrained network for ``n_channels`` modalities on ``grid``."""

    @abstractmethod
    def synthesize(self, batch: Batch) -> Synthesis:
        """The forward pass (under autocast) for ``batch``."""

    @abstractmethod
    def decode(self, seg: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """Images for one-hot label maps ``seg`` and latents ``z`` (the previews)."""

    def distribute(self) -> None:
        """Wrap the network for DDP (torchrun)."""
        self.model = nn.parallel.DistributedDataParallel(self.network)

    def family_terms(self, synthesis: Synthesis) -> list[LossTerm]:
        """Loss terms of this family alone (the VAE's KL)."""
        return []

    def generator_step(self, batch: Batch, synthesis: Synthesis, discriminator: DiscriminatorStep) -> dict[str, float]:
        """The generator's loss on ``synthesis``, judged by the just-updated ``discriminator``, and its update."""
        losses: dict[str, float] = {}
        with self.placement.autocast():
            terms = [
                *self._reconstruction_terms(batch, synthesis),
                *self._mode_seeking_terms(synthesis),
                *self.family_terms(synthesis),
                *discriminator.generator_terms(batch, synthesis),
            ]
            g_loss = 0.0
            for term in terms:
                g_loss = g_loss + term.weight * term.value
                losses[term.name] = term.value.item() if term.logged is None else term.logged
        self.optimizer.zero_grad(set_to_none=True)
        g_loss.backward()
        self.optimizer.step()
        self.scheduler.step()
        losses["g"] = g_loss.item()
        return losses

    def _reconstruction_terms(self, batch: Batch, synthesis: Synthesis) -> list[LossTerm]:
        """L1 inside the brain between every judged image and the real one (none without real images)."""
        if batch.images is None:
            return []
        loss_cfg, copies = self.config.loss, synthesis.copies
        weights = batch.brain
        if loss_cfg.class_balance:
            weights = class_balanced_weights(batch.label_maps, loss_cfg.class_balance)
        target, weights = batch.images.repeat(copies, 1, 1, 1, 1), weights.repeat(copies, 1, 1, 1, 1)
        l1 = masked_l1(synthesis.judged, target, weights)
        logged = masked_l1(synthesis.fake.detach(), batch.images, batch.brain).item()  # plain L1 of the synthesis
        return [LossTerm("reconstruction_l1", loss_cfg.reconstruction_weight, l1, logged)]

    def _mode_seeking_terms(self, synthesis: Synthesis) -> list[LossTerm]:
        if self.config.loss.diversity_weight <= 0:
            return []
        seeking = mode_seeking_loss(*synthesis.draws, *synthesis.latents)
        return [LossTerm("mode_seeking", self.config.loss.diversity_weight, seeking)]


class GanStep(GeneratorStep):
    """GauGAN's generator: MONAI ``SPADEDecoder`` from Gaussian noise; always with a discriminator."""

    @property
    def needs_discriminator(self) -> bool:
        return True

    def build_network(self, n_channels: int, grid: tuple[int, int, int]) -> nn.Module:
        return build_generator("gan", self.config.network, n_channels, MODEL_CLASSES, grid)

    def synthesize(self, batch: Batch) -> Synthesis:
        if self.config.loss.diversity_weight > 0:
            return self._two_draws(batch)
        with self.placement.autocast():
            noise = torch.randn(batch.seg.shape[0], self.config.network.z_dim, device=self.placement.device)
            fake = self.model(batch.seg, noise) * batch.brain
        return Synthesis(fake, fake, batch.seg)

    def _two_draws(self, batch: Batch) -> Synthesis:
        """Two noise draws per label map for the mode-seeking term, in one forward (one DDP forward per backward)."""
        n = batch.seg.shape[0]
        with self.placement.autocast():
            noise = torch.randn(2 * n, self.config.network.z_dim, device=self.placement.device)
            both = self.model(torch.cat([batch.seg, batch.seg]), noise) * torch.cat([batch.brain, batch.brain])
        return Synthesis(both[:n], both[:n], batch.seg, (both[:n], both[n:]), (noise[:n], noise[n:]))

    def decode(self, seg: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return self.network(seg, z)


class VaeStep(GeneratorStep):
    """MONAI ``SPADENet``: encoder -> style latent -> SPADE decoder, with KL; optionally a VAE-GAN."""

    def build_network(self, n_channels: int, grid: tuple[int, int, int]) -> nn.Module:
        return build_generator("vae", self.config.network, n_channels, MODEL_CLASSES, grid)

    def synthesize(self, batch: Batch) -> VaeSynthesis:
        if self.config.loss.diversity_weight > 0:
            return self._with_prior_branch(batch)
        with self.placement.autocast():
            fake, mu, logvar = self.model(batch.seg, batch.images)
            fake = fake * batch.brain
        return VaeSynthesis(fake, fake, batch.seg, mu=mu, logvar=logvar)

    def _with_prior_branch(self, batch: Batch) -> VaeSynthesis:
        """VAE-GAN with a prior branch: two prior draws per label map, pushed apart by mode seeking.

        The first is trained like the GAN's noise draw (L1, feature matching, discriminator).
        Without the L1 (BicycleGAN's cLR-GAN), the discriminator won and the draws diverged.
        """
        n = batch.seg.shape[0]
        with self.placement.autocast():
            noise = torch.randn(2 * n, self.config.network.z_dim, device=self.placement.device)
            fake, mu, logvar, prior = self.model(batch.seg, batch.images, noise)
            fake, prior = fake * batch.brain, prior * torch.cat([batch.brain, batch.brain])
        judged = torch.cat([fake, prior[:n]])  # the reconstruction and the first prior draw
        return VaeSynthesis(fake, judged, batch.seg, (prior[:n], prior[n:]), (noise[:n], noise[n:]), mu, logvar)

    def family_terms(self, synthesis: VaeSynthesis) -> list[LossTerm]:
        kl = kl_divergence(synthesis.mu.float(), synthesis.logvar.float())
        return [LossTerm("kl", self.config.loss.kl_weight, kl)]

    def decode(self, seg: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return self.network.decode(seg, z)


# config.model -> its step; a new family is a GeneratorStep subclass added here
GENERATOR_STEPS: dict[str, type[GeneratorStep]] = {"gan": GanStep, "vae": VaeStep}
