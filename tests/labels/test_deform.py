"""Random smooth deformations of each label map's anatomy: regenerable, topology kept, no two cases share a brain."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from medsynth.data.scheme import CSF, GM, WM
from medsynth.labels.config import DeformationConfig, LabelConfig
from medsynth.labels.deform import DeformationParams, deform_label_map, min_jacobian, sample_params
from medsynth.labels.generate import LabelMapSampler, regenerate
from medsynth.labels.sources import read_sources


@pytest.fixture(scope="module")
def sampler_sources(prepared_phantoms):
    anatomies, tumors = read_sources([prepared_phantoms])
    healthy = [a for a in read_sources([prepared_phantoms], healthy=True)[0]]
    return anatomies, tumors, healthy


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return float(2 * (a & b).sum() / max(a.sum() + b.sum(), 1))


def test_same_seed_same_deformed_anatomy_and_regenerable(sampler_sources):
    _, tumors, healthy = sampler_sources
    sampler = LabelMapSampler(healthy, tumors, LabelConfig(anatomies="healthy"))
    first, _, record = sampler.sample(index=2, seed=5)
    again, _, _ = sampler.sample(index=2, seed=5)
    assert np.array_equal(first, again)
    assert set(record["deformation"]) == {
        "rotation_deg",
        "scale",
        "shear",
        "elastic_seed",
        "elastic_magnitude_mm",
        "elastic_smoothness_mm",
    }
    assert np.array_equal(regenerate(record), first)


def test_no_two_cases_share_a_brain_and_none_is_the_source(sampler_sources):
    _, tumors, healthy = sampler_sources
    one_anatomy = healthy[:1]
    sampler = LabelMapSampler(one_anatomy, tumors, LabelConfig(anatomies="healthy"))
    brains = [sampler.sample(index=i, seed=0)[0] > 0 for i in range(3)]
    source = one_anatomy[0].brain
    for brain in brains:
        assert _dice(brain, source) < 0.97  # not the source's brain, voxel for voxel
    assert _dice(brains[0], brains[1]) < 0.97 and _dice(brains[1], brains[2]) < 0.97
    undeformed = LabelMapSampler(
        one_anatomy, tumors, LabelConfig(anatomies="healthy", deformation=DeformationConfig(anatomies="none"))
    )
    label_map, _, record = undeformed.sample(index=0, seed=0)
    assert "deformation" not in record and np.array_equal((label_map > 0), source)


@pytest.mark.parametrize("seed", range(6))
def test_topology_stays_plausible(seed):
    rng = np.random.default_rng(seed)
    params = sample_params(rng, DeformationConfig())
    assert min_jacobian((48, 48, 48), params, 2.0) > 0.5  # invertible everywhere: no folding
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, 48)] * 3, indexing="ij"))
    radius = np.sqrt((grid**2).sum(0))
    anatomy = np.where(radius < 0.5, WM, np.where(radius < 0.65, GM, np.where(radius < 0.75, CSF, 0))).astype(np.int16)
    out = deform_label_map(anatomy, 2.0, params)
    for tissue in (CSF, GM, WM):
        assert ndimage.label(out == tissue)[1] == 1  # each shell stays one piece
        assert 0.7 < (out == tissue).sum() / (anatomy == tissue).sum() < 1.4
    # white matter stays inside grey matter: no WM voxel touches the background
    assert not (ndimage.binary_dilation(out == WM) & (out == 0)).any()


def test_config_validates():
    with pytest.raises(ValueError, match=r"deformation\.anatomies"):
        DeformationConfig(anatomies="some")
    with pytest.raises(ValueError, match=r"deformation\.scale"):
        DeformationConfig(scale=(1.2, 1.1))
    assert DeformationParams.from_dict(sample_params(np.random.default_rng(0), DeformationConfig()).to_dict())
