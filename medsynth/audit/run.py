"""``medsynth audit``: fidelity, diversity, memorization and k-anonymity of a synthetic cohort.

    $ medsynth audit --real runs/demo/prepared/brats2013/manifest.json --synthetic runs/demo/cohort_vae -o audit
    $ medsynth audit --config configs/audit_default.yaml real_manifest=prepared/manifest.json cohort=cohort -o audit

Real subjects of ``train_split`` are the generator's training data; the other splits are
held-out subjects and give every figure its real-vs-real baseline. Writes ``report.md``,
``report.json`` (with the run's provenance) and ``report.png``, each check with a verdict
(:func:`medsynth.audit.verdicts.verdicts`): PASS, WARN, FAIL, NOT RUN or INFO, plus the resolved
``config.yaml``. The verdicts are guides with stated rules, not proofs.

This module only orchestrates: loading (:mod:`~medsynth.audit.loading`), the checks
(:mod:`~medsynth.audit.memorization`, :mod:`~medsynth.audit.membership`, :mod:`~medsynth.audit.fidelity`,
:mod:`~medsynth.audit.anonymity`, :mod:`~medsynth.audit.realism`), the verdicts (:mod:`~medsynth.audit.verdicts`)
and the report (:mod:`~medsynth.audit.report`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from medsynth.audit.anonymity import k_anonymity_report
from medsynth.audit.config import AuditConfig
from medsynth.audit.features import FeatureNetwork
from medsynth.audit.fidelity import (
    diversity,
    feature_network,
    intensity_fidelity,
    learned_feature_fidelity,
    tumor_fidelity,
)
from medsynth.audit.loading import cases_with_modalities, load_audit_manifest, load_cases
from medsynth.audit.membership import dcr_test, split_control
from medsynth.audit.memorization import copy_check, feature_neighbours, membership
from medsynth.audit.realism import CaseArrays, realism_report
from medsynth.audit.report import write_markdown, write_plot
from medsynth.audit.verdicts import verdicts
from medsynth.config import save_config
from medsynth.errors import ConfigError, DataError
from medsynth.io import atomic_output, write_json
from medsynth.manifest import provenance


def run_audit(config: AuditConfig, output: str | Path) -> Path:
    """Run every check of ``config``; returns the path of ``report.md`` in ``output``.

    Args:
        config: what to audit and how (:class:`AuditConfig`).
        output: the audit folder (refused when it holds files medsynth did not write).

    >>> config = AuditConfig(real_manifest="prepared/manifest.json", cohort="cohort")  # doctest: +SKIP
    >>> run_audit(config, "audit")  # doctest: +SKIP
    PosixPath('audit/report.md')

    ``config.features`` is the feature network of the Frechet/MMD and feature-distance checks
    (see ``medsynth.audit.features``); by default one is trained on the training subjects for
    ``config.feature_steps`` steps and saved as ``output/feature_network.pt``.

    All or nothing: the report, its plot, the resolved ``config.yaml`` and the feature network are
    written into a temporary folder renamed to ``output`` at the end
    (:func:`medsynth.io.atomic_output`), so a failed audit leaves no output and a previous audit in
    ``output`` stays until the new one is complete. ``output`` may be a folder an earlier audit
    wrote (it is replaced), never one holding other files or this audit's inputs. A ``features``
    file inside ``output`` is read before the swap and kept in the new folder.
    """
    for field, flag in (("real_manifest", "--real"), ("cohort", "--synthetic")):
        if not getattr(config, field):
            raise ConfigError(f"audit: {field} is required ({flag} PATH or {field}=PATH)")
    real_manifest, cohort, output = Path(config.real_manifest), Path(config.cohort), Path(output)
    real = load_audit_manifest(real_manifest, kind="prepared")
    cohort_manifest = cohort / "manifest.json"
    synthetic = load_audit_manifest(cohort_manifest, kind="cohort")
    modalities = synthetic.modalities
    real_cases = cases_with_modalities(real, real_manifest, modalities, str(cohort_manifest))
    training_cases = [c for c in real_cases if c.split == config.train_split]
    held_out_cases = [c for c in real_cases if c.split != config.train_split]
    synthetic_cases = synthetic.cases()
    if not training_cases:
        raise DataError(f"{real_manifest}: no {config.train_split!r} subjects with images (see --train-split)")
    if not synthetic_cases:
        raise DataError(f"{cohort_manifest}: no synthetic cases")
    inputs: list[str | Path] = [real_manifest, cohort]
    if config.generator is not None:
        inputs.append(Path(config.generator))
    case_files = [f for c in [*real_cases, *synthetic_cases] for f in [*c.images, c.label] if f]
    with atomic_output(output, "audit", inputs=[*inputs, *case_files]) as folder:
        grid: dict[str, Any] = {}
        training, training_tumors = load_cases(training_cases, modalities, grid, real_manifest)
        held_out, held_out_tumors = load_cases(held_out_cases, modalities, grid, real_manifest)
        synthetic_pairs, synthetic_tumors = load_cases(synthetic_cases, modalities, grid, cohort_manifest)
        network = feature_network(
            config.features, training, config.feature_steps, config.seed, folder, output, patch=config.feature_patch
        )
        summary = _checks(
            config,
            modalities,
            ([c.case_id for c in training_cases], [c.case_id for c in held_out_cases]),
            [c.case_id for c in synthetic_cases],
            (training, held_out, synthetic_pairs),
            (training_tumors, held_out_tumors, synthetic_tumors),
            network,
            tuple(float(s) for s in grid["spacing"]),
        )
        features = config.features
        if features is not None and not str(features).startswith("torchvision:"):
            inputs.append(Path(features))
        summary["provenance"] = provenance("audit", config=config, seed=config.seed, inputs=inputs)
        write_json(summary, folder / "report.json")
        save_config(config, folder / "config.yaml")
        write_markdown(folder / "report.md", summary)
        write_plot(folder / "report.png", summary)
    return output / "report.md"


def _checks(
    config: AuditConfig,
    modalities: list[str],
    real_ids: tuple[list[str], list[str]],
    synthetic_ids: list[str],
    volumes: tuple[list[tuple[Any, Any]], ...],
    tumors: tuple[list[dict[str, Any]], ...],
    network: FeatureNetwork,
    spacing: tuple[float, ...] = (1.0, 1.0, 1.0),
) -> dict[str, Any]:
    """Every check of the audit on loaded, validated cases: the summary written as report.json."""
    training_ids, held_out_ids = real_ids
    training, held_out, synthetic = volumes
    memorization = copy_check(
        [i for i, _ in training],
        training_ids,
        [i for i, _ in held_out],
        [(case_id, images) for case_id, (images, _) in zip(synthetic_ids, synthetic, strict=True)],
        config.copies_per_scan,
        config.seed,
    )
    memorization.update(
        feature_neighbours(
            network, [i for i, _ in training], training_ids, [i for i, _ in held_out], [i for i, _ in synthetic]
        )
    )
    for case, distance in zip(memorization["cases"], memorization.pop("synthetic_feature_distance"), strict=True):
        case["feature_distance"] = distance
    learned = learned_feature_fidelity(network, training, held_out, synthetic, max_samples=config.feature_samples)
    fidelity = intensity_fidelity(training, held_out, synthetic, modalities)
    spread = diversity(training + held_out, synthetic)
    membership_result = None
    if config.generator is not None and held_out:
        membership_result = membership(
            config.generator,
            training,
            held_out,
            seed=config.seed,
            draws=config.membership_draws,
            bootstrap_samples=config.bootstrap_samples,
        )
        membership_result["split_control"] = split_control(
            membership_result["training_scores"],
            membership_result["held_out_scores"],
            membership_result["auc"],
            seed=config.seed,
        )
    # the copy check's similarity to the nearest training scan: the closeness the copy verdict uses; the U
    # test reads ranks only, so 1 - similarity gives the same test as any other decreasing function of it
    closest_record = dcr_test(
        [1.0 - c["ncc"] for c in memorization["cases"]],
        [1.0 - v for v in memorization["held_out_nearest_ncc"]],
        representation="1 - the copy check's similarity to the nearest training scan",
    )
    summary = {
        "real_manifest": str(Path(config.real_manifest).resolve()),
        "cohort": str(Path(config.cohort).resolve()),
        "training_subjects": training_ids,
        "held_out_subjects": held_out_ids,
        "memorization": memorization,
        "fidelity_wasserstein": fidelity,
        "fidelity_features": learned,
        "fidelity_tumor": tumor_fidelity(*tumors),
        "diversity": spread,
        "membership_inference": membership_result,
        "distance_to_closest_record": closest_record,
        "k_anonymity": k_anonymity_report(config.cohort, listed=config.k_anonymity_listed),
        "realism": _realism(config, modalities, (training_ids, held_out_ids, synthetic_ids), volumes, spacing),
    }
    summary["verdicts"] = verdicts(summary)
    return summary


def _realism(
    config: AuditConfig,
    modalities: list[str],
    ids: tuple[list[str], ...],
    volumes: tuple[list[tuple[Any, Any]], ...],
    spacing: tuple[float, ...],
) -> dict[str, Any] | None:
    """The realism section (:mod:`~medsynth.audit.realism`); None when ``config.realism.enabled`` is false."""
    settings = config.realism
    if not settings.enabled:
        return None
    training, held_out, synthetic = (
        [CaseArrays(case_id, images, label) for case_id, (images, label) in zip(group_ids, group, strict=True)]
        for group_ids, group in zip(ids, volumes, strict=True)
    )
    return realism_report(
        training,
        held_out,
        synthetic,
        spacing,
        modalities,
        c2st_run=settings.c2st,
        control_folds=settings.control_folds,
        seed=config.seed,
        patch=settings.patch,
        patches_per_case=settings.patches_per_case,
        steps=settings.steps,
        bootstrap_samples=settings.bootstrap_samples,
    )
