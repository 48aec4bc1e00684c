"""File helpers shared by every stage: checked NIfTI reading, atomic writes, checksums.

Every output is written to a temporary name in the destination folder and renamed into
place, so a crash or a bad input never leaves a half-written file behind.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from medsynth.errors import DataError

NIFTI_SUFFIXES = (".nii.gz", ".nii")


def sha256(path: str | os.PathLike, chunk_bytes: int = 1 << 20) -> str:
    """SHA-256 hex digest of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()


def strip_nifti_suffix(name: str) -> str:
    """``'a/b.nii.gz' -> 'a/b'``; names without a NIfTI suffix are returned unchanged."""
    for suffix in NIFTI_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def load_nifti(path: str | os.PathLike, dtype: type | None = np.float32):
    """Load a NIfTI file fully, turning every failure into a :class:`DataError` naming the file.

    Returns ``(array, affine, header)``. Decoding the whole array here (not lazily) is what
    catches truncated ``.nii.gz`` files at the boundary instead of deep inside a transform.
    """
    import nibabel as nib

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        image = nib.load(str(path))
        array = np.asanyarray(image.dataobj)
    except Exception as exc:  # nibabel raises many types for corrupt/truncated files
        raise DataError(f"{path}: cannot read NIfTI ({type(exc).__name__}: {exc})") from None
    if dtype is not None:
        array = array.astype(dtype, copy=False)
    return array, image.affine.copy(), image.header


@contextlib.contextmanager
def atomic_path(destination: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``destination``; rename it into place on success.

    Works for files and folders. On an exception the temporary is removed and nothing
    appears at ``destination``.

    >>> import tempfile, pathlib
    >>> out = pathlib.Path(tempfile.mkdtemp()) / "a.txt"
    >>> with atomic_path(out) as tmp:
    ...     _ = tmp.write_text("hello")
    >>> out.read_text()
    'hello'
    """
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    # keep the full suffix (e.g. .nii.gz) so writers that dispatch on it still work
    name = destination.name
    suffix = ".nii.gz" if name.endswith(".nii.gz") else destination.suffix
    fd, tmp_name = tempfile.mkstemp(prefix=f".{name}.", suffix=f".tmp{suffix}", dir=destination.parent)
    os.close(fd)
    os.unlink(tmp_name)
    tmp = Path(tmp_name)
    try:
        yield tmp
        if destination.is_dir() and tmp.is_dir():
            shutil.rmtree(destination)
        os.replace(tmp, destination)
    finally:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp.exists():
            tmp.unlink()


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


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
