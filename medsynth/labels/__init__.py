"""New tumor label maps: real tumors transformed and placed into healthy or real anatomies.

>>> from medsynth.labels import LabelsConfig, regenerate, run_labels  # doctest: +SKIP
>>> path = run_labels(LabelsConfig(sources=["prepared/manifest.json"], n=10, seed=0), "labels")  # doctest: +SKIP
>>> from medsynth.manifest import Manifest  # doctest: +SKIP
>>> record = Manifest.load(path).data["training"][0]["record"]  # doctest: +SKIP
>>> label_map = regenerate(record)  # identical to labels/label_maps/synth_00000_label_map.nii.gz  # doctest: +SKIP
"""

from medsynth.labels.config import LabelConfig, LabelsConfig
from medsynth.labels.generate import LabelMapSampler, generate_label_maps, regenerate, run_labels
from medsynth.labels.placement import TumorParams
from medsynth.labels.reshape import Range, ReshapeSpec

__all__ = [
    "LabelConfig",
    "LabelMapSampler",
    "LabelsConfig",
    "Range",
    "ReshapeSpec",
    "TumorParams",
    "generate_label_maps",
    "regenerate",
    "run_labels",
]
