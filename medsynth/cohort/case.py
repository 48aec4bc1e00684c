"""One synthetic case: its seeds and provenance, and its images made from its label map.

What :mod:`medsynth.cohort.generate` writes and :mod:`medsynth.cohort.regenerate` rebuilds,
so both go through the same arithmetic.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from medsynth._version import __version__
from medsynth.data.scheme import CANONICAL_TO_BRATS2021, CANONICAL_TO_BRATS2023

if TYPE_CHECKING:
    from medsynth.models.generator import Generator

# the BraTS label table of each convention's <case>_seg.nii.gz (canonical: none written)
LABEL_CONVENTIONS = {"canonical": None, "brats2021": CANONICAL_TO_BRATS2021, "brats2023": CANONICAL_TO_BRATS2023}


@dataclass
class SynthesizedCase:
    """A case as written: images (C, X, Y, Z) float32 in ``modalities`` order, int16 label map, shared affine."""

    images: np.ndarray
    label_map: np.ndarray
    affine: np.ndarray
    modalities: list[str]


def case_id(index: int) -> str:
    return f"synth_{index:05d}"


def style_seed(seed: int, index: int) -> int:
    """The style latent's seed of case ``index`` of a cohort with ``seed``."""
    return int(np.random.SeedSequence([seed, index, 1]).generate_state(1)[0] % (2**31))


def case_provenance(index: int, seed: int, plan: dict[str, Any], record: dict[str, Any]) -> dict[str, Any]:
    """The ``provenance.json`` of case ``index``: seeds, generator and the label map's record."""
    return {
        "case_id": case_id(index),
        "index": index,
        "cohort_seed": seed,
        "style_seed": style_seed(seed, index),
        "generator_sha256": plan["generator"]["sha256"],
        "generator_kind": plan["generator"]["kind"],
        "label_map_record": record,
        "split": record.get("split", "train"),
        "medsynth": __version__,
    }


def as_saved(label_map: np.ndarray, affine: np.ndarray, spacing_mm: float | None) -> tuple[np.ndarray, np.ndarray]:
    """The label map on the grid it is written on (resampled when ``spacing_mm`` is set)."""
    if not spacing_mm:
        return label_map, affine
    from medsynth.geometry import resample

    return resample(label_map, affine, spacing_mm, "nearest")


def synthesize_case(
    generator: Generator,
    label_map: np.ndarray,
    affine: np.ndarray,
    style_seed: int,
    spacing_mm: float | None,
    source: str | None = None,
) -> SynthesizedCase:
    """Check ``label_map`` (values, brain, geometry; ``source`` names it), synthesize, resample when asked."""
    # whole numbers 0..7 with a brain, on the generator's grid: only then is the int16 cast lossless
    label_map = generator.check_label_map(label_map, affine, source).astype(np.int16)
    images = generator.synthesize(label_map, seed=style_seed, affine=affine).images
    if spacing_mm:
        from medsynth.geometry import resample

        images, _ = resample(images, affine, spacing_mm, "bilinear")
    label_map, affine = as_saved(label_map, affine, spacing_mm)
    return SynthesizedCase(images, label_map, affine, list(generator.modalities))
