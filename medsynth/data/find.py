"""Find a dataset's cases: detect or load its layout, then read its files by pattern or index.

>>> import medsynth, pathlib
>>> found = find_cases(pathlib.Path(medsynth.__file__).parent / "sample_data" / "brats2013_2mm")
>>> found.layout.name, found.modalities, [c.split for c in found.cases]
('brats2013', ['t1c', 'flair'], ['train', 'train', 'validation', 'validation', 'train', 'train'])
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medsynth.data.importers import is_nnunet, scan_index
from medsynth.data.layouts import CaseFiles, Layout, first_file, load_layout, nifti_files, scan_patterns
from medsynth.data.scheme import LabelScheme
from medsynth.errors import DataError
from medsynth.io import strip_nifti_suffix


def _refuse_duplicate_ids(cases: list[CaseFiles]) -> None:
    """Two cases with one id would overwrite each other downstream (and may be one subject in two splits)."""
    for first, second in itertools.pairwise(cases):  # sorted by id
        if first.case_id == second.case_id:
            a, b = first_file(first), first_file(second)
            raise DataError(
                f"{b}: case id {first.case_id!r} found twice ({first.split or 'no split'} at {a.parent}, "
                f"{second.split or 'no split'} at {b.parent}); one case id must name one subject"
            )


def detect_layout(root: Path) -> str:
    """Guess the layout of ``root`` from its file names; raise :class:`DataError` if unknown."""
    if (root / "dataset.json").is_file():
        return "nnunet" if is_nnunet(root / "dataset.json") else "msd"
    names = [p.name.lower() for p in nifti_files(root, "*")]
    if not names:
        raise DataError(f"{root}: no NIfTI files (.nii or .nii.gz) found")
    stems = [strip_nifti_suffix(n) for n in names]
    if any(s.startswith("otmulticlass") for s in stems) or any(s.startswith(("t1c_", "flair_")) for s in stems):
        return "brats2013"
    if any(s.endswith(("-t1n", "-t1c", "-t2w", "-t2f")) for s in stems):
        return "brats2023"
    if any(s.endswith(("_t1ce", "_flair", "_t2", "_t1")) for s in stems):
        return "brats2021"
    raise DataError(
        f"{root}: unknown layout (file names of no built-in layout: BraTS 2013, 2018-2021, 2023, MSD, nnU-Net); "
        "declare yours: --layout my_layout.yaml (see configs/layouts/brats2018_wt.yaml) or "
        "--image MODALITY=PATTERN --label PATTERN --label-scheme SCHEME"
    )


@dataclass
class Scan:
    """What a dataset folder holds, as a layout found it."""

    layout: Layout
    modalities: list[str]  # in channel order, present in every case
    cases: list[CaseFiles]
    label_scheme: LabelScheme | None


def find_cases(
    root: str | Path, layout: str | Path | Layout | dict[str, Any] | None = None, include: str = "*"
) -> Scan:
    """Find the cases of ``root`` with ``layout`` (detected from file names when None).

    Cases missing a modality, a label or a mask that other cases have raise a
    :class:`DataError` listing every such case.
    """
    root = Path(root).resolve()
    if root.is_file() and root.suffix.lower() == ".json":  # a datalist (or an MSD/nnU-Net dataset.json)
        if root.name == "dataset.json" and layout is None:
            root = root.parent
        else:
            layout = layout or "datalist"
    elif not root.is_dir():
        raise DataError(f"{root}: not a folder" if root.exists() else f"{root}: not found")
    declared = load_layout(layout or detect_layout(root))
    if root.is_file() and declared.index != "datalist":
        raise DataError(f"{root}: a file; layout {declared.name!r} reads a dataset folder")
    if declared.index is not None:
        found, modalities, label_scheme = scan_index(root, declared, include)
    else:
        found = scan_patterns(root, declared, include)
        modalities, label_scheme = declared.modalities, declared.label_scheme
        if not found:
            patterns = ", ".join(f"{role}: {p!r}" for role, p in declared.patterns().items())
            raise DataError(f"{root}: no file matches layout {declared.name!r} ({patterns})")
        if declared.images:
            present = set().union(*(c.images for c in found))
            modalities = [m for m in modalities if m in present]
    found.sort(key=lambda c: c.case_id)
    _refuse_duplicate_ids(found)
    problems = []
    if "*" not in modalities:
        for case in found:
            missing = [m for m in modalities if m not in case.images and "*" not in case.images]
            if missing:
                problems.append(
                    f"case {case.case_id}: missing modality {', '.join(missing)} ({first_file(case).parent})"
                )
    for attribute in ("label", "mask"):
        with_it = [c for c in found if getattr(c, attribute) is not None]
        if with_it and len(with_it) != len(found):
            for case in found:
                if getattr(case, attribute) is None and not (attribute == "label" and case.split == "test"):
                    problems.append(f"case {case.case_id}: missing {attribute} file ({first_file(case).parent})")
    if problems:
        raise DataError(f"{root}: incomplete cases (layout {declared.name}):\n  " + "\n  ".join(problems))
    return Scan(declared, modalities, found, label_scheme)
