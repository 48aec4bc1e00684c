"""``medsynth export``: a cohort in nnU-Net v2 raw layout or BraTS 2021/2023 naming.

$ medsynth export nnunet cohort -o nnUNet_raw --dataset-id 501 --name SynthBraTS
$ medsynth export brats cohort -o brats_layout --edition 2023
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from medsynth.data.manifest import load_manifest, manifest_cases
from medsynth.data.scheme import (
    CANONICAL_TO_BRATS2021,
    CANONICAL_TO_BRATS2023,
    CLASS_NAMES,
    ET,
    NETC,
    SNFH,
    from_canonical,
)
from medsynth.errors import MedsynthError
from medsynth.io import atomic_path, load_nifti, save_nifti, write_json

# nnU-Net needs consecutive labels: tumor sub-regions only (the segmentation target) by default
NNUNET_TUMOR = {NETC: 1, SNFH: 2, ET: 3}
NNUNET_TUMOR_NAMES = {"background": 0, "NETC": 1, "SNFH": 2, "ET": 3}
BRATS_NAMES = {
    "2021": {"t1": "t1", "t1c": "t1ce", "t2": "t2", "flair": "flair", "seg": "seg"},
    "2023": {"t1": "t1n", "t1c": "t1c", "t2": "t2w", "flair": "t2f", "seg": "seg"},
}


def _cases(cohort: Path):
    manifest = load_manifest(Path(cohort) / "manifest.json")
    if manifest["medsynth"].get("kind") != "cohort":
        raise MedsynthError(f"{cohort}: not a medsynth cohort (run `medsynth generate`)")
    return manifest, manifest_cases(manifest)


def export_nnunet(cohort: str | Path, output: str | Path, dataset_id: int, name: str, anatomy: bool = False) -> Path:
    """Write ``Dataset<ID>_<name>/`` with imagesTr (``_0000``...), labelsTr and dataset.json."""
    if not 0 < dataset_id < 1000:
        raise MedsynthError("--dataset-id must be between 1 and 999")
    manifest, cases = _cases(Path(cohort))
    modalities = manifest["medsynth"]["modalities"]
    target = Path(output) / f"Dataset{dataset_id:03d}_{name}"
    if anatomy:
        labels = {name: value for value, name in CLASS_NAMES.items() if value <= ET}
        labels["background"] = 0
    else:
        labels = NNUNET_TUMOR_NAMES
    with atomic_path(target) as tmp:
        (tmp / "imagesTr").mkdir(parents=True)
        (tmp / "labelsTr").mkdir()
        for case in cases:
            for channel, path in enumerate(case.images):
                shutil.copyfile(path, tmp / "imagesTr" / f"{case.case_id}_{channel:04d}.nii.gz")
            label_map, affine, _ = load_nifti(case.label, dtype=np.int64)
            label = label_map if anatomy else from_canonical(label_map, NNUNET_TUMOR)
            save_nifti(label, affine, tmp / "labelsTr" / f"{case.case_id}.nii.gz", dtype=np.uint8)
        write_json(
            {
                "channel_names": {str(i): m.upper() if m != "flair" else "FLAIR" for i, m in enumerate(modalities)},
                "labels": dict(sorted(labels.items(), key=lambda item: item[1])),
                "numTraining": len(cases),
                "file_ending": ".nii.gz",
                "name": name,
                "description": "synthetic cohort exported by medsynth",
                "licence": "CC BY-NC-SA 3.0 (derivative of BraTS data)",
            },
            tmp / "dataset.json",
        )
    return target


def export_brats(cohort: str | Path, output: str | Path, edition: str) -> Path:
    """Write one folder per case with BraTS ``edition`` (2021 or 2023) file names and labels."""
    if edition not in BRATS_NAMES:
        raise MedsynthError("--edition must be 2021 or 2023")
    manifest, cases = _cases(Path(cohort))
    modalities = manifest["medsynth"]["modalities"]
    names = BRATS_NAMES[edition]
    unknown = [m for m in modalities if m not in names]
    if unknown:
        raise MedsynthError(f"modalities {unknown} have no BraTS {edition} file name")
    mapping = CANONICAL_TO_BRATS2021 if edition == "2021" else CANONICAL_TO_BRATS2023
    target = Path(output)
    with atomic_path(target) as tmp:
        for number, case in enumerate(cases):
            case_id = f"BraTS2021_{number:05d}" if edition == "2021" else f"BraTS-GLI-{number:05d}-000"
            sep = "_" if edition == "2021" else "-"
            folder = tmp / case_id
            folder.mkdir(parents=True)
            for modality, path in zip(modalities, case.images, strict=True):
                shutil.copyfile(path, folder / f"{case_id}{sep}{names[modality]}.nii.gz")
            label_map, affine, _ = load_nifti(case.label, dtype=np.int64)
            save_nifti(from_canonical(label_map, mapping), affine, folder / f"{case_id}{sep}seg.nii.gz", dtype=np.uint8)
        (tmp / "medsynth_case_ids.txt").write_text("".join(f"{c.case_id}\t{i}\n" for i, c in enumerate(cases)))
    return target
