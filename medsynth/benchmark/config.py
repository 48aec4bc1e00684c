"""Benchmark configs (``configs/benchmark_*.yaml``): data, synthetic data, segmenter, arms, seeds."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from medsynth.labels.generate import LabelConfig

RENDERERS = ("synthseg",)  # synthetic sources that are not learned generators


@dataclass
class DataConfig:
    manifest: str = ""  # prepared manifest (``medsynth prepare``) holding the training and the test subjects
    train_splits: list[str] = field(default_factory=lambda: ["train"])
    test_splits: list[str] = field(default_factory=lambda: ["validation", "test"])
    healthy: list[str] = field(default_factory=list)  # prepared healthy anatomies for new label maps
    # segmenter input channels by name; empty: every modality of the manifest. Set to what an external set
    # has (e.g. [flair]) so its segmenters can be tested there; generators still synthesize all channels.
    modalities: list[str] = field(default_factory=list)
    external: str = ""  # prepared manifest of an external test set (every case, all splits); may be WT-only


@dataclass
class FoldsConfig:
    """Cross-validation by subject over the subjects of ``data.train_splits`` + ``data.test_splits``.

    Every subject is a test subject exactly once. ``k: 0`` keeps the single split (train on
    ``data.train_splits``, test on ``data.test_splits``).
    """

    k: int = 0  # number of folds; 0: no cross-validation
    seed: int = 0  # subjects are shuffled with this seed, then dealt into folds in turn
    test: list[list[str]] = field(default_factory=list)  # explicit test subjects per fold (k and seed unused)

    def __post_init__(self) -> None:
        if self.k < 0 or self.k == 1:
            raise ValueError(f"folds.k must be 0 (no cross-validation) or >= 2, got {self.k}")
        flat = [s for fold in self.test for s in fold]
        if len(set(flat)) != len(flat) or any(not fold for fold in self.test):
            raise ValueError("folds.test: every fold needs test subjects, and no subject may be in two folds")

    @property
    def enabled(self) -> bool:
        return bool(self.k or self.test)


@dataclass
class PrimaryConfig:
    """The pre-declared primary endpoint, printed at the top of the report before any number.

    Among ``candidates`` (arms that differ only by their synthetic fraction), the one with the best
    in-domain mean is chosen -- never on the external set -- and compared with ``baseline`` on ``test``.
    """

    candidates: list[str] = field(default_factory=list)  # empty: no primary endpoint declared
    baseline: str = ""  # default: the config's baseline arm
    region: Literal["WT", "TC", "ET"] = "WT"
    metric: Literal["dice", "hd95_mm"] = "dice"
    test: Literal["in_domain", "external"] = "external"


@dataclass
class SyntheticConfig:
    """Where synthetic cases come from: one cohort per generator, all on the same new label maps.

    A generator is a checkpoint path, ``pretrained:gan`` / ``pretrained:vae`` (shipped in the
    package), or a cohort folder made by ``medsynth generate`` (used as it is).
    """

    # with folds, ``{fold}`` in a path is the fold number (per-fold checkpoints); without it, one checkpoint
    # serves every fold and must not have been trained on any fold's test subject
    generators: dict[str, str] = field(default_factory=lambda: {"gan": "pretrained:gan", "vae": "pretrained:vae"})
    n_cases: int = 16  # new label maps (tumors of the training subjects placed in training/healthy anatomies)
    seed: int = 0
    labels: LabelConfig = field(default_factory=LabelConfig)


@dataclass
class SegmenterConfig:
    """The one segmenter every arm trains: MONAI SegResNet, region-based (WT, TC, ET sigmoid outputs)."""

    init_filters: int = 8
    patch_size: tuple[int, int, int] = (64, 64, 64)
    batch_size: int = 2
    steps: int = 250
    lr: float = 1e-3
    weight_decay: float = 1e-5
    tumor_ratio: float = 0.67  # share of patches centred on tumor voxels (the rest on anatomy/background)
    sw_overlap: float = 0.5  # sliding-window inference overlap
    num_workers: int = 0  # DataLoader worker processes
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    precision: Literal["auto", "fp32", "bf16"] = "auto"  # auto: fp32 on CPU (bf16 is no faster here), bf16 on CUDA
    channels_last: bool = True  # channels_last_3d memory format: 1.6x faster steps on CPU (scripts/bench_speed.py)

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_size < 1:
            raise ValueError("segmenter.steps and segmenter.batch_size must be >= 1")
        if self.init_filters < 8 or self.init_filters % 8:
            raise ValueError(f"segmenter.init_filters {self.init_filters}: group norm needs a multiple of 8")
        if any(s % 8 for s in self.patch_size):
            raise ValueError(f"segmenter.patch_size {list(self.patch_size)}: SegResNet needs multiples of 8")


@dataclass
class ArmConfig:
    """One way of building the training data; everything else is shared by all arms."""

    name: str = ""
    real: bool = True  # the real training subjects are in the pool
    synthetic: str = ""  # "" (none), a name from ``synthetic.generators``, or "synthseg" (label-map rendering)
    fraction: float = 0.0  # share of every batch that is synthetic (1.0 with real=false: synthetic only)
    classical: bool = False  # add nnU-Net-style classical augmentation to the shared crop + flip

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("every arm needs a name")
        if not 0 <= self.fraction <= 1:
            raise ValueError(f"arm {self.name}: fraction must be in [0, 1]")
        if bool(self.synthetic) != (self.fraction > 0):
            raise ValueError(f"arm {self.name}: set both synthetic and a fraction > 0, or neither")
        if not self.real and self.fraction != 1:
            raise ValueError(f"arm {self.name}: without real data the synthetic fraction must be 1")


def default_arms() -> list[ArmConfig]:
    return [
        ArmConfig("real"),
        ArmConfig("real_classical", classical=True),
        ArmConfig("synthetic_gan", real=False, synthetic="gan", fraction=1.0),
        ArmConfig("synthetic_vae", real=False, synthetic="vae", fraction=1.0),
        ArmConfig("mixed_gan_25", synthetic="gan", fraction=0.25),
        ArmConfig("mixed_gan_50", synthetic="gan", fraction=0.5),
        ArmConfig("real_synthseg_50", synthetic="synthseg", fraction=0.5),
    ]


@dataclass
class BenchmarkConfig:
    """Everything a benchmark run needs; written resolved as ``config.yaml`` beside its results.

    Args:
        data: the prepared manifest and its splits (``data.manifest`` is required).
        synthetic: generators and label maps the synthetic arms draw from.
        segmenter: the segmentation network trained by every arm, and its schedule.
        arms: the training-data recipes compared (real only, mixed, synthetic only, ...).
        seeds: one run of every arm per seed; distinct integers.
        baseline: the arm every other arm is compared with, pair by pair.
        folds: cross-validation by subject (off by default: one train/test split).
        primary: the pre-declared primary endpoint (none by default).

    >>> from medsynth.config import from_dict
    >>> config = from_dict(BenchmarkConfig, {"data": {"manifest": "prepared/manifest.json"}}, ["seeds=[0]"])
    >>> config.seeds, config.baseline
    ([0], 'real')
    """

    data: DataConfig = field(default_factory=DataConfig)
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)
    segmenter: SegmenterConfig = field(default_factory=SegmenterConfig)
    arms: list[ArmConfig] = field(default_factory=default_arms)
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    baseline: str = "real"  # the arm every other arm is compared with, pair by pair
    folds: FoldsConfig = field(default_factory=FoldsConfig)
    primary: PrimaryConfig = field(default_factory=PrimaryConfig)

    def __post_init__(self) -> None:
        if not self.data.manifest:
            raise ValueError("data.manifest: set the prepared manifest (data.manifest=PATH)")
        names = [arm.name for arm in self.arms]
        if len(set(names)) != len(names):
            raise ValueError(f"arm names must be unique: {names}")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds must be a non-empty list of distinct integers: {self.seeds}")
        for arm in self.arms:
            if arm.synthetic and arm.synthetic not in self.synthetic.generators and arm.synthetic not in RENDERERS:
                raise ValueError(
                    f"arm {arm.name}: synthetic {arm.synthetic!r} is neither a generator "
                    f"({sorted(self.synthetic.generators)}) nor a renderer ({list(RENDERERS)})"
                )
        if self.baseline not in names:
            raise ValueError(f"baseline arm {self.baseline!r} is not among the arms {names}")
        primary = self.primary
        if primary.candidates:
            primary.baseline = primary.baseline or self.baseline
            unknown = [a for a in [*primary.candidates, primary.baseline] if a not in names]
            if unknown:
                raise ValueError(f"primary: arm(s) {unknown} are not among the arms {names}")
            if primary.test == "external" and not self.data.external:
                raise ValueError("primary.test is external: set data.external (a prepared manifest)")
