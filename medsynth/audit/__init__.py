"""Evidence that a synthetic cohort is faithful, diverse and copies no training scan.

    $ medsynth audit --real prepared/manifest.json --synthetic cohort -o audit

>>> from medsynth.audit import AuditConfig, run_audit
>>> config = AuditConfig(real_manifest="prepared/manifest.json", cohort="cohort", seed=0)
>>> report = run_audit(config, "audit")  # doctest: +SKIP
>>> report.name  # the numbers, with the run's provenance, are in report.json beside it  # doctest: +SKIP
'report.md'

Modules, one concern each: ``config`` (AuditConfig), ``loading`` (checked case loading),
``memorization`` (copy check, membership inference), ``membership`` (its split control,
distance to closest record), ``fidelity`` (intensities, tumors, learned features, diversity),
``anonymity`` (k-anonymity), ``realism`` (classifier two-sample test, texture ratios), ``verdicts`` (the rules),
``report`` (markdown and plot), ``run`` (orchestration).
"""

from typing import Any

from medsynth.audit.config import AuditConfig

__all__ = ["AuditConfig", "run_audit"]


def __getattr__(name: str) -> Any:
    # run_audit imports torch and MONAI; `medsynth.audit.anonymity` users (the cohort stage) need neither
    if name == "run_audit":
        from medsynth.audit.run import run_audit

        return run_audit
    raise AttributeError(f"module 'medsynth.audit' has no attribute {name!r}")
