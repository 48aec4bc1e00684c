"""Find the cases of a dataset folder in each supported layout.

A layout turns a folder into :class:`CaseFiles` records (which file holds which modality,
the label map, the brain mask). Supported:

- ``brats2013``: subject folders with ``T1_*``, ``T1c_*``, ``T2_*``, ``Flair_*``,
  ``brainmask*`` and ``OTMultiClass*`` files (the DeepMedic-prepared BraTS 2013/2015 data).
- ``brats2021``: ``<case>_t1``, ``_t1ce``, ``_t2``, ``_flair``, ``_seg`` (BraTS 2018-2021).
- ``brats2023``: ``<case>-t1n``, ``-t1c``, ``-t2w``, ``-t2f``, ``-seg`` (BraTS 2023+).
- ``msd``: Medical Segmentation Decathlon Task01 (4D images, ``dataset.json``).
- ``freesurfer``: label maps with FreeSurfer values and no images (e.g. SynthSeg maps).
- ``t1``: brain-extracted healthy T1 scans with no labels (e.g. Colin27).

Modalities get medsynth's names: ``t1``, ``t1c``, ``t2``, ``flair``.
"""

from __future__ import annotations

import errno
import fnmatch
import itertools
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path

from medsynth.errors import DataError
from medsynth.io import NIFTI_SUFFIXES, read_json, strip_nifti_suffix

MODALITY_ORDER = ("t1", "t1c", "t2", "flair")

# layout -> (label scheme of its label files)
LABEL_SCHEMES = {
    "brats2013": "brats2013",
    "brats2021": "brats2021",
    "brats2023": "brats2023",
    "msd": "msd",
    "freesurfer": "freesurfer",
    "t1": None,
}
LAYOUTS = tuple(LABEL_SCHEMES)

_BRATS2013_PREFIX = {"t1": "t1", "t1c": "t1c", "t2": "t2", "flair": "flair"}
_BRATS2021_SUFFIX = {"t1": "t1", "t1ce": "t1c", "t2": "t2", "flair": "flair", "seg": "label"}
_BRATS2023_SUFFIX = {"t1n": "t1", "t1c": "t1c", "t2w": "t2", "t2f": "flair", "seg": "label"}
_MSD_MODALITY = {"flair": "flair", "t1w": "t1", "t1gd": "t1c", "t2w": "t2"}
_SPLIT_FOLDERS = {
    "train": "train",
    "training": "train",
    "tr": "train",
    "validation": "validation",
    "val": "validation",
    "valid": "validation",
    "test": "test",
    "testing": "test",
}


@dataclass
class CaseFiles:
    """The files of one case, as found on disk (absolute paths)."""

    case_id: str
    images: dict[str, Path] = field(default_factory=dict)  # modality -> file (or "*" for 4D)
    label: Path | None = None
    mask: Path | None = None
    split: str | None = None  # from the folder structure, when it says


def _nifti_files(root: Path, include: str) -> list[Path]:
    """NIfTI names under ``root``, broken links included: a scanner refuses those it would use.

    A folder that cannot be listed is an error (``Path.rglob`` skips it silently). Symbolic
    links to folders are not followed.
    """

    def refuse(error: OSError) -> None:
        raise DataError(f"{error.filename}: cannot list folder ({error.strerror})")

    files = [
        Path(folder) / name
        for folder, _, names in os.walk(root, onerror=refuse)
        for name in names
        if name.endswith(NIFTI_SUFFIXES) and not name.startswith(".") and fnmatch.fnmatch(name, include)
    ]
    return sorted(files)


def _readable(path: Path) -> Path:
    """``path``, after checking that it is a readable file; otherwise a :class:`DataError` naming it.

    A dangling or looping symbolic link would otherwise drop a modality without a word.
    """
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise DataError(f"{path}: symbolic link loop") from None
        if path.is_symlink():
            raise DataError(f"{path}: broken symbolic link (target {os.readlink(path)} does not exist)") from None
        if exc.errno == errno.ENOENT:
            raise DataError(f"{path}: file not found") from None
        raise DataError(f"{path}: cannot read ({exc.strerror})") from None
    if not stat.S_ISREG(mode):
        raise DataError(f"{path}: not a regular file")
    try:
        os.close(os.open(path, os.O_RDONLY))
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror})") from None
    return path


def _split_of(path: Path, root: Path) -> str | None:
    for part in path.relative_to(root).parts[:-1]:
        if part.lower() in _SPLIT_FOLDERS:
            return _SPLIT_FOLDERS[part.lower()]
    return None


def _brats2013_key(name: str) -> str | None:
    stem = strip_nifti_suffix(name).lower()
    if stem.startswith("otmulticlass"):
        return "label"
    if stem.startswith("brainmask"):
        return "mask"
    return _BRATS2013_PREFIX.get(stem.split("_", 1)[0])


def _scan_brats2013(root: Path, include: str) -> list[CaseFiles]:
    cases: dict[Path, CaseFiles] = {}
    for path in _nifti_files(root, include):
        key = _brats2013_key(path.name)
        if key is None:
            continue
        folder = path.parent
        case = cases.setdefault(folder, CaseFiles(case_id=folder.name, split=_split_of(path, root)))
        _add(case, key, _readable(path))
    return list(cases.values())


def _add(case: CaseFiles, key: str, path: Path) -> None:
    """Record ``path`` as the ``key`` file (a modality, ``label`` or ``mask``) of ``case``; never overwrite one."""
    existing = case.label if key == "label" else case.mask if key == "mask" else case.images.get(key)
    if existing is not None:
        raise DataError(
            f"{path}: a second {key} file for case {case.case_id!r} (first: {existing}); "
            "one case id must name one subject"
        )
    if key == "label":
        case.label = path
    elif key == "mask":
        case.mask = path
    else:
        case.images[key] = path


def _scan_suffix(root: Path, include: str, sep: str, table: dict[str, str]) -> list[CaseFiles]:
    pattern = re.compile(rf"^(?P<case>.+){re.escape(sep)}(?P<key>[A-Za-z0-9]+)$")
    cases: dict[str, CaseFiles] = {}
    for path in _nifti_files(root, include):
        match = pattern.match(strip_nifti_suffix(path.name))
        if not match or match["key"].lower() not in table:
            continue
        key = table[match["key"].lower()]
        split = _split_of(path, root)
        case = cases.setdefault(match["case"], CaseFiles(case_id=match["case"], split=split))
        if case.split != split:
            raise DataError(
                f"{path}: case id {case.case_id!r} is in two splits ({case.split} at {_first_file(case).parent}, "
                f"{split} at {path.parent}); a subject in two splits leaks between them"
            )
        _add(case, key, _readable(path))
    return list(cases.values())


def _scan_msd(root: Path, include: str) -> tuple[list[CaseFiles], list[str]]:
    meta = read_json(root / "dataset.json")
    try:
        names = [meta["modality"][k] for k in sorted(meta["modality"], key=int)]
    except (KeyError, ValueError, TypeError):
        raise DataError(f"{root / 'dataset.json'}: no valid 'modality' table") from None
    modalities = [_MSD_MODALITY.get(n.lower(), n.lower()) for n in names]
    cases = []
    for section, split in (("training", None), ("test", "test")):
        for entry in meta.get(section, []):
            image = entry["image"] if isinstance(entry, dict) else entry
            label = entry.get("label") if isinstance(entry, dict) else None
            image_path = (root / image).resolve()
            if not fnmatch.fnmatch(image_path.name, include):
                continue
            cases.append(
                CaseFiles(
                    case_id=strip_nifti_suffix(image_path.name),
                    images={"*": _readable(image_path)},
                    label=_readable((root / label).resolve()) if label else None,
                    split=split,
                )
            )
    return cases, modalities


def _scan_single(root: Path, include: str, kind: str) -> list[CaseFiles]:
    cases = []
    for path in map(_readable, _nifti_files(root, include)):
        case_id = strip_nifti_suffix(path.name)
        split = _split_of(path, root)
        if kind == "freesurfer":
            cases.append(CaseFiles(case_id=case_id, label=path, split=split))
        else:
            cases.append(CaseFiles(case_id=case_id, images={"t1": path}, split=split))
    return cases


def _refuse_duplicate_ids(cases: list[CaseFiles]) -> None:
    """Two cases with one id would overwrite each other downstream (and may be one subject in two splits)."""
    for first, second in itertools.pairwise(cases):  # sorted by id
        if first.case_id == second.case_id:
            a, b = _first_file(first), _first_file(second)
            raise DataError(
                f"{b}: case id {first.case_id!r} found twice ({first.split or 'no split'} at {a.parent}, "
                f"{second.split or 'no split'} at {b.parent}); one case id must name one subject"
            )


def _first_file(case: CaseFiles) -> Path:
    return next(p for p in (*case.images.values(), case.label, case.mask) if p is not None)


def detect_layout(root: Path) -> str:
    """Guess the layout of ``root`` from its file names; raise :class:`DataError` if unknown."""
    if (root / "dataset.json").is_file():
        return "msd"
    names = [p.name.lower() for p in _nifti_files(root, "*")]
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
        f"{root}: unknown layout (expected BraTS 2013, 2018-2021, 2023 or MSD file names); "
        f"pass --layout {{{','.join(LAYOUTS)}}} for label-map-only or healthy T1 folders"
    )


def scan(root: str | Path, layout: str | None = None, include: str = "*") -> tuple[str, list[str], list[CaseFiles]]:
    """Find the cases of ``root``.

    Returns ``(layout, modalities, cases)`` where ``modalities`` is the ordered list of
    modality names present in every case, and each case is a :class:`CaseFiles`.
    Cases missing a modality, a label or a mask that other cases have raise a
    :class:`DataError` listing every such case.
    """
    root = Path(root).resolve()
    if not root.is_dir():
        raise DataError(f"{root}: not a folder")
    layout = layout or detect_layout(root)
    if layout not in LABEL_SCHEMES:
        raise DataError(f"unknown layout {layout!r}; choose from {', '.join(LAYOUTS)}")
    msd_modalities: list[str] = []
    if layout == "brats2013":
        cases = _scan_brats2013(root, include)
    elif layout == "brats2021":
        cases = _scan_suffix(root, include, "_", _BRATS2021_SUFFIX)
    elif layout == "brats2023":
        cases = _scan_suffix(root, include, "-", _BRATS2023_SUFFIX)
    elif layout == "msd":
        cases, msd_modalities = _scan_msd(root, include)
    else:
        cases = _scan_single(root, include, layout)
    if not cases:
        raise DataError(f"{root}: no cases found for layout {layout!r}")
    cases.sort(key=lambda c: c.case_id)
    _refuse_duplicate_ids(cases)

    if layout == "msd":
        modalities = msd_modalities
    else:
        present = set().union(*(c.images for c in cases))
        modalities = [m for m in MODALITY_ORDER if m in present]
    problems = []
    if layout != "msd":
        for case in cases:
            missing = [m for m in modalities if m not in case.images]
            if missing:
                problems.append(f"case {case.case_id}: missing modality {', '.join(missing)}")
    for attribute in ("label", "mask"):
        with_it = [c for c in cases if getattr(c, attribute) is not None]
        if with_it and len(with_it) != len(cases) and layout != "msd":
            for case in cases:
                if getattr(case, attribute) is None:
                    problems.append(f"case {case.case_id}: missing {attribute} file")
    if problems:
        raise DataError(f"{root}: incomplete cases:\n  " + "\n  ".join(problems))
    return layout, modalities, cases
