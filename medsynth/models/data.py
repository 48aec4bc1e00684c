"""Training data of the generators: prepared cases held in memory as tensors.

Prepared cases are small at the working resolution (2 mm: 2 x 80x96x80 floats, 5 MB), so
they are read once; each step draws a batch with a generator seeded from (seed, rank, step),
which is what makes a resumed or distributed run reproducible without saving data state.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from medsynth.data.scheme import MODEL_CLASSES, manifest_scheme, require_subregions
from medsynth.errors import ConfigError, DataError
from medsynth.io import array_sha256, load_nifti
from medsynth.manifest import Manifest


@dataclass
class TrainingSet:
    images: torch.Tensor  # (N, C, X, Y, Z) float32, z-scored inside the brain, 0 outside
    label_maps: torch.Tensor  # (N, X, Y, Z) int64, canonical scheme
    modalities: list[str]
    case_ids: list[str]
    affine: np.ndarray  # of the first case (all share the prepared grid)
    spacing_mm: tuple[float, float, float]
    label_digests: dict[str, str]  # case id -> content SHA-256 of its int16 label map (io.array_sha256)
    preprocess: dict  # the prepared manifest's preprocessing (spacing, grid, orientation, anatomy)

    @property
    def grid(self) -> tuple[int, int, int]:
        return tuple(int(s) for s in self.label_maps.shape[1:])


def load_training_set(manifest_path: str | Path, splits: list[str], modalities: list[str] | None = None) -> TrainingSet:
    """Read the images and label maps of the given splits of a prepared manifest.

    ``modalities``: the channels to keep, in this order (None or ``[]``: every modality of the manifest);
    the other images are not read.
    """
    manifest = Manifest.load(manifest_path, kind="prepared")
    meta = manifest.meta
    channels_of = select_modalities(manifest.modalities, modalities, str(manifest_path))
    require_subregions(
        manifest_scheme(meta),
        str(manifest_path),
        "generators are conditioned on the tumor sub-regions (netc, snfh, et); "
        "train them on data with sub-region labels",
    )
    cases = [c for c in manifest.cases(splits) if c.images]
    if not cases:
        raise DataError(f"{manifest_path}: no cases with images in splits {splits}")
    images, label_maps = [], []
    affine = None
    for case in cases:
        if len(case.images) != len(manifest.modalities):
            raise DataError(
                f"{manifest_path}: case {case.case_id} has {len(case.images)} image(s) for {manifest.modalities}"
            )
        channels = [load_nifti(case.images[index])[0] for index in channels_of]
        label_map, case_affine, _ = load_nifti(case.label, dtype=np.int64)
        if affine is None:
            affine = case_affine
        if label_maps and label_map.shape != label_maps[0].shape:
            raise DataError(f"{case.label}: grid {label_map.shape} differs from {label_maps[0].shape}")
        images.append(np.stack(channels))
        label_maps.append(label_map)
    spacing = tuple(float(s) for s in np.sqrt((affine[:3, :3] ** 2).sum(0)))
    return TrainingSet(
        images=torch.from_numpy(np.stack(images)),
        label_maps=torch.from_numpy(np.stack(label_maps)),
        modalities=[manifest.modalities[index] for index in channels_of],
        case_ids=[c.case_id for c in cases],
        affine=affine,
        spacing_mm=spacing,
        label_digests={c.case_id: array_sha256(m.astype(np.int16)) for c, m in zip(cases, label_maps, strict=True)},
        preprocess=dict(meta.get("preprocess") or {}),
    )


def select_modalities(available: list[str], wanted: list[str] | None, source: str) -> list[int]:
    """The channel indices of ``wanted`` among ``available`` (all of them when ``wanted`` is empty)."""
    if not wanted:
        return list(range(len(available)))
    unknown = [m for m in wanted if m not in available]
    if unknown:
        raise ConfigError(f"modalities {unknown} are not in {source}, which has {available}")
    return [available.index(m) for m in wanted]


def one_hot(label_maps: torch.Tensor, num_classes: int = MODEL_CLASSES) -> torch.Tensor:
    """(B, X, Y, Z) integer label maps -> (B, K, X, Y, Z) float one-hot (the SPADE input)."""
    return torch.nn.functional.one_hot(label_maps.long(), num_classes).permute(0, 4, 1, 2, 3).float()


def draw_batch(
    data: TrainingSet, batch_size: int, flip_probability: float, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """A random batch ``(images, label_maps)``; left-right flips applied to both alike."""
    index = torch.randint(len(data.case_ids), (batch_size,), generator=generator)
    flips = torch.rand(batch_size, generator=generator) < flip_probability
    images, label_maps = data.images[index].clone(), data.label_maps[index].clone()
    # axis 0 of a RAS volume is left-right: dim 2 of (B, C, X, Y, Z), dim 1 of (B, X, Y, Z)
    images[flips] = images[flips].flip(2)
    label_maps[flips] = label_maps[flips].flip(1)
    return images, label_maps
