"""scripts/select_generator.py: the new label maps come from the training subjects only; the rule."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from medsynth.labels import LabelConfig, LabelMapSampler
from medsynth.labels.sources import read_sources
from medsynth.manifest import Manifest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "select_generator.py"


@pytest.fixture(scope="module")
def select():
    spec = importlib.util.spec_from_file_location("select_generator", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_new_maps_use_training_subjects_only(select, prepared_phantoms):
    maps = select.new_label_maps(prepared_phantoms, "train", n=3, seed=0)
    assert len(maps) == 3 and all(np.isin(m, [1, 2, 3]).any() and np.isin(m, [4, 5, 6]).any() for m in maps)
    # the same draws, with their records: anatomy and tumor of every map are training subjects
    anatomies, tumors = read_sources([prepared_phantoms], splits=("train",))
    sampler = LabelMapSampler(anatomies, tumors, LabelConfig(anatomies="real"))
    held_out = {c.case_id for c in Manifest.load(prepared_phantoms).cases(["validation"])}
    for index, expected in enumerate(maps):
        label_map, _, record = sampler.sample(index, 0)
        np.testing.assert_array_equal(label_map, expected)
        assert record["anatomy"]["case_id"] not in held_out and record["tumor"]["case_id"] not in held_out


def test_measure_scores_a_generator(select, prepared_phantoms, tiny_generator):
    import medsynth

    generator = medsynth.load_generator(tiny_generator)
    manifest = Manifest.load(prepared_phantoms)
    picked = [manifest.modalities.index(m) for m in generator.modalities]
    maps = select.new_label_maps(prepared_phantoms, "train", n=2, seed=0)
    result = select.measure(generator, manifest.cases(["train"]), picked, 1, (2.0, 2.0, 2.0), maps)
    assert set(result["differences"]) == set(result["new_differences"])
    assert 0 <= result["new_within"] <= len(result["new_differences"])
    assert result["distance"] >= 0 and np.isfinite(result["grid"])


def _result(within: int, new_within: int, grid: float, distance: float) -> dict:
    return {"within": within, "new_within": new_within, "grid": grid, "distance": distance}


def test_choose_keeps_the_reference_fidelity_then_the_closest_texture(select):
    results = {
        "reference": _result(11, 11, 1.03, 0.34),
        "fewer_new": _result(11, 9, 1.03, 0.10),  # fits its own maps, not new ones
        "gridded": _result(12, 12, 1.06, 0.05),
        "better": _result(11, 12, 1.04, 0.16),
    }
    assert select.choose(results) == (["reference", "better"], "better")
    assert select.choose({"only": _result(1, 1, 1.2, 0.0)}) == ([], None)
