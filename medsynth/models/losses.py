"""GAN and VAE losses.

Hinge and least-squares adversarial losses come from MONAI's ``PatchAdversarialLoss``; the
Wasserstein loss and its gradient penalty (Gulrajani et al., 2017) are written here because
MONAI has neither.
"""

from __future__ import annotations

import torch
from monai.losses import PatchAdversarialLoss


def discriminator_loss(kind: str, real: list[torch.Tensor], fake: list[torch.Tensor]) -> torch.Tensor:
    """Adversarial loss of the discriminator, averaged over scales."""
    if kind == "wgan-gp":
        return sum(f.float().mean() - r.float().mean() for r, f in zip(real, fake, strict=True)) / len(real)
    criterion = PatchAdversarialLoss(criterion=kind)
    real_loss = criterion([r.float() for r in real], target_is_real=True, for_discriminator=True)
    fake_loss = criterion([f.float() for f in fake], target_is_real=False, for_discriminator=True)
    return 0.5 * (real_loss + fake_loss)


def generator_adversarial_loss(kind: str, fake: list[torch.Tensor]) -> torch.Tensor:
    """Adversarial loss of the generator, averaged over scales."""
    if kind == "wgan-gp":
        return -sum(f.float().mean() for f in fake) / len(fake)
    return PatchAdversarialLoss(criterion=kind)([f.float() for f in fake], target_is_real=True, for_discriminator=False)


def interpolate(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """Random points between real and fake inputs, on which WGAN-GP penalises the gradient."""
    alpha = torch.rand(real.shape[0], *([1] * (real.ndim - 1)), device=real.device)
    return (alpha * real + (1 - alpha) * fake).requires_grad_(True)


def gradient_penalty(logits: list[torch.Tensor], mixed: torch.Tensor) -> torch.Tensor:
    """WGAN-GP: ``(||grad D(x_hat)|| - 1)^2`` for the discriminator's ``logits`` on ``mixed``."""
    grads = torch.autograd.grad(sum(out.float().sum() for out in logits), mixed, create_graph=True)[0]
    return ((grads.flatten(1).norm(dim=1) - 1) ** 2).mean()


def feature_matching_loss(real: list[torch.Tensor], fake: list[torch.Tensor]) -> torch.Tensor:
    """L1 between the discriminator's intermediate features of real and synthetic inputs."""
    return sum((f.float() - r.detach().float()).abs().mean() for r, f in zip(real, fake, strict=True)) / len(real)


def masked_l1(prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean absolute error inside ``mask`` (broadcast over channels); a float ``mask`` weights voxels."""
    mask = mask.expand_as(prediction)
    return ((prediction.float() - target.float()).abs() * mask).sum() / mask.sum().clamp_min(1)


def class_balanced_weights(label_maps: torch.Tensor, exponent: float) -> torch.Tensor:
    """Voxel weights ``frequency(class) ** -exponent`` inside the brain, 0 outside, mean 1 in the brain.

    (B, X, Y, Z) label maps -> (B, 1, X, Y, Z) weights for :func:`masked_l1`. Frequencies are
    counted per case. Exponent 0 weights every brain voxel alike; 1 gives every class present the
    same total weight; between them (0.5) small classes such as enhancing tumor (~0.3 % of the brain)
    count more without drowning the tissue. Not MONAI's ``DiceLoss``/``FocalLoss`` class weights:
    those weight segmentation logits, this weights an image regression.

    >>> labels = torch.tensor([[[[0, 1, 1, 1, 2]]]])
    >>> [round(w, 3) for w in class_balanced_weights(labels, 1.0).flatten().tolist()]
    [0.0, 0.667, 0.667, 0.667, 2.0]
    """
    flat = label_maps.flatten(1).long()
    counts = torch.zeros(flat.shape[0], int(flat.max()) + 1, device=flat.device).scatter_add_(
        1, flat, torch.ones_like(flat, dtype=torch.float32)
    )
    per_class = counts.clamp_min(1).pow(-exponent)
    per_class[:, 0] = 0  # background is outside the brain
    weights = per_class.gather(1, flat)
    brain = (flat > 0).float()
    weights = weights * brain.sum(1, keepdim=True) / weights.sum(1, keepdim=True).clamp_min(1e-12)
    return weights.view(label_maps.shape).unsqueeze(1)


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(q(z|x) || N(0, I)), summed over latent dimensions, averaged over the batch."""
    return (-0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(dim=1)).mean()


def mode_seeking_loss(
    first: torch.Tensor, second: torch.Tensor, z_first: torch.Tensor, z_second: torch.Tensor
) -> torch.Tensor:
    """MSGAN's regulariser (Mao et al., CVPR 2019): small when two noise draws give different images.

    ``1 / (mean|first - second| / mean|z_first - z_second| + eps)``; minimising it pushes the
    generator to map different noise to different images in proportion to their distance.
    """
    ratio = (first.float() - second.float()).abs().mean() / (z_first - z_second).abs().mean()
    return 1.0 / (ratio + 1e-5)


def patch_loss_per_sample(kind: str, logits: list[torch.Tensor], target_is_real: bool) -> torch.Tensor:
    """The discriminator's adversarial loss of each batch row (MONAI's, averaged over patches and scales).

    DP-SGD clips each case's gradient, so it needs one loss per row; the mean over real and fake
    rows equals :func:`discriminator_loss` when they are equally many. An empty batch gives an
    empty tensor.
    """
    criterion = PatchAdversarialLoss(criterion=kind)
    losses = [
        criterion([logit[row : row + 1].float() for logit in logits], target_is_real, for_discriminator=True)
        for row in range(logits[0].shape[0])
    ]
    return torch.stack(losses) if losses else logits[0].new_zeros(0, dtype=torch.float32)
