"""medsynth: synthetic brain MRI cohorts with tumor label maps.

The pipeline reads left to right in the package, one stage per sub-package, each with a typed
config and one ``run_<stage>(config, output) -> Path``:

``data`` (manifests, preprocessing, anatomy) -> ``labels`` (new tumor label maps) -> ``models``
(generators) -> ``cohort`` (synthetic cases) -> ``loaders`` (real + synthetic training data)
-> ``audit`` / ``benchmark`` (evidence).

Every stage entry and config is reachable from here (``dir(medsynth)`` lists them), but each is
imported on first use only, so ``import medsynth`` and ``medsynth --help`` stay fast and do not
import torch or MONAI.

>>> import medsynth
>>> "generate_label_maps" in dir(medsynth)
True
>>> medsynth.Manifest.__name__
'Manifest'
"""

from __future__ import annotations

import importlib as _importlib
from pathlib import Path as _Path
from typing import Any as _Any

from medsynth._version import __version__
from medsynth.errors import MedsynthError

# public name -> "module:attribute", imported on first access (PEP 562)
_LAZY: dict[str, str] = {
    # data
    "Manifest": "medsynth.manifest:Manifest",
    "build_manifest": "medsynth.data.manifest:build_manifest",
    "check_manifest": "medsynth.data.manifest:check_manifest",
    "prepare": "medsynth.data.prepare:prepare",
    "run_prepare": "medsynth.data.prepare:run_prepare",
    "PrepareConfig": "medsynth.data.config:PrepareConfig",
    "PreprocessConfig": "medsynth.data.config:PreprocessConfig",
    # labels
    "generate_label_maps": "medsynth.labels:generate_label_maps",
    "run_labels": "medsynth.labels:run_labels",
    "LabelsConfig": "medsynth.labels:LabelsConfig",
    "LabelConfig": "medsynth.labels:LabelConfig",
    "ReshapeSpec": "medsynth.labels:ReshapeSpec",
    "regenerate": "medsynth.labels:regenerate",
    # models
    "run_train": "medsynth.models.train:run_train",
    "TrainConfig": "medsynth.models.config:TrainConfig",
    "load_generator": "medsynth.models.generator:load_generator",
    # cohort
    "generate_cohort": "medsynth.cohort:generate_cohort",
    "run_generate": "medsynth.cohort:run_generate",
    "GenerateConfig": "medsynth.cohort:GenerateConfig",
    "regenerate_case": "medsynth.cohort:regenerate_case",
    # loaders
    "MixedDataset": "medsynth.loaders:MixedDataset",
    "MixedSampler": "medsynth.loaders:MixedSampler",
    "SynthesisStream": "medsynth.loaders:SynthesisStream",
    # evidence (the function ``audit.run.audit`` is not exported: ``medsynth.audit`` is the package)
    "run_audit": "medsynth.audit:run_audit",
    "AuditConfig": "medsynth.audit:AuditConfig",
    "run_benchmark": "medsynth.benchmark:run_benchmark",
    "BenchmarkConfig": "medsynth.benchmark:BenchmarkConfig",
}

__all__ = ["MedsynthError", "__version__", "pretrained", *sorted(_LAZY)]


def __getattr__(name: str) -> _Any:
    target = _LAZY.get(name)
    if target is None:
        raise AttributeError(f"module 'medsynth' has no attribute {name!r}")
    module, _, attribute = target.partition(":")
    value = getattr(_importlib.import_module(module), attribute)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


def pretrained(kind: str) -> _Path:
    """Path of a small CPU checkpoint shipped with medsynth, for demos and tests.

    Args:
        kind: ``"gan"``, ``"vae"`` (T1c + FLAIR) or ``"gan_flair"`` (FLAIR only).

    Returns:
        The checkpoint's path; pass it to :func:`load_generator`.

    Raises:
        MedsynthError: no checkpoint of that kind is shipped.

    >>> pretrained("vae").name
    'vae_cpu.pt'
    """
    path = _Path(__file__).resolve().parent / "pretrained" / f"{kind}_cpu.pt"
    if not path.is_file():
        raise MedsynthError(f"no shipped checkpoint {path.name}; choose 'gan' or 'vae'")
    return path
