"""The typed config of ``medsynth labels`` (no heavy imports: the CLI loads it first).

``configs/labels_default.yaml`` lists every field; a run file lists only what it changes::

    n: 100
    seed: 0
    placement:
      max_rotation_deg: 90

>>> from medsynth.config import from_dict
>>> config = from_dict(LabelsConfig, {"sources": ["p/manifest.json"], "n": 4}, ["placement.anatomies=healthy"])
>>> config.placement.anatomies, config.splits, config.reshape
('healthy', ['train'], None)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from medsynth.labels.reshape import ReshapeSpec


@dataclass
class DeformationConfig:
    """Ranges of the random deformation of each label map's anatomy (``placement.deformation``).

    Args:
        anatomies: which anatomies are deformed: ``all``, ``healthy`` only, or ``none``.
        max_rotation_deg: each Euler angle uniform in ``[-max, max]``.
        scale: per-axis length factor, uniform in this range.
        max_shear: each shear coefficient uniform in ``[-max, max]``.
        elastic_magnitude_mm: largest elastic displacement, uniform in this range.
        elastic_smoothness_mm: Gaussian width of the elastic displacement field.

    >>> DeformationConfig().anatomies, DeformationConfig(anatomies="none").enabled_for("healthy")
    ('all', False)
    """

    anatomies: str = "all"  # all, healthy or none
    max_rotation_deg: float = 10.0
    scale: tuple[float, float] = (0.9, 1.1)
    max_shear: float = 0.05
    elastic_magnitude_mm: tuple[float, float] = (1.0, 4.0)
    elastic_smoothness_mm: float = 16.0

    def __post_init__(self) -> None:
        if self.anatomies not in ("all", "healthy", "none"):
            raise ValueError(f"deformation.anatomies must be all, healthy or none, got {self.anatomies!r}")
        low, high = self.scale
        if not 0 < low <= high:
            raise ValueError(f"deformation.scale must satisfy 0 < low <= high, got {self.scale}")
        if self.max_rotation_deg < 0 or self.max_shear < 0 or min(self.elastic_magnitude_mm) < 0:
            raise ValueError("deformation: rotation, shear and elastic magnitudes must be >= 0")

    def enabled_for(self, split: str) -> bool:
        """Whether an anatomy of this split (``healthy``, ``train``...) is deformed."""
        return self.anatomies == "all" or (self.anatomies == "healthy" and split == "healthy")


@dataclass
class LabelConfig:
    """How tumors are transformed and placed (the defaults when no reshape target applies).

    Args:
        volume_scale: allowed volume factor (log-uniform when no target volume is set).
        max_rotation_deg: each Euler angle is drawn uniformly in ``[-max, max]``.
        elastic_magnitude_mm, elastic_smoothness_mm: the smooth displacement field.
        exclude_classes: tissues the tumor must avoid; ``max_excluded_fraction`` of it may overlap them.
        anatomies: target anatomies, ``all``, ``healthy`` or ``real``.
        deformation: the random smooth deformation of each label map's anatomy (:class:`DeformationConfig`).
        (the other fields: see their comments)

    >>> LabelConfig(max_rotation_deg=30).volume_scale
    (0.5, 2.0)
    """

    volume_scale: tuple[float, float] = (0.5, 2.0)  # allowed volume factor; log-uniform when no target
    max_rotation_deg: float = 180.0  # each Euler angle uniform in [-max, max]
    elastic_magnitude_mm: tuple[float, float] = (0.0, 6.0)  # largest displacement, uniform in this range
    elastic_smoothness_mm: float = 10.0  # Gaussian width of the displacement field
    exclude_classes: list[str] = field(default_factory=lambda: ["csf"])  # tissues the tumor must avoid
    max_excluded_fraction: float = 0.25  # share of the tumor allowed over excluded tissues
    max_outside_brain_fraction: float = 0.05  # share of the tumor allowed outside the brain (then clipped)
    min_component_voxels: int = 4  # sub-region pieces smaller than this are merged into a neighbour
    anatomies: Literal["all", "healthy", "real"] = "all"  # target anatomies
    max_attempts: int = 300  # draws per label map before giving up
    deformation: DeformationConfig = field(default_factory=DeformationConfig)  # so no two cases share a brain

    def __post_init__(self) -> None:
        low, high = self.volume_scale
        if not 0 < low <= high:
            raise ValueError(f"volume_scale must satisfy 0 < low <= high, got {self.volume_scale}")
        unknown = [c for c in self.exclude_classes if c not in ("csf", "gm", "wm")]
        if unknown:
            raise ValueError(f"exclude_classes: {unknown} are not anatomy classes (csf, gm, wm)")
        if self.anatomies not in ("all", "healthy", "real"):
            raise ValueError(f"anatomies must be all, healthy or real, got {self.anatomies!r}")


@dataclass
class LabelsConfig:
    """Everything ``medsynth labels`` needs; written resolved as ``config.yaml`` beside the label maps.

    Args:
        sources: prepared manifest(s) whose tumors are transformed (their anatomies are targets too).
        healthy: prepared manifest(s) of healthy anatomies (SynthSeg, Colin27).
        n: number of label maps; ``seed``: map i comes from the generator seeded ``[seed, i]``.
        splits: which splits of ``sources`` may give tumors (default: train only).
        placement: how tumors are transformed and placed (:class:`LabelConfig`).
        reshape: target distributions (:class:`ReshapeSpec`), or None.

    >>> config = LabelsConfig(sources=["prepared/manifest.json"], n=10, seed=3)
    >>> config.splits, config.placement.max_rotation_deg
    (['train'], 180.0)
    """

    sources: list[str] = field(default_factory=list)  # prepared manifest(s) with tumors (their anatomies are targets)
    healthy: list[str] = field(default_factory=list)  # prepared manifest(s) of healthy anatomies (SynthSeg, Colin27)
    n: int = 0  # number of label maps
    seed: int = 0  # map i is drawn from the generator seeded [seed, i]
    splits: list[Literal["train", "validation", "test"]] = field(default_factory=lambda: ["train"])  # source splits
    placement: LabelConfig = field(default_factory=LabelConfig)
    reshape: ReshapeSpec | None = None  # target distributions (configs/reshape/*.yaml); None: as the sources give

    def __post_init__(self) -> None:
        if not self.sources:
            raise ValueError("sources: set the prepared manifest(s) with tumors (--from PATH or sources=[PATH])")
        if self.n < 1:
            raise ValueError(f"n must be >= 1, got {self.n}")
        unknown = [s for s in self.splits if s not in ("train", "validation", "test")]
        if not self.splits or unknown:
            raise ValueError(f"splits: name one or more of train, validation, test, got {self.splits}")
