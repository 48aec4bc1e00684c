"""File helpers shared by every stage: checked NIfTI reading, atomic writes, checksums.

Every output is written to a temporary name in the destination folder and renamed into
place, so a crash or a bad input never leaves a half-written file behind.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import socket
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from medsynth.errors import DataError, OutputError

if TYPE_CHECKING:
    from nibabel.nifti1 import Nifti1Header, Nifti1Image

NIFTI_SUFFIXES = (".nii.gz", ".nii")


def cache_root(root: str | os.PathLike | None = None) -> Path:
    """The cache folder: ``root``, else ``$MEDSYNTH_CACHE``, else ``~/.cache/medsynth``. Caches never change results."""
    return Path(root or os.environ.get("MEDSYNTH_CACHE", Path.home() / ".cache" / "medsynth"))


def sha256(path: str | os.PathLike, chunk_bytes: int = 1 << 20) -> str:
    """SHA-256 hex digest of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()


def array_sha256(array: np.ndarray) -> str:
    """SHA-256 of an array's content (dtype, shape and values), independent of how a file compressed it.

    >>> array_sha256(np.zeros((2, 2), np.int16)) == array_sha256(np.zeros((2, 2), np.int16))
    True
    """
    array = np.ascontiguousarray(array)
    digest = hashlib.sha256(f"{array.dtype.str}{array.shape}".encode())
    digest.update(array.tobytes())
    return digest.hexdigest()


def strip_nifti_suffix(name: str) -> str:
    """``'a/b.nii.gz' -> 'a/b'``; names without a NIfTI suffix are returned unchanged."""
    for suffix in NIFTI_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def load_nifti(path: str | os.PathLike, dtype: type | None = np.float32) -> tuple[np.ndarray, np.ndarray, Nifti1Header]:
    """Load a NIfTI file fully, turning every failure into a :class:`DataError` naming the file.

    Returns ``(array, affine, header)``. Decoding the whole array here (not lazily) is what
    catches truncated ``.nii.gz`` files at the boundary instead of deep inside a transform;
    a ``.nii.gz`` is decompressed once and checked against its gzip CRC (see
    :func:`gunzip_checked`), then parsed from memory.
    """
    import nibabel as nib

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        image = nifti_from_bytes(gunzip_checked(path)) if path.name.endswith(".gz") else nib.load(str(path))
        array = np.asanyarray(image.dataobj)
    except DataError:
        raise
    except Exception as exc:  # nibabel raises many types for corrupt/truncated files
        raise DataError(f"{path}: cannot read NIfTI ({type(exc).__name__}: {exc})") from None
    if dtype is not None:
        array = array.astype(dtype, copy=False)
    return array, image.affine.copy(), image.header


# Temporaries are named ".<destination name>.<host>-<pid>.<random>.tmp<suffix>" beside their
# destination, so a re-run can tell a dead process's leftovers from a live one's (shards of one
# cohort write into one folder at once).
_TMP_MARK = ".tmp"


def _temporary_name(destination: Path) -> Path:
    name = destination.name
    suffix = ".nii.gz" if name.endswith(".nii.gz") else destination.suffix
    fd, tmp_name = tempfile.mkstemp(
        prefix=f".{name}.{socket.gethostname()}-{os.getpid()}.", suffix=f"{_TMP_MARK}{suffix}", dir=destination.parent
    )
    os.close(fd)
    os.unlink(tmp_name)
    return Path(tmp_name)


def _temporary_pattern(host: str) -> re.Pattern[str]:
    """``.<name>.<host>-<pid>.<random>.tmp<suffix>`` of one host (host names may hold dots)."""
    return re.compile(rf"^\.(?P<name>.+)\.{re.escape(host)}-(?P<pid>\d+)\.[^./]+\.tmp(?:\.nii\.gz|\.[^./]*)?$")


def public_path(path: str | os.PathLike) -> str:
    """``path`` with each temporary component replaced by the name it will have once renamed into place.

    Error messages name the file the user asked for, not a hidden temporary.

    >>> public_path("/out/.prepared.vm-12.ab3x.tmp/cases/.a_t1c.nii.gz.vm-12.k2.tmp.nii.gz")
    '/out/prepared/cases/a_t1c.nii.gz'
    """
    pattern = _temporary_pattern(socket.gethostname())
    parts = [(m.group("name") if (m := pattern.match(part)) else part) for part in str(path).split("/")]
    return "/".join(parts)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_path(destination: str | os.PathLike, replace: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``destination``; rename it into place on success.

    Works for files and folders. On an exception the temporary is removed and nothing
    appears at ``destination``. A file replaces an existing file; an existing *folder* is
    replaced only with ``replace=True`` (callers decide who owns it, see :func:`atomic_output`),
    and then only after the new one is complete: the old one is moved aside, the new one
    renamed in, the old one deleted.

    >>> import tempfile, pathlib
    >>> out = pathlib.Path(tempfile.mkdtemp()) / "a.txt"
    >>> with atomic_path(out) as tmp:
    ...     _ = tmp.write_text("hello")
    >>> out.read_text()
    'hello'
    """
    destination = Path(destination)
    try:
        destination.parent.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise OutputError(f"{destination.parent}: is a file, not a folder") from None
    if destination.is_dir() and not replace:
        raise OutputError(f"{destination}: a folder is in the way; choose another output name or remove it")
    tmp = _temporary_name(destination)
    try:
        try:
            yield tmp
        except OSError as exc:
            if exc.filename is None and exc.errno is not None:  # e.g. ENOSPC from a compressor's flush
                raise OSError(exc.errno, exc.strerror, str(destination)) from exc
            raise
        if tmp.is_dir() and destination.exists() and not destination.is_dir():
            raise OutputError(f"{destination}: a file is in the way of the output folder; remove it or choose another")
        if destination.is_dir() and not tmp.is_dir():
            raise OutputError(f"{destination}: a folder is in the way of the output file; remove it or choose another")
        if destination.is_dir() and not replace:  # appeared while we wrote (another process)
            raise OutputError(f"{destination}: a folder appeared while this one was written; nothing replaced")
        if destination.is_dir():
            aside = _temporary_name(destination)
            os.replace(destination, aside)
            try:
                os.replace(tmp, destination)
            except BaseException:
                os.replace(aside, destination)
                raise
            _remove(aside)
        else:
            os.replace(tmp, destination)
    finally:
        _remove(tmp)


def remove_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Delete temporaries in ``folder`` left by processes of this host that are no longer running.

    A ``kill -9`` skips ``atomic_path``'s clean-up; stages that resume into a folder call this
    first. Temporaries of live processes (other shards) and of other hosts are left alone.
    """
    folder = Path(folder)
    removed = []
    pattern = _temporary_pattern(socket.gethostname())
    if not folder.is_dir():
        return removed
    for entry in sorted(folder.iterdir()):
        match = pattern.match(entry.name)
        if match and not _process_alive(int(match.group("pid"))):
            _remove(entry)
            removed.append(entry)
    return removed


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# --- output folders: what medsynth wrote, it may replace; anything else it refuses ------------

OWNER_FILE = ".medsynth-output.json"


def _check_output(folder: Path, stage: str, inputs: Iterable[str | os.PathLike] = ()) -> bool:
    """Raise :class:`OutputError` unless ``stage`` may write ``folder``; True when it exists with content."""
    resolved = folder.resolve()
    for item in inputs:
        item = Path(item).resolve()
        if item == resolved or resolved in item.parents:
            raise OutputError(f"{folder}: the output folder holds this command's input {item}; choose another output")
    if not folder.exists() and not folder.is_symlink():
        return False
    if not folder.is_dir():
        raise OutputError(f"{folder}: exists and is not a folder; choose another output")
    try:
        entries = [e.name for e in folder.iterdir()]
    except OSError as exc:
        raise OutputError(f"{folder}: cannot list the output folder ({exc.strerror})") from None
    if not entries:
        return False
    owner_path = folder / OWNER_FILE
    if not owner_path.is_file():
        shown = ", ".join(sorted(entries)[:3]) + (", ..." if len(entries) > 3 else "")
        raise OutputError(
            f"{folder}: folder exists and holds files medsynth did not write ({shown}); "
            "choose a new output folder (nothing was changed)"
        )
    try:
        record = json.loads(owner_path.read_text())
        owner = record.get("stage")
    except (json.JSONDecodeError, OSError, AttributeError):
        raise OutputError(f"{owner_path}: unreadable ownership record; choose a new output folder") from None
    if owner != stage:
        raise OutputError(
            f"{folder}: written by `medsynth {owner}`, not `medsynth {stage}`; choose a new output folder "
            "(nothing was changed)"
        )
    if isinstance(record.get("files"), list):  # a whole-folder output: anything added since is the user's
        added = sorted(set(_files_under(folder)) - set(record["files"]) - {OWNER_FILE})
        if added:
            shown = ", ".join(added[:3]) + (", ..." if len(added) > 3 else "")
            raise OutputError(
                f"{folder}: holds files medsynth did not write ({shown}); move them out or choose a new "
                "output folder (nothing was changed)"
            )
    return True


def _files_under(folder: Path) -> list[str]:
    """Relative paths of the files (and links) under ``folder``, not following links."""
    found = []
    for root, dirs, files in os.walk(folder):
        base = Path(root).relative_to(folder)
        found += [(base / name).as_posix() for name in files]
        found += [(base / name).as_posix() for name in dirs if (Path(root) / name).is_symlink()]
    return found


def _write_owner(folder: Path, stage: str, files: list[str] | None = None) -> None:
    from medsynth._version import __version__

    record: dict[str, Any] = {"stage": stage, "medsynth": __version__}
    if files is not None:
        record["files"] = sorted(files)
    write_json(record, folder / OWNER_FILE)


def claim_output(folder: str | os.PathLike, stage: str, inputs: Iterable[str | os.PathLike] = ()) -> Path:
    """Make ``folder`` the output of ``stage`` for a stage that writes into it step by step (resumable).

    Refused with one line naming the folder when it holds anything medsynth did not write, was
    written by another stage, or contains one of ``inputs``. Stale temporaries of killed runs
    are removed. Returns the folder.
    """
    folder = Path(folder)
    exists = _check_output(folder, stage, inputs)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise OutputError(f"{folder}: a file is in the way of the output folder") from None
    if not exists or not (folder / OWNER_FILE).is_file():
        _write_owner(folder, stage)
    remove_stale_temporaries(folder)
    return folder


@contextlib.contextmanager
def atomic_output(folder: str | os.PathLike, stage: str, inputs: Iterable[str | os.PathLike] = ()) -> Iterator[Path]:
    """A whole output folder written at once: yields a temporary folder, renamed into place on success.

    Replaces ``folder`` only when ``stage`` wrote it before (see :func:`claim_output` for what is
    refused); the old folder is kept until the new one is complete.

    >>> import tempfile, pathlib
    >>> out = pathlib.Path(tempfile.mkdtemp()) / "prepared"
    >>> with atomic_output(out, "prepare") as tmp:
    ...     _ = (tmp / "manifest.json").write_text("{}")
    >>> sorted(p.name for p in out.iterdir())
    ['.medsynth-output.json', 'manifest.json']
    """
    folder = Path(folder)
    _check_output(folder, stage, inputs)
    remove_stale_temporaries(folder.parent)
    with atomic_path(folder, replace=True) as tmp:
        tmp.mkdir(parents=True)
        yield tmp
        _write_owner(tmp, stage, files=_files_under(tmp))


def save_nifti(
    array: np.ndarray,
    affine: np.ndarray,
    path: str | os.PathLike,
    dtype: type | None = None,
) -> Path:
    """Write ``array`` with ``affine`` to ``path`` atomically (qform and sform both set)."""
    import nibabel as nib

    array = np.asarray(array)
    if dtype is not None:
        array = array.astype(dtype, copy=False)
    image = nib.Nifti1Image(array, np.asarray(affine, dtype=np.float64))
    image.set_qform(image.affine, code=1)
    image.set_sform(image.affine, code=1)
    if np.issubdtype(array.dtype, np.integer):
        image.header.set_slope_inter(1.0, 0.0)
    path = Path(path)
    with atomic_path(path) as tmp:
        nib.save(image, str(tmp))
    return path


def write_json(data: Any, path: str | os.PathLike) -> Path:
    """Write JSON atomically, pretty-printed, with a trailing newline."""
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=False, default=_json_default) + "\n")
    return path


def read_json(path: str | os.PathLike) -> Any:
    """Read JSON, raising :class:`DataError` naming the file when it is missing or invalid."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: invalid JSON ({exc})") from None
    except UnicodeDecodeError:
        raise DataError(f"{path}: not a JSON file (binary content)") from None


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


# --- integrity of compressed inputs ---------------------------------------------------------


def gunzip_checked(path: str | os.PathLike) -> bytes:
    """The decompressed content of the gzip file ``path``, verified against its CRC-32 and length.

    nibabel stops reading a ``.nii.gz`` after the last voxel and never reaches the gzip
    trailer, so bit rot that still inflates passes unnoticed there. Python's gzip module
    checks the trailer of every member. A mismatch or a deflate stream that does not inflate is
    a :class:`DataError` naming the file; other failures (truncated, not gzip, unreadable)
    propagate as they are.
    """
    import gzip
    import zlib

    path = Path(path)
    try:
        return gzip.decompress(path.read_bytes())
    except gzip.BadGzipFile as exc:
        if str(exc).startswith("CRC check failed"):
            raise DataError(f"{path}: gzip data corrupt (CRC check failed)") from None
        if str(exc).startswith("Incorrect length"):
            raise DataError(f"{path}: gzip data corrupt (length check failed)") from None
        raise
    except zlib.error as exc:
        raise DataError(f"{path}: gzip data corrupt ({exc})") from None


def nifti_from_bytes(raw: bytes) -> Nifti1Image:
    """A NIfTI-1 or NIfTI-2 image parsed from the uncompressed bytes of a single ``.nii`` file."""
    import nibabel as nib

    klass = nib.Nifti2Image if raw[4:8] == b"n+2\x00" else nib.Nifti1Image  # NIfTI-2 magic sits at byte 4
    return klass.from_bytes(raw)
