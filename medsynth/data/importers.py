"""Cases of datasets described by an index file: MSD ``dataset.json``, nnU-Net v2 raw datasets, MONAI datalists.

:func:`medsynth.data.find.find_cases` hands the three *index* layouts (``index: msd``, ``nnunet``,
``datalist``) to :func:`scan_index`, which returns the cases, the modalities in channel order
and the label scheme. Every problem of the index is one :class:`~medsynth.errors.DataError`
line naming the file::

    $ medsynth manifest build nnUNet_raw/Dataset501_Glioma -o glioma.json
    $ medsynth manifest build datalist.json --channels flair,t1c --label-scheme msd -o mine.json

- **msd** (Medical Segmentation Decathlon): ``dataset.json`` with a ``modality`` table and
  ``training``/``test`` lists; one 4D file holds every channel of a case (image key ``"*"``).
- **nnunet** (nnU-Net v2 raw): ``dataset.json`` with ``channel_names``, ``labels`` (name ->
  value) and ``file_ending``; ``imagesTr/<case>_NNNN<file_ending>`` (one file per channel),
  ``labelsTr/<case><file_ending>`` (or the files listed in dataset.json's ``dataset``), optional
  ``imagesTs/`` and ``labelsTs/``. Label names are
  mapped to medsynth's classes (:func:`~medsynth.data.scheme.class_from_name`) unless the layout
  declares a scheme; region-based ``labels`` (lists of values) name no class and need one.
- **datalist** (MONAI, ``monai.data.load_decathlon_datalist``): ``training``/``validation``/``test``
  lists of ``{image, label}`` (or plain image paths), relative to the JSON's folder. A datalist
  names neither its channels nor its label values: the layout declares them (``channels``,
  ``label_scheme``), except in a medsynth manifest, whose ``medsynth`` section says both.

Training cases get no split (``manifest build`` draws a seeded train/validation split), except
in a datalist that has its own ``validation`` list; test cases keep ``test``.
"""

from __future__ import annotations

import fnmatch
import os
import re
from pathlib import Path
from typing import Any

from medsynth.data.layouts import CaseFiles, Layout, modality_from_name, readable
from medsynth.data.scheme import CLASS_NAMES, LabelScheme, class_from_name, mapping
from medsynth.errors import DataError
from medsynth.io import NIFTI_SUFFIXES, read_json, strip_nifti_suffix

DECLARE_SCHEME = "--label-scheme 1=edema,2=netc,3=et (or label_scheme in a layout YAML)"
NNUNET_KEYS = ("channel_names", "labels", "file_ending")


def is_nnunet(dataset_json: Path) -> bool:
    """Whether ``dataset_json`` describes an nnU-Net v2 raw dataset (False: an MSD / nnU-Net v1 task).

    A file with nnU-Net v2 keys but no MSD ``modality`` table counts as nnU-Net, so that the
    nnU-Net reader names the keys it lacks.

    >>> import json, tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "dataset.json"
    >>> nnunet = {"channel_names": {"0": "FLAIR"}, "labels": {"background": 0, "edema": 1}, "file_ending": ".nii.gz"}
    >>> _ = path.write_text(json.dumps(nnunet))
    >>> is_nnunet(path)
    True
    >>> _ = path.write_text(json.dumps({"modality": {"0": "FLAIR"}, "training": []}))
    >>> is_nnunet(path)
    False
    """
    meta = read_json(dataset_json)
    if not isinstance(meta, dict):
        raise DataError(f"{dataset_json}: expected a JSON object (MSD or nnU-Net dataset.json)")
    return "modality" not in meta and any(key in meta for key in NNUNET_KEYS)


def scan_index(path: Path, layout: Layout, include: str) -> tuple[list[CaseFiles], list[str], LabelScheme | None]:
    """The cases, modalities (channel order) and label scheme of an index layout.

    Args:
        path: the dataset folder (``msd``, ``nnunet``) or the datalist JSON file (``datalist``).
        layout: a layout whose ``index`` says which reader to use.
        include: glob on image file names; cases whose images do not match are left out.
    """
    readers = {"msd": _scan_msd, "nnunet": _scan_nnunet, "datalist": _scan_datalist}
    if layout.index not in readers:
        raise DataError(f"layout {layout.name}: index must be one of {', '.join(readers)}, not {layout.index!r}")
    return readers[layout.index](Path(path), layout, include)


def _json_object(path: Path, what: str) -> dict[str, Any]:
    data = read_json(path)
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a JSON object ({what})")
    return data


def _scheme_from_names(names: dict[int, str], where: Path) -> dict[int, str]:
    """``{value: canonical class name}`` from a dataset's own label names (background 0 skipped)."""
    scheme: dict[int, str] = {}
    for value, name in sorted(names.items()):
        target = class_from_name(name)
        if value == 0 and target == 0:
            continue
        if value <= 0:
            raise DataError(f"{where}: label {name!r} has value {value}; 0 is background and values are positive")
        if target is None or target == 0:
            raise DataError(
                f"{where}: label {name!r} (value {value}) is not a tumor class medsynth knows; "
                f"declare what the values mean: {DECLARE_SCHEME}"
            )
        scheme[value] = CLASS_NAMES[target]
    if not scheme:
        raise DataError(f"{where}: labels name no tumor class; declare what the values mean: {DECLARE_SCHEME}")
    try:
        mapping(scheme)
    except ValueError as exc:
        raise DataError(f"{where}: labels: {exc}; declare what the values mean: {DECLARE_SCHEME}") from None
    return scheme


def _included(path: Path, include: str) -> bool:
    return fnmatch.fnmatch(path.name, include)


def _absolute(base: Path, name: str) -> Path:
    """``name`` relative to ``base`` (or absolute), normalised without following links, so that
    a broken link is reported as one."""
    return Path(os.path.abspath(base / name))


# --- MSD ------------------------------------------------------------------------------------


def _scan_msd(root: Path, layout: Layout, include: str) -> tuple[list[CaseFiles], list[str], LabelScheme | None]:
    where = root / "dataset.json"
    meta = _json_object(where, "an MSD dataset.json")
    table = meta.get("modality")
    try:
        names = [table[k] for k in sorted(table, key=int)]
    except (KeyError, ValueError, TypeError):
        raise DataError(f'{where}: no valid \'modality\' table (e.g. {{"0": "FLAIR", "1": "T1gd"}})') from None
    modalities = [modality_from_name(n) for n in names]
    cases = []
    for section, split in (("training", None), ("test", "test")):
        entries = meta.get(section, [])
        if not isinstance(entries, list):
            raise DataError(f"{where}: {section!r} must be a list of entries")
        for number, entry in enumerate(entries):
            image = entry.get("image") if isinstance(entry, dict) else entry
            label = entry.get("label") if isinstance(entry, dict) else None
            if not isinstance(image, str) or not (label is None or isinstance(label, str)):
                raise DataError(f"{where}: {section}[{number}]: expected an image path (and a label path)")
            image_path = _absolute(root, image)
            if not _included(image_path, include):
                continue
            cases.append(
                CaseFiles(
                    case_id=strip_nifti_suffix(image_path.name),
                    images={"*": readable(image_path)},
                    label=readable(_absolute(root, label)) if label else None,
                    split=split,
                )
            )
    label_scheme = layout.label_scheme
    if label_scheme is None and isinstance(meta.get("labels"), dict) and any(c.label for c in cases):
        try:
            names_by_value = {int(k): str(v) for k, v in meta["labels"].items()}
        except ValueError:
            raise DataError(f"{where}: 'labels' must map label values to names") from None
        label_scheme = _scheme_from_names(names_by_value, where)
    return cases, modalities, label_scheme


# --- nnU-Net v2 -----------------------------------------------------------------------------


def _nnunet_meta(where: Path) -> tuple[dict[int, str], Any, str, dict[str, Any]]:
    """``channel_names`` (index -> name), ``labels``, ``file_ending`` and the whole dataset.json, checked."""
    meta = _json_object(where, "an nnU-Net dataset.json")
    missing = [key for key in NNUNET_KEYS if key not in meta]
    if missing:
        raise DataError(
            f"{where}: missing {', '.join(missing)} (an nnU-Net v2 dataset.json has {', '.join(NNUNET_KEYS)})"
        )
    table = meta["channel_names"]
    try:
        channels = {int(k): str(v) for k, v in table.items()}
    except (AttributeError, ValueError):
        raise DataError(f'{where}: channel_names must map channel indices to names, e.g. {{"0": "FLAIR"}}') from None
    if not channels or min(channels) < 0 or max(channels) > 9999:
        raise DataError(f"{where}: channel_names must name channels 0000-9999, got {table!r}")
    ending = meta["file_ending"]
    if ending not in NIFTI_SUFFIXES:
        raise DataError(
            f"{where}: file_ending {ending!r}: medsynth reads NIfTI only (.nii, .nii.gz); convert the images first"
        )
    if not isinstance(meta["labels"], dict):
        raise DataError(f'{where}: labels must map label names to values, e.g. {{"background": 0, "edema": 1}}')
    return channels, meta["labels"], ending, meta


def _nnunet_scheme(labels: dict[str, Any], where: Path) -> dict[int, str]:
    names: dict[int, str] = {}
    for name, value in labels.items():
        if isinstance(value, list):
            raise DataError(
                f"{where}: label {name!r} is a region ({value}), which names no single label value; "
                f"declare what the values mean: {DECLARE_SCHEME}"
            )
        if not isinstance(value, int) or isinstance(value, bool):
            raise DataError(f"{where}: label {name!r} has value {value!r}, not a whole number")
        if value in names:
            raise DataError(f"{where}: labels {names[value]!r} and {name!r} both have value {value}")
        names[value] = name
    return _scheme_from_names(names, where)


def _files(folder: Path, ending: str) -> list[Path]:
    """Files of ``folder`` ending in ``ending`` (hidden files skipped), sorted; [] when there is no folder."""
    if not folder.exists() and not folder.is_symlink():
        return []
    try:
        names = os.listdir(folder)
    except OSError as exc:
        raise DataError(f"{folder}: cannot list folder ({exc.strerror})") from None
    return sorted(folder / n for n in names if n.endswith(ending) and not n.startswith("."))


def _nnunet_cases(
    images_dir: Path,
    labels_dir: Path,
    channels: dict[int, str],
    modalities: list[str],
    ending: str,
    include: str,
    split: str | None,
) -> list[CaseFiles]:
    named = re.compile(rf"^(?P<case>.+)_(?P<channel>\d{{4}}){re.escape(ending)}$")
    cases: dict[str, CaseFiles] = {}
    all_ids: set[str] = set()
    for path in _files(images_dir, ending):
        match = named.match(path.name)
        if match is None:
            raise DataError(f"{path}: not named <case>_NNNN{ending} (NNNN: 4-digit channel index)")
        case_id, channel = match["case"], int(match["channel"])
        all_ids.add(case_id)
        if channel not in channels:
            raise DataError(
                f"{path}: channel {match['channel']}, but dataset.json names {len(channels)} channel(s) "
                f"({', '.join(f'{c:04d}' for c in sorted(channels))})"
            )
        if not _included(path, include):
            continue
        case = cases.setdefault(case_id, CaseFiles(case_id=case_id, split=split))
        case.images[modalities[sorted(channels).index(channel)]] = readable(path)
    for case in cases.values():
        for index in sorted(channels):
            if modalities[sorted(channels).index(index)] not in case.images:
                raise DataError(
                    f"{images_dir / f'{case.case_id}_{index:04d}{ending}'}: missing; case {case.case_id} "
                    f"needs channel {index:04d} ({channels[index]}) like every case"
                )
    for path in _files(labels_dir, ending):
        case_id = path.name[: -len(ending)]
        if case_id not in all_ids:
            raise DataError(f"{path}: a label with no image (no {images_dir.name}/{case_id}_0000{ending})")
        if case_id in cases:
            cases[case_id].label = readable(path)
    if split is None:
        for case in cases.values():
            if case.label is None:
                raise DataError(
                    f"{labels_dir / (case.case_id + ending)}: missing; training case {case.case_id} has no label"
                )
    return list(cases.values())


def _nnunet_listed(listed: Any, root: Path, where: Path, modalities: list[str], include: str) -> list[CaseFiles]:
    """Training cases of dataset.json's ``dataset``: ``{case: {"images": [one per channel], "label": path}}``."""
    if not isinstance(listed, dict):
        raise DataError(f"{where}: dataset must map case ids to {{images, label}}")
    cases = []
    for case_id, files in listed.items():
        images = files.get("images") if isinstance(files, dict) else None
        label = files.get("label") if isinstance(files, dict) else None
        if not isinstance(images, list) or not all(isinstance(i, str) for i in images) or not isinstance(label, str):
            raise DataError(f"{where}: dataset.{case_id}: expected images (a list of paths) and label (a path)")
        if len(images) != len(modalities):
            raise DataError(
                f"{where}: dataset.{case_id}: {len(images)} image(s), but channel_names names {len(modalities)}"
            )
        paths = [readable(_absolute(root, i)) for i in images]
        if all(_included(path, include) for path in paths):
            images_by_modality = dict(zip(modalities, paths, strict=True))
            cases.append(CaseFiles(str(case_id), images_by_modality, label=readable(_absolute(root, label))))
    return cases


def _scan_nnunet(root: Path, layout: Layout, include: str) -> tuple[list[CaseFiles], list[str], LabelScheme | None]:
    where = root / "dataset.json"
    channels, labels, ending, meta = _nnunet_meta(where)
    modalities = [modality_from_name(channels[i]) for i in sorted(channels)]
    twice = sorted({m for m in modalities if modalities.count(m) > 1})
    if twice:
        raise DataError(f"{where}: channel_names name modality {twice[0]} more than once ({channels})")
    label_scheme = layout.label_scheme if layout.label_scheme is not None else _nnunet_scheme(labels, where)
    if "dataset" in meta:  # nnU-Net's alternative to imagesTr/labelsTr: files listed per case
        training = _nnunet_listed(meta["dataset"], root, where, modalities, include)
    elif not (root / "imagesTr").is_dir():
        raise DataError(f"{root / 'imagesTr'}: not found; an nnU-Net dataset keeps its training images there")
    else:
        training = _nnunet_cases(root / "imagesTr", root / "labelsTr", channels, modalities, ending, include, None)
        if not training and include == "*":
            raise DataError(f"{root / 'imagesTr'}: no files named <case>_NNNN{ending}")
    expected = meta.get("numTraining")
    if expected is not None and include == "*":
        if not isinstance(expected, int) or isinstance(expected, bool):
            raise DataError(f"{where}: numTraining {expected!r} is not a whole number")
        if expected != len(training):
            raise DataError(
                f"{where}: numTraining is {expected}, but {'dataset' if 'dataset' in meta else 'imagesTr'} "
                f"holds {len(training)} case(s); "
                "correct numTraining or add the missing cases"
            )
    test = _nnunet_cases(root / "imagesTs", root / "labelsTs", channels, modalities, ending, include, split="test")
    return training + test, modalities, label_scheme


# --- MONAI datalist -------------------------------------------------------------------------


def _scan_datalist(path: Path, layout: Layout, include: str) -> tuple[list[CaseFiles], list[str], LabelScheme | None]:
    data = _json_object(path, "a datalist: training, validation and test lists of {image, label}")
    sections = [s for s in ("training", "validation", "test") if s in data]
    if not sections:
        raise DataError(f"{path}: no 'training', 'validation' or 'test' list; not a MONAI datalist")
    own = data.get("medsynth") if isinstance(data.get("medsynth"), dict) else {}
    channels = list(layout.channels) or [modality_from_name(m) for m in own.get("modalities") or []]
    label_scheme = layout.label_scheme if layout.label_scheme is not None else own.get("label_scheme")
    base = path.parent
    splits = {"training": "train" if "validation" in data else None, "validation": "validation", "test": "test"}
    cases = []
    for section in sections:
        entries = data[section]
        if not isinstance(entries, list):
            raise DataError(f"{path}: {section!r} must be a list of entries")
        for number, entry in enumerate(entries):
            case = _datalist_case(entry, f"{path}: {section}[{number}]", base, channels, splits[section], bool(own))
            if all(_included(p, include) for p in case.images.values() or [case.label]):
                cases.append(case)
    if any(c.images for c in cases) and not channels:
        raise DataError(
            f"{path}: a datalist does not name its image channels; declare them in order, "
            "e.g. --channels flair,t1c (or channels in a layout YAML)"
        )
    if any(c.label for c in cases) and label_scheme is None:
        raise DataError(f"{path}: a datalist does not say what its label values mean; declare it: {DECLARE_SCHEME}")
    return cases, channels, label_scheme


def _datalist_case(
    entry: Any, where: str, base: Path, channels: list[str], split: str | None, manifest: bool
) -> CaseFiles:
    """One datalist entry as a case (paths checked); its image channels matched to ``channels``.

    One image file for several channels is a 4D file holding them all (as in MSD): a path in a
    datalist, a one-path list in a medsynth manifest (which lists every entry's images).
    """
    if isinstance(entry, str):
        entry = {"image": entry}
    if not isinstance(entry, dict):
        raise DataError(f"{where}: expected an image path or an object with image (and label)")
    image, label, mask = entry.get("image"), entry.get("label"), entry.get("mask")
    files = [image] if isinstance(image, str) else image if image is not None else []
    if (
        not isinstance(files, list)
        or not all(isinstance(f, str) for f in files)
        or not (isinstance(p, str | None) for p in (label, mask))
    ):
        raise DataError(f"{where}: image must be a path or a list of paths, label and mask a path")
    if not files and label is None:
        raise DataError(f"{where}: names no image and no label")
    paths = [readable(_absolute(base, f)) for f in files]
    images: dict[str, Path] = {}
    if len(channels) > 1 and (isinstance(image, str) or (manifest and len(paths) == 1)):
        images["*"] = paths[0]  # manifest check counts its channels
    elif paths and channels:
        if len(paths) != len(channels):
            raise DataError(
                f"{where}: {len(paths)} image file(s), but {len(channels)} channel(s) declared ({', '.join(channels)})"
            )
        images = dict(zip(channels, paths, strict=True))
    elif paths:
        images = {str(i): p for i, p in enumerate(paths)}  # refused by the caller: channels unknown
    label_path = readable(_absolute(base, label)) if label is not None else None
    mask_path = readable(_absolute(base, mask)) if mask is not None else None
    case_id = entry.get("case_id")
    if case_id is None:
        stem = strip_nifti_suffix((paths[0] if paths else label_path).name)
        case_id = re.sub(r"_0000$", "", stem)
    return CaseFiles(case_id=str(case_id), images=images, label=label_path, mask=mask_path, split=split)
