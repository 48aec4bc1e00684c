"""Differentially private GAN training: DP-SGD on the discriminator (Abadi et al., CCS 2016), with Opacus.

    $ pip install 'medsynth[privacy]'
    $ medsynth train --config configs/gan_dp_cpu.yaml -o runs/gan_dp

Mechanism (``privacy.enabled: true``, GAN only, one process). Each step:

1. Real cases for the discriminator are drawn by **Poisson sampling**: every training case
   (image + label map) joins the batch independently with probability ``q = batch_size / N``
   (the batch may be empty). The RDP analysis of the subsampled Gaussian mechanism assumes
   exactly this, so the accounting is honest; the draws and the noise come from a secret seed.
2. The generator makes ``batch_size`` synthetic cases from label maps drawn from the
   *conditioning* pool, independently of the real batch.
3. The discriminator sees real and synthetic rows in one pass; Opacus' ``GradSampleModule``
   gives the gradient of every row, ``DPOptimizer`` clips each to L2 norm
   ``max_grad_norm``, sums them, adds Gaussian noise of std ``noise_multiplier *
   max_grad_norm`` and divides by the expected row count ``2 * batch_size``. Synthetic rows
   are clipped too, which costs nothing in privacy (they do not depend on the real batch).
4. The generator's update uses only the new discriminator, the conditioning label maps and
   its own noise: ``loss.reconstruction_weight`` and ``loss.feature_matching_weight`` must be
   0 (both would feed real images into its gradient unclipped and un-noised). The mode-seeking
   term uses generated images only and is allowed.

Opacus' ``RDPAccountant`` adds ``(noise_multiplier, q)`` every step and converts to
``(epsilon, delta)``. Every layer of MONAI's 3D ``PatchDiscriminator`` as medsynth builds it
has an Opacus per-sample gradient: ``Conv3d`` (Opacus unfolds 3D patches), ``InstanceNorm3d``
(``affine=False``, no running statistics: no parameters and no mixing across the batch),
``LeakyReLU`` and ``Dropout(p=0)`` (no parameters); the multi-scale average pooling is a
function. Nothing had to be replaced. The discriminator's DP update runs in fp32 (no
autocast) so the clipping bound holds up to fp32 rounding.

What the (epsilon, delta) covers, for the conditioning label-map pool held fixed:

- **The released weights** (``generator.pt``; also the discriminator) are (epsilon, delta)-DP
  with respect to adding or removing one training case (its image and its label map) *from
  what the discriminator sees*. The generator is post-processing of the discriminator's noisy
  updates, the conditioning label maps and public randomness.
- **Label maps.** By default the conditioning pool *is* the training label maps: the
  generator is conditioned on them directly, without noise, so they are **not protected** —
  they are treated as public. The guarantee then protects the training images given the label
  maps, not the label maps (anatomy derived from each subject's own scan, and the tumor
  shape), nor membership that a label map reveals. Set ``privacy.conditioning_manifest`` to
  label maps of other (public or consenting) subjects and the training cases' label maps
  reach the model only through the discriminator's private batch, so they are covered too;
  the conditioning subjects themselves are not.

Not covered: the label maps a cohort is generated from (``medsynth labels``/``generate`` copy
real tumors from their source manifest: use public sources), the training case IDs written in
the generator's metadata, per-case preprocessing and any choice made by looking at the data
(configs, hyper-parameters, the run's previews), and the run folder's ``log.csv`` losses,
``previews/`` (they show a real training case) and ``checkpoint.pt`` (it holds the secret
noise seed: with it the noise can be regenerated and subtracted). Share ``generator.pt`` only.
A ``privacy.noise_seed`` set in the config makes the noise reproducible by anyone who reads
the config: for tests, never for a release. Opacus' ``secure_mode`` (floating-point-attack-safe
noise, needs ``torchcsprng``) is not used.
"""

from __future__ import annotations

import secrets
import warnings
from typing import Any

import numpy as np
import torch

from medsynth.errors import MedsynthError
from medsynth.manifest import SPLIT_KEYS
from medsynth.models.config import TrainConfig
from medsynth.models.data import TrainingSet, load_training_set, one_hot
from medsynth.models.losses import patch_loss_per_sample
from medsynth.models.steps import Batch, PatchDiscriminatorStep, Synthesis

MECHANISM = "DP-SGD (Opacus) on the discriminator"
INSTALL_HINT = "pip install 'medsynth[privacy]' (Opacus >= 1.5)"


def require_opacus() -> None:
    """Raise a clear error when Opacus, the optional DP dependency, is missing."""
    try:
        import opacus  # noqa: F401
    except ImportError:
        raise MedsynthError(f"privacy.enabled needs Opacus: {INSTALL_HINT}") from None


def epsilon_spent(noise_multiplier: float, sample_rate: float, steps: int, delta: float) -> float:
    """Epsilon of ``steps`` Poisson-subsampled Gaussian steps at ``delta`` (Opacus' RDP accountant)."""
    require_opacus()
    from opacus.accountants import RDPAccountant

    if steps == 0:
        return 0.0
    accountant = RDPAccountant()
    accountant.history = [(noise_multiplier, sample_rate, steps)]
    return float(accountant.get_epsilon(delta))


def noise_multiplier_for(target_epsilon: float, delta: float, sample_rate: float, steps: int) -> float:
    """The smallest noise multiplier (within Opacus' search tolerance) that spends at most ``target_epsilon``."""
    require_opacus()
    from opacus.accountants.utils import get_noise_multiplier

    try:
        return float(
            get_noise_multiplier(
                target_epsilon=target_epsilon, target_delta=delta, sample_rate=sample_rate, steps=steps
            )
        )
    except ValueError as exc:
        raise MedsynthError(f"privacy.target_epsilon {target_epsilon}: {exc}") from None


def _seed(secret: int, stream: int, step: int) -> int:
    return int(np.random.SeedSequence([secret, stream, step]).generate_state(1, dtype=np.uint64)[0])


class PrivateDiscriminator(PatchDiscriminatorStep):
    """The discriminator step made private: DP-SGD update and privacy accounting (see the module docstring).

    Takes over ``discriminator``'s network, optimizer and schedule, as built (and restored by
    ``--resume``) for the plain step. ``state`` is what :meth:`privacy_state` returned into a
    checkpoint: the secret seed, the noise multiplier and the accountant's history, as plain numbers.
    """

    def __init__(
        self,
        config: TrainConfig,
        data: TrainingSet,
        discriminator: PatchDiscriminatorStep,
        world: int,
        state: dict[str, Any] | None = None,
    ) -> None:
        require_opacus()
        from opacus import GradSampleModule
        from opacus.accountants import RDPAccountant
        from opacus.optimizers import DPOptimizer
        from opacus.validators import ModuleValidator

        privacy = config.privacy
        if world > 1:
            raise MedsynthError(
                "privacy.enabled trains on one process: per-sample clipping and noise across DDP ranks "
                "(Opacus' DPDDP) is not wired up; run without torchrun"
            )
        cases = len(data.case_ids)
        if config.batch_size > cases:
            raise MedsynthError(f"privacy: batch_size {config.batch_size} exceeds the {cases} training case(s)")
        if privacy.delta >= 1 / cases:
            raise MedsynthError(
                f"privacy.delta {privacy.delta:g} must be below 1 / {cases} training cases "
                "(a larger delta allows releasing a whole case)"
            )
        errors = ModuleValidator.validate(discriminator.network, strict=False)
        if errors:
            raise MedsynthError(
                "Opacus cannot compute per-sample gradients of the discriminator: "
                + "; ".join(f"{type(e).__name__}: {e}" for e in errors)
            )
        super().__init__(
            config, discriminator.placement, discriminator.network, discriminator.optimizer, discriminator.scheduler
        )
        self.data = data
        self.sample_rate = config.batch_size / cases
        if state is not None:
            if abs(state["sample_rate"] - self.sample_rate) > 1e-12:
                raise MedsynthError(
                    f"privacy: the checkpoint sampled {state['sample_rate']:g} of the cases, now "
                    f"{self.sample_rate:g}; the training data changed"
                )
            self.secret = int(state["seed"])
            self.noise_multiplier = float(state["noise_multiplier"])
        else:
            self.secret = secrets.randbits(63) if privacy.noise_seed is None else privacy.noise_seed
            self.noise_multiplier = (
                privacy.noise_multiplier
                if privacy.noise_multiplier is not None
                else noise_multiplier_for(privacy.target_epsilon, privacy.delta, self.sample_rate, config.steps)
            )
        self.conditioning, self.conditioning_cases = self._conditioning_pool()
        # loss_reduction="sum" with a loss that sums per-row losses makes grad_sample hold each
        # row's own gradient; the optimizer then averages the clipped, noised sum over the
        # expected row count (q * N real + batch_size synthetic), which does not depend on the data.
        self.module = GradSampleModule(self.network, loss_reduction="sum")
        self.module.disable_hooks()  # only the DP update needs per-sample gradients, not the generator's pass
        self.noise_rng = torch.Generator(self.placement.device)
        self.sampling_rng = torch.Generator()
        # wraps self.optimizer, which keeps the parameters' state (checkpoints save it)
        self.private_optimizer = DPOptimizer(
            self.optimizer,
            noise_multiplier=self.noise_multiplier,
            max_grad_norm=privacy.max_grad_norm,
            expected_batch_size=2 * config.batch_size,
            loss_reduction="mean",
            generator=self.noise_rng,
        )
        self.accountant = RDPAccountant()
        if state is not None:
            self.accountant.history = [tuple(entry) for entry in state["history"]]

    def _conditioning_pool(self) -> tuple[torch.Tensor, list[str]]:
        manifest = self.config.privacy.conditioning_manifest
        if not manifest:
            return self.data.label_maps, self.data.case_ids
        pool = load_training_set(manifest, list(SPLIT_KEYS))  # every split: the whole manifest is public
        if pool.grid != self.data.grid:
            raise MedsynthError(
                f"privacy.conditioning_manifest {manifest}: grid {pool.grid} differs from the training grid "
                f"{self.data.grid}; prepare it with the same config"
            )
        shared = sorted(set(pool.case_ids) & set(self.data.case_ids))
        if shared:
            raise MedsynthError(
                f"privacy.conditioning_manifest {manifest} shares case(s) {shared} with the training data: "
                "their label maps would condition the generator unprotected"
            )
        return pool.label_maps, pool.case_ids

    def draw_batch(self, data: TrainingSet) -> Batch:
        """Conditioning label maps for the generator, from the global (public, per-step seeded) RNG.

        No real image: the generator sees none, and the label maps are drawn independently of the
        discriminator's private batch (:meth:`update`).
        """
        batch_size = self.config.batch_size
        index = torch.randint(len(self.conditioning), (batch_size,))
        flips = torch.rand(batch_size) < self.config.flip_probability
        label_maps = self.conditioning[index].clone()
        label_maps[flips] = label_maps[flips].flip(1)  # axis 0 of a RAS volume is left-right
        return Batch.on(self.placement, label_maps)

    def _poisson_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        cases = len(self.data.case_ids)
        index = (torch.rand(cases, generator=self.sampling_rng) < self.sample_rate).nonzero().flatten()
        flips = torch.rand(len(index), generator=self.sampling_rng) < self.config.flip_probability
        images, label_maps = self.data.images[index].clone(), self.data.label_maps[index].clone()
        images[flips] = images[flips].flip(2)
        label_maps[flips] = label_maps[flips].flip(1)
        return images, label_maps

    def update(self, step: int, batch: Batch, synthesis: Synthesis) -> dict[str, float]:
        """One DP-SGD update of the discriminator on a Poisson batch of real cases and ``synthesis.judged``.

        ``batch`` (the generator's conditioning, no real image) is not used: the real rows are
        drawn here from the secret seed. Logs as ``d`` the mean per-row loss (the non-private
        ``d`` loss when real and fake rows are equally many).
        """
        device = self.placement.device
        self.sampling_rng.manual_seed(_seed(self.secret, 0, step))
        self.noise_rng.manual_seed(_seed(self.secret, 1, step))
        images, label_maps = self._poisson_batch()
        real = torch.cat([images.to(device), one_hot(label_maps.to(device))], 1)
        synthetic = torch.cat([synthesis.judged.detach().float(), synthesis.judged_seg.float()], 1)
        rows = torch.cat([real, synthetic]).contiguous(memory_format=self.placement.memory_format)
        kind = self.config.loss.adversarial
        self.module.enable_hooks()
        try:
            logits, _ = self.module(rows)
            per_row = torch.cat(
                [
                    patch_loss_per_sample(kind, [logit[: len(real)] for logit in logits], target_is_real=True),
                    patch_loss_per_sample(kind, [logit[len(real) :] for logit in logits], target_is_real=False),
                ]
            )
            self.private_optimizer.zero_grad(set_to_none=True)
            with warnings.catch_warnings():
                # the input rows need no gradient; Opacus only needs the first layer's output gradient
                warnings.filterwarnings("ignore", message="Full backward hook is firing")
                per_row.sum().backward()
        finally:
            self.module.disable_hooks()
        self.private_optimizer.step()
        self.accountant.step(noise_multiplier=self.noise_multiplier, sample_rate=self.sample_rate)
        self.scheduler.step()
        return {"d": per_row.mean().item()}

    @property
    def steps(self) -> int:
        """Noisy discriminator updates so far (resumed runs included)."""
        return sum(int(entry[2]) for entry in self.accountant.history)

    def epsilon(self) -> float:
        """The epsilon spent so far at the configured delta."""
        if not self.accountant.history:
            return 0.0
        return float(self.accountant.get_epsilon(self.config.privacy.delta))

    def log_values(self) -> dict[str, float]:
        return {"epsilon": self.epsilon()}

    def privacy_state(self) -> dict[str, Any]:
        """What ``--resume`` needs, as plain numbers (checkpoints load with ``weights_only=True``).

        Holds the secret seed: keep ``checkpoint.pt`` with the training data.
        """
        return {
            "seed": self.secret,
            "noise_multiplier": self.noise_multiplier,
            "sample_rate": self.sample_rate,
            "history": [list(entry) for entry in self.accountant.history],
        }

    def privacy_report(self) -> dict[str, Any]:
        """The public privacy record written into ``generator.pt`` (and from there the dataset card)."""
        privacy = self.config.privacy
        conditioned = bool(privacy.conditioning_manifest)
        covers = (
            "each training case (image and label map): adding or removing one changes the distribution of the "
            "weights by at most (epsilon, delta); the conditioning manifest's label maps are used directly and "
            "are not protected"
            if conditioned
            else "the training images, with the training label maps treated as public: adding or removing one case "
            "as the discriminator sees it changes the distribution of the weights by at most (epsilon, delta); the "
            "generator is conditioned on the training label maps directly, so the label maps (anatomy and tumor "
            "shape) and the membership they reveal are not protected"
        )
        return {
            "mechanism": MECHANISM,
            "accountant": "RDP (Opacus), Poisson sampling",
            "epsilon": self.epsilon(),
            "delta": privacy.delta,
            "noise_multiplier": self.noise_multiplier,
            "max_grad_norm": privacy.max_grad_norm,
            "sample_rate": self.sample_rate,
            "steps": self.steps,
            "training_cases": len(self.data.case_ids),
            "conditioning": privacy.conditioning_manifest or "the training label maps",
            "covers": covers,
            "not_covered": "the label maps a cohort is generated from (medsynth copies tumors from the real "
            "subjects of its source manifest), the training case IDs in generator.pt's metadata, preprocessing and "
            "hyper-parameter choices, and the training run's log.csv, previews/ and checkpoint.pt",
            "noise_seed": "secret (OS entropy)"
            if privacy.noise_seed is None
            else "from the config (privacy.noise_seed): anyone with the config can regenerate the noise, "
            "which voids the guarantee",
        }


def describe(report: dict[str, Any]) -> str:
    """One paragraph for the CLI and the dataset card from a :meth:`PrivateDiscriminator.privacy_report`."""
    text = (
        f"({report['epsilon']:.3g}, {report['delta']:g})-differentially private after {report['steps']} steps of "
        f"{report['mechanism']} (noise multiplier {report['noise_multiplier']:.3g}, clipping norm "
        f"{report['max_grad_norm']:g}, sample rate {report['sample_rate']:.3g} of {report['training_cases']} "
        f"training case(s)). Covers {report['covers']}. Not covered: {report['not_covered']}."
    )
    if not report["noise_seed"].startswith("secret"):
        text += " Warning: the noise seed was set in the config, which voids the guarantee."
    return text
