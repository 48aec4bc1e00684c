"""Find the cases of a dataset folder: declared layouts (file-name patterns) and index files.

A *layout* says which file of a subject holds which modality, the label and the brain mask,
and what the label values mean. Most layouts are declared with file-name patterns
(:class:`Layout`, YAML files in ``builtin_layouts/`` or a user's own, e.g.
``configs/layouts/brats2018_wt.yaml``)::

    name: brats2018_wt
    images: {flair: "{case}/FLAIR", t1: "{case}/T1"}
    label: "{case}/GT_W"
    label_scheme: wt          # whole tumor only; or a mapping {1: edema, 2: netc, 3: et}

Patterns are matched case-insensitively against the end of each NIfTI file's path below
the dataset folder, with its ``.nii``/``.nii.gz`` suffix removed: ``{case}`` is the case id
(no ``/``), ``*`` and ``?`` are wildcards within a name. Folders above the match named
``train``/``training``, ``validation``/``val``, ``test``/``testing`` (or nnU-Net's
``imagesTr``/``imagesTs``) give the case's split.

Built in: ``brats2013`` (DeepMedic-prepared BraTS 2013/2015), ``brats2021`` (BraTS
2018-2021), ``brats2023`` (BraTS 2023+), ``freesurfer`` (label maps only, e.g. SynthSeg),
``t1`` (healthy brain-extracted T1, e.g. Colin27); and three index formats, read by
:mod:`medsynth.data.importers`: ``msd`` (Decathlon ``dataset.json``), ``nnunet`` (nnU-Net
v2 raw ``dataset.json``) and ``datalist`` (a MONAI datalist JSON). :mod:`medsynth.data.find`
detects which one a folder is in and reads its cases.

Modalities get medsynth's names: ``t1``, ``t1c``, ``t2``, ``flair`` (:func:`modality_from_name`).
"""

from __future__ import annotations

import errno
import fnmatch
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from medsynth.data.scheme import LabelScheme, mapping
from medsynth.errors import DataError
from medsynth.io import NIFTI_SUFFIXES, strip_nifti_suffix

MODALITY_ORDER = ("t1", "t1c", "t2", "flair")
BUILTIN_FOLDER = Path(__file__).parent / "builtin_layouts"
INDEXED = ("msd", "nnunet", "datalist")  # layouts read from an index file, not from file names

# Names datasets give their channels -> medsynth's modality names.
MODALITY_SYNONYMS: dict[str, tuple[str, ...]] = {
    "t1": ("t1", "t1w", "t1n", "native t1", "t1 native", "t1-native", "t1pre", "t1 pre"),
    "t1c": ("t1c", "t1ce", "t1gd", "t1-gd", "t1 gd", "t1wce", "t1post", "t1 post", "t1 contrast", "t1c+", "t1-ce"),
    "t2": ("t2", "t2w"),
    "flair": ("flair", "t2f", "t2-flair", "t2 flair", "t2flair", "t2w-flair"),
}

SPLIT_FOLDERS = {
    "train": "train",
    "training": "train",
    "tr": "train",
    "imagestr": "train",
    "labelstr": "train",
    "validation": "validation",
    "val": "validation",
    "valid": "validation",
    "test": "test",
    "testing": "test",
    "imagests": "test",
    "labelsts": "test",
}


def modality_from_name(name: str) -> str:
    """medsynth's name of a channel a dataset names ``name`` (unknown names lower-cased, kept).

    >>> modality_from_name("T1Gd"), modality_from_name("FLAIR"), modality_from_name("t2f"), modality_from_name("ADC")
    ('t1c', 'flair', 'flair', 'adc')
    """
    key = " ".join(str(name).strip().lower().replace("_", " ").split())
    for modality, names in MODALITY_SYNONYMS.items():
        if key in names or key.replace(" ", "-") in names or key.replace(" ", "") in names:
            return modality
    return key.replace(" ", "_")


@dataclass
class CaseFiles:
    """The files of one case, as found on disk (absolute paths)."""

    case_id: str
    images: dict[str, Path] = field(default_factory=dict)  # modality -> file (or "*" for one 4D file)
    label: Path | None = None
    mask: Path | None = None
    split: str | None = None  # from the folder structure or index, when it says


@dataclass
class Layout:
    """A declared layout: where each file of a case is, and what the label values mean.

    Args:
        name: the layout's name, recorded in the manifest.
        images: modality -> file-name pattern (see the module docstring).
        label: pattern of the tumor label file; None: no labels.
        mask: pattern of the brain mask; None: derived from the images by ``prepare``.
        label_scheme: a scheme name (``brats2013``, ``brats2021``, ``brats2023``, ``msd``, ``wt``,
            ``freesurfer``) or a mapping ``{value: class}``; None for unlabelled data.
        index: ``msd``, ``nnunet`` or ``datalist``: cases come from an index file instead of patterns.
        channels: modality names of an index's image channels, in order, where the index has none
            (a MONAI datalist); MSD and nnU-Net name them in ``dataset.json``.
        description: one line for people.

    >>> Layout(name="mine", images={"flair": "{case}/FLAIR"}, label="{case}/GT_W", label_scheme="wt").modalities
    ['flair']
    >>> Layout(name="bad", images={"flair": "FLAIR"})
    Traceback (most recent call last):
    medsynth.errors.DataError: layout bad: images.flair pattern 'FLAIR' has no {case}; say where the case id is
    """

    name: str
    images: dict[str, str] = field(default_factory=dict)
    label: str | None = None
    mask: str | None = None
    label_scheme: LabelScheme | None = None
    index: str | None = None
    channels: list[str] = field(default_factory=list)
    description: str = ""

    def __post_init__(self) -> None:
        where = f"layout {self.name}"
        if self.index is not None:
            if self.index not in INDEXED:
                raise DataError(f"{where}: index must be one of {', '.join(INDEXED)}, not {self.index!r}")
        elif not self.images and self.label is None:
            raise DataError(f"{where}: declares no images and no label; nothing to find")
        self.images = {modality_from_name(m): p for m, p in self.images.items()}
        self.channels = [modality_from_name(c) for c in self.channels]
        for role, pattern in self.patterns().items():
            if not isinstance(pattern, str) or "{case}" not in pattern:
                raise DataError(f"{where}: {role} pattern {pattern!r} has no {{case}}; say where the case id is")
            if pattern.count("{case}") > 1:
                raise DataError(f"{where}: {role} pattern {pattern!r} names the case more than once")
        if self.label_scheme is not None and self.label_scheme != "freesurfer":
            try:
                mapping(self.label_scheme)
            except ValueError as exc:
                raise DataError(f"{where}: label_scheme: {exc}") from None

    @property
    def modalities(self) -> list[str]:
        known = [m for m in MODALITY_ORDER if m in self.images]
        return known + [m for m in self.images if m not in known]

    def patterns(self) -> dict[str, str]:
        """Role (``images.<modality>``, ``label``, ``mask``) -> pattern."""
        roles = {f"images.{m}": p for m, p in self.images.items()}
        roles.update({role: p for role, p in (("label", self.label), ("mask", self.mask)) if p is not None})
        return roles

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name}
        for key in ("images", "label", "mask", "label_scheme", "index", "channels", "description"):
            value = getattr(self, key)
            if value not in (None, {}, [], ""):
                out[key] = value
        return out


def builtin_layouts() -> dict[str, Path]:
    """Name -> declaration file of the layouts shipped with medsynth."""
    return {p.stem: p for p in sorted(BUILTIN_FOLDER.glob("*.yaml"))}


def load_layout(spec: str | Path | Layout | dict[str, Any]) -> Layout:
    """A :class:`Layout` from a built-in name, a YAML declaration file, a mapping or a Layout.

    >>> load_layout("brats2021").images["t1c"]
    '{case}_t1ce'
    >>> load_layout("nope")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    medsynth.errors.DataError: unknown layout 'nope': give a declaration file (.yaml) or one of brats2013, ...
    """
    if isinstance(spec, Layout):
        return spec
    if isinstance(spec, dict):
        return _layout_from_dict(spec, "layout")
    text = str(spec)
    builtins = builtin_layouts()
    if text in builtins:
        path = builtins[text]
    elif text.endswith((".yaml", ".yml")) or Path(text).is_file():
        path = Path(text)
        if not path.is_file():
            raise DataError(f"{path}: layout declaration not found")
    else:
        raise DataError(
            f"unknown layout {text!r}: give a declaration file (.yaml) or one of {', '.join(sorted(builtins))}"
        )
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read layout ({getattr(exc, 'strerror', None) or exc})") from None
    except yaml.YAMLError as exc:
        raise DataError(f"{path}: invalid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise DataError(f"{path}: a layout declaration is a mapping (name, images, label, label_scheme, mask)")
    data.setdefault("name", path.stem)
    return _layout_from_dict(data, str(path))


def _layout_from_dict(data: dict[str, Any], where: str) -> Layout:
    known = {"name", "images", "label", "mask", "label_scheme", "index", "channels", "description"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise DataError(f"{where}: unknown key(s) {unknown}; a layout has {sorted(known)}")
    images = data.get("images") or {}
    if not isinstance(images, dict):
        raise DataError(f"{where}: images must map each modality to a file-name pattern")
    try:
        return Layout(
            name=str(data.get("name") or "custom"),
            images={str(k): v for k, v in images.items()},
            label=data.get("label"),
            mask=data.get("mask"),
            label_scheme=data.get("label_scheme"),
            index=data.get("index"),
            channels=[str(c) for c in data.get("channels") or []],
            description=str(data.get("description") or ""),
        )
    except DataError as exc:
        raise DataError(f"{where}: {exc}") from None


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    """The regex of a pattern, matched against the end of a file's suffix-less path (lower case)."""
    pattern = strip_nifti_suffix(pattern.strip().strip("/")).lower()
    parts = re.split(r"(\{case\}|\*|\?)", pattern)
    body = "".join(
        "(?P<case>[^/]+?)" if p == "{case}" else "[^/]*" if p == "*" else "[^/]" if p == "?" else re.escape(p)
        for p in parts
    )
    return re.compile(rf"(?:^|/){body}$")


def nifti_files(root: Path, include: str) -> list[Path]:
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


def readable(path: Path) -> Path:
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


def split_of(path: Path, root: Path) -> str | None:
    """The split named by a folder between ``root`` and ``path`` (``train``, ``validation``, ``test``), if any."""
    for part in path.relative_to(root).parts[:-1]:
        if part.lower() in SPLIT_FOLDERS:
            return SPLIT_FOLDERS[part.lower()]
    return None


def add_file(case: CaseFiles, key: str, path: Path) -> None:
    """Record ``path`` as the ``key`` file (a modality, ``label`` or ``mask``) of ``case``; never overwrite one."""
    existing = case.label if key == "label" else case.mask if key == "mask" else case.images.get(key)
    if existing is not None:
        raise DataError(
            f"{path}: a second {key} file for case {case.case_id!r} (first: {existing}); "
            "one case id must name one subject (make the layout's pattern match one file)"
        )
    if key == "label":
        case.label = path
    elif key == "mask":
        case.mask = path
    else:
        case.images[key] = path


def scan_patterns(root: Path, layout: Layout, include: str) -> list[CaseFiles]:
    roles = [(role.removeprefix("images."), _pattern_regex(p)) for role, p in layout.patterns().items()]
    cases: dict[str, CaseFiles] = {}
    for path in nifti_files(root, include):
        relative = strip_nifti_suffix(path.relative_to(root).as_posix()).lower()
        original = strip_nifti_suffix(path.relative_to(root).as_posix())
        for key, regex in roles:
            match = regex.search(relative)
            if not match:
                continue
            start, end = match.span("case")
            case_id = original[start:end]  # the file's own spelling
            split = split_of(path, root)
            case = cases.setdefault(case_id, CaseFiles(case_id=case_id, split=split))
            if case.split != split:
                first = first_file(case)
                raise DataError(
                    f"{path}: case id {case_id!r} is in two splits ({case.split} at {first.parent}, "
                    f"{split} at {path.parent}); a subject in two splits leaks between them"
                )
            add_file(case, key, readable(path))
            break
    return list(cases.values())


def first_file(case: CaseFiles) -> Path:
    """The first file of a case (for messages)."""
    return next(p for p in (*case.images.values(), case.label, case.mask) if p is not None)
