"""Reading the audit's cases: every file checked as it is read, every case on one grid.

A bad case is refused with one :class:`~medsynth.errors.DataError` naming its file, before any
check runs, so no figure of the report is computed from a NaN volume or a mislabelled map.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from medsynth.audit.anonymity import case_tumor_stats
from medsynth.data.manifest import AFFINE_TOLERANCE
from medsynth.data.scheme import CLASS_NAMES, manifest_scheme, require_subregions
from medsynth.errors import DataError
from medsynth.io import load_nifti
from medsynth.manifest import Case, Manifest


def load_audit_manifest(path: str | Path, kind: str) -> Manifest:
    """A manifest of ``kind`` (``prepared`` or ``cohort``) whose label maps are in the canonical scheme."""
    manifest = Manifest.load(path, kind=kind)
    scheme = manifest.meta.get("label_scheme", "canonical")
    if scheme != "canonical":
        raise DataError(
            f"{path}: label scheme {scheme!r}, not canonical; audit a prepared manifest (`medsynth prepare`) "
            "and a cohort made by `medsynth generate`"
        )
    require_subregions(
        manifest_scheme(manifest.meta),
        str(path),
        "the audit compares tumor sub-regions (netc, snfh, et) of real and synthetic cases",
    )
    return manifest


def cases_with_modalities(manifest: Manifest, path: str | Path, modalities: list[str], what: str) -> list[Case]:
    """The manifest's cases with images, holding only ``modalities``: those a cohort (``what``) was made of.

    A cohort of a subset of the real modalities (a FLAIR-only generator) is compared with those images; the
    subset must keep the real manifest's order, so a cohort that relabels channels is refused.
    """
    picked = [manifest.modalities.index(m) for m in modalities if m in manifest.modalities]
    if len(picked) != len(modalities) or picked != sorted(picked):
        raise DataError(
            f"{what}: modalities {modalities} differ from {path}'s {manifest.modalities} "
            "(a cohort may hold a subset of them, in the same order)"
        )
    everything = len(manifest.modalities)
    return [
        replace(c, images=[c.images[i] for i in picked]) if len(c.images) == everything else c
        for c in manifest.cases()
        if c.images
    ]


def load_case(
    case: Case, modalities: list[str] | None = None, grid: dict[str, Any] | None = None, source: Path | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Images (C, X, Y, Z), label map and affine of one manifest case, each file checked as it is read.

    Refused with a :class:`DataError` naming the file: an image count other than the modalities',
    images and label map on different grids (shape, or affine beyond ``AFFINE_TOLERANCE``), NaN
    or Inf values, label values outside the canonical scheme, an empty brain, or a grid (shape,
    voxel size) other than ``grid``'s, the first case loaded (``grid`` is filled from it when empty).
    """
    where = f"{source}: case {case.case_id}" if source else f"case {case.case_id}"
    if not case.images:
        raise DataError(f"{where}: no image files")
    if modalities is not None and len(case.images) != len(modalities):
        raise DataError(
            f"{where}: {len(case.images)} image file(s) for {len(modalities)} modalities ({', '.join(modalities)})"
        )
    if case.label is None:
        raise DataError(f"{where}: no label map (the audit reads each case's label map)")
    arrays: list[np.ndarray] = []
    reference: tuple[Path, tuple[int, ...], np.ndarray] | None = None
    for path in [*case.images, case.label]:
        role = "label map" if path == case.label else "image"
        array, affine, _ = load_nifti(path, dtype=None)
        if array.ndim != 3:
            raise DataError(f"{path}: expected a 3D {role}, got shape {array.shape}")
        if reference is None:
            reference = (path, array.shape, affine)
        elif array.shape != reference[1]:
            raise DataError(
                f"{path}: {role} shape {array.shape} differs from {reference[0].name} {reference[1]}; "
                "a case's images and label map must share one grid"
            )
        elif not np.allclose(affine, reference[2], atol=AFFINE_TOLERANCE):
            offset = float(np.abs(affine - reference[2]).max())
            raise DataError(
                f"{path}: {role} affine differs from {reference[0].name} by up to {offset:.4g} "
                f"(tolerance {AFFINE_TOLERANCE}); a case's images and label map must share one space"
            )
        if np.issubdtype(array.dtype, np.floating):
            bad = int(np.size(array) - np.count_nonzero(np.isfinite(array)))
            if bad:
                raise DataError(f"{path}: {bad} NaN or Inf voxel(s) in the {role}")
        arrays.append(array)
    label_path, label_array = case.label, arrays.pop()
    values = np.unique(label_array)
    if np.any(values != np.round(values)):
        raise DataError(f"{label_path}: label values are not integers")
    unknown = sorted(set(values.astype(np.int64).tolist()) - set(CLASS_NAMES))
    if unknown:
        raise DataError(
            f"{label_path}: label values {unknown} are not in the canonical scheme "
            f"({', '.join(f'{v} {n}' for v, n in CLASS_NAMES.items())}); audit prepared cases and cohorts"
        )
    label_map = label_array.astype(np.int64)
    brain = label_map > 0
    if not brain.any():
        raise DataError(f"{label_path}: empty brain (every voxel is background 0)")
    images = np.stack([a.astype(np.float32, copy=False) for a in arrays])
    for path, image in zip(case.images, images, strict=True):
        if not np.any(image[brain]):
            raise DataError(f"{path}: every voxel inside the brain of {label_path.name} is 0")
    affine = reference[2] if reference is not None else np.eye(4)
    if grid is not None:
        _check_grid(case.images[0], label_map.shape, affine, grid)
    return images, label_map, affine


def _check_grid(path: Path, shape: tuple[int, ...], affine: np.ndarray, grid: dict[str, Any]) -> None:
    """Every case of an audit on one grid: the checks compare volumes voxel by voxel."""
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    if not grid:
        grid.update(shape=shape, spacing=spacing, file=path)
        return
    hint = "real and synthetic cases must be prepared alike"
    if shape != grid["shape"]:
        raise DataError(f"{path}: grid {shape} differs from {grid['file']} {grid['shape']}; {hint}")
    if not np.allclose(spacing, grid["spacing"], atol=AFFINE_TOLERANCE):
        raise DataError(
            f"{path}: voxel size {_mm(spacing)} mm differs from {grid['file']} {_mm(grid['spacing'])} mm; {hint}"
        )


def _mm(spacing: np.ndarray) -> str:
    return "x".join(f"{v:.3g}" for v in spacing)


def load_cases(
    cases: list[Case], modalities: list[str], grid: dict[str, Any], source: Path
) -> tuple[list[tuple[np.ndarray, np.ndarray]], list[dict[str, Any]]]:
    """(images, label map) of every case, and its tumor stats (volume, location, sub-region fractions)."""
    pairs, stats = [], []
    for case in cases:
        images, label_map, affine = load_case(case, modalities, grid, source)
        pairs.append((images, label_map))
        stats.append({"case_id": case.case_id, **case_tumor_stats(label_map, affine)})
    return pairs, stats
