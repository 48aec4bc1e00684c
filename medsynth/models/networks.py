"""The generator and discriminator networks, built from MONAI's SPADE and PatchGAN modules.

- GAN generator: MONAI ``SPADEDecoder`` in its latent-input mode; the latent is Gaussian
  noise, so one label map gives many images (GauGAN's generator with a noise input).
- VAE: MONAI ``SPADENet`` (encoder -> style latent -> SPADE decoder), whose forward can also
  decode prior draws (``ConditionalVAE``) for the VAE-GAN's prior branch.
- Discriminator: MONAI ``PatchDiscriminator`` applied at several scales of the input
  (pix2pixHD-style). Not MONAI's ``MultiScalePatchDiscriminator``: that one deepens and
  widens each scale instead of downsampling the input, which at 3D sizes means ~45 M
  parameters and 1-voxel feature maps.

The last decoder activation is removed (MONAI defaults to leaky ReLU), because images are
z-scored and need a linear output.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from monai.networks.nets import PatchDiscriminator, SPADENet
from monai.networks.nets.spade_network import SPADEDecoder
from torch import nn

from medsynth.models.config import ModelConfig


def build_generator(
    kind: str, config: ModelConfig, out_channels: int, label_channels: int, shape: tuple[int, int, int]
) -> nn.Module:
    """``kind`` 'gan' -> SPADEDecoder(label map, noise); 'vae' -> SPADENet(label map, image)."""
    if any(s % 2 ** len(config.channels) for s in shape):
        raise ValueError(f"grid {shape} must be divisible by 2**{len(config.channels)} (len(network.channels))")
    if kind == "gan":
        return SPADEDecoder(
            spatial_dims=3,
            out_channels=out_channels,
            label_nc=label_channels,
            input_shape=shape,
            channels=list(reversed(config.channels)),  # deepest first; a copy, MONAI appends to it
            z_dim=config.z_dim,
            is_vae=True,  # "VAE" mode = the decoder starts from a latent vector: our noise
            spade_intermediate_channels=config.spade_channels,
            last_act=None,
        )
    if kind == "vae":
        return ConditionalVAE(
            spatial_dims=3,
            in_channels=out_channels,
            out_channels=out_channels,
            label_nc=label_channels,
            input_shape=shape,
            channels=list(config.channels),  # encoder widths; MONAI mirrors them for the decoder
            z_dim=config.z_dim,
            is_vae=True,
            spade_intermediate_channels=config.spade_channels,
            last_act=None,
        )
    raise ValueError(f"model must be 'gan' or 'vae', got {kind!r}")


class ConditionalVAE(SPADENet):
    """MONAI ``SPADENet`` whose forward can also decode prior draws in the same pass.

    ``forward(seg, x)`` is SPADENet's (reconstruction, mu, logvar). ``forward(seg, x, z_prior)``
    with ``z_prior`` (k * B, z_dim) also decodes the label maps repeated k times from the prior
    draws and returns them fourth: one forward for DDP, and the reconstruction and prior samples
    go through the decoder as one batch. Same parameters (and state dict) as SPADENet.
    """

    def forward(
        self, seg: torch.Tensor, x: torch.Tensor, z_prior: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, ...]:
        if z_prior is None:
            return super().forward(seg, x)
        mu, logvar = self.encoder(x)
        z = self.encoder.reparameterize(mu, logvar)
        repeats = 1 + z_prior.shape[0] // seg.shape[0]
        decoded = self.decoder(seg.repeat(repeats, 1, 1, 1, 1), torch.cat([z, z_prior]))
        return decoded[: seg.shape[0]], mu, logvar, decoded[seg.shape[0] :]


class MultiScaleDiscriminator(nn.Module):
    """PatchGAN discriminators on the input and its 2x, 4x... average-pooled versions.

    ``forward`` returns ``(logits, features)``: one logit map per scale and the
    intermediate activations of every scale (for feature matching).
    """

    def __init__(self, in_channels: int, config: ModelConfig) -> None:
        super().__init__()
        self.discriminators = nn.ModuleList(
            PatchDiscriminator(
                spatial_dims=3,
                num_layers_d=config.d_layers,
                channels=config.d_channels,
                in_channels=in_channels,
                out_channels=1,
                norm="INSTANCE",
            )
            for _ in range(config.d_scales)
        )

    def forward(self, x: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        logits, features = [], []
        for scale, discriminator in enumerate(self.discriminators):
            if scale:
                x = F.avg_pool3d(x, kernel_size=3, stride=2, padding=1, count_include_pad=False)
            outputs = discriminator(x)
            logits.append(outputs[-1])
            features.extend(outputs[:-1])
        return logits, features
