"""The audit's config (``configs/audit_default.yaml``): which cohort against which real subjects, and how.

$ medsynth audit --config configs/audit_default.yaml real_manifest=prepared/manifest.json cohort=cohort -o audit
"""

from __future__ import annotations

from dataclasses import dataclass, field

from medsynth.manifest import SPLITS, Split


@dataclass
class RealismConfig:
    """The realism section (:mod:`medsynth.audit.realism`): a patch classifier two-sample test and texture ratios.

    Defaults keep it to well under a minute on CPU: four small trainings (test, Gaussian floor,
    two real-vs-real control folds) of ``steps`` steps on ``patch``^3 patches.

    >>> RealismConfig(patch=2)
    Traceback (most recent call last):
    ValueError: patch must be >= 8, got 2
    """

    enabled: bool = True  # false: the realism section is NOT RUN (texture measures included)
    c2st: bool = True  # the classifier two-sample test (needs 2 held-out subjects and 2 synthetic cases)
    patch: int = 32  # C2ST patch side, voxels (capped by the grid)
    patches_per_case: int = 8  # C2ST evaluation patches per case and kind (tumor, healthy)
    steps: int = 150  # C2ST classifier training steps, for the test, the floor and each control fold
    control_folds: int = 2  # real-vs-real control repeats (each a training); 0: no control
    bootstrap_samples: int = 1000  # case-level bootstrap resamples of each C2ST AUC's 95% interval

    def __post_init__(self) -> None:
        if self.patch < 8:  # three stride-2 convolutions need a few voxels left
            raise ValueError(f"patch must be >= 8, got {self.patch}")
        for name in ("patches_per_case", "steps", "bootstrap_samples"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.control_folds < 0:
            raise ValueError(f"control_folds must be >= 0, got {self.control_folds}")


@dataclass
class AuditConfig:
    """Every setting of ``medsynth audit``; the CLI flags (``--real``, ``--synthetic``...) set these fields.

    The verdict rules (floors, ratio limits) are fixed in :mod:`medsynth.audit.verdicts`, so that
    verdicts of different audits read alike.

    Args:
        real_manifest: prepared manifest of the real subjects.
        cohort: cohort folder made by ``medsynth generate``.
        train_split: the split the generator was trained on; the others are held out.
        generator: checkpoint for membership inference (skipped without one).
        features: feature network for Frechet/MMD (default: trained for ``feature_steps`` steps).
        realism: the realism section's settings (:class:`RealismConfig`).
        seed: seed of every random draw of the audit (see the field comments for the rest).

    >>> config = AuditConfig(real_manifest="prepared/manifest.json", cohort="cohort", seed=1)
    >>> config.train_split, config.copies_per_scan
    ('train', 5)
    >>> AuditConfig(train_split="training")
    Traceback (most recent call last):
    ValueError: train_split 'training' is not one of ['train', 'validation', 'test']
    """

    real_manifest: str = ""  # prepared manifest of the real subjects (`medsynth prepare`); --real
    cohort: str = ""  # cohort folder made by `medsynth generate`; --synthetic
    train_split: Split = "train"  # split the generator was trained on; the other splits are held out
    generator: str | None = None  # generator checkpoint, for membership inference (not run without one)
    features: str | None = None  # feature network: an earlier audit's feature_network.pt or torchvision:ARCH=WEIGHTS
    feature_steps: int = 200  # training steps of the default feature network (when `features` is unset)
    feature_patch: int = 48  # crop size (voxels per side) of the default feature network's training
    feature_samples: int = 4000  # local feature vectors per group for the Frechet distance and MMD
    copies_per_scan: int = 5  # disguised copies (shift, rotation, blur...) of each training scan: the copy threshold
    membership_draws: int = 3  # generator samples per subject in membership inference (the best one counts)
    bootstrap_samples: int = 2000  # bootstrap resamples of the membership AUC's 95% interval
    k_anonymity_listed: int = 10  # smallest k-anonymity groups listed in the report
    realism: RealismConfig = field(default_factory=RealismConfig)  # C2ST and texture ratios; realism.steps=...
    seed: int = 0  # copy-threshold augmentations, feature-network training, membership draws and bootstrap

    def __post_init__(self) -> None:
        if self.train_split not in SPLITS:  # a direct AuditConfig(...) skips the loader's Literal check
            raise ValueError(f"train_split {self.train_split!r} is not one of {list(SPLITS)}")
        for name in ("feature_patch", "feature_samples", "copies_per_scan", "membership_draws", "bootstrap_samples"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("feature_steps", "k_anonymity_listed"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
