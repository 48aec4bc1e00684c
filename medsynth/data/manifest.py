"""Dataset manifests: MONAI/MSD datalist JSON plus medsynth metadata.

A manifest is what every later stage reads. It is a datalist that
``monai.data.load_decathlon_datalist(path, data_list_key="training")`` reads unchanged
(keys ``training``, ``validation``, ``test``; paths relative to the manifest), with a
``medsynth`` section holding the modality names, the source label scheme, the split of
every case, and a SHA-256 checksum per file.

Example::

    $ medsynth manifest build ../shared/data/brats2013_small -o data_manifests/brats2013_small.json
    $ medsynth manifest check data_manifests/brats2013_small.json
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from medsynth.data import find, layouts
from medsynth.data.scheme import CLASS_NAMES, LabelScheme, allowed_values, mapping
from medsynth.errors import DataError, OutputError
from medsynth.io import load_nifti, sha256
from medsynth.manifest import Case, Manifest, provenance, write_manifest

# Affines of a case's files must agree this closely (mm, and direction cosines * mm).
AFFINE_TOLERANCE = 1e-3


def entry_files(entry: dict[str, Any]) -> list[str]:
    """Relative paths of the files a manifest entry names: images, then label, then mask."""
    files: list[str] = []
    for key in ("image", "label", "mask"):
        value = entry.get(key)
        files += [value] if isinstance(value, str) else list(value or [])
    return files


def file_checksums(entries: list[dict[str, Any]], base: Path) -> dict[str, str]:
    """SHA-256 of every file the entries name, keyed by their path relative to ``base``."""
    return {rel: _readable_sha256(base / rel) for entry in entries for rel in entry_files(entry)}


def _readable_sha256(path: Path) -> str:
    try:
        return sha256(path)
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror})") from None


def _shared_subjects(cases: list[Case], sums: dict[str, str], manifest: str | Path) -> list[str]:
    """Case ids used twice, and one file's content under two case ids: each as a problem string.

    Either way one subject may sit in two splits and leak between them. Content is compared by
    SHA-256 (``sums``, keyed by the manifest's relative paths; computed when absent) of the
    images, or of the label map for label-only cases; masks may legitimately be shared. A
    repeated id is reported against ``manifest``, a repeated content against the file.
    """
    problems = []
    first_split: dict[str, str] = {}
    first_with: dict[str, tuple[str, Path]] = {}
    for case in cases:
        if case.case_id in first_split:
            problems.append(
                f"{manifest}: case id {case.case_id!r} appears twice (splits {first_split[case.case_id]} and "
                f"{case.split}); one case id must name one subject"
            )
        first_split.setdefault(case.case_id, case.split)
        rel_of = dict(zip(case.files, entry_files(case.record), strict=False))
        for path in case.images or [p for p in (case.label,) if p is not None]:
            digest = sums.get(rel_of.get(path, ""))
            if digest is None:
                try:
                    digest = sha256(path)
                except OSError:  # missing or unreadable: check_case names it
                    continue
            other_id, other_path = first_with.setdefault(digest, (case.case_id, path))
            if other_id != case.case_id:
                problems.append(
                    f"{path}: same content as {other_path} (cases {other_id} and {case.case_id}); "
                    "one subject under two case ids leaks between splits"
                )
    return problems


def _relative(path: Path, start: Path) -> str:
    return Path(os.path.relpath(path, start)).as_posix()


def _assign_splits(cases: list[layouts.CaseFiles], seed: int, validation_fraction: float) -> str:
    """Use the splits the folders (or index) give; cases without one get a seeded train/validation split.

    Test cases may be named alone (nnU-Net's ``imagesTs``); a mix of cases in train/validation
    folders and cases in none is refused, since it usually means a misplaced subject.
    """
    if all(c.split for c in cases):
        return "folders"
    if any(c.split in ("train", "validation") for c in cases):
        named = [c.case_id for c in cases if not c.split]
        raise DataError(
            f"some cases sit in train/validation folders and some do not ({', '.join(named)}); "
            "put every case in a split folder or none"
        )
    unsplit = [c for c in cases if not c.split]
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(unsplit))
    n_val = int(round(validation_fraction * len(unsplit)))
    if validation_fraction > 0 and len(unsplit) >= 2:
        n_val = max(1, n_val)
    for rank, index in enumerate(order):
        unsplit[index].split = "validation" if rank < n_val else "train"
    seeded = f"seeded(seed={seed}, validation_fraction={validation_fraction})"
    return seeded if len(unsplit) == len(cases) else f"folders (test) + {seeded}"


def build_manifest(
    data_dir: str | Path,
    output: str | Path,
    layout: str | Path | layouts.Layout | dict[str, Any] | None = None,
    include: str = "*",
    name: str | None = None,
    seed: int = 0,
    validation_fraction: float = 0.2,
    checksums: bool = True,
) -> dict[str, Any]:
    """Scan ``data_dir`` and write a manifest (kind ``raw``) to ``output``; return the manifest.

    Args:
        data_dir: a dataset folder (or a MONAI datalist JSON file).
        output: path of the manifest JSON to write; case paths are stored relative to it.
        layout: a built-in layout's name (``brats2013``, ``brats2021``, ``brats2023``, ``msd``,
            ``nnunet``, ``datalist``, ``freesurfer``, ``t1``), a declaration file (YAML), or a
            :class:`~medsynth.data.layouts.Layout`; detected from the file names when ``None``.
        include: glob on NIfTI file names; only matching files are scanned.
        name: dataset name in the manifest; the folder name when ``None``.
        seed: seed of the random train/validation split, used only when the folders give none.
        validation_fraction: share of cases put in ``validation`` by that random split.
        checksums: record the SHA-256 of every file, so ``check_manifest`` sees later changes.

    >>> import tempfile, pathlib, medsynth
    >>> sample = pathlib.Path(medsynth.__file__).parent / "sample_data" / "brats2013_2mm"
    >>> manifest = build_manifest(sample, pathlib.Path(tempfile.mkdtemp()) / "manifest.json")
    >>> manifest["medsynth"]["layout"], manifest["medsynth"]["modalities"], len(manifest["training"])
    ('brats2013', ['t1c', 'flair'], 4)
    """
    data_dir = Path(data_dir).resolve()
    output = Path(output).resolve()
    _check_manifest_output(output)
    found_scan = find.find_cases(data_dir, layout=layout, include=include)
    declared, modalities, found, label_scheme = (
        found_scan.layout,
        found_scan.modalities,
        found_scan.cases,
        found_scan.label_scheme,
    )
    split_source = _assign_splits(found, seed, validation_fraction)
    base = output.parent
    base.mkdir(parents=True, exist_ok=True)  # relative paths are resolved through it
    entries: list[dict[str, Any]] = []
    sums: dict[str, str] = {}
    cases: list[Case] = []
    for case in found:
        entry: dict[str, Any] = {"case_id": case.case_id, "split": case.split}
        files = []
        if case.images:
            files = list(case.images.values()) if "*" in case.images else [case.images[m] for m in modalities]
            entry["image"] = [_relative(p, base) for p in files]
        if case.label is not None:
            entry["label"] = _relative(case.label, base)
        if case.mask is not None:
            entry["mask"] = _relative(case.mask, base)
        if checksums:
            sums.update(file_checksums([entry], base))
            cases.append(Case(case.case_id, case.split, files, case.label, case.mask, entry))
        entries.append(entry)
    shared = _shared_subjects(cases, sums, output)  # ids are unique (find_cases); content compared when hashed
    if shared:
        raise DataError(shared[0] + (f" (and {len(shared) - 1} more)" if len(shared) > 1 else ""))
    settings = {
        "layout": declared.to_dict(),
        "include": include,
        "seed": seed,
        "validation_fraction": validation_fraction,
    }
    if isinstance(label_scheme, dict):  # JSON keys are strings; store the resolved class names
        label_scheme = {str(k): CLASS_NAMES[v] for k, v in sorted(mapping(label_scheme).items())}
    write_manifest(
        output,
        kind="raw",
        name=name or (data_dir.stem if data_dir.is_file() else data_dir.name),
        description=f"{declared.name} dataset at {_relative(data_dir, base)}",
        modalities=modalities,
        labels=_label_names(label_scheme),
        entries=entries,
        provenance=provenance("manifest", config=settings, seed=seed, checksums=False, inputs=[data_dir]),
        layout=declared.name,
        layout_declaration=declared.to_dict(),
        label_scheme=label_scheme,
        split_source=split_source,
        data_dir=_relative(data_dir, base),
        checksums=sums,
    )
    return Manifest.load(output).data


def _check_manifest_output(output: Path) -> None:
    """Replace a manifest, never another file (a scan, a user's document) that happens to bear the name."""
    if not output.is_file():
        return
    try:
        existing = json.loads(output.read_text())
    except (ValueError, UnicodeDecodeError):
        existing = None
    if not (isinstance(existing, dict) and isinstance(existing.get("medsynth"), dict)):
        raise OutputError(
            f"{output}: exists and is not a medsynth manifest; choose another output name (nothing was changed)"
        )


def _label_names(scheme: LabelScheme | None) -> dict[str, str]:
    names = {
        "brats2013": ["background", "necrosis", "edema", "non-enhancing", "enhancing"],
        "brats2021": ["background", "NCR/NET", "edema", "unused", "enhancing"],
        "brats2023": ["background", "NETC", "SNFH", "ET", "RC"],
        "msd": ["background", "edema", "non-enhancing tumor", "enhancing tumour"],
    }
    if isinstance(scheme, dict):
        return {"0": "background", **{str(k): CLASS_NAMES[v] for k, v in sorted(mapping(scheme).items())}}
    if scheme == "wt":
        return {"0": "background", "1": "tumor (whole tumor; sub-regions unknown)"}
    if scheme == "canonical":
        return {str(k): v for k, v in CLASS_NAMES.items()}
    if scheme == "freesurfer":
        return {"0": "background", "*": "FreeSurfer label values"}
    return {str(i): n for i, n in enumerate(names.get(scheme, ["background"]))}


def _affines_close(a: np.ndarray, b: np.ndarray) -> bool:
    return bool(np.allclose(a, b, atol=AFFINE_TOLERANCE))


def _without_trailing_singletons(shape: tuple[int, ...]) -> tuple[int, ...]:
    """``(X, Y, Z, 1) -> (X, Y, Z)``: some writers store a 3D volume with a singleton 4th axis."""
    while len(shape) > 3 and shape[-1] == 1:
        shape = shape[:-1]
    return shape


def check_case(case: Case, modalities: list[str], scheme: str | None, sums: dict[str, str]) -> list[str]:
    """Every problem of one case, each as ``'<file>: <what is wrong>'``."""
    problems: list[str] = []
    reference: tuple[Path, tuple[int, ...], np.ndarray] | None = None
    rel_of = dict(zip(case.files, entry_files(case.record), strict=False))

    def load(path: Path, role: str) -> np.ndarray | None:
        nonlocal reference
        try:
            array, affine, _ = load_nifti(path, dtype=None)
        except DataError as exc:
            problems.append(str(exc))
            return None
        rel = rel_of.get(path)
        if rel in sums and sha256(path) != sums[rel]:
            problems.append(f"{path}: checksum differs from the manifest (file changed since build)")
        spatial = tuple(array.shape[:3])
        shape = _without_trailing_singletons(array.shape)
        if role == "image" and len(case.images) == 1:  # one file may hold every modality as a 4th axis
            if len(shape) not in (3, 4):
                problems.append(f"{path}: expected a 3D or 4D (one volume per modality) image, got shape {array.shape}")
        elif len(shape) != 3:
            problems.append(f"{path}: expected a 3D {role} volume, got shape {array.shape}")
        if reference is None:
            reference = (path, spatial, affine)
        else:
            ref_path, ref_shape, ref_affine = reference
            if spatial != ref_shape:
                problems.append(f"{path}: shape {spatial} differs from {ref_path.name} {ref_shape}")
            elif not _affines_close(affine, ref_affine):
                problems.append(f"{path}: affine differs from {ref_path.name} (tolerance {AFFINE_TOLERANCE})")
        if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
            problems.append(f"{path}: contains NaN or Inf values")
        return array

    images = [load(p, "image") for p in case.images]
    if len(case.images) == 1 and images[0] is not None and images[0].ndim >= 4:
        if images[0].shape[3] != len(modalities):
            problems.append(
                f"{case.images[0]}: {images[0].shape[3]} channels, manifest names {len(modalities)} modalities"
            )
    elif case.images and len(case.images) != len(modalities):
        problems.append(f"case {case.case_id}: {len(case.images)} image files for {len(modalities)} modalities")

    if case.label is not None:
        label = load(case.label, "label")
        if label is not None and scheme is not None and np.isfinite(label).all():
            values = np.unique(label)
            if np.any(values != np.round(values)):
                problems.append(f"{case.label}: label values are not integers")
            elif scheme == "freesurfer":
                from medsynth.data.anatomy import unknown_freesurfer_labels

                unknown = unknown_freesurfer_labels(values.astype(int))
                if unknown:
                    problems.append(f"{case.label}: labels {unknown} are not in medsynth's FreeSurfer table")
            else:
                unknown = sorted(set(values.astype(int).tolist()) - allowed_values(scheme))
                if unknown:
                    problems.append(f"{case.label}: label values {unknown} are outside scheme {scheme!r}")
    if case.mask is not None:
        mask = load(case.mask, "mask")
        if mask is not None and not np.any(np.nan_to_num(mask) > 0.5):
            problems.append(f"{case.mask}: brain mask is empty")
    elif case.images and all(i is not None for i in images) and not any(np.any(np.nan_to_num(i) != 0) for i in images):
        # no mask file: medsynth derives the mask from the images, which must not be empty
        problems.append(f"{case.images[0]}: image is all zero (no brain to derive a mask from)")
    if not case.images and case.label is None:
        problems.append(f"case {case.case_id}: no image and no label file")
    return problems


def check_manifest(path: str | Path) -> list[str]:
    """Validate every case of the manifest at ``path``; return every problem found (empty = OK).

    Checks: files exist and load (``.nii.gz`` against their gzip CRC); volumes are 3D (or one
    4D file of every modality); modalities, mask and label share shape and affine; label
    values belong to the source scheme; no NaN/Inf; a non-empty brain mask; files unchanged
    since the manifest was built (SHA-256); no case id twice and no image under two case ids.

    Args:
        path: a manifest written by :func:`build_manifest`.

    >>> import tempfile, pathlib, medsynth
    >>> sample = pathlib.Path(medsynth.__file__).parent / "sample_data" / "brats2013_2mm"
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "manifest.json"
    >>> _ = build_manifest(sample, path)
    >>> check_manifest(path)
    []
    """
    manifest = Manifest.load(path)
    meta = manifest.meta
    sums = meta.get("checksums", {})
    cases = manifest.cases()
    problems = []
    for case in cases:
        problems.extend(check_case(case, meta["modalities"], meta.get("label_scheme"), sums))
    return problems + _shared_subjects(cases, sums, path)
