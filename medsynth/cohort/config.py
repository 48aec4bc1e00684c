"""The cohort stage's config: what ``medsynth generate`` makes, checked when it is built.

    $ medsynth generate --config configs/generate_default.yaml checkpoint=medsynth/pretrained/vae_cpu.pt n=50 -o cohort

Every field is documented in ``configs/generate_default.yaml``. A bad value is refused when
the config is built (from YAML, ``KEY=VALUE`` overrides, CLI flags or Python), before the
generator is loaded or anything is written; messages name the CLI flag of the field.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import yaml

from medsynth.audit.anonymity import QuasiIdentifiers, check_k
from medsynth.config import from_dict
from medsynth.errors import ConfigError
from medsynth.labels.generate import LabelConfig
from medsynth.labels.reshape import ReshapeSpec

LabelConvention = Literal["canonical", "brats2021", "brats2023"]
LABEL_CONVENTION_NAMES: tuple[str, ...] = ("canonical", "brats2021", "brats2023")
Precision = Literal["auto", "fp32", "bf16"]
PRECISIONS: tuple[str, ...] = ("auto", "fp32", "bf16")


@dataclass
class GenerateConfig:
    """A synthetic cohort: which generator, which label maps, how many, on which grid.

    Args:
        checkpoint: the generator (``generator.pt`` or a training ``checkpoint.pt``).
        labels: label maps from ``medsynth labels``; None samples ``n`` new ones.
        n: number of cases (with ``labels``: the first n; None: all).
        sources, healthy: prepared manifests the sampled label maps draw tumors and anatomies from.
        label_config: how sampled tumors are transformed and placed.
        reshape: target distributions of the sampled label maps.
        seed: the cohort seed.
        shard: ``(i, n)`` or ``"i/n"``: this process makes the cases with index % n == i.
        spacing_mm: isotropic voxel size to resample to; None keeps the generator's grid.
        label_convention: also write ``<case>_seg.nii.gz`` in this BraTS convention.
        precision: the generator's arithmetic (``auto``, ``fp32``, ``bf16``).
        audit_against: prepared manifest to copy-check every case against before publishing.
        copy_check: with no ``audit_against``, copy-check against the generator's training subjects
            when they are found on this machine by content (the gate on by default).
        allow_flagged: publish flagged cases anyway.
        k_anonymity: fill groups of ``quasi_identifiers`` to at least this many cases.
        quasi_identifiers: what groups cases for ``k_anonymity``.

    >>> GenerateConfig(checkpoint="generator.pt", n=50, shard="1/4").shard
    (1, 4)
    """

    checkpoint: str  # generator.pt or checkpoint.pt (from `medsynth train`, or medsynth/pretrained/)
    labels: str | None = None  # label maps from `medsynth labels` (folder or manifest); None: sample n new ones
    n: int | None = None  # cases; with labels: the first n label maps (None: all of them)
    sources: list[str] = field(default_factory=list)  # prepared manifests whose tumors are sampled; []: training's
    healthy: list[str] = field(default_factory=list)  # prepared manifests of healthy anatomies (sampling only)
    label_config: LabelConfig = field(default_factory=LabelConfig)  # how sampled tumors are transformed and placed
    reshape: ReshapeSpec | None = None  # target distributions of the sampled label maps (configs/reshape/)
    seed: int = 0  # cohort seed: every case's label-map and style seeds derive from it and the case index
    shard: tuple[int, int] | str = (0, 1)  # this process makes the cases with index % n == i ("i/n" or [i, n])
    spacing_mm: float | None = None  # resample to this isotropic voxel size (mm); None: the generator's grid
    label_convention: LabelConvention = "canonical"  # also write <case>_seg.nii.gz in this BraTS convention
    precision: Precision = "auto"  # generator arithmetic; auto: bf16 where the hardware runs it natively
    audit_against: str | None = None  # prepared manifest: copy-check every case against its train split first
    copy_check: bool = True  # no audit_against: copy-check against the generator's training subjects when found
    allow_flagged: bool = False  # publish cases the copy check flags anyway (recorded in their provenance)
    k_anonymity: int | None = None  # add cases until every group of quasi_identifiers has at least this many
    quasi_identifiers: QuasiIdentifiers = field(default_factory=QuasiIdentifiers)  # what groups cases (k_anonymity)

    def __post_init__(self) -> None:
        if not isinstance(self.checkpoint, str | Path) or not str(self.checkpoint):
            raise ConfigError("checkpoint: give the generator (--checkpoint FILE or checkpoint=FILE)")
        # paths are kept as strings, so the config is written to YAML as it was given
        self.checkpoint = str(self.checkpoint)
        self.labels = None if self.labels is None else str(self.labels)
        self.audit_against = None if self.audit_against is None else str(self.audit_against)
        self.sources = [str(p) for p in self.sources]
        self.healthy = [str(p) for p in self.healthy]
        self.n = check_count(self.n)
        self.spacing_mm = check_spacing(self.spacing_mm)
        self.seed = check_seed(self.seed)
        self.shard = parse_shard(self.shard) if isinstance(self.shard, str) else check_shard(self.shard)
        if self.label_convention not in LABEL_CONVENTION_NAMES:
            raise ConfigError(f"label convention must be one of {list(LABEL_CONVENTION_NAMES)}")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"precision must be auto, fp32 or bf16, not {self.precision!r}")
        if self.k_anonymity is not None:
            self.k_anonymity = check_k(self.k_anonymity)
            if self.labels is not None and not self.sources:
                raise ConfigError(
                    f"--k-anonymity {self.k_anonymity} with --labels {self.labels}: the fill draws new label maps, so "
                    "give their tumor sources with --from PREPARED_MANIFEST (e.g. the manifest the label maps were "
                    "made from)"
                )

    def for_cohort(self) -> GenerateConfig:
        """This config as the whole cohort's (``shard`` is one process's part, not the cohort's)."""
        return replace(self, shard=(0, 1))


def load_generate_config(path: str | Path | None, overrides: list[str] | None = None, **fields: Any) -> GenerateConfig:
    """The config from a YAML file, then ``fields`` (CLI shorthands), then ``KEY=VALUE`` overrides.

    ``fields`` set to None are left out, so an unset flag keeps the file's value.
    """
    data: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"{path}: config file not found")
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: invalid YAML ({exc})") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a mapping at the top level")
    for name, value in fields.items():
        if value is not None:
            data[name] = _plain(value)
    return from_dict(GenerateConfig, data, overrides, where=str(path) if path else "generate config")


def _plain(value: Any) -> Any:
    """A JSON-able form of a CLI value (paths as strings)."""
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def parse_shard(text: str) -> tuple[int, int]:
    """``"i/n"`` -> (i, n) with 0 <= i < n."""
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise ConfigError(f"--shard {text!r}: expected i/n, e.g. 0/4") from None
    if not 0 <= index < count:
        raise ConfigError(f"--shard {text!r}: need 0 <= i < n")
    return index, count


def check_count(n: Any) -> int | None:
    """``--n``: None (all label maps) or a positive whole number."""
    if n is None:
        return None
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1:
        raise ConfigError(f"--n {n}: the number of cases must be a positive whole number")
    return int(n)


def check_spacing(spacing_mm: Any) -> float | None:
    """``--spacing``: None (the generator's grid) or a positive, finite voxel size in mm."""
    if spacing_mm is None:
        return None
    try:
        value = float(spacing_mm)
    except (TypeError, ValueError):
        value = math.nan
    if isinstance(spacing_mm, bool) or not math.isfinite(value) or value <= 0:
        raise ConfigError(f"--spacing {spacing_mm}: the voxel size must be a positive, finite number of mm")
    return value


def check_seed(seed: Any) -> int:
    """``--seed``: a non-negative whole number."""
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ConfigError(f"--seed {seed}: must be a non-negative whole number")
    return int(seed)


def check_shard(shard: Any) -> tuple[int, int]:
    """``(i, n)`` with 0 <= i < n."""
    try:
        index, count = (int(part) for part in shard)
    except (TypeError, ValueError):
        raise ConfigError(f"shard {shard!r}: expected (i, n), e.g. (0, 4)") from None
    if not 0 <= index < count:
        raise ConfigError(f"shard {index}/{count}: need 0 <= i < n")
    return index, count
