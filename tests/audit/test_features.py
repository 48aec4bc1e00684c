"""Feature metrics on hand-built Gaussians; the feature network's save/load roundtrip and its errors."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from medsynth.audit.features import (
    frechet_distance,
    load_feature_network,
    mmd,
    save_feature_network,
    train_feature_network,
)
from medsynth.errors import MedsynthError


def _gaussian(mean: float, samples: int = 5000, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(samples, 4)) + mean


def test_frechet_of_a_set_with_itself_is_zero():
    a = _gaussian(0.0)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("shift", [0.5, 1.0, 2.0])
def test_frechet_of_shifted_gaussians_is_the_squared_mean_difference(shift):
    mu = np.full(4, shift)
    expected = float(mu @ mu)  # equal covariances: the trace term vanishes
    assert frechet_distance(_gaussian(0.0, seed=0), _gaussian(shift, seed=1)) == pytest.approx(expected, rel=0.1)


def test_mmd_is_near_zero_for_one_distribution_and_grows_with_the_shift():
    a = _gaussian(0.0, samples=2000, seed=0)  # MMD builds N x N kernel matrices: fewer samples than for Frechet
    assert abs(mmd(a, a)) < 0.01
    assert abs(mmd(a, _gaussian(0.0, samples=2000, seed=1))) < 0.02
    small, large = mmd(a, _gaussian(0.5, samples=2000, seed=1)), mmd(a, _gaussian(1.0, samples=2000, seed=1))
    assert 0.1 < small < large


def test_mmd_needs_two_samples_per_side():
    with pytest.raises(MedsynthError, match="at least two"):
        mmd(_gaussian(0.0, samples=1), _gaussian(0.0))


@pytest.fixture(scope="module")
def tiny_network():
    """A 1-step SegResNet feature network on two random 16^3 two-channel volumes."""
    rng = np.random.default_rng(0)
    training = [
        (rng.normal(size=(2, 16, 16, 16)).astype(np.float32), rng.integers(0, 7, size=(16, 16, 16))) for _ in range(2)
    ]
    return train_feature_network(training, steps=1, patch=16, seed=0), training[0][0]


def test_saved_feature_network_gives_identical_features(tiny_network, tmp_path):
    network, volume = tiny_network
    save_feature_network(network, tmp_path / "feature_network.pt")
    loaded = load_feature_network(tmp_path / "feature_network.pt")
    assert loaded.kind == "segresnet"
    assert str(tmp_path / "feature_network.pt") in loaded.description
    np.testing.assert_array_equal(loaded.local_features(volume), network.local_features(volume))


def _plain_dict(path):
    torch.save({"weights": torch.zeros(2)}, path)


def _text(path):
    path.write_text("not a network\n")


@pytest.mark.parametrize(
    ("write", "message"),
    [(None, "not found"), (_plain_dict, "not a medsynth feature network"), (_text, "not a readable feature network")],
)
def test_load_feature_network_errors_name_the_path(tmp_path, write, message):
    path = tmp_path / "feature_network.pt"
    if write is not None:
        write(path)
    with pytest.raises(MedsynthError, match=re.escape(str(path))) as error:
        load_feature_network(path)
    assert message in str(error.value)


@pytest.mark.parametrize(
    ("spec", "message"),
    [("torchvision:resnet18=missing.pt", "missing.pt: weights file not found"), ("torchvision:vgg16=w.pt", "ResNet")],
)
def test_torchvision_spec_errors(spec, message):
    with pytest.raises(MedsynthError, match=re.escape(message)):
        load_feature_network(spec)


@pytest.mark.parametrize("scale", [1e100, 1e150])
def test_frechet_distance_survives_where_scipy_sqrtm_fails(scale):
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(200, 4)), rng.normal(size=(150, 4)) * 1.5 + 0.5
    # the covariance product overflows: MONAI's sqrtm raised "Internal error in scipy.linalg.sqrtm: -102"
    assert frechet_distance(a * scale, b * scale) == pytest.approx(frechet_distance(a, b) * scale**2, rel=1e-6)


def _dead_channels(seed: int) -> np.ndarray:
    """9 feature vectors of 32 channels, half of them dead (0), the rest on scales 1e-6 ... 1e6."""
    features = np.random.default_rng(seed).normal(size=(9, 32)) * np.logspace(-6, 6, 32)
    features[:, :16] = 0
    return features


def test_frechet_distance_of_singular_ill_conditioned_covariances_is_defined():
    # MONAI raised "Imaginary component ... too high" for each of these
    a, b = _dead_channels(0), _dead_channels(1)
    scale = np.trace(np.cov(a, rowvar=False))
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-9 * scale)
    diff = a.mean(0) - b.mean(0)
    bound = np.trace(np.cov(a, rowvar=False)) + np.trace(np.cov(b, rowvar=False))
    assert diff @ diff <= frechet_distance(a, b) <= diff @ diff + bound  # mean term + Bures term in [0, tr A + tr B]


@pytest.mark.parametrize(
    ("a", "message"),
    [
        (np.where(np.eye(50, 4) > 0, np.nan, 1.0), "the first feature set holds NaN or Inf values"),
        (np.ones((1, 4)), "at least two feature vectors on each side, got 1 and 50"),
    ],
)
def test_frechet_and_mmd_refuse_unusable_features(a, message):
    b = np.random.default_rng(0).normal(size=(50, 4))
    with pytest.raises(MedsynthError, match=message.replace("(", r"\(")):
        frechet_distance(a, b)
    with pytest.raises(MedsynthError, match="MMD"):
        mmd(a, b)
