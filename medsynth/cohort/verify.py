"""``medsynth cohort verify COHORT``: checksums, layout, manifest and provenance consistency, geometry.

Every problem is reported as ``<file>: <what is wrong>``; the command exits 1 when any exists.

Recomputing ``checksums.sha256`` after an edit is cheap, so the checksums alone prove little.
Verify also holds the cohort to the layout ``medsynth generate`` writes:

- every file on disk is listed in the checksums, every listed file exists and matches, and
  nothing is a symbolic link (only the ownership record ``.medsynth-output.json`` at the root
  and temporaries of a shard still running are not listed);
- ``cases/`` holds one folder per manifest entry and nothing else, and each case folder holds
  exactly the files its entry names;
- every path an entry names resolves (symlinks followed) inside ``cases/<case_id>/`` of that
  entry and is named for that case (``<case_id>_<modality>.nii.gz``, ``<case_id>_label_map.nii.gz``,
  ``<case_id>_seg.nii.gz``, ``provenance.json``); no file is named twice;
- each case's ``provenance.json`` names the case, its split, the cohort seed and the generator of
  the cohort's plan;
- images and label map share shape and affine, label values are in the canonical scheme, the
  ``_seg`` file is the label map in the cohort's convention.
"""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path
from typing import Any

import numpy as np

from medsynth.cohort.finalize import CHECKSUMS
from medsynth.data.scheme import CANONICAL_TO_BRATS2021, CANONICAL_TO_BRATS2023, CLASS_NAMES, from_canonical
from medsynth.errors import DataError
from medsynth.geometry import same_space
from medsynth.io import OWNER_FILE, load_nifti, read_json, sha256
from medsynth.manifest import SPLIT_KEYS, Manifest

# A case id becomes a folder and file names: letters, digits, "_" and "-" only (no separators, no "..").
CASE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")
# medsynth.io temporaries: ".<destination>.<host>-<pid>.<random>.tmp<suffix>" (a host name may hold dots)
_TEMPORARY = re.compile(r"\..+\.(?P<host>[^/]+)-(?P<pid>\d+)\.[A-Za-z0-9_]+\.tmp(\..*)?")
_SEG_MAPPINGS = {"canonical": None, "brats2021": CANONICAL_TO_BRATS2021, "brats2023": CANONICAL_TO_BRATS2023}
_FILE_KEYS = ("image", "label", "seg", "mask", "provenance")


def _temporary_state(name: str) -> str | None:
    """``None`` (not a temporary), ``"running"`` (its process may still write it) or ``"stale"``."""
    match = _TEMPORARY.fullmatch(name)
    if match is None:
        return None
    if match["host"] != socket.gethostname():
        return "running"  # another host's process: cannot be told from here
    try:
        os.kill(int(match["pid"]), 0)
    except ProcessLookupError:
        return "stale"
    except (PermissionError, OverflowError, ValueError):
        return "running"
    return "running"


def _scan(root: Path, problems: list[str]) -> set[str]:
    """Relative paths of the plain files under ``root``; symlinks, stale temporaries and oddities are problems."""
    files: set[str] = set()
    pending = [(root, "")]
    while pending:
        folder, prefix = pending.pop()
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as exc:
            problems.append(f"{folder}: cannot list ({exc.strerror})")
            continue
        for entry in entries:
            path, rel = Path(entry.path), f"{prefix}{entry.name}"
            state = _temporary_state(entry.name) if entry.name.startswith(".") else None
            if state == "running":
                continue  # a shard still writing: not part of the cohort
            if state == "stale":
                problems.append(f"{path}: temporary left by a stopped run, not part of the cohort; delete it")
                continue
            if entry.is_symlink():
                problems.append(f"{path}: symbolic link (a cohort holds plain files only)")
            elif entry.is_dir(follow_symlinks=False):
                pending.append((path, f"{rel}/"))
            elif not entry.is_file(follow_symlinks=False):
                problems.append(f"{path}: not a regular file")
            elif rel == OWNER_FILE:
                problems += _check_owner(path)
            else:
                files.add(rel)
    return files


def _read_json(path: Path) -> Any:
    """:func:`read_json`, with unreadable files (permissions, binary) as :class:`DataError` too."""
    try:
        return read_json(path)
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: unreadable ({type(exc).__name__})") from None


def _check_owner(path: Path) -> list[str]:
    try:
        owner = _read_json(path)
    except DataError as exc:
        return [str(exc)]
    if not isinstance(owner, dict) or not isinstance(owner.get("stage"), str):
        return [f"{path}: not a medsynth ownership record (no 'stage')"]
    return []


def _read_checksums(root: Path, listing: Path, problems: list[str]) -> dict[str, str]:
    try:
        text = listing.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        problems.append(f"{listing}: unreadable ({type(exc).__name__})")
        return {}
    listed: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        digest, _, rel = line.partition("  ")
        if len(digest) != 64 or not rel or not re.fullmatch(r"[0-9a-f]{64}", digest):
            problems.append(f"{listing}:{number}: malformed line")
        elif rel.startswith("/") or ".." in rel.split("/") or "." in rel.split("/") or "" in rel.split("/"):
            problems.append(f"{listing}:{number}: {rel!r} is not a path inside the cohort")
        elif rel in listed:
            problems.append(f"{listing}:{number}: {rel} listed twice")
        else:
            listed[rel] = digest
    return listed


def _resolve(path: Path) -> Path | None:
    try:
        return path.resolve()
    except (OSError, RuntimeError):  # a symlink loop
        return None


def _entry_files(
    entry: dict[str, Any], case_id: str, modalities: list[str], convention: str, where: str
) -> tuple[list[tuple[str, Any, str | None]], list[str]]:
    """``(role, value, expected relative path)`` for every file the entry names or should name; problems."""
    problems: list[str] = []
    folder = f"cases/{case_id}"
    image = entry.get("image")
    images = [image] if isinstance(image, str) else image
    if not isinstance(images, list) or not images:
        problems.append(f"{where}: case {case_id}: no image list")
        images = []
    elif len(images) != len(modalities):
        problems.append(f"{where}: case {case_id}: {len(images)} images for modalities {modalities}")
    wanted = [
        (f"image {i} ({m})", images[i] if i < len(images) else None, f"{folder}/{case_id}_{m}.nii.gz")
        for i, m in enumerate(modalities)
    ]
    wanted += [(f"image {i}", images[i], None) for i in range(len(modalities), len(images))]
    wanted.append(("label", entry.get("label"), f"{folder}/{case_id}_label_map.nii.gz"))
    wanted.append(("provenance", entry.get("provenance"), f"{folder}/provenance.json"))
    if _SEG_MAPPINGS.get(convention) or "seg" in entry:
        wanted.append(("seg", entry.get("seg"), f"{folder}/{case_id}_seg.nii.gz"))
    if "mask" in entry:
        wanted.append(("mask", entry.get("mask"), None))
    return wanted, problems


def _check_entry_path(
    real_root: Path, root: Path, case_id: str, role: str, value: Any, expected: str | None
) -> tuple[str | None, Path | None]:
    """``(problem or None, resolved path when it lies inside the cohort)`` for one path of an entry."""
    if value is None:
        return f"no {role} (expected {expected})", None
    if not isinstance(value, str) or not value:
        return f"{role} {value!r} is not a path", None
    resolved = None if Path(value).is_absolute() else _resolve(root / value)
    if resolved is None or (resolved != real_root and real_root not in resolved.parents):
        return f"{role} {value!r} lies outside the cohort", None
    if resolved.parent != real_root / "cases" / case_id:
        return f"{role} {value!r} lies outside the case's folder cases/{case_id}/", resolved
    if expected is None:
        return f"{role} {value!r}: a cohort case has no such file", resolved
    if resolved.name != Path(expected).name:
        return f"{role} {value!r} is not named for the case (expected {Path(expected).name})", resolved
    return None, resolved


def _shared_images(root: Path, listed: dict[str, str]) -> list[str]:
    """Two cases with one image file: each case is synthesized with its own seed, so this is a planted copy."""
    first: dict[str, str] = {}
    problems = []
    for rel, digest in sorted(listed.items()):
        parts = rel.split("/")
        if len(parts) != 3 or parts[0] != "cases" or "_label_map" in parts[2] or not parts[2].endswith(".nii.gz"):
            continue
        if parts[2].endswith("_seg.nii.gz"):
            continue
        other = first.setdefault(digest, rel)
        if other.split("/")[1] != parts[1]:
            problems.append(f"{root / rel}: same content as {root / other} (two cases cannot share an image)")
    return problems


def verify_cohort(root: str | Path) -> list[str]:
    """Every problem of the cohort at ``root`` (empty list: it verifies)."""
    root = Path(root)
    if not root.is_dir():
        return [f"{root}: not a folder"]
    real_root = root.resolve()
    problems: list[str] = []
    listing = root / CHECKSUMS
    if not listing.is_file():
        return [f"{listing}: missing (the cohort was not finalized)"]

    # 1. checksums: every file on disk listed, every listed file present and unchanged
    on_disk = _scan(root, problems)
    listed = _read_checksums(root, listing, problems)
    for rel, digest in listed.items():
        path = root / rel
        if rel in on_disk:
            try:
                changed = sha256(path) != digest
            except OSError as exc:
                problems.append(f"{path}: unreadable ({exc.strerror})")
                continue
            if changed:
                problems.append(f"{path}: checksum differs (file changed)")
        elif path.is_symlink():
            continue  # reported by the scan
        elif path.exists():
            problems.append(f"{path}: listed in {CHECKSUMS} but not a plain file of the cohort")
        else:
            problems.append(f"{path}: listed in {CHECKSUMS} but missing")
    for rel in sorted(on_disk - set(listed) - {CHECKSUMS}):
        problems.append(f"{root / rel}: not listed in {CHECKSUMS}")
    problems += _shared_images(root, listed)

    # 2. manifest structure
    manifest_path = root / "manifest.json"
    try:
        manifest = Manifest.load(manifest_path).data
    except DataError as exc:
        return [*problems, str(exc)]
    except (OSError, UnicodeDecodeError) as exc:
        return [*problems, f"{manifest_path}: unreadable ({type(exc).__name__})"]
    meta = manifest["medsynth"]
    if meta.get("kind") != "cohort":
        problems.append(f"{manifest_path}: not a medsynth cohort manifest (kind {meta.get('kind')!r})")
    modalities = meta.get("modalities")
    if (
        not isinstance(modalities, list)
        or not modalities
        or not all(isinstance(m, str) and CASE_ID.fullmatch(m) for m in modalities)
    ):
        return [*problems, f"{manifest_path}: modalities {modalities!r} are not a list of names"]
    convention = meta.get("label_convention", "canonical")
    if convention not in _SEG_MAPPINGS:
        problems.append(f"{manifest_path}: unknown label convention {convention!r}")
    plan = meta.get("plan") if isinstance(meta.get("plan"), dict) else {}
    problems += _check_plan(root, manifest_path, manifest, plan, modalities)

    entries: list[tuple[str, str, dict[str, Any]]] = []  # (section, where, entry)
    for key in SPLIT_KEYS.values():
        section = manifest.get(key)
        if section is None:
            continue
        if not isinstance(section, list):
            problems.append(f"{manifest_path}: '{key}' is not a list")
            continue
        entries += [(key, f"{manifest_path}: {key}[{i}]", entry) for i, entry in enumerate(section)]
    training = manifest.get("training")
    if manifest.get("numTraining") != (len(training) if isinstance(training, list) else 0):
        problems.append(f"{manifest_path}: numTraining does not match the training list")

    # 3. entries: valid unique case ids, paths inside their case folder and named for the case
    cases: dict[str, tuple[str, dict[str, Any], list[tuple[str, Path | None]]]] = {}
    referenced: dict[Path, list[str]] = {}  # every file inside the cohort an entry names -> the cases naming it
    valid: set[Path] = set()  # ... those named where they belong
    for section, where, entry in entries:
        if not isinstance(entry, dict):
            problems.append(f"{where}: not an object")
            continue
        case_id = entry.get("case_id")
        if not isinstance(case_id, str) or not CASE_ID.fullmatch(case_id):
            problems.append(f"{where}: case_id {case_id!r} is not a case id (letters, digits, '_', '-')")
            continue
        if case_id in cases:
            problems.append(f"{where}: case {case_id} appears more than once")
            continue
        wanted, entry_problems = _entry_files(entry, case_id, modalities, convention, where)
        problems += entry_problems
        files: list[tuple[str, Path | None]] = []
        for role, value, expected in wanted:
            problem, resolved = _check_entry_path(real_root, root, case_id, role, value, expected)
            if resolved is not None:
                referenced.setdefault(resolved, []).append(case_id)
            if problem:
                problems.append(f"{where}: case {case_id}: {problem}")
                files.append((role, None))
            else:
                valid.add(resolved)
                files.append((role, root / expected))
        cases[case_id] = (section, entry, files)
    for resolved, owners in referenced.items():
        if len(owners) > 1:
            problems.append(f"{resolved}: named {len(owners)} times in manifest.json (cases {', '.join(owners)})")

    # 4. cases/ holds exactly the manifest's case folders, each exactly the files its entry names
    named_rel = {p.relative_to(real_root).as_posix() for p in valid}
    for rel in sorted(r for r in on_disk if r.startswith("cases/")):
        parts = rel.split("/")
        if len(parts) != 3:
            problems.append(f"{root / rel}: not a case file (cases/<case_id>/<file>)")
        elif parts[1] not in cases:
            continue  # reported once, as a case folder not in the manifest
        elif rel not in named_rel:
            problems.append(f"{root / rel}: in the case folder but not named in manifest.json")
    cases_dir = root / "cases"
    if cases_dir.is_dir() and not cases_dir.is_symlink():
        for folder in sorted(cases_dir.iterdir()):
            if _temporary_state(folder.name) is not None or folder.is_symlink():
                continue
            if folder.is_dir() and folder.name not in cases:
                problems.append(f"{folder}: case folder not in manifest.json")

    # 5. each complete case: provenance, then images, label map and seg
    for case_id, (section, entry, files) in cases.items():
        if any(path is None for _, path in files):
            continue
        missing = [path for _, path in files if not path.is_file()]
        if missing:
            problems += [f"{p}: named in manifest.json but missing" for p in missing]
            continue
        by_role = dict(files)
        problems += _check_provenance(by_role["provenance"], case_id, section, entry, plan)
        images = [path for role, path in files if role.startswith("image")]
        problems += _check_volumes(images, by_role["label"], by_role.get("seg"), _SEG_MAPPINGS.get(convention))
    return problems


def _check_plan(root: Path, manifest_path: Path, manifest: dict, plan: dict, modalities: list[str]) -> list[str]:
    problems = []
    if not plan:
        return [f"{manifest_path}: no plan in the 'medsynth' section"]
    generator = plan.get("generator") if isinstance(plan.get("generator"), dict) else {}
    if generator.get("modalities") != modalities:
        problems.append(
            f"{manifest_path}: modalities {modalities} differ from the plan's {generator.get('modalities')}"
        )
    if manifest.get("modality") != {str(i): m for i, m in enumerate(modalities)}:
        problems.append(f"{manifest_path}: 'modality' does not match the modalities {modalities}")
    if manifest.get("labels") != {str(k): v for k, v in CLASS_NAMES.items()}:
        problems.append(f"{manifest_path}: 'labels' is not the canonical scheme")
    if plan.get("label_convention", "canonical") != manifest["medsynth"].get("label_convention", "canonical"):
        problems.append(f"{manifest_path}: label convention differs from the plan's")
    for name, key in (("cohort_plan.json", None), ("cohort.json", "plan")):
        if not (root / name).is_file():
            continue
        try:
            record = _read_json(root / name)
        except DataError as exc:
            problems.append(str(exc))
            continue
        if (record.get(key) if key and isinstance(record, dict) else record) != plan:
            problems.append(f"{manifest_path}: plan differs from {name}'s")
    return problems


def _check_provenance(path: Path, case_id: str, section: str, entry: dict, plan: dict) -> list[str]:
    try:
        provenance = _read_json(path)
    except DataError as exc:
        return [str(exc)]
    if not isinstance(provenance, dict):
        return [f"{path}: not a provenance record"]
    problems = []
    if provenance.get("case_id") != case_id:
        problems.append(f"{path}: provenance of case {provenance.get('case_id')!r}, not of {case_id}")
    index = provenance.get("index")
    if case_id.startswith("synth_") and (not isinstance(index, int) or f"synth_{index:05d}" != case_id):
        problems.append(f"{path}: index {index!r} does not match case {case_id}")
    split = provenance.get("split")
    if entry.get("split") != split:
        problems.append(f"{path}: split {split!r}, manifest.json says {entry.get('split')!r}")
    elif SPLIT_KEYS.get(split, "training") != section:
        problems.append(f"{path}: split {split!r} but the case is in manifest.json's '{section}' list")
    if "seed" in plan and provenance.get("cohort_seed") != plan["seed"]:
        problems.append(f"{path}: cohort seed {provenance.get('cohort_seed')!r}, the cohort's is {plan['seed']}")
    generator_sha = (plan.get("generator") or {}).get("sha256")
    if generator_sha and provenance.get("generator_sha256") != generator_sha:
        problems.append(f"{path}: made by another generator than the cohort's ({str(generator_sha)[:16]}...)")
    return problems


def _check_volumes(
    images: list[Path], label_path: Path, seg_path: Path | None, mapping: dict[int, int] | None
) -> list[str]:
    import SimpleITK as sitk

    problems: list[str] = []
    try:
        label, affine, header = load_nifti(label_path, dtype=np.int64)
    except DataError as exc:
        return [str(exc)]
    unknown = sorted(set(np.unique(label).tolist()) - set(CLASS_NAMES))
    if unknown:
        problems.append(f"{label_path}: label values {unknown} outside the canonical scheme")
    zooms = np.asarray(header.get_zooms()[:3], dtype=np.float64)
    for path in [*images, *([seg_path] if seg_path else [])]:
        try:
            array, image_affine, _ = load_nifti(path, dtype=np.int64 if path == seg_path else np.float32)
        except DataError as exc:
            problems.append(str(exc))
            continue
        if array.shape != label.shape:
            problems.append(f"{path}: shape {array.shape} differs from the label map {label.shape}")
            continue
        if not same_space(image_affine, affine, tolerance=1e-4):
            problems.append(f"{path}: affine differs from the label map's")
        elif path == seg_path:
            if mapping is None:
                problems.append(f"{path}: the cohort's label convention is canonical, it has no seg files")
            elif not unknown and not np.array_equal(array, from_canonical(label, mapping)):
                problems.append(f"{path}: differs from the label map in the cohort's label convention")
            continue
        elif not np.isfinite(array).all():
            problems.append(f"{path}: contains NaN or Inf")
        try:
            spacing = sitk.ReadImage(str(path)).GetSpacing()
        except RuntimeError as exc:
            problems.append(f"{path}: SimpleITK cannot read it ({str(exc).strip().splitlines()[-1]})")
            continue
        if not np.allclose(spacing, zooms, atol=1e-4):
            problems.append(f"{path}: SimpleITK reads spacing {spacing}, nibabel {tuple(zooms)}")
    return problems
