"""Fidelity and diversity: do synthetic cases look like the training subjects, and unlike each other?

Every distance to the training subjects comes with its real-vs-real baseline, the held-out
subjects' distance to the same training subjects:

- :func:`intensity_fidelity`: Wasserstein distance of intensities per modality and tissue class;
- :func:`tumor_fidelity`: whole-tumor volume, sub-region fractions and location of the label maps;
- :func:`learned_feature_fidelity`: Frechet distance and MMD of a feature network's features
  (:mod:`medsynth.audit.features`), trained here on the training subjects unless one is given;
- :func:`diversity`: mean pairwise SSIM within the synthetic and within the real cases.
"""

from __future__ import annotations

import itertools
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import wasserstein_distance

from medsynth.audit.features import (
    FeatureNetwork,
    feature_fidelity,
    load_feature_network,
    save_feature_network,
    train_feature_network,
)
from medsynth.data.scheme import CLASS_NAMES, TUMOR_CLASSES

CLASSES = ("csf", "gm", "wm", "netc", "snfh", "et")
SUBREGIONS = tuple(CLASS_NAMES[c] for c in TUMOR_CLASSES)
GROUPS = ("training", "held_out", "synthetic")

Pairs = list[tuple[np.ndarray, np.ndarray]]  # (images (C, X, Y, Z), label map) per case


def _intensities(cases: Pairs, modalities: list[str]) -> dict[str, np.ndarray]:
    pooled: dict[str, list[np.ndarray]] = {}
    for images, label in cases:
        for index, modality in enumerate(modalities):
            for cls in CLASSES:
                values = images[index][label == {v: k for k, v in CLASS_NAMES.items()}[cls]]
                if values.size:
                    pooled.setdefault(f"{modality}/{cls}", []).append(values)
    return {k: np.concatenate(v) for k, v in pooled.items()}


def intensity_fidelity(
    training: Pairs, held_out: Pairs, synthetic: Pairs, modalities: list[str]
) -> dict[str, dict[str, float | None]]:
    """Per ``modality/class``: Wasserstein distance synthetic vs training, and held-out vs training."""
    train_values = _intensities(training, modalities)
    synth_values = _intensities(synthetic, modalities)
    held_values = _intensities(held_out, modalities) if held_out else {}
    return {
        key: {
            "synthetic_vs_training": round(float(wasserstein_distance(synth_values[key], train_values[key])), 4),
            "held_out_vs_training": round(float(wasserstein_distance(held_values[key], train_values[key])), 4)
            if key in held_values
            else None,
        }
        for key in sorted(train_values)
        if key in synth_values
    }


def _wasserstein_to_training(values: dict[str, np.ndarray]) -> dict[str, float | None]:
    return {
        f"{name}_vs_training": round(float(wasserstein_distance(values[name], values["training"])), 4)
        if len(values[name]) and len(values["training"])
        else None
        for name in ("synthetic", "held_out")
    }


def tumor_fidelity(
    training: list[dict[str, Any]], held_out: list[dict[str, Any]], synthetic: list[dict[str, Any]]
) -> dict[str, Any]:
    """Tumor volume, sub-region and location distributions of each group, with distances to training.

    Each list holds per-case :func:`~medsynth.labels.generate.tumor_stats` (plus ``case_id``).
    Tumor-free cases count as 0 ml and as location ``none``; sub-region fractions are over the
    cases with a tumor. Held-out vs training is the real-vs-real baseline.
    """
    groups = dict(zip(GROUPS, (training, held_out, synthetic), strict=True))
    volumes = {name: np.array([c["volume_ml"] for c in cases], dtype=float) for name, cases in groups.items()}
    volume: dict[str, Any] = {
        name: {
            "cases": len(v),
            "mean": round(float(v.mean()), 3),
            "min": round(float(v.min()), 3),
            "max": round(float(v.max()), 3),
        }
        if len(v)
        else None
        for name, v in volumes.items()
    }
    volume["wasserstein"] = _wasserstein_to_training(volumes)
    fractions = {}
    for subregion in SUBREGIONS:
        values = {
            name: np.array([c["fractions"][subregion] for c in cases if c["volume_ml"] > 0], dtype=float)
            for name, cases in groups.items()
        }
        fractions[subregion] = {name: round(float(v.mean()), 4) if len(v) else None for name, v in values.items()}
        fractions[subregion]["wasserstein"] = _wasserstein_to_training(values)
    location = {
        key: {name: dict(sorted(Counter(c[key] for c in cases).items())) for name, cases in groups.items()}
        for key in ("hemisphere", "region")
    }
    return {"volume_ml": volume, "subregion_fractions": fractions, "location": location, "cases": groups}


def feature_network(
    features: str | Path | None,
    training: Pairs,
    steps: int,
    seed: int,
    folder: Path,
    output: Path,
    patch: int = 48,
) -> FeatureNetwork:
    """The loaded ``features``, or a network trained on ``training`` and saved into ``folder``.

    ``folder`` becomes ``output`` at the end: a ``features`` file inside ``output`` (the previous
    audit's network, or torchvision weights kept there) is read now, before the swap, and copied
    along so that it stays available and the report's reference to it stays true.
    """
    if features is not None:
        network = load_feature_network(features)
        text = str(features)
        path = Path(text.partition("=")[2] if text.startswith("torchvision:") else text)
        if path.is_file() and path.resolve().is_relative_to(output.resolve()):
            target = folder / path.resolve().relative_to(output.resolve())
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)
        return network
    network = train_feature_network(training, steps=steps, patch=patch, seed=seed)
    save_feature_network(network, folder / "feature_network.pt")
    return network


def learned_feature_fidelity(
    network: FeatureNetwork, training: Pairs, held_out: Pairs, synthetic: Pairs, max_samples: int = 4000
) -> dict[str, Any]:
    """Frechet distance and MMD of the network's local features (:func:`~medsynth.audit.features.feature_fidelity`)."""
    return feature_fidelity(
        network, [i for i, _ in training], [i for i, _ in held_out], [i for i, _ in synthetic], max_samples=max_samples
    )


def _pairwise_ssim(volumes: list[np.ndarray]) -> float | None:
    import torch
    from monai.metrics import SSIMMetric

    if len(volumes) < 2:
        return None
    data_range = float(max(v.max() - v.min() for v in volumes))
    metric = SSIMMetric(spatial_dims=3, data_range=data_range, win_size=7)
    scores = [
        float(metric(torch.as_tensor(a[c : c + 1])[None], torch.as_tensor(b[c : c + 1])[None]).mean())
        for a, b in itertools.combinations(volumes, 2)
        for c in range(a.shape[0])
    ]
    return float(np.mean(scores))


def diversity(real: Pairs, synthetic: Pairs) -> dict[str, float | None]:
    """Mean SSIM over every pair of volumes and modality, synthetic and real (None: fewer than two volumes)."""
    return {
        "synthetic_mean_ssim": _pairwise_ssim([i for i, _ in synthetic]),
        "real_mean_ssim": _pairwise_ssim([i for i, _ in real]),
    }
