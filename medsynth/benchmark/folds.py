"""Cross-validation by subject, and the held-out guarantee of each fold.

A fold is written as a prepared manifest of its own (``folds/fold<k>/manifest.json``): its
training subjects in split ``train``, its test subjects in split ``test``, paths absolute. Every
later step reads that manifest only -- new label maps take their tumors from its ``train``
split, the real training items come from it, generators for the fold can be trained on it
(``medsynth train ... manifest=folds/fold<k>/manifest.json``) -- so nothing of a fold's test
subjects can reach its training data by construction, and :func:`check_generator` proves it for
generators trained elsewhere, by label-map content.

>>> from medsynth.benchmark.config import FoldsConfig
>>> [f.test for f in make_folds(["a", "b", "c", "d", "e", "f"], FoldsConfig(k=3, seed=0))]
[['d', 'e'], ['a', 'c'], ['b', 'f']]
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medsynth.benchmark.config import FoldsConfig
from medsynth.errors import ConfigError
from medsynth.io import array_sha256, load_nifti
from medsynth.loaders import LeakageError
from medsynth.manifest import Case, Manifest, provenance, write_manifest

PATH_KEYS = ("image", "label", "mask")  # the file entries of a prepared case (previews are dropped)


@dataclass
class Fold:
    index: int | None  # None: the single train/test split of a run without cross-validation
    train: list[str]
    test: list[str]

    @property
    def name(self) -> str:
        """``fold<k>``, or ``""`` without cross-validation (today's folder layout)."""
        return "" if self.index is None else f"fold{self.index}"


def make_folds(subjects: list[str], config: FoldsConfig) -> list[Fold]:
    """Folds in which every subject is a test subject exactly once, deterministic from ``config.seed``."""
    subjects = sorted(subjects)
    if config.test:
        unknown = sorted({s for fold in config.test for s in fold} - set(subjects))
        if unknown:
            raise ConfigError(f"folds.test: subject(s) {unknown} are not among the subjects {subjects}")
        tests = [sorted(fold) for fold in config.test]
    else:
        if config.k > len(subjects):
            raise ConfigError(f"folds.k {config.k}: only {len(subjects)} subjects")
        order = [subjects[i] for i in np.random.default_rng(config.seed).permutation(len(subjects))]
        tests = [sorted(order[i :: config.k]) for i in range(config.k)]
    return [Fold(i, [s for s in subjects if s not in test], test) for i, test in enumerate(tests)]


def write_fold_manifest(source: Manifest, cases: list[Case], fold: Fold, path: Path) -> Path:
    """The fold as a prepared manifest: its training subjects in ``train``, its test subjects in ``test``."""
    by_id = {c.case_id: c for c in cases}
    entries = []
    for split, ids in (("train", fold.train), ("test", fold.test)):
        for case_id in ids:
            case = by_id[case_id]
            entry = {k: v for k, v in case.record.items() if k != "preview"} | {"split": split}
            for key in PATH_KEYS:
                value = entry.get(key)
                if isinstance(value, list):
                    entry[key] = [str(source.folder / v) for v in value]
                elif isinstance(value, str):
                    entry[key] = str(source.folder / value)
            entries.append(entry)
    inherited = {
        k: v for k, v in source.meta.items() if k not in ("kind", "modalities", "provenance", "path", "format_version")
    }
    return write_manifest(
        path,
        kind="prepared",
        name=f"{source.data.get('name', 'prepared')} {fold.name}",
        description=f"{fold.name} of {source.path}: test subjects {fold.test}",
        modalities=source.modalities,
        labels=source.data.get("labels", {}),
        entries=entries,
        provenance=provenance(
            "benchmark", config={"fold": fold.index, "train": fold.train, "test": fold.test}, inputs=[str(source.path)]
        ),
        **inherited,
    )


def label_digests(cases: list[Case]) -> dict[str, str]:
    """Case id -> SHA-256 of its int16 label map values, as generator checkpoints record their training data."""
    return {c.case_id: array_sha256(load_nifti(c.label, dtype=np.int16)[0]) for c in cases if c.label is not None}


def check_generator(name: str, where: Path, training: dict[str, Any], tests: dict[str, str], fold: Fold) -> None:
    """Refuse a generator trained on one of ``tests`` (case id -> label digest), by id or by content."""
    recorded_ids = set(training.get("cases", []))
    recorded_digests = set((training.get("label_maps") or {}).values())
    if not recorded_ids and not recorded_digests:
        raise LeakageError(f"{where}: does not record the subjects its generator was trained on; cannot prove held-out")
    for subject, digest in sorted(tests.items()):
        if subject in recorded_ids or digest in recorded_digests:
            scope = f"{fold.name}: " if fold.name else ""
            raise LeakageError(
                f"{scope}generator {name!r} ({where}) was trained on test subject {subject!r}: its synthetic data "
                "would leak the test set into training. Use per-fold generators ({fold} in the path) trained "
                "on the fold's training subjects only."
            )
