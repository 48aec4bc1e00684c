"""Rebuild one case of a cohort from its ``provenance.json``: what the dataset card promises.

    >>> from medsynth.cohort.regenerate import regenerate_case  # doctest: +SKIP
    >>> case = regenerate_case("cohort/cases/synth_00003/provenance.json")  # doctest: +SKIP
    >>> case.images.shape, case.label_map.shape  # doctest: +SKIP
    ((2, 48, 48, 48), (48, 48, 48))

The label map is rebuilt from its record (:func:`medsynth.labels.regenerate`, or read from the
label-map file the cohort was made from), then synthesized with the case's style seed by the
same generator at the precision the cohort's plan records, and resampled as the cohort was.
An fp32 cohort comes back bit for bit; a bf16 one to bf16 rounding (on hardware whose bf16
kernels differ from the original machine's).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from medsynth.cohort.case import SynthesizedCase, synthesize_case
from medsynth.errors import MedsynthError
from medsynth.io import load_nifti, read_json, sha256


def regenerate_case(
    provenance: dict[str, Any] | str | os.PathLike,
    checkpoint: str | os.PathLike | None = None,
    plan: dict[str, Any] | str | os.PathLike | None = None,
) -> SynthesizedCase:
    """The case ``provenance`` describes: images, label map and affine, as the cohort wrote them.

    Args:
        provenance: a case's ``provenance.json`` (or its case folder), or the record itself.
        checkpoint: the generator; default: the path the cohort's plan records. Its SHA-256 must
            match the provenance's ``generator_sha256``.
        plan: the cohort's ``cohort_plan.json`` (or its dict); default: the one of the cohort the
            provenance file lies in (``<cohort>/cases/<case_id>/provenance.json``).

    Returns:
        The case's images (C, X, Y, Z), int16 label map and affine, and the modality names.

    >>> case = regenerate_case("cohort/cases/synth_00000/provenance.json")  # doctest: +SKIP
    >>> case.modalities  # doctest: +SKIP
    ['t1c', 'flair']
    """
    import medsynth

    if isinstance(provenance, dict):
        record, where = provenance, f"case {provenance.get('case_id')}"
        if plan is None:
            raise MedsynthError(f"{where}: give plan= (the cohort's cohort_plan.json) with a provenance record")
    else:
        path = Path(provenance)
        path = path / "provenance.json" if path.is_dir() else path
        record, where = read_json(path), str(path)
        if plan is None:
            plan = path.parent.parent.parent / "cohort_plan.json"
    plan = plan if isinstance(plan, dict) else read_json(Path(plan))
    checkpoint = Path(checkpoint if checkpoint is not None else plan["generator"]["path"])
    if not checkpoint.is_file():
        raise MedsynthError(f"{where}: generator {checkpoint} not found; pass checkpoint=")
    if sha256(checkpoint) != record["generator_sha256"]:
        raise MedsynthError(
            f"{where}: {checkpoint} is not the generator that made this case "
            f"(sha256 {record['generator_sha256'][:16]}... expected)"
        )
    generator = medsynth.load_generator(checkpoint, precision=plan["generator"]["precision"])
    label_map, affine = _label_map(record["label_map_record"])
    # the plan records a number when the cohort was resampled, the generator's spacing list when not
    spacing_mm = plan["spacing_mm"] if isinstance(plan["spacing_mm"], int | float) else None
    return synthesize_case(generator, label_map, affine, record["style_seed"], spacing_mm, where)


def _label_map(record: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """The label map and affine a case was synthesized from: rebuilt from its recipe, or read from its file."""
    if "label_map" in record:  # a label map read from a manifest without a recipe
        label_map, affine, _ = load_nifti(record["label_map"], dtype=None)
        return label_map, affine
    from medsynth.labels import regenerate
    from medsynth.labels.sources import read_sources

    label_map = regenerate(record)  # checks that the sources are unchanged
    anatomy = record["anatomy"]
    anatomies, _ = read_sources([anatomy["manifest"]], splits=None, healthy=anatomy["split"] == "healthy")
    return label_map, next(a.affine for a in anatomies if a.case_id == anatomy["case_id"])
