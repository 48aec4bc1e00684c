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

import nibabel as nib
import numpy as np
import torch

from medsynth.config import from_dict
from medsynth.data.scheme import CLASS_NAMES, MODEL_CLASSES, TUMOR
from medsynth.errors import MedsynthError
from medsynth.geometry import same_space
from medsynth.io import load_nifti, save_nifti
from medsynth.models import checkpoint
from medsynth.models.config import LEGACY_NETWORK, ModelConfig
from medsynth.models.data import one_hot
from medsynth.models.networks import build_generator
from medsynth.runtime import autocast_dtype, cpu_has_bf16, select_device


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

    def __init__(
        self,
        state: dict,
        device: str | torch.device = "auto",
        precision: str = "auto",
        source: str | Path | None = None,
    ) -> None:
        self.kind: str = state["kind"]
        self.modalities: list[str] = list(state["modalities"])
        self.grid: tuple[int, int, int] = tuple(state["grid"])
        self.spacing_mm = tuple(state["spacing_mm"])
        # axis codes of the training data; files saved before they were recorded were prepared in RAS (the default)
        self.orientation: str = str(state.get("orientation", "RAS"))
        self.network = from_dict(ModelConfig, {**LEGACY_NETWORK, **state["network"]})
        self.device = select_device(str(device))
        if precision not in ("auto", "fp32", "bf16"):
            raise MedsynthError(f"precision must be auto, fp32 or bf16, not {precision!r}")
        # auto = bf16 autocast on CUDA and on CPUs with native bf16 (several times faster per case; class means
        # within 0.013 brain SD of fp32: reports/performance_generation.md); fp32 elsewhere (bf16 emulated, slow).
        self.autocast = autocast_dtype(precision, self.device, torch.bfloat16 if cpu_has_bf16() else None)
        self.precision = "fp32" if self.autocast is None else "bf16"
        self.model = build_generator(self.kind, self.network, len(self.modalities), MODEL_CLASSES, self.grid)
        weights = state.get("state_dict") or state["generator"]
        try:
            self.model.load_state_dict(weights)
        except RuntimeError as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise MedsynthError(
                f"{source or 'generator state'}: the weights do not fit the network its metadata describes ({first})"
            ) from None
        self.model.to(self.device).eval()
        self.training = state.get("training", {})

    def default_affine(self) -> np.ndarray:
        """The generator's voxel geometry (its spacing and orientation, origin 0) for label maps without one."""
        affine = np.eye(4)
        for axis, (world, sign) in enumerate(nib.orientations.axcodes2ornt(tuple(self.orientation))):
            affine[:3, axis] = 0.0
            affine[int(world), axis] = sign * self.spacing_mm[axis]
        return affine

    def check_geometry(
        self, shape: tuple[int, ...], affine: np.ndarray | None, source: str | Path | None = None
    ) -> None:
        """Refuse a label map whose voxel spacing, orientation (from ``affine``) or grid differ from the generator's.

        The spacing is read from the affine, not the shape: a 1 mm label map cropped to a 2 mm
        generator's grid would otherwise give a brain of half the size.
        """
        name = source if source is not None else "label map"
        if affine is not None:
            affine = np.asarray(affine, dtype=np.float64)
            if affine.shape != (4, 4) or not np.isfinite(affine).all() or abs(np.linalg.det(affine[:3, :3])) < 1e-9:
                raise MedsynthError(f"{name}: its affine is not a finite, invertible 4x4 voxel-to-world matrix")
            space = same_space(affine, self.default_affine(), tolerance=1e-3, position=False)
            if "spacing" in space.differences:
                shown = "x".join(f"{s:g}" for s in space.differences["spacing"][0])
                expected = "x".join(f"{s:g}" for s in self.spacing_mm)
                raise MedsynthError(
                    f"{name}: voxel spacing {shown} mm differs from the generator's {expected} mm (the brain would "
                    "come out at the wrong size); resample the label map or prepare the data with the generator's "
                    "config"
                )
            if "orientation" in space.differences:
                codes = space.differences["orientation"][0]
                raise MedsynthError(
                    f"{name}: orientation {codes} differs from the generator's {self.orientation} (it was trained on "
                    f"{self.orientation} volumes); reorient the label map"
                )
        if len(shape) not in (3, 4) or tuple(shape[-3:]) != self.grid:
            raise MedsynthError(
                f"{name}: shape {tuple(shape)} does not match the generator's grid {self.grid} "
                f"({self.spacing_mm} mm); prepare the data with the config the generator was trained on"
            )

    def check_label_map(
        self, label_map: np.ndarray, affine: np.ndarray | None = None, source: str | Path | None = None
    ) -> np.ndarray:
        """Refuse what this generator cannot synthesize from; returns the label map(s) as int64.

        Refused, with one line naming ``source``: a spacing, orientation (from ``affine``) or
        grid other than the generator's, values that are not whole numbers (5.5 is not
        truncated to 5), values outside the canonical scheme 0..7 (:mod:`medsynth.data.scheme`),
        and a label map without brain (every voxel 0).
        """
        name = source if source is not None else "label map"
        array = np.asarray(label_map)
        self.check_geometry(array.shape, affine, source)
        if array.dtype.kind not in "iuf":
            raise MedsynthError(f"{name}: label map of type {array.dtype}; expected integer class values 0..7")
        if array.dtype.kind == "f":
            if not np.isfinite(array).all():
                raise MedsynthError(f"{name}: label map contains NaN or infinite values")
            fractional = array != np.round(array)
            if fractional.any():
                examples = ", ".join(f"{v:g}" for v in np.unique(array[fractional])[:3])
                raise MedsynthError(
                    f"{name}: label values must be whole numbers (canonical classes 0..{MODEL_CLASSES - 1}); "
                    f"found {examples}"
                )
        if np.any(array == TUMOR):
            raise MedsynthError(
                f"{name}: whole-tumor-only labels (class {TUMOR} 'tumor', sub-regions unknown); the generator is "
                "conditioned on netc, snfh and et, and medsynth does not guess them"
            )
        outside = (array < 0) | (array >= MODEL_CLASSES)
        if outside.any():
            values = np.unique(array[outside])
            shown = ", ".join(f"{v:g}" for v in values[:5]) + (", ..." if len(values) > 5 else "")
            raise MedsynthError(
                f"{name}: label values {shown} are outside the canonical scheme 0..{MODEL_CLASSES - 1} "
                f"({', '.join(f'{k} {v}' for k, v in CLASS_NAMES.items() if k < MODEL_CLASSES)}); "
                "convert source labels with `medsynth prepare`"
            )
        cases = array.reshape(-1, *array.shape[-3:])
        for index, case in enumerate(cases):
            if not case.any():
                where = f"{name} (case {index} of the batch)" if array.ndim == 4 else name
                raise MedsynthError(f"{where}: no brain: every voxel is background (0); nothing to synthesize")
        return array.astype(np.int64, copy=False)

    @torch.no_grad()
    def synthesize(
        self,
        label_map: np.ndarray | str | Path,
        seed: int | list[int] | None = None,
        affine: np.ndarray | None = None,
        source: str | Path | None = None,
    ) -> Synthesis:
        """Synthesize the modalities of a canonical label map (X, Y, Z) or a batch (B, X, Y, Z).

        A path reads the label map and its affine from NIfTI. ``seed`` fixes the style
        latent (one per case for a batch: an int seeds case i with ``seed + i``); the GAN's
        noise and the VAE's prior sample both come from it. Outputs are 0 outside the brain.
        The label map is checked first (:meth:`check_label_map`; ``source`` names it in
        refusals, a path names itself). Without an affine the result gets the generator's
        spacing and orientation (:meth:`default_affine`).
        """
        if isinstance(label_map, str | Path):
            source = label_map
            label_map, affine, _ = load_nifti(label_map, dtype=None)
        array = self.check_label_map(label_map, affine, source)
        single = array.ndim == 3
        batch = array[None] if single else array
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
        affine = self.default_affine() if affine is None else np.asarray(affine)
        return Synthesis(images[0] if single else images, self.modalities, affine, seeds)


def load_generator(path: str | Path, device: str | torch.device = "auto", precision: str = "auto") -> Generator:
    """Load a ``generator.pt`` or a training ``checkpoint.pt`` (safely, ``weights_only=True``, checksum checked).

    ``precision``: ``auto`` (bf16 autocast on CUDA and on CPUs with native bf16, else fp32), ``fp32`` or ``bf16``.
    The same seed gives slightly different voxels in bf16 and fp32; ``Generator.precision`` says which ran.

    Args:
        path: the checkpoint (``generator.pt``, ``checkpoint.pt``, or ``"pretrained:gan"`` / ``"pretrained:vae"``).
        device: ``auto`` (CUDA when present), ``cpu`` or ``cuda[:N]``.
        precision: see above.

    >>> import medsynth
    >>> generator = load_generator(medsynth.pretrained("gan"), device="cpu", precision="fp32")
    >>> generator.kind, generator.modalities, generator.grid
    ('gan', ['t1c', 'flair'], (80, 96, 80))
    """
    state = checkpoint.load(path, expect="generator")
    return Generator(state, device=device, precision=precision, source=checkpoint.resolve(path))
