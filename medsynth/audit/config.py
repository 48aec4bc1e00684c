"""The audit's config (``configs/audit_default.yaml``): which cohort against which real subjects, and how.

$ medsynth audit --config configs/audit_default.yaml real_manifest=prepared/manifest.json cohort=cohort -o audit
"""

from __future__ import annotations

from dataclasses import dataclass

from medsynth.manifest import SPLITS, Split


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
