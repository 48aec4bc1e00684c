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
from monai.networks.blocks import Convolution
from monai.networks.blocks.spade_norm import SPADE
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
        return _decoder(config, out_channels, label_channels, shape, list(reversed(config.channels)))
    if kind == "vae":
        vae = ConditionalVAE(
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
        if config.decoder == "refined":
            vae.decoder = _decoder(config, out_channels, label_channels, shape, list(reversed(config.channels)))
        return vae
    raise ValueError(f"model must be 'gan' or 'vae', got {kind!r}")


def _decoder(
    config: ModelConfig, out_channels: int, label_channels: int, shape: tuple[int, int, int], channels: list[int]
) -> nn.Module:
    """A SPADE decoder from a latent vector: MONAI's as it is, or refined (see ``ModelConfig.decoder``)."""
    if config.decoder == "monai":
        return SPADEDecoder(
            spatial_dims=3,
            out_channels=out_channels,
            label_nc=label_channels,
            input_shape=shape,
            channels=channels,  # deepest first; a copy, MONAI appends to it
            z_dim=config.z_dim,
            is_vae=True,  # "VAE" mode = the decoder starts from a latent vector: our noise
            spade_intermediate_channels=config.spade_channels,
            last_act=None,
        )
    return RefinedSPADEDecoder(config, out_channels, label_channels, shape, channels)


class RefinedSPADEDecoder(nn.Module):
    """MONAI's ``SPADEDecoder`` with trilinear upsampling, then a SPADE residual block at full resolution.

    MONAI's decoder (kept as ``body``, without its final convolution) is asked for
    ``refine_channels`` feature maps instead of the image, so its last block stays a feature
    block, upsampled trilinearly; ``refine`` modulates them with the label map at full resolution
    (class edges and thin structures such as the enhancing rim are drawn there); ``head`` maps
    them to the image. Full resolution has 8x the voxels of the level below, so its width sets
    the step time. Same call as ``SPADEDecoder``: ``forward(seg, z)``.
    """

    def __init__(
        self,
        config: ModelConfig,
        out_channels: int,
        label_channels: int,
        shape: tuple[int, int, int],
        channels: list[int],
    ) -> None:
        super().__init__()
        width = config.refine_channels
        self.body = SPADEDecoder(
            spatial_dims=3,
            out_channels=width,
            label_nc=label_channels,
            input_shape=shape,
            channels=channels,
            z_dim=config.z_dim,
            is_vae=True,
            spade_intermediate_channels=config.spade_channels,
            upsampling_mode="trilinear",
        )
        self.body.last_conv = nn.Identity()  # its one full-resolution convolution: `refine` and `head` replace it
        self.refine = FullResolutionBlock(width, label_channels, z_dim=config.z_dim if config.style else 0)
        self.head = Convolution(spatial_dims=3, in_channels=width, out_channels=out_channels, act=None, norm=None)

    def forward(self, seg: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return self.head(self.refine(self.body(seg, z), seg, z))


class FullResolutionBlock(nn.Module):
    """``x + conv(act(SPADE(x, seg)))`` with a per-voxel (1x1x1) SPADE; cheaper than ``SPADENetResBlock``.

    With ``z_dim`` > 0 the latent also modulates SPADE's output per channel, ``h * (1 + a(z)) + b(z)``
    (``ModelConfig.style``): starting at identity (``a``, ``b`` zero-initialised), so a model learns how
    much global contrast and intensity to take from its latent.

    Written here because MONAI's residual block uses one kernel size for its SPADE layers and its
    convolutions: with 3x3x3 everywhere (seven convolutions at full resolution) a GAN step at
    80x96x80 took 3.3 s, with this block 1.3 s, with MONAI's decoder as it is 0.6 s (2 cores,
    bf16, batch of 2 draws; /tmp speed script, not kept). The label map is sharp, so a per-voxel modulation is
    what draws class edges; the one 3x3x3 convolution adds the local texture.
    """

    def __init__(self, width: int, label_channels: int, z_dim: int = 0) -> None:
        super().__init__()
        self.norm = SPADE(label_nc=label_channels, norm_nc=width, kernel_size=1, spatial_dims=3, hidden_channels=width)
        self.conv = Convolution(spatial_dims=3, in_channels=width, out_channels=width, act=None, norm=None)
        self.style = nn.Linear(z_dim, 2 * width) if z_dim else None
        if self.style is not None:
            nn.init.zeros_(self.style.weight)
            nn.init.zeros_(self.style.bias)

    def forward(self, x: torch.Tensor, seg: torch.Tensor, z: torch.Tensor | None = None) -> torch.Tensor:
        h = self.norm(x, seg)
        if self.style is not None:
            scale, shift = self.style(z.to(h.dtype)).view(z.shape[0], -1, 1, 1, 1).chunk(2, dim=1)
            h = h * (1 + scale) + shift
        return x + self.conv(F.leaky_relu(h, 0.2))


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
