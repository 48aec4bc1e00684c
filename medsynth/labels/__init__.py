"""New tumor label maps: real tumors transformed and placed into healthy or real anatomies.

>>> from medsynth.labels import generate_label_maps, regenerate  # doctest: +SKIP
>>> manifest = generate_label_maps(["prepared/manifest.json"], "labels", n=10, seed=0)  # doctest: +SKIP
>>> record = manifest["training"][0]["record"]  # doctest: +SKIP
>>> label_map = regenerate(record)  # identical to labels/label_maps/synth_00000_label_map.nii.gz  # doctest: +SKIP
"""

from medsynth.labels.generate import LabelConfig, LabelMapSampler, generate_label_maps, regenerate
from medsynth.labels.placement import TumorParams
from medsynth.labels.reshape import Range, ReshapeSpec

__all__ = ["LabelConfig", "LabelMapSampler", "Range", "ReshapeSpec", "TumorParams", "generate_label_maps", "regenerate"]
