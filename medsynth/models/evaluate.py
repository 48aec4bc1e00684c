"""Quality of synthetic images against real ones on the same label maps.

Used by ``scripts/report_generators.py`` (reports/generators.md): per tissue/tumor class and
modality intensity statistics, SSIM and PSNR (MONAI metrics), and the diversity of several
samples of one label map (MONAI MS-SSIM; lower = more diverse).
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING

import numpy as np
import torch

from medsynth.data.scheme import CLASS_NAMES
from medsynth.models.losses import kl_divergence

if TYPE_CHECKING:
    from medsynth.models.generator import Generator


def class_intensities(images: np.ndarray, label_map: np.ndarray, modalities: list[str]) -> dict[str, dict[str, list]]:
    """Intensity samples per ``modality -> class name`` (values of every voxel of that class)."""
    return {
        modality: {
            CLASS_NAMES[c]: images[i][label_map == c] for c in np.unique(label_map) if c != 0 and c in CLASS_NAMES
        }
        for i, modality in enumerate(modalities)
    }


def _tensor(volume: np.ndarray) -> torch.Tensor:
    return torch.as_tensor(np.asarray(volume, dtype=np.float32))[None]


def ssim_psnr(real: np.ndarray, fake: np.ndarray) -> tuple[float, float]:
    """SSIM and PSNR of one modality (X, Y, Z), data range taken from the real volume."""
    from monai.metrics import PSNRMetric, SSIMMetric

    data_range = float(real.max() - real.min())
    ssim = SSIMMetric(spatial_dims=3, data_range=data_range, win_size=7)(_tensor(fake)[None], _tensor(real)[None])
    psnr = PSNRMetric(max_val=data_range)(_tensor(fake)[None], _tensor(real)[None])
    return float(ssim.mean()), float(psnr.mean())


def pairwise_ms_ssim(samples: list[np.ndarray], data_range: float) -> float:
    """Mean MS-SSIM over all pairs of samples (each (C, X, Y, Z)); 3 scales, 7-voxel kernel."""
    from monai.metrics import MultiScaleSSIMMetric

    metric = MultiScaleSSIMMetric(spatial_dims=3, data_range=data_range, kernel_size=7, weights=(0.3, 0.4, 0.3))
    values = [
        float(metric(_tensor(a[c])[None], _tensor(b[c])[None]).mean())
        for a, b in itertools.combinations(samples, 2)
        for c in range(a.shape[0])
    ]
    return float(np.mean(values))


@torch.no_grad()
def latent_usage(
    generator: Generator, images: np.ndarray, label_map: np.ndarray, contrast: float = 1.2
) -> dict[str, float]:
    """Does a VAE's latent carry anything? Read from its encoder on a real case.

    ``images`` (C, X, Y, Z) and ``label_map`` (X, Y, Z) on the generator's grid. Returns
    ``kl_nats``: KL(q(z|x) || N(0, I)) of the case (near 0 = the posterior is the prior: posterior
    collapse, the decoder ignores z); ``contrast_response``: how far the posterior mean moves, in
    posterior SDs (RMS over latent dimensions), when every modality is multiplied by ``contrast``
    inside the brain (near 0 = the encoder is blind to global contrast).
    """
    if generator.kind != "vae":
        raise ValueError("latent_usage needs a VAE generator")
    encoder = generator.model.encoder
    x = torch.as_tensor(np.asarray(images, dtype=np.float32), device=generator.device)[None]
    mu, logvar = encoder(x)
    brain = torch.as_tensor(np.asarray(label_map) > 0, device=generator.device)
    mu_scaled, _ = encoder(x * torch.where(brain, contrast, 1.0))
    shift = ((mu_scaled - mu) / (0.5 * logvar).exp()).pow(2).mean().sqrt()
    return {"kl_nats": float(kl_divergence(mu.float(), logvar.float())), "contrast_response": float(shift)}
