"""Where ``medsynth generate --n N`` takes its label maps from when it is given no sources.

A generator records its training subjects by content (``training.label_maps``: case id ->
SHA-256 of the label map's values, and the preprocessing), never only by a path of the
machine it was trained on. With no ``--from``:

- **tumors** come from the generator's training subjects, found again by content: at the
  recorded path, or in the bundled 2 mm sample prepared at the generator's grid (the shipped
  models were trained on it). When neither matches, the bundled sample's training tumors are
  used and the plan says so.
- **anatomies** are the bundled healthy brains (SynthSeg, Colin27) prepared at the
  generator's grid, not the training patients' brains (a brain's shape identifies a patient).
  ``--from`` or ``label_config.anatomies=real`` opts back into patients' anatomies.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from medsynth.config import from_dict
from medsynth.data import bundled
from medsynth.data.config import PreprocessConfig
from medsynth.errors import MedsynthError
from medsynth.io import array_sha256, load_nifti
from medsynth.manifest import Manifest

if TYPE_CHECKING:
    from medsynth.models.generator import Generator


@dataclass
class DefaultSources:
    """The label sources chosen for a generator, and why (recorded in the cohort plan)."""

    sources: list[Path]
    healthy: list[Path] = field(default_factory=list)
    tumors_from: str = ""  # "training data (found by content)" or "bundled sample"
    notes: list[str] = field(default_factory=list)

    def describe(self) -> dict[str, Any]:
        return {"tumors_from": self.tumors_from, "notes": self.notes}


def preprocess_of(generator: Generator) -> PreprocessConfig:
    """The preprocessing that makes label maps on ``generator``'s grid."""
    recorded = generator.training.get("preprocess")
    if recorded:
        return from_dict(PreprocessConfig, recorded, where="checkpoint training.preprocess")
    return PreprocessConfig(
        spacing_mm=tuple(float(s) for s in generator.spacing_mm),
        grid=tuple(int(g) for g in generator.grid),
        orientation=generator.orientation,
    )


def matches_training(manifest_path: str | Path, training: dict[str, Any]) -> bool:
    """Whether a prepared manifest holds the recorded training subjects with the same label maps.

    A checkpoint without recorded label maps (older ones) matches by its recorded path only.
    """
    path = Path(manifest_path)
    if not path.is_file():
        return False
    digests: dict[str, str] | None = training.get("label_maps")
    try:
        cases = {c.case_id: c for c in Manifest.load(path, kind="prepared").cases()}
    except MedsynthError:
        return False
    if digests is None:
        return str(path.resolve()) == str(training.get("manifest")) and set(training.get("cases", [])) <= set(cases)
    for case_id, digest in digests.items():
        case = cases.get(case_id)
        if case is None or case.label is None or not case.label.is_file():
            return False
        if array_sha256(load_nifti(case.label, dtype=np.int16)[0]) != digest:
            return False
    return True


def find_training_data(generator: Generator, cache_dir: str | Path | None = None) -> Path | None:
    """The generator's training manifest on this machine, found by content; None when it is not here."""
    training = generator.training
    hint = training.get("manifest")
    if hint and matches_training(hint, training):
        return Path(hint)
    if training.get("label_maps"):
        sample = bundled.prepared("brats2013", preprocess_of(generator), cache_dir)
        if matches_training(sample, training):
            return sample
    return None


def default_sources(
    generator: Generator,
    anatomies: str = "all",
    cache_dir: str | Path | None = None,
    training_data: Path | bool | None = False,
) -> DefaultSources:
    """Tumor and anatomy sources for a generator when the user gave none (see the module docstring).

    ``training_data``: the result of :func:`find_training_data` when the caller already has it
    (``False``: look it up here).
    """
    preprocess = preprocess_of(generator)
    found = find_training_data(generator, cache_dir) if training_data is False else training_data
    if found is not None:
        chosen = DefaultSources([found], tumors_from="the generator's training subjects (found by content)")
    else:
        chosen = DefaultSources(
            [bundled.prepared("brats2013", preprocess, cache_dir)],
            tumors_from="the bundled 2 mm BraTS 2013 sample (training split)",
            notes=[
                f"the generator's training data ({generator.training.get('manifest', 'not recorded')}) is not on "
                "this machine; tumors come from the bundled sample instead (give --from PREPARED_MANIFEST to choose)"
            ],
        )
    if anatomies != "real":
        chosen.healthy = bundled.healthy(preprocess, cache_dir)
        chosen.notes.append(
            "anatomies: the bundled healthy brains (SynthSeg, Colin27), not the training patients' brains"
        )
    return chosen
