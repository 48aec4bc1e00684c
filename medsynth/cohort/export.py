"""``medsynth export``: a cohort in nnU-Net v2 raw layout or BraTS 2021/2023 naming.

$ medsynth export nnunet cohort -o nnUNet_raw --dataset-id 501 --name SynthBraTS
$ medsynth export brats cohort -o brats_layout --edition 2023

Only a cohort that passes ``medsynth cohort verify`` is exported. Output folders are written
whole (:func:`medsynth.io.atomic_output`): a folder medsynth did not write is refused, one an
earlier export of the same kind wrote is replaced once the new one is complete. nnU-Net dataset
ids and names follow nnU-Net v2's ``DatasetNNN_Name`` rules, so they cannot point outside ``-o``.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from medsynth.data.scheme import (
    CANONICAL_TO_BRATS2021,
    CANONICAL_TO_BRATS2023,
    CLASS_NAMES,
    ET,
    NETC,
    SNFH,
    from_canonical,
)
from medsynth.errors import ConfigError, DataError, MedsynthError, OutputError
from medsynth.io import atomic_output, load_nifti, save_nifti, write_json
from medsynth.manifest import Case, Manifest

# nnU-Net needs consecutive labels: tumor sub-regions only (the segmentation target) by default
NNUNET_TUMOR = {NETC: 1, SNFH: 2, ET: 3}
NNUNET_TUMOR_NAMES = {"background": 0, "NETC": 1, "SNFH": 2, "ET": 3}
BRATS_NAMES = {
    "2021": {"t1": "t1", "t1c": "t1ce", "t2": "t2", "flair": "flair", "seg": "seg"},
    "2023": {"t1": "t1n", "t1c": "t1c", "t2": "t2w", "flair": "t2f", "seg": "seg"},
}


# nnU-Net v2 finds a dataset by the folder name "Dataset%03d_<name>" in nnUNet_raw: a three-digit id
# and a name that is one path component (no separators, no "..").
DATASET_NAME = re.compile(r"[A-Za-z0-9_-]{1,100}")
SHOWN_PROBLEMS = 3


def _cases(cohort: Path) -> tuple[dict[str, Any], list[Case]]:
    """The manifest and cases of a cohort that verifies; otherwise a :class:`DataError` naming the first problems."""
    from medsynth.cohort.verify import verify_cohort

    if not cohort.is_dir():
        raise DataError(f"{cohort}: no such cohort folder")
    problems = verify_cohort(cohort)
    if problems:
        more = f" (and {len(problems) - SHOWN_PROBLEMS} more)" if len(problems) > SHOWN_PROBLEMS else ""
        raise DataError(
            f"{cohort}: does not verify, nothing exported: {'; '.join(problems[:SHOWN_PROBLEMS])}{more}; "
            f"`medsynth cohort verify {cohort}` lists every problem"
        )
    manifest = Manifest.load(cohort, kind="cohort")
    return manifest.data, manifest.cases()


def _check_not_inside(target: Path, cohort: Path) -> None:
    resolved, source = target.resolve(), cohort.resolve()
    if resolved == source or source in resolved.parents:
        raise OutputError(f"{target}: lies inside the cohort {cohort}; choose an output outside it")


def _label_map(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """A canonical label map, refused with its file named when it holds values outside the scheme."""
    label_map, affine, _ = load_nifti(path, dtype=np.int64)
    unknown = sorted(set(np.unique(label_map).tolist()) - set(CLASS_NAMES))
    if unknown:
        raise DataError(f"{path}: label values {unknown} outside the canonical scheme")
    return label_map, affine


def nnunet_dataset_folder(output: str | Path, dataset_id: int, name: str) -> Path:
    """``output/Dataset<ID>_<name>`` after checking id and name against nnU-Net v2's rules and ``output``.

    Refused (:class:`MedsynthError`) when the id is not 1-999, the name is not letters, digits, ``_``
    and ``-`` (so it cannot leave ``output``), or another dataset in ``output`` has the same id.
    """
    if isinstance(dataset_id, bool) or not isinstance(dataset_id, int) or not 0 < dataset_id < 1000:
        raise ConfigError(f"--dataset-id {dataset_id!r}: must be a whole number from 1 to 999 (nnU-Net v2)")
    if not isinstance(name, str) or not DATASET_NAME.fullmatch(name):
        raise ConfigError(
            f"--name {name!r}: an nnU-Net dataset name is 1-100 letters, digits, '_' or '-' "
            "(no path separators, spaces or '..')"
        )
    output = Path(output)
    folder = f"Dataset{dataset_id:03d}_{name}"
    prefix = f"Dataset{dataset_id:03d}"  # what nnU-Net v2 matches when it looks a dataset id up
    if output.is_dir():
        try:
            clashes = sorted(
                e.name for e in output.iterdir() if e.name.startswith(prefix) and e.name != folder and e.is_dir()
            )
        except OSError as exc:
            raise OutputError(f"{output}: cannot list the nnUNet_raw folder ({exc.strerror})") from None
        if clashes:
            raise OutputError(
                f"{output}: dataset id {dataset_id} is already used by {', '.join(clashes)}; nnU-Net finds "
                "datasets by id, so choose another --dataset-id (nothing was changed)"
            )
    return output / folder


def export_nnunet(cohort: str | Path, output: str | Path, dataset_id: int, name: str, anatomy: bool = False) -> Path:
    """Write ``Dataset<ID>_<name>/`` with imagesTr (``_0000``...), labelsTr and dataset.json."""
    cohort = Path(cohort)
    target = nnunet_dataset_folder(output, dataset_id, name)
    _check_not_inside(target, cohort)
    manifest, cases = _cases(cohort)
    modalities = manifest["medsynth"]["modalities"]
    if anatomy:
        labels = {name: value for value, name in CLASS_NAMES.items() if value <= ET}
        labels["background"] = 0
    else:
        labels = NNUNET_TUMOR_NAMES
    with atomic_output(target, "export-nnunet", inputs=[cohort]) as tmp:
        (tmp / "imagesTr").mkdir(parents=True)
        (tmp / "labelsTr").mkdir()
        for case in cases:
            for channel, path in enumerate(case.images):
                shutil.copyfile(path, tmp / "imagesTr" / f"{case.case_id}_{channel:04d}.nii.gz")
            label_map, affine = _label_map(case.label)
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
    cohort, target = Path(cohort), Path(output)
    _check_not_inside(target, cohort)
    manifest, cases = _cases(cohort)
    modalities = manifest["medsynth"]["modalities"]
    names = BRATS_NAMES[edition]
    unknown = [m for m in modalities if m not in names]
    if unknown:
        raise MedsynthError(f"modalities {unknown} have no BraTS {edition} file name")
    mapping = CANONICAL_TO_BRATS2021 if edition == "2021" else CANONICAL_TO_BRATS2023
    with atomic_output(target, "export-brats", inputs=[cohort]) as tmp:
        for number, case in enumerate(cases):
            case_id = f"BraTS2021_{number:05d}" if edition == "2021" else f"BraTS-GLI-{number:05d}-000"
            sep = "_" if edition == "2021" else "-"
            folder = tmp / case_id
            folder.mkdir(parents=True)
            for modality, path in zip(modalities, case.images, strict=True):
                shutil.copyfile(path, folder / f"{case_id}{sep}{names[modality]}.nii.gz")
            label_map, affine = _label_map(case.label)
            save_nifti(from_canonical(label_map, mapping), affine, folder / f"{case_id}{sep}seg.nii.gz", dtype=np.uint8)
        (tmp / "medsynth_case_ids.txt").write_text("".join(f"{c.case_id}\t{i}\n" for i, c in enumerate(cases)))
    return target
