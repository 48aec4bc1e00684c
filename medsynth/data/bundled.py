"""The datasets shipped inside the package, prepared on demand into the cache.

``sample_data/`` holds a 2 mm BraTS 2013 sample (4 subjects, CC BY-NC-SA 3.0) and public
healthy anatomies (3 SynthSeg label maps, Apache-2.0; Colin27, BSD), each with its licence
and the script that made it. They let the shipped generators make label maps with no other
input (``medsynth generate --checkpoint pretrained:gan --n 10``) and run the demo.

:func:`prepared` prepares one of them for a given preprocessing (the generator's grid) into
``<cache>/bundled/<name>-<hash>/`` once; later calls reuse it. Nothing is downloaded.

>>> import tempfile
>>> from medsynth.data.config import PreprocessConfig
>>> from medsynth.manifest import Manifest
>>> path = prepared("synthseg", PreprocessConfig(), cache_dir=tempfile.mkdtemp())
>>> path.name, len(Manifest.load(path).cases())
('manifest.json', 3)
"""

from __future__ import annotations

from pathlib import Path
from typing import IO

from medsynth.config import config_hash
from medsynth.data.config import PrepareConfig, PreprocessConfig
from medsynth.data.manifest import build_manifest, check_manifest
from medsynth.errors import DataError
from medsynth.io import cache_root

SAMPLE_DATA = Path(__file__).resolve().parent.parent / "sample_data"

# name -> (folder inside sample_data, layout, what it is)
DATASETS: dict[str, tuple[str, str | None, str]] = {
    "brats2013": (
        "brats2013_2mm",
        None,
        "2 mm BraTS 2013 sample: 2 training + 2 validation subjects (CC BY-NC-SA 3.0)",
    ),
    "synthseg": ("healthy/synthseg_2mm", "freesurfer", "3 healthy SynthSeg label maps at 2 mm (Apache-2.0)"),
    "colin27": ("healthy/colin27_2mm", "t1", "the Colin27 healthy T1 brain at 2 mm (BSD)"),
}
HEALTHY = ("synthseg", "colin27")


def prepared(name: str, preprocess: PreprocessConfig, cache_dir: str | Path | None = None) -> Path:
    """The prepared manifest of bundled dataset ``name`` at ``preprocess``'s grid (prepared once, then reused).

    Args:
        name: ``brats2013``, ``synthseg`` or ``colin27`` (see :data:`DATASETS`).
        preprocess: spacing, grid and orientation to prepare at (e.g. a generator's).
        cache_dir: cache root (None: ``$MEDSYNTH_CACHE`` or ``~/.cache/medsynth``).
    """
    from medsynth.data.prepare import run_prepare
    from medsynth.data.preprocess import PREPROCESS_VERSION

    if name not in DATASETS:
        raise DataError(f"no bundled dataset {name!r}; bundled: {', '.join(DATASETS)}")
    folder, layout, _ = DATASETS[name]
    key = config_hash(preprocess, extra=PREPROCESS_VERSION)  # a change of the preprocessing code prepares anew
    root = cache_root(cache_dir) / "bundled" / f"{name}-{key}"
    manifest = root / "prepared" / "manifest.json"
    if manifest.is_file():
        return manifest
    root.mkdir(parents=True, exist_ok=True)
    # shards of one cohort start together: one prepares, the others wait for it (the lock goes with the process)
    with open(root / ".lock", "w") as lock:
        _exclusive(lock)
        if manifest.is_file():
            return manifest
        raw = root / "raw.json"
        build_manifest(SAMPLE_DATA / folder, raw, layout=layout, name=name)
        problems = check_manifest(raw)
        if problems:  # the package's own files changed: a broken install
            raise DataError(f"{SAMPLE_DATA / folder}: bundled data damaged ({problems[0]}); reinstall medsynth")
        config = PrepareConfig(manifest=str(raw), preprocess=preprocess, cache_dir=str(cache_root(cache_dir)))
        return run_prepare(config, manifest.parent, progress=False)


def _exclusive(lock: IO[str]) -> None:
    """Hold an exclusive lock on an open file until it is closed (POSIX; elsewhere a no-op)."""
    try:
        import fcntl
    except ImportError:  # Windows: concurrent first uses may prepare twice; the output stays whole (atomic)
        return
    fcntl.flock(lock.fileno(), fcntl.LOCK_EX)


def healthy(preprocess: PreprocessConfig, cache_dir: str | Path | None = None) -> list[Path]:
    """Prepared manifests of every bundled healthy anatomy (SynthSeg, Colin27) at ``preprocess``'s grid."""
    return [prepared(name, preprocess, cache_dir) for name in HEALTHY]
