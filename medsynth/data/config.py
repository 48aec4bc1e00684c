"""The typed config of ``medsynth prepare`` (no heavy imports: the CLI loads it before MONAI).

A run file nests the preprocessing under ``preprocess:`` (``configs/prepare_cpu.yaml``)::

    preprocess:
      spacing_mm: [2.0, 2.0, 2.0]
      grid: [80, 96, 80]

>>> from medsynth.config import from_dict
>>> config = from_dict(PrepareConfig, {"manifest": "m.json"}, overrides=["preprocess.grid=[64,64,64]"])
>>> config.preprocess.grid, config.previews
((64, 64, 64), True)
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class AnatomyConfig:
    """Unsupervised tissue classification of real subjects (see ``medsynth.data.anatomy``)."""

    smoothing_voxels: int = 3  # width of the majority filter on the tissue classes (1 = none)


@dataclass
class PreprocessConfig:
    """How scans become the fixed-grid volumes every model sees (its hash keys the preprocessing cache).

    Args:
        spacing_mm: working voxel size (mm).
        grid: output shape in voxels, each a multiple of 16.
        orientation: axis codes of the output, e.g. ``RAS``.
        anatomy: how anatomy label maps are derived (:class:`AnatomyConfig`).

    >>> PreprocessConfig(spacing_mm=(1.0, 1.0, 1.0), grid=(160, 192, 160)).orientation
    'RAS'
    >>> PreprocessConfig(grid=(80, 96, 81))
    Traceback (most recent call last):
    ValueError: grid must be positive multiples of 16, got (80, 96, 81)
    """

    spacing_mm: tuple[float, float, float] = (2.0, 2.0, 2.0)  # working voxel size (mm)
    grid: tuple[int, int, int] = (80, 96, 80)  # output shape (voxels), each divisible by 16
    orientation: str = "RAS"  # axis codes of the output
    anatomy: AnatomyConfig = field(default_factory=AnatomyConfig)

    def __post_init__(self) -> None:
        if any(s <= 0 for s in self.spacing_mm):
            raise ValueError(f"spacing_mm must be positive, got {self.spacing_mm}")
        if any(g <= 0 or g % 16 for g in self.grid):
            raise ValueError(f"grid must be positive multiples of 16, got {self.grid}")
        codes = self.orientation.upper()
        if len(codes) != 3 or any(len(set(codes) & set(pair)) != 1 for pair in ("LR", "AP", "SI")):
            raise ValueError(f"orientation must be three axis codes like 'RAS', got {self.orientation!r}")


@dataclass
class PrepareConfig:
    """Everything ``medsynth prepare`` needs; written resolved as ``config.yaml`` beside the prepared files.

    Args:
        manifest: the raw manifest to prepare (``medsynth manifest build``).
        preprocess: spacing, grid, orientation, anatomy (:class:`PreprocessConfig`).
        cache_dir: cache root (None: ``$MEDSYNTH_CACHE`` or ``~/.cache/medsynth``); never changes results.
        previews: write ``previews/<case_id>.png``.

    >>> PrepareConfig(manifest="raw.json", previews=False).preprocess.grid
    (80, 96, 80)
    """

    manifest: str = ""  # the raw manifest to prepare (``medsynth manifest build``)
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    cache_dir: str | None = None  # cache root (None: $MEDSYNTH_CACHE or ~/.cache/medsynth); never changes results
    previews: bool = True  # write previews/<case_id>.png

    def __post_init__(self) -> None:
        if not self.manifest:
            raise ValueError("manifest: set the manifest to prepare (manifest=PATH)")
