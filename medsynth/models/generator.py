"""One synthesis API for both generator families.

>>> import medsynth
>>> gen = medsynth.load_generator(medsynth.pretrained("gan"))  # doctest: +SKIP
>>> result = gen.synthesize("labels/label_maps/synth_00000_label_map.nii.gz", seed=0)  # doctest: +SKIP
>>> result.images.shape, result.modalities  # doctest: +SKIP
((2, 80, 96, 80), ['t1c', 'flair'])
>>> result.save("synth_00000")  # synth_00000_t1c.nii.gz, synth_00000_flair.nii.gz  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from medsynth.config import from_dict
from medsynth.data.scheme import NUM_CLASSES
from medsynth.errors import MedsynthError
from medsynth.io import load_nifti, save_nifti
from medsynth.models import checkpoint
from medsynth.models.config import ModelConfig
from medsynth.models.data import one_hot
from medsynth.models.networks import build_generator
from medsynth.models.train import autocast_dtype, cpu_has_bf16, select_device


@dataclass
class Synthesis:
    """Synthetic modalities of one label map (``images``: (C, X, Y, Z)) or a batch ((B, C, X, Y, Z))."""

    images: np.ndarray
    modalities: list[str]
    affine: np.ndarray  # the label map's geometry
    seeds: list[int]

    def save(self, prefix: str | Path) -> list[Path]:
        """Write ``<prefix>_<modality>.nii.gz`` per modality (single case) with the label map's affine."""
        if self.images.ndim != 4:
            raise ValueError("save() writes one case; index a batch first")
        return [
            save_nifti(channel, self.affine, f"{prefix}_{modality}.nii.gz", dtype=np.float32)
            for channel, modality in zip(self.images, self.modalities, strict=True)
        ]


class Generator:
    """A trained conditional GAN or VAE: label map -> every modality at once."""

    def __init__(self, state: dict, device: str | torch.device = "auto", precision: str = "auto") -> None:
        self.kind: str = state["kind"]
        self.modalities: list[str] = list(state["modalities"])
        self.grid: tuple[int, int, int] = tuple(state["grid"])
        self.spacing_mm = tuple(state["spacing_mm"])
        self.network = from_dict(ModelConfig, state["network"])
        self.device = select_device(str(device))
        if precision not in ("auto", "fp32", "bf16"):
            raise MedsynthError(f"precision must be auto, fp32 or bf16, not {precision!r}")
        # auto = bf16 autocast on CUDA and on CPUs with native bf16 (several times faster per case; class means
        # within 0.013 brain SD of fp32: reports/performance_generation.md); fp32 elsewhere (bf16 emulated, slow).
        self.autocast = autocast_dtype(precision, self.device, torch.bfloat16 if cpu_has_bf16() else None)
        self.precision = "fp32" if self.autocast is None else "bf16"
        self.model = build_generator(self.kind, self.network, len(self.modalities), NUM_CLASSES, self.grid)
        weights = state.get("state_dict") or state["generator"]
        self.model.load_state_dict(weights)
        self.model.to(self.device).eval()
        self.training = state.get("training", {})

    @torch.no_grad()
    def synthesize(
        self,
        label_map: np.ndarray | str | Path,
        seed: int | list[int] | None = None,
        affine: np.ndarray | None = None,
    ) -> Synthesis:
        """Synthesize the modalities of a canonical label map (X, Y, Z) or a batch (B, X, Y, Z).

        A path reads the label map and its affine from NIfTI. ``seed`` fixes the style
        latent (one per case for a batch: an int seeds case i with ``seed + i``); the GAN's
        noise and the VAE's prior sample both come from it. Outputs are 0 outside the brain.
        """
        if isinstance(label_map, str | Path):
            label_map, affine, _ = load_nifti(label_map, dtype=np.int64)
        array = np.asarray(label_map)
        single = array.ndim == 3
        batch = array[None] if single else array
        if batch.ndim != 4 or tuple(batch.shape[1:]) != self.grid:
            raise MedsynthError(
                f"label map shape {array.shape} does not match the generator's grid {self.grid} "
                f"({self.spacing_mm} mm); prepare the data with the config the generator was trained on"
            )
        if batch.min() < 0 or batch.max() >= NUM_CLASSES or not np.all(batch == np.round(batch)):
            raise MedsynthError(f"label map values must be canonical classes 0..{NUM_CLASSES - 1}")
        if seed is None:
            seeds = [int(s) for s in np.random.SeedSequence().generate_state(len(batch))]
        elif isinstance(seed, int):
            seeds = [seed + i for i in range(len(batch))]
        else:
            seeds = [int(s) for s in seed]
        z = torch.stack([torch.randn(self.network.z_dim, generator=torch.Generator().manual_seed(s)) for s in seeds])
        labels = torch.as_tensor(batch, dtype=torch.long, device=self.device)
        decode = self.model.decode if self.kind == "vae" else self.model
        fast = torch.autocast(self.device.type, dtype=self.autocast) if self.autocast else contextlib.nullcontext()
        with fast:
            images = decode(one_hot(labels), z.to(self.device))
        images = images.float() * (labels > 0).unsqueeze(1)
        images = images.float().cpu().numpy()
        affine = np.eye(4) if affine is None else np.asarray(affine)
        return Synthesis(images[0] if single else images, self.modalities, affine, seeds)


def load_generator(path: str | Path, device: str | torch.device = "auto", precision: str = "auto") -> Generator:
    """Load a ``generator.pt`` or a training ``checkpoint.pt`` (safely, ``weights_only=True``).

    ``precision``: ``auto`` (bf16 autocast on CUDA and on CPUs with native bf16, else fp32), ``fp32`` or ``bf16``.
    The same seed gives slightly different voxels in bf16 and fp32; ``Generator.precision`` says which ran.
    """
    state = checkpoint.load(path)
    if "kind" not in state:
        raise MedsynthError(f"{path}: checkpoint has no generator metadata")
    return Generator(state, device=device, precision=precision)
