"""``medsynth cohort verify COHORT``: checksums, geometry and manifest consistency.

Every problem is reported as ``<file>: <what is wrong>``; the command exits 1 when any exists.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medsynth.cohort.finalize import CHECKSUMS
from medsynth.data.manifest import entry_files, load_manifest, manifest_cases
from medsynth.data.scheme import CLASS_NAMES
from medsynth.errors import DataError
from medsynth.io import load_nifti, sha256


def verify_cohort(root: str | Path) -> list[str]:
    """Every problem of the cohort at ``root`` (empty list: it verifies)."""
    import SimpleITK as sitk

    root = Path(root)
    problems: list[str] = []
    listing = root / CHECKSUMS
    if not listing.is_file():
        return [f"{listing}: missing (the cohort was not finalized)"]
    listed = {}
    for number, line in enumerate(listing.read_text().splitlines(), 1):
        digest, _, rel = line.partition("  ")
        if len(digest) != 64 or not rel:
            problems.append(f"{listing}:{number}: malformed line")
            continue
        listed[rel] = digest
    for rel, digest in listed.items():
        path = root / rel
        if not path.is_file():
            problems.append(f"{path}: listed in {CHECKSUMS} but missing")
        elif sha256(path) != digest:
            problems.append(f"{path}: checksum differs (file changed)")
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if path.is_file() and path.name != CHECKSUMS and not path.name.startswith(".") and rel not in listed:
            problems.append(f"{path}: not listed in {CHECKSUMS}")
    try:
        manifest = load_manifest(root / "manifest.json")
    except DataError as exc:
        return [*problems, str(exc)]
    cases = manifest_cases(manifest)
    modalities = manifest["medsynth"]["modalities"]
    named = {c.case_id for c in cases}
    for folder in sorted((root / "cases").iterdir()) if (root / "cases").is_dir() else []:
        if folder.name not in named:
            problems.append(f"{folder}: case folder not in manifest.json")
    if manifest.get("numTraining") != len(manifest.get("training", [])):
        problems.append(f"{root / 'manifest.json'}: numTraining does not match the training list")
    for case in cases:
        missing = [root / rel for rel in entry_files(case.record) if not (root / rel).is_file()]
        if missing:
            problems += [f"{p}: named in manifest.json but missing" for p in missing]
            continue
        if len(case.images) != len(modalities):
            problems.append(f"case {case.case_id}: {len(case.images)} images for modalities {modalities}")
        try:
            label, affine, header = load_nifti(case.label, dtype=np.int64)
        except DataError as exc:
            problems.append(str(exc))
            continue
        unknown = sorted(set(np.unique(label).tolist()) - set(CLASS_NAMES))
        if unknown:
            problems.append(f"{case.label}: label values {unknown} outside the canonical scheme")
        zooms = np.asarray(header.get_zooms()[:3], dtype=np.float64)
        for path in case.images:
            try:
                image, image_affine, _ = load_nifti(path)
            except DataError as exc:
                problems.append(str(exc))
                continue
            if image.shape != label.shape:
                problems.append(f"{path}: shape {image.shape} differs from the label map {label.shape}")
            elif not np.allclose(image_affine, affine, atol=1e-4):
                problems.append(f"{path}: affine differs from the label map's")
            elif not np.isfinite(image).all():
                problems.append(f"{path}: contains NaN or Inf")
            reader = sitk.ReadImage(str(path))
            if not np.allclose(reader.GetSpacing(), zooms, atol=1e-4):
                problems.append(f"{path}: SimpleITK reads spacing {reader.GetSpacing()}, nibabel {tuple(zooms)}")
    return problems
