"""Feature embeddings of brain volumes for Frechet distance and MMD, available offline.

FID-style metrics need a feature network, and these machines download nothing, so the
network is one of:

- ``None`` (default): a small MONAI ``SegResNet`` that the audit trains on the real
  *training* subjects to segment their full label maps (anatomy + tumor sub-regions), so its
  features encode tissue and tumor appearance. It never sees synthetic or held-out data. It
  is saved as ``feature_network.pt`` beside the report: pass that file back with
  ``--features`` to compare several cohorts in one feature space (distances from two
  different networks are not comparable).
- a ``feature_network.pt`` written by an earlier audit;
- ``torchvision:ARCH=WEIGHTS.pt``: a local torchvision ResNet state dict (e.g. a
  RadImageNet or ImageNet ResNet-50 the user downloaded elsewhere), applied 2.5D: every
  4th slice through the brain along each axis, each modality replicated to 3 channels.

Embeddings are *local*: every position of the network's deepest feature map inside the
brain (3D) or every slice (2.5D) is one sample, which gives hundreds of samples per
volume, enough to estimate a covariance with a handful of subjects (a per-volume FID with
2-8 volumes per group would be meaningless). Per-volume descriptors (mean and standard
deviation of the local features) serve the nearest-neighbour feature distance of the copy
check.

>>> import numpy as np
>>> a = np.random.default_rng(0).normal(size=(500, 4))
>>> abs(round(frechet_distance(a, a), 6))  # may round to -0.0
0.0
"""

from __future__ import annotations

import contextlib
import io
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medsynth.data.scheme import MODEL_CLASSES
from medsynth.errors import MedsynthError
from medsynth.io import atomic_path

FEATURE_NETWORK_VERSION = 1


@dataclass
class FeatureNetwork:
    """A frozen network that maps one (C, X, Y, Z) volume to local feature vectors."""

    kind: str  # "segresnet" (trained by medsynth on real data) or "torchvision:<arch>" (2.5D)
    model: torch.nn.Module
    description: str  # one line for the report: what the network is and what it saw

    @torch.no_grad()
    def local_features(self, images: np.ndarray) -> np.ndarray:
        """(N, F) feature vectors of one volume (brain = non-zero voxels of any modality).

        Refused with a :class:`MedsynthError` when the network expects another number of
        modalities or gives NaN/Inf features (broken weights: the audit checks its volumes).
        """
        brain = np.any(images != 0, axis=0)
        if self.kind == "segresnet":
            expected = int(self.model.convInit.conv.weight.shape[1])
            if expected != images.shape[0]:
                raise MedsynthError(
                    f"feature network ({self.description}) takes {expected} modalities, these volumes have "
                    f"{images.shape[0]}; use a network from an audit of the same modalities"
                )
            features = _segresnet_features(self.model, images, brain)
        else:
            features = _slice_features(self.model, images, brain)
        if not np.isfinite(features).all():
            raise MedsynthError(
                f"feature network ({self.description}) gives NaN or Inf features on a finite volume; its weights "
                "are unusable (leave out --features to train a new one)"
            )
        return features

    def describe(self, images: np.ndarray) -> np.ndarray:
        """A per-volume descriptor: mean and standard deviation of the local features."""
        local = self.local_features(images)
        return np.concatenate([local.mean(0), local.std(0)])


def _segresnet(in_channels: int, init_filters: int = 8) -> torch.nn.Module:
    from monai.networks.nets import SegResNet

    return SegResNet(spatial_dims=3, in_channels=in_channels, out_channels=MODEL_CLASSES, init_filters=init_filters)


def _pad_to(volume: torch.Tensor, multiple: int) -> torch.Tensor:
    pads = []
    for size in reversed(volume.shape[-3:]):
        pads += [0, (-size) % multiple]
    return torch.nn.functional.pad(volume, pads)


def _segresnet_features(model: torch.nn.Module, images: np.ndarray, brain: np.ndarray) -> np.ndarray:
    model.eval()
    x = _pad_to(torch.as_tensor(np.asarray(images, dtype=np.float32))[None], 8)
    deepest, _ = model.encode(x)
    factor = x.shape[-1] // deepest.shape[-1]
    mask = _pad_to(torch.as_tensor(brain, dtype=torch.float32)[None, None], 8)
    # a position counts as brain when most of the voxels it summarises are brain
    inside = torch.nn.functional.avg_pool3d(mask, factor)[0, 0] > 0.5
    features = deepest[0].permute(1, 2, 3, 0)[inside]
    if features.shape[0] == 0:
        features = deepest[0].flatten(1).T
    return features.float().numpy()


def _slice_features(model: torch.nn.Module, images: np.ndarray, brain: np.ndarray, every: int = 4) -> np.ndarray:
    model.eval()
    volume = torch.as_tensor(np.asarray(images, dtype=np.float32))
    slices = []
    for axis in range(3):
        occupied = np.flatnonzero(brain.any(axis=tuple(a for a in range(3) if a != axis)))
        for index in occupied[::every]:
            for channel in volume:
                plane = channel.select(axis, int(index))
                # z-scored MRI -> roughly the [0, 1] range ResNets are trained on, then 3 channels
                plane = ((plane.clamp(-3, 3) + 3) / 6).expand(3, *plane.shape)
                slices.append(plane)
    features = []
    for start in range(0, len(slices), 32):
        batch = torch.nn.functional.interpolate(torch.stack(slices[start : start + 32]), size=(224, 224))
        mean = torch.tensor([0.485, 0.456, 0.406])[None, :, None, None]
        std = torch.tensor([0.229, 0.224, 0.225])[None, :, None, None]
        features.append(model((batch - mean) / std).flatten(1))
    return torch.cat(features).float().numpy()


def train_feature_network(
    training: list[tuple[np.ndarray, np.ndarray]], steps: int = 200, patch: int = 48, seed: int = 0
) -> FeatureNetwork:
    """Train a SegResNet to segment the full label maps of the real training subjects.

    ``training`` holds (images (C, X, Y, Z), label map (X, Y, Z)) pairs. Random crops of the
    in-memory volumes feed the network directly: the volumes are a few MB each, and MONAI's
    dataset machinery would only add the file reading we have already done.
    """
    from monai.losses import DiceCELoss

    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    shape = training[0][1].shape
    patch_size = [min(patch, s - s % 8) for s in shape]
    if min(patch_size) < 8:
        raise MedsynthError(f"volumes of shape {shape} are too small for the feature network (need >= 8 voxels)")
    model = _segresnet(training[0][0].shape[0])
    images = torch.stack([torch.as_tensor(np.asarray(i, dtype=np.float32)) for i, _ in training])
    labels = torch.stack([torch.as_tensor(np.asarray(lbl, dtype=np.int64)) for _, lbl in training])
    loss_fn = DiceCELoss(softmax=True, to_onehot_y=True)
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-5)
    model.train()
    for _ in range(steps):
        index = torch.randint(len(training), (2,), generator=generator)
        corner = [
            int(torch.randint(s - p + 1, (1,), generator=generator)) for s, p in zip(shape, patch_size, strict=True)
        ]
        window = tuple(slice(c, c + p) for c, p in zip(corner, patch_size, strict=True))
        x = images[index][(slice(None), slice(None), *window)]
        y = labels[index][(slice(None), *window)][:, None]
        loss = loss_fn(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    model.eval()
    return FeatureNetwork(
        "segresnet",
        model,
        f"SegResNet trained by this audit for {steps} steps to segment the {len(training)} real training subjects' "
        "label maps (anatomy + tumor); it saw no synthetic or held-out case",
    )


def save_feature_network(network: FeatureNetwork, path: str | Path) -> None:
    """Write a SegResNet feature network (weights and what ``load_feature_network`` needs)."""
    if network.kind != "segresnet":
        raise MedsynthError("only a medsynth-trained feature network is saved; torchvision weights stay where they are")
    first = network.model.convInit.conv.weight
    state = {
        "format_version": FEATURE_NETWORK_VERSION,
        "kind": "segresnet",
        "in_channels": int(first.shape[1]),
        "init_filters": int(first.shape[0]),
        "description": network.description,
        "state_dict": network.model.state_dict(),
    }
    with atomic_path(Path(path)) as tmp:
        torch.save(state, tmp)


def load_feature_network(spec: str | Path) -> FeatureNetwork:
    """A saved ``feature_network.pt`` or ``torchvision:ARCH=WEIGHTS.pt`` (see the module docstring)."""
    text = str(spec)
    if text.startswith("torchvision:"):
        arch, _, weights = text.removeprefix("torchvision:").partition("=")
        return _torchvision_network(arch, Path(weights))
    path = Path(text)
    if not path.is_file():
        raise MedsynthError(f"{path}: feature network not found (a feature_network.pt or torchvision:ARCH=WEIGHTS)")
    try:
        state: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise MedsynthError(f"{path}: not a readable feature network ({error})") from None
    if not isinstance(state, dict) or state.get("kind") != "segresnet" or "state_dict" not in state:
        raise MedsynthError(f"{path}: not a medsynth feature network (written by `medsynth audit`)")
    try:
        model = _segresnet(int(state["in_channels"]), int(state["init_filters"]))
        model.load_state_dict(state["state_dict"])
    except (KeyError, TypeError, ValueError, RuntimeError) as error:
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise MedsynthError(f"{path}: damaged feature network ({message})") from None
    model.eval()
    return FeatureNetwork("segresnet", model, str(state.get("description", path.name)) + f" ({path})")


def _torchvision_network(arch: str, weights: Path) -> FeatureNetwork:
    import torchvision

    if not arch.startswith("resnet") or not hasattr(torchvision.models, arch):
        raise MedsynthError(f"torchvision:{arch}: choose a torchvision ResNet (resnet18 ... resnet152)")
    if not weights.is_file():
        raise MedsynthError(f"{weights}: weights file not found (torchvision:{arch}=PATH to a local state dict)")
    model = getattr(torchvision.models, arch)(weights=None)
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
        model.load_state_dict(state.get("state_dict", state) if isinstance(state, dict) else state)
    except Exception as error:
        raise MedsynthError(f"{weights}: not a {arch} state dict ({error})") from None
    model.fc = torch.nn.Identity()  # the pooled penultimate features, as FID uses them
    model.eval()
    return FeatureNetwork(f"torchvision:{arch}", model, f"torchvision {arch} from {weights}, 2.5D (slices)")


def _subsample(features: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    if len(features) <= count:
        return features
    return features[rng.choice(len(features), count, replace=False)]


def _check_feature_sets(metric: str, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two (N, F) float64 feature sets with the same F, at least two vectors each, all finite."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise MedsynthError(f"{metric} needs two (N, F) feature sets with one F, got shapes {a.shape} and {b.shape}")
    if min(len(a), len(b)) < 2:
        raise MedsynthError(f"{metric} needs at least two feature vectors on each side, got {len(a)} and {len(b)}")
    for name, features in (("first", a), ("second", b)):
        if not np.isfinite(features).all():
            raise MedsynthError(f"{metric}: the {name} feature set holds NaN or Inf values")
    return a, b


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Frechet distance between Gaussians fitted to two (N, F) feature sets (MONAI ``FIDMetric``).

    Guarded: non-finite or too few features are refused with a :class:`MedsynthError`; where
    MONAI's ``scipy.linalg.sqrtm`` fails on a numerically degenerate (singular, ill-conditioned,
    overflowing) covariance product, the same distance comes from :func:`_frechet_symmetric`.
    """
    from monai.metrics import FIDMetric

    a, b = _check_feature_sets("Frechet distance", a, b)
    try:
        # MONAI prints a notice and numpy/scipy warn on a singular product: the fallback handles it quietly
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            value = float(FIDMetric()(torch.as_tensor(a), torch.as_tensor(b)))
    except (np.linalg.LinAlgError, ValueError, RuntimeError, ArithmeticError):
        value = float("nan")
    return value if np.isfinite(value) else _frechet_symmetric(a, b)


def _frechet_symmetric(a: np.ndarray, b: np.ndarray) -> float:
    """The Frechet distance of two finite (N, F) feature sets, defined for every covariance.

    |mu_a - mu_b|^2 + tr(A) + tr(B) - 2 tr((A^1/2 B A^1/2)^1/2): equal to tr((A B)^1/2) for
    positive semi-definite A and B, and needing only symmetric eigendecompositions (eigenvalues
    clipped at 0). Computed on features scaled to |value| <= 1, then scaled back (the distance
    grows with the square of the scale), so large features do not overflow the covariances.
    """
    scale = float(max(np.abs(a).max(), np.abs(b).max())) or 1.0
    a, b = a / scale, b / scale
    cov_a, cov_b = np.atleast_2d(np.cov(a, rowvar=False)), np.atleast_2d(np.cov(b, rowvar=False))
    try:
        values, vectors = np.linalg.eigh(cov_a)
        root_a = (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T
        inner = root_a @ cov_b @ root_a
        cross = float(np.sqrt(np.clip(np.linalg.eigvalsh((inner + inner.T) / 2), 0, None)).sum())
    except np.linalg.LinAlgError as error:
        raise MedsynthError(f"Frechet distance: the feature covariance is numerically degenerate ({error})") from None
    diff = a.mean(0) - b.mean(0)
    with np.errstate(over="ignore"):
        value = float((diff @ diff + np.trace(cov_a) + np.trace(cov_b) - 2 * cross) * np.float64(scale) ** 2)
    if not np.isfinite(value):
        raise MedsynthError(f"Frechet distance: overflows for features this large (largest |value| {scale:.3g})")
    return max(value, 0.0)


def mmd(a: np.ndarray, b: np.ndarray, seed: int = 0) -> float:
    """Unbiased MMD^2 with MONAI's linear kernel (``MMDMetric``) between two (N, F) feature sets.

    MONAI's metric needs equally many samples on both sides: the larger set is subsampled.
    """
    from monai.metrics import MMDMetric

    a, b = _check_feature_sets("MMD", a, b)
    count = min(len(a), len(b))
    rng = np.random.default_rng(seed)
    a, b = _subsample(a, count, rng), _subsample(b, count, rng)
    value = float(MMDMetric()(torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64)))
    if not np.isfinite(value):
        raise MedsynthError(f"MMD: non-finite result (features too large, largest |value| {np.abs(a).max():.3g})")
    return value


def feature_fidelity(
    network: FeatureNetwork,
    training: list[np.ndarray],
    held_out: list[np.ndarray],
    synthetic: list[np.ndarray],
    max_samples: int = 4000,
    seed: int = 0,
) -> dict[str, Any]:
    """FID and MMD of synthetic vs training features, with held-out vs training as the baseline."""
    rng = np.random.default_rng(seed)

    def pooled(volumes: list[np.ndarray]) -> np.ndarray:
        return _subsample(np.concatenate([network.local_features(v) for v in volumes]), max_samples, rng)

    train, synth = pooled(training), pooled(synthetic)
    held = pooled(held_out) if held_out else None
    result: dict[str, Any] = {
        "network": network.description,
        "feature_dim": int(train.shape[1]),
        "samples": {"training": len(train), "synthetic": len(synth), "held_out": 0 if held is None else len(held)},
        "frechet": {"synthetic_vs_training": round(frechet_distance(synth, train), 4)},
        "mmd": {"synthetic_vs_training": round(mmd(synth, train, seed), 6)},
    }
    if held is not None:
        result["frechet"]["held_out_vs_training"] = round(frechet_distance(held, train), 4)
        result["frechet"]["synthetic_vs_held_out"] = round(frechet_distance(synth, held), 4)
        result["mmd"]["held_out_vs_training"] = round(mmd(held, train, seed), 6)
        result["mmd"]["synthetic_vs_held_out"] = round(mmd(synth, held, seed), 6)
    return result
